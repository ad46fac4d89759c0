#!/usr/bin/env bash
# The transparency log's write path: new immutable tags PUT through tagwarden (with the
# log on) by 8 connections into ONE repository vs spread over 8 repositories, and the
# time from an event's commit to its inclusion in a signed checkpoint (p50, p99).
#
#   bench/tlog.sh
#
# Environment (all optional): ROUNDS (default 3; each round runs one and many, the
# order alternating), SECONDS_PER_RUN (default 10), CONNECTIONS (default 8),
# CHECKPOINT_INTERVAL (default 1s), TAGWARDEN_BIN (skip the release build),
# PG_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres), KEEP_RUN_DIR=1.
# Prints a Markdown block for BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export LC_ALL=C
BENCH_NAME=tlog
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECTIONS=${CONNECTIONS:-8}
CHECKPOINT_INTERVAL=${CHECKPOINT_INTERVAL:-1s}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
RUN=$(mktemp -d "${TMPDIR:-/tmp}/tw-bench-tlog.XXXXXX")
REG_PID= TW_PID= DB_NAME=

cleanup() {
    stop_pid "$TW_PID"
    stop_pid "$REG_PID"
    if [ -n "$DB_NAME" ]; then
        psql "$PG_ADMIN_URL" -Xqc "drop database if exists $DB_NAME with (force)" >/dev/null 2>&1 || true
    fi
    remove_run_dir
}
install_traps

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_REG=$(port) P_TW=$(port) P_ADMIN=$(port)

wait_http() {
    local url=$1 pid=$2 i
    for i in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || die "$url: the process exited"
        [ "$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$url")" = 200 ] && return 0
        sleep 0.2
    done
    die "$url did not answer 200"
}

build
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
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$P_REG
YML
docker-registry serve "$RUN/registry.yml" >"$RUN/registry.log" 2>&1 &
REG_PID=$!
wait_http "http://127.0.0.1:$P_REG/v2/" "$REG_PID"

DB_NAME="tagwarden_bench_tlog_$$"
psql "$PG_ADMIN_URL" -Xqc "create database $DB_NAME" >/dev/null
DB_URL="${PG_ADMIN_URL%/*}/$DB_NAME"
VKEY=$("$BIN" log keygen --out "$RUN/log.key" --name bench.test/log)
cat >"$RUN/tagwarden.toml" <<TOML
[tlog]
signing_key_file = "$RUN/log.key"
state_file = "$RUN/log.state"
checkpoint_interval = "$CHECKPOINT_INTERVAL"
TOML
env -u TAGWARDEN_CONFIG "$BIN" serve --config "$RUN/tagwarden.toml" \
    --listen "127.0.0.1:$P_TW" --admin-listen "127.0.0.1:$P_ADMIN" \
    --upstream "http://127.0.0.1:$P_REG" --database-url "$DB_URL" >"$RUN/tagwarden.log" 2>&1 &
TW_PID=$!
wait_http "http://127.0.0.1:$P_ADMIN/healthz" "$TW_PID"

# One config and one layer blob in every repository the PUTs name.
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$RUN/config.json"
head -c 1024 /dev/urandom >"$RUN/layer.bin"
digest() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
CONFIG_DIGEST=$(digest "$RUN/config.json") CONFIG_SIZE=$(stat -c %s "$RUN/config.json")
LAYER_DIGEST=$(digest "$RUN/layer.bin") LAYER_SIZE=1024
upload() {
    local repo=$1 file=$2 d=$3 loc
    loc=$(curl -sS -o /dev/null -D - -X POST "http://127.0.0.1:$P_TW/v2/$repo/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1)=="location:" { print $2 }')
    case "$loc" in /*) loc="http://127.0.0.1:$P_TW$loc" ;; esac
    case "$loc" in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
    [ "$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -T "$file" -H 'Content-Type: application/octet-stream' "$loc")" = 201 ] ||
        die "upload to $repo failed"
}
for i in $(seq 0 $((CONNECTIONS - 1))); do
    for prefix in bench/one bench/many; do
        upload "$prefix$i" "$RUN/config.json" "$CONFIG_DIGEST"
        upload "$prefix$i" "$RUN/layer.bin" "$LAYER_DIGEST"
    done
done

RUN_NO=0
put() { # SPREAD PREFIX -> requests/s (errors abort)
    RUN_NO=$((RUN_NO + 1))
    local rps errors total
    read -r rps errors total _ <<<"$(python3 bench/put-spread.py 127.0.0.1 "$P_TW" "$SECONDS_PER_RUN" "$CONNECTIONS" \
        "$1" "$2" "$RUN_NO" "$CONFIG_DIGEST" "$CONFIG_SIZE" "$LAYER_DIGEST" "$LAYER_SIZE")"
    [ "$errors" = 0 ] || die "$errors of $total PUTs failed (see $RUN/tagwarden.log)"
    echo "$rps"
}

log "warm-up"
put 1 bench/many >/dev/null
ONE=() MANY=()
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        ONE+=("$(put 0 bench/one)"); MANY+=("$(put 1 bench/many)")
    else
        MANY+=("$(put 1 bench/many)"); ONE+=("$(put 0 bench/one)")
    fi
    log "round $r: one repository ${ONE[-1]}/s, $CONNECTIONS repositories ${MANY[-1]}/s"
done
sleep 3 # the last checkpoint

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
M_ONE=$(median "${ONE[@]}") M_MANY=$(median "${MANY[@]}")
RATIO=$(awk -v a="$M_ONE" -v b="$M_MANY" 'BEGIN { printf "%.2f", a / b }')
# From the commit (the event's time is taken just before its insert) to the signing of
# the first checkpoint that contains it.
read -r P50 P99 N <<<"$(psql "$DB_URL" -XAtF' ' -c "
    SELECT round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY s)::numeric, 1),
           round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY s)::numeric, 1), count(*)
    FROM (SELECT extract(epoch FROM (SELECT min(c.signed_at) FROM log_checkpoints c WHERE c.size > l.leaf_index) - e.at) AS s
          FROM log_leaves l JOIN tag_events e ON e.id = l.event_id) q WHERE s IS NOT NULL")"
"$BIN" log verify --database-url "$DB_URL" --verifier-key "$VKEY" >"$RUN/verify.out" 2>&1 ||
    die "log verify failed: $(tail -n 3 "$RUN/verify.out")"

cat <<MD
### Transparency log: one repository vs many, commit to checkpoint

\`bench/tlog.sh\` (ROUNDS=$ROUNDS SECONDS_PER_RUN=$SECONDS_PER_RUN CONNECTIONS=$CONNECTIONS CHECKPOINT_INTERVAL=$CHECKPOINT_INTERVAL), $(nproc) cores ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), load average at the end $(cut -d' ' -f1-3 /proc/loadavg), tagwarden $(git rev-parse --short=12 HEAD), binary \`${BIN#"$ROOT"/}\`.

| new immutable tags, $CONNECTIONS connections | requests/s per round | median |
| --- | --- | --- |
| one repository | ${ONE[*]} | $M_ONE |
| $CONNECTIONS repositories | ${MANY[*]} | $M_MANY |
| ratio one / many | | **$RATIO** |

Commit to inclusion in a signed checkpoint, over all $N events: p50 **$P50 ms**, p99 **$P99 ms** (checkpoint_interval $CHECKPOINT_INTERVAL). \`log verify\` of the result: ok.
MD
