#!/usr/bin/env bash
# What one push of a new immutable tag adds, at one connection: the registry direct,
# through a bare TCP relay (socat, the physical reference for any proxy hop), and
# through tagwarden's `skip` path ([enforce] ledger_complete), in the same rounds; with
# tagwarden's CPU time and its ledger's Postgres active time per push.
#
#   bench/write-latency.sh
#
# Postgres' active time (pg_stat_database.active_time, Postgres 14 and later) counts
# every statement of a push, also the one that runs while the registry stores; the
# opening query and the commit are what the client waits for.
#
# Environment (all optional): ROUNDS (default 5), SECONDS_PER_RUN (default 8),
# TAGWARDEN_BIN (skip the release build), PG_ADMIN_URL (default
# postgres://postgres@127.0.0.1:5432/postgres), URL_SUFFIX (appended to tagwarden's
# database URL, e.g. '?host=/var/run/postgresql'), EXTRA_CONFIG (TOML appended to
# tagwarden's configuration), KEEP_RUN_DIR=1.
# Prints a Markdown block for BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=write-latency
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${ROUNDS:-5}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
need_tools docker-registry socat wrk curl psql python3
RUN=$(mktemp -d "${TMPDIR:-/tmp}/tw-bench-write-latency.XXXXXX")
REG_PID= RELAY_PID= TW_PID= DB_NAME=

cleanup() {
    stop_pid "$RELAY_PID"
    server_cleanup
}
install_traps

build
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
read -r TICKS_START STEAL_START <<<"$(cpu_ticks)"
read -r P_REG P_RELAY P_TW P_ADMIN <<<"$(free_ports 4)"
start_registry "$P_REG"
socat "TCP-LISTEN:$P_RELAY,bind=127.0.0.1,fork,reuseaddr,nodelay" "TCP:127.0.0.1:$P_REG,nodelay" &
RELAY_PID=$!
DB_NAME="tagwarden_bench_write_latency_$$"
DB_URL=$(create_db "$DB_NAME")
printf '[enforce]\nledger_complete = true\n[reconcile]\nenabled = false\n%s\n' "${EXTRA_CONFIG:-}" >"$RUN/tw.toml"
serve_tagwarden TW_PID "$BIN" "$RUN/tw.toml" "$RUN/tw.log" "http://127.0.0.1:$P_ADMIN/healthz" 90 \
    --listen "127.0.0.1:$P_TW" --admin-listen "127.0.0.1:$P_ADMIN" \
    --upstream "http://127.0.0.1:$P_REG" --database-url "$DB_URL${URL_SUFFIX:-}"
wait_http "http://127.0.0.1:$P_RELAY/v2/" "$RELAY_PID" "the socat relay" 10

declare -A BASE=([direct]="http://127.0.0.1:$P_REG" [socat]="http://127.0.0.1:$P_RELAY" [skip]="http://127.0.0.1:$P_TW")
PATHS=(direct socat skip)
image_blobs
for p in "${PATHS[@]}"; do seed_put_repos "http://127.0.0.1:$P_REG" "bench/${p}0"; done

TICK_MS=$((1000 / $(getconf CLK_TCK)))
tw_cpu_ms() { awk -v t="$TICK_MS" '{ print ($14 + $15) * t }' "/proc/$TW_PID/stat"; }
# Postgres keeps a session's statistics for up to a second before it publishes them.
pg_active_ms() {
    sleep 1.5
    psql "${PG_ADMIN_URL%/*}/$DB_NAME" -XAtc "select active_time from pg_stat_database where datname = current_database()"
}

RUN_NO=0
put() { # PATH -> sets P50_MS and TOTAL (errors abort)
    RUN_NO=$((RUN_NO + 1))
    local errors rps
    read -r rps P50_MS _ errors TOTAL <<<"$(put_tags "${BASE[$1]}/v2/bench/${1}0/manifests" 1 1 "$SECONDS_PER_RUN" "$RUN_NO" "$RUN/wrk-$1.out")"
    [ "$rps" != FAIL ] || die "$1: wrk failed: $(tail -n 5 "$RUN/wrk-$1.out")"
    [ "$errors" = 0 ] || die "$1: $errors of $TOTAL PUTs failed"
}

log "warm-up"
for p in "${PATHS[@]}"; do put "$p"; done
declare -A P50=() ADDED=() CPU=() PGMS=()
for r in $(seq 1 "$ROUNDS"); do
    psql "${PG_ADMIN_URL%/*}/$DB_NAME" -Xqc 'vacuum (analyze)'
    declare -A lat=()
    for i in 0 1 2; do
        p=${PATHS[$(((i + r) % 3))]}
        if [ "$p" = skip ]; then
            c0=$(tw_cpu_ms) a0=$(pg_active_ms)
            put skip
            c1=$(tw_cpu_ms) a1=$(pg_active_ms)
            CPU[$r]=$(awk -v a="$c0" -v b="$c1" -v n="$TOTAL" 'BEGIN { printf "%.2f", (b - a) / n }')
            PGMS[$r]=$(awk -v a="$a0" -v b="$a1" -v n="$TOTAL" 'BEGIN { printf "%.2f", (b - a) / n }')
        else
            put "$p"
        fi
        lat[$p]=$P50_MS
        P50[$p]="${P50[$p]:-} $P50_MS"
    done
    for p in socat skip; do
        ADDED[$p]="${ADDED[$p]:-} $(awk -v a="${lat[$p]}" -v b="${lat[direct]}" 'BEGIN { printf "%.2f", a - b }')"
    done
    log "round $r: p50 direct=${lat[direct]} socat=${lat[socat]} skip=${lat[skip]} ms; tagwarden ${CPU[$r]} ms CPU, Postgres ${PGMS[$r]} ms active per push"
    unset lat
done

# shellcheck disable=SC2086
cat <<MD
### The added latency of one push, against a bare relay

\`bench/write-latency.sh\` (ROUNDS=$ROUNDS SECONDS_PER_RUN=$SECONDS_PER_RUN${URL_SUFFIX:+ URL_SUFFIX=$URL_SUFFIX}), $(machine_line), load average at the start $LOAD_START and at the end $(cut -d' ' -f1-3 /proc/loadavg), $(stolen_since "$TICKS_START" "$STEAL_START") % of the CPU time stolen by the hypervisor, tagwarden $(git rev-parse --short=12 HEAD), binary \`${BIN#"$ROOT"/}\`, one connection, wrk with \`bench/put-tags.lua\`.

| path | p50 ms per round | median | added p50 ms per round | median |
| --- | --- | --- | --- | --- |
| direct |${P50[direct]} | $(median ${P50[direct]}) | | |
| socat |${P50[socat]} | $(median ${P50[socat]}) |${ADDED[socat]} | **$(median ${ADDED[socat]})** |
| skip |${P50[skip]} | $(median ${P50[skip]}) |${ADDED[skip]} | **$(median ${ADDED[skip]})** |

Per push on the \`skip\` path, by round: tagwarden's CPU time (all threads, kernel included) ${CPU[*]} ms (median $(median ${CPU[*]})); its ledger's Postgres active time ${PGMS[*]} ms (median $(median ${PGMS[*]})).
MD
