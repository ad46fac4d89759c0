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
BENCH_NAME=tlog
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECTIONS=${CONNECTIONS:-8}
CHECKPOINT_INTERVAL=${CHECKPOINT_INTERVAL:-1s}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
need_tools docker-registry wrk curl psql python3
RUN=$(mktemp -d "${TMPDIR:-/tmp}/tw-bench-tlog.XXXXXX")
REG_PID= TW_PID= DB_NAME=

install_traps server_cleanup

read -r P_REG P_TW P_ADMIN <<<"$(free_ports 3)"
build
start_registry "$P_REG"

DB_NAME="tagwarden_bench_tlog_$$"
DB_URL=$(create_db "$DB_NAME")
VKEY=$("$BIN" log keygen --out "$RUN/log.key" --name bench.test/log)
cat >"$RUN/tagwarden.toml" <<TOML
[tlog]
signing_key_file = "$RUN/log.key"
state_file = "$RUN/log.state"
checkpoint_interval = "$CHECKPOINT_INTERVAL"
TOML
serve_tagwarden TW_PID "$BIN" "$RUN/tagwarden.toml" "$RUN/tagwarden.log" "http://127.0.0.1:$P_ADMIN/healthz" 90 \
    --listen "127.0.0.1:$P_TW" --admin-listen "127.0.0.1:$P_ADMIN" \
    --upstream "http://127.0.0.1:$P_REG" --database-url "$DB_URL"

# One config and one layer blob in every repository the PUTs name.
image_blobs
for i in $(seq 0 $((CONNECTIONS - 1))); do
    seed_put_repos "http://127.0.0.1:$P_TW" "bench/one$i" "bench/many$i"
done

# One thread per connection, so that with SPREAD = 1 connection i writes PREFIX<i>;
# with SPREAD = 0 every connection writes PREFIX0.
# Not to be run in a subshell: RUN_NO numbers the runs so that no two share a tag.
RUN_NO=0
put() { # SPREAD PREFIX -> sets RPS (errors abort)
    RUN_NO=$((RUN_NO + 1))
    local errors total repo=$2
    vacuum_if_no_autovacuum "$DB_NAME"
    [ "$1" = 1 ] || repo="${2}0"
    read -r RPS _ _ errors total <<<"$(put_tags "http://127.0.0.1:$P_TW/v2/$repo/manifests" \
        "$CONNECTIONS" "$CONNECTIONS" "$SECONDS_PER_RUN" "$RUN_NO" "$RUN/wrk.out" "$1")"
    [ "$RPS" != FAIL ] || die "wrk failed: $(tail -n 5 "$RUN/wrk.out")"
    [ "$errors" = 0 ] || die "$errors of $total PUTs failed (see $RUN/tagwarden.log)"
}

log "warm-up"
put 1 bench/many
ONE=() MANY=()
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then
        put 0 bench/one; ONE+=("$RPS"); put 1 bench/many; MANY+=("$RPS")
    else
        put 1 bench/many; MANY+=("$RPS"); put 0 bench/one; ONE+=("$RPS")
    fi
    log "round $r: one repository ${ONE[-1]}/s, $CONNECTIONS repositories ${MANY[-1]}/s"
done
sleep 3 # the last checkpoint

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

\`bench/tlog.sh\` (ROUNDS=$ROUNDS SECONDS_PER_RUN=$SECONDS_PER_RUN CONNECTIONS=$CONNECTIONS CHECKPOINT_INTERVAL=$CHECKPOINT_INTERVAL), $(machine_line), load average at the end $(cut -d' ' -f1-3 /proc/loadavg), tagwarden $(git rev-parse --short=12 HEAD), binary \`${BIN#"$ROOT"/}\`, client $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }') with \`bench/put-tags.lua\`.

| new immutable tags, $CONNECTIONS connections | requests/s per round | median |
| --- | --- | --- |
| one repository | ${ONE[*]} | $M_ONE |
| $CONNECTIONS repositories | ${MANY[*]} | $M_MANY |
| ratio one / many | | **$RATIO** |

Commit to inclusion in a signed checkpoint, over all $N events: p50 **$P50 ms**, p99 **$P99 ms** (checkpoint_interval $CHECKPOINT_INTERVAL). \`log verify\` of the result: ok.
MD
