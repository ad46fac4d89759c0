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
BENCH_NAME=writepath-statements
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

PUSHES=${PUSHES:-3}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_LOG=${PG_LOG:-$(ls /var/log/postgresql/postgresql-*-main.log | head -n1)}
[ -r "$PG_LOG" ] || die "cannot read the Postgres log $PG_LOG (set PG_LOG)"
RUN=$(mktemp -d "${TMPDIR:-/tmp}/tw-bench-statements.XXXXXX")
REG_PID= TW_PID= DB_NAME=

install_traps server_cleanup

need_tools docker-registry curl psql python3
P_REG=$(free_ports)
start_registry "$P_REG"
image_blobs
for spec in "$@"; do
    name=${spec%%=*} rest=${spec#*=}
    bin=${rest%%:*} config=
    [ "$bin" = "$rest" ] || config=${rest#*:}
    DB_NAME="tagwarden_bench_statements_${name}_$$"
    url=$(create_db "$DB_NAME")
    psql "$PG_ADMIN_URL" -Xqc "alter database $DB_NAME set log_statement = 'all'" >/dev/null
    printf '%s\n' "$config" >"$RUN/$name.toml"
    read -r P_TW P_ADMIN <<<"$(free_ports 2)"
    serve_tagwarden TW_PID "$bin" "$RUN/$name.toml" "$RUN/$name.log" "http://127.0.0.1:$P_ADMIN/healthz" 90 \
        --listen "127.0.0.1:$P_TW" --admin-listen "127.0.0.1:$P_ADMIN" --upstream "http://127.0.0.1:$P_REG" \
        --database-url "$url"
    repo="statements/$name"
    seed_put_repos "http://127.0.0.1:$P_REG" "$repo"
    counts=()
    for n in $(seq 1 "$PUSHES"); do
        sleep 1 # let background work of the previous push settle
        before=$(stat -c %s "$PG_LOG")
        body="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"$CONFIG_DIGEST\",\"size\":$CONFIG_SIZE},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$LAYER_DIGEST\",\"size\":1024}],\"annotations\":{\"n\":\"$n\"}}"
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
    drop_db "$DB_NAME"
    DB_NAME=
done
