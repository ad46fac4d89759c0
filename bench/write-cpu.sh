#!/usr/bin/env bash
# Where the CPU of a push of a new immutable tag goes: CPU milliseconds per push of the
# registry, tagwarden and Postgres (utime + stime from /proc, summed over each program's
# processes, before and after one wrk run), and the WAL Postgres wrote per push
# (pg_stat_wal, reset after the warm-up). On a machine where CPU is the limit, these are
# what the rate of bench/writepath.sh is made of.
#
#   bench/write-cpu.sh [direct|probe|skip] [SECONDS] [CONNECTIONS]
#
# direct: the registry alone; probe: tagwarden's defaults; skip: [enforce]
# ledger_complete = true. PERF=1 also records `perf record -e cpu-clock -a -g` into
# RUN/perf.data (kept with KEEP_RUN_DIR=1). Postgres' counters are server-wide: run it
# on an otherwise idle server. TAGWARDEN_BIN, PG_ADMIN_URL as in bench/writepath.sh.
#
# Runs one after the other are comparable only if each keeps its directory
# (KEEP_RUN_DIR=1; remove them afterwards) and no benchmark deleted one in the last
# six minutes: on ext4 without a journal, as on these machines, the inodes of a deleted
# registry tree are passed over when new ones are allocated for 60 to 360 s, and a run
# in that window has its registry spend up to 1.4 ms more CPU per PUT
# (`recently_deleted` in a profile).
#
# Experiments, not settings to deploy: URL_SUFFIX is appended to tagwarden's database
# URL (e.g. '?sslmode=disable', to see what TLS to a loopback Postgres costs), and
# SYNCHRONOUS_COMMIT=off sets that on the throwaway database (no WAL flush at commit:
# the most that removing tagwarden's flushes could give, at the price of the ledger's
# durability).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=write-cpu
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

MODE=${1:-skip} SECS=${2:-10} CONNS=${3:-8}
case "$MODE" in direct | probe | skip) ;; *) die "mode must be direct, probe or skip" ;; esac
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
need_tools docker-registry wrk curl psql python3
RUN=$(mktemp -d "${TMPDIR:-/tmp}/tw-bench-write-cpu.XXXXXX")
REG_PID= TW_PID= DB_NAME=
cleanup() { server_cleanup; }
install_traps

[ "$MODE" = direct ] || build
read -r REG_PORT TW_PORT ADMIN_PORT <<<"$(free_ports 3)"
start_registry "$REG_PORT"
URL=http://127.0.0.1:$REG_PORT
if [ "$MODE" != direct ]; then
    DB_NAME="tagwarden_bench_write_cpu_$$"
    db_url=$(create_db "$DB_NAME")${URL_SUFFIX:-}
    [ -z "${SYNCHRONOUS_COMMIT:-}" ] ||
        admin_psql -qc "alter database $DB_NAME set synchronous_commit = '${SYNCHRONOUS_COMMIT//\'/}'"
    config=
    [ "$MODE" = probe ] || config=$'[enforce]\nledger_complete = true'
    printf '%s\n' "$config" >"$RUN/tagwarden.toml"
    serve_tagwarden TW_PID "$BIN" "$RUN/tagwarden.toml" "$RUN/tagwarden.log" "http://127.0.0.1:$ADMIN_PORT/healthz" 90 \
        --listen "127.0.0.1:$TW_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" --upstream "$URL" --database-url "$db_url"
    URL=http://127.0.0.1:$TW_PORT
fi
image_blobs
seed_put_repos "http://127.0.0.1:$REG_PORT" bench/cpu0
put_tags "$URL/v2/bench/cpu0/manifests" 1 2 2 1 "$RUN/warm.out" >/dev/null

# CPU ticks of every process named $1.
ticks() {
    local t=0 p
    for p in $(pgrep -x "$1" || true); do
        t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$t"
}
PROGRAMS=(docker-registry tagwarden postgres)
declare -A BEFORE=()
admin_psql -Atc "select pg_stat_reset_shared('wal')" >/dev/null
for p in "${PROGRAMS[@]}"; do BEFORE[$p]=$(ticks "$p"); done
PERF_PID=
if [ -n "${PERF:-}" ]; then
    perf record -F 499 -e cpu-clock -a -g -o "$RUN/perf.data" -- sleep "$SECS" >/dev/null 2>&1 &
    PERF_PID=$!
fi
threads=2
[ "$CONNS" != 1 ] || threads=1
read -r RPS P50 P99 ERRORS TOTAL <<<"$(put_tags "$URL/v2/bench/cpu0/manifests" "$threads" "$CONNS" "$SECS" 2 "$RUN/run.out")"
[ "$RPS" != FAIL ] || die "wrk failed: $(tail -n 5 "$RUN/run.out")"
[ "$ERRORS" = 0 ] || die "$ERRORS of $TOTAL PUTs failed"
declare -A AFTER=()
for p in "${PROGRAMS[@]}"; do AFTER[$p]=$(ticks "$p"); done
[ -z "$PERF_PID" ] || wait "$PERF_PID" || true
HZ=$(getconf CLK_TCK)
line="$MODE, $CONNS connections, ${SECS}s: $RPS PUTs/s, p50 $P50 ms, p99 $P99 ms; CPU ms per push:"
for p in "${PROGRAMS[@]}"; do
    line+=" $p $(awk -v a="${BEFORE[$p]}" -v b="${AFTER[$p]}" -v n="$TOTAL" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) * 1000 / hz / n }')"
done
WAL=$(admin_psql -Atc "select round(wal_records::numeric / $TOTAL, 1) || ' records, ' || round(wal_bytes / $TOTAL) || ' bytes, ' || round(wal_sync::numeric / $TOTAL, 2) || ' flushes' from pg_stat_wal")
echo "$line; WAL per push: $WAL${URL_SUFFIX:+; database URL suffix $URL_SUFFIX}${SYNCHRONOUS_COMMIT:+; synchronous_commit=$SYNCHRONOUS_COMMIT}"
