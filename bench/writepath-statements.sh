#!/usr/bin/env bash
# The SQL statements (round trips to Postgres) of one PUT of a new immutable tag, as
# Postgres logs them (log_statement = all on a throwaway database): for each binary
# and configuration given, pushes PUSHES new tags one after the other and prints the
# statements of the last one, and how many each push took.
#
#   bench/writepath-statements.sh NAME=BINARY[:CONFIG_TOML] ...
#   e.g. bench/writepath-statements.sh before=/tmp/tw-old probe=target/release/tagwarden \
#        'skip=target/release/tagwarden:[enforce]
#   ledger_complete = true'
#
# Needs to read the Postgres server log (PG_LOG, default the Debian cluster's log).
# Environment: PUSHES (default 3), PG_ADMIN_URL, PG_LOG, KEEP_RUN_DIR=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export LC_ALL=C
BENCH_NAME=writepath-statements
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

PUSHES=${PUSHES:-3}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_LOG=${PG_LOG:-$(ls /var/log/postgresql/postgresql-*-main.log | head -n1)}
[ -r "$PG_LOG" ] || die "cannot read the Postgres log $PG_LOG (set PG_LOG)"
RUN=$(mktemp -d "${TMPDIR:-/tmp}/tw-bench-statements.XXXXXX")
REG_PID= TW_PID= DB_NAME=

cleanup() {
    stop_pid "$TW_PID"
    stop_pid "$REG_PID"
    [ -z "$DB_NAME" ] || psql "$PG_ADMIN_URL" -Xqc "drop database if exists $DB_NAME with (force)" >/dev/null 2>&1 || true
    remove_run_dir
}
install_traps

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    local i
    for i in $(seq 1 300); do
        [ "$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$1")" = 200 ] && return 0
        sleep 0.2
    done
    die "$1 did not answer 200"
}

P_REG=$(port)
mkdir -p "$RUN/registry"
cat >"$RUN/registry.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $RUN/registry
http:
  addr: 127.0.0.1:$P_REG
YML
docker-registry serve "$RUN/registry.yml" >"$RUN/registry.log" 2>&1 &
REG_PID=$!
wait_http "http://127.0.0.1:$P_REG/v2/"

printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$RUN/config.json"
head -c 1024 /dev/urandom >"$RUN/layer.bin"
digest() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
CONFIG_DIGEST=$(digest "$RUN/config.json") LAYER_DIGEST=$(digest "$RUN/layer.bin")
upload() {
    local repo=$1 file=$2 d=$3 base="http://127.0.0.1:$P_REG" loc
    loc=$(curl -sS -o /dev/null -D - -X POST "$base/v2/$repo/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1)=="location:" { print $2 }')
    case "$loc" in /*) loc="$base$loc" ;; esac
    case "$loc" in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
    curl -sS -o /dev/null -X PUT -T "$file" -H 'Content-Type: application/octet-stream' "$loc"
}

for spec in "$@"; do
    name=${spec%%=*} rest=${spec#*=}
    bin=${rest%%:*} config=
    [ "$bin" = "$rest" ] || config=${rest#*:}
    DB_NAME="tagwarden_bench_statements_${name}_$$"
    psql "$PG_ADMIN_URL" -Xqc "create database $DB_NAME" >/dev/null
    psql "$PG_ADMIN_URL" -Xqc "alter database $DB_NAME set log_statement = 'all'" >/dev/null
    printf '%s\n' "$config" >"$RUN/$name.toml"
    P_TW=$(port) P_ADMIN=$(port)
    env -u TAGWARDEN_CONFIG "$bin" serve --config "$RUN/$name.toml" --listen "127.0.0.1:$P_TW" \
        --admin-listen "127.0.0.1:$P_ADMIN" --upstream "http://127.0.0.1:$P_REG" \
        --database-url "${PG_ADMIN_URL%/*}/$DB_NAME" >"$RUN/$name.log" 2>&1 &
    TW_PID=$!
    wait_http "http://127.0.0.1:$P_ADMIN/healthz"
    repo="statements/$name"
    upload "$repo" "$RUN/config.json" "$CONFIG_DIGEST"
    upload "$repo" "$RUN/layer.bin" "$LAYER_DIGEST"
    counts=()
    for n in $(seq 1 "$PUSHES"); do
        sleep 1 # let background work of the previous push settle
        before=$(stat -c %s "$PG_LOG")
        body="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$CONFIG_DIGEST\",\"size\":$(stat -c %s "$RUN/config.json")},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$LAYER_DIGEST\",\"size\":1024}],\"annotations\":{\"n\":\"$n\"}}"
        code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
            --data-binary "$body" "http://127.0.0.1:$P_TW/v2/$repo/manifests/1.0.$n")
        [ "$code" = 201 ] || die "$name: PUT answered $code"
        sleep 0.5
        tail -c +$((before + 1)) "$PG_LOG" | grep -F "@$DB_NAME " | grep -E 'LOG:  (execute|statement)' >"$RUN/$name.$n.sql" || true
        counts+=("$(wc -l <"$RUN/$name.$n.sql")")
    done
    echo "== $name: statements per push: ${counts[*]}"
    sed -E 's/^.*LOG:  //' "$RUN/$name.$PUSHES.sql" | cut -c1-150
    stop_pid "$TW_PID"
    TW_PID=
    psql "$PG_ADMIN_URL" -Xqc "drop database if exists $DB_NAME with (force)" >/dev/null
    DB_NAME=
done
