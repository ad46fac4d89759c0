#!/usr/bin/env bash
# What the pull log costs a pull: manifest GETs and HEADs through two tagwardens in front of one
# registry, one with `[pulls] enabled = false` and one with the default (on), in the
# same run, interleaved round by round. Prints the rates, their ratio, and whether every
# GET of the "on" runs reached the log (rows, recorded and dropped counters).
#
#   bench/pulls.sh
#
# Environment (all optional):
#   ROUNDS        rounds (default 3); each round measures off, then on (order rotates)
#   SECONDS_EACH  duration of each run (default 10)
#   CONCURRENCY   connections (default 32); GETs by wrk (2 threads), HEADs by ab
#   METHODS       which manifest reads to measure (default "GET HEAD")
#   TAGWARDEN_BIN use this tagwarden binary instead of building a release one
#   PG_ADMIN_URL  Postgres for the two throwaway databases
#                 (default postgres://postgres@127.0.0.1:5432/postgres)
#   BENCH_TMPDIR  where the run directory goes (default $TMPDIR or /tmp)
#   KEEP_RUN_DIR  1 to keep the run directory
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-10}
CONCURRENCY=${CONCURRENCY:-32}
METHODS=${METHODS:-GET HEAD}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BENCH_NAME=pulls
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
ACCEPT="application/vnd.oci.image.manifest.v1+json"

# GETs by wrk; HEADs by ab, since wrk 4.1 waits for the body that a HEAD answer's
# Content-Length announces, and hangs.
need_tools docker-registry wrk ab curl psql python3

RUN=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/tagwarden-pulls-bench.XXXXXX")
PIDS=()
DBS=()
cleanup() {
    local pid db
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for db in "${DBS[@]}"; do drop_db "$db"; done
    remove_run_dir
}
install_traps

build

P_REG=$(free_ports)
start_registry "$P_REG"
PIDS+=("$REG_PID")

# One small image, straight into the registry.
reg="http://127.0.0.1:$P_REG"
image_blobs
upload_blob "$reg" bench/app "$RUN/config.json" "$CONFIG_DIGEST"
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[]}' \
    "$ACCEPT" "$CONFIG_DIGEST" "$CONFIG_SIZE" >"$RUN/manifest.json"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H "Content-Type: $ACCEPT" \
    --data-binary @"$RUN/manifest.json" "$reg/v2/bench/app/manifests/latest")
[ "$code" = 201 ] || die "seeding the manifest: HTTP $code"

declare -A PORT ADMIN DBURL TW_PID
start_tw() {
    local mode=$1 enabled=$2 db
    db="tagwarden_pulls_bench_${mode}_$$"
    DBS+=("$db")
    DBURL[$mode]=$(create_db "$db")
    read -r "PORT[$mode]" "ADMIN[$mode]" <<<"$(free_ports 2)"
    printf '[log]\nlevel = "warn"\n[pulls]\nenabled = %s\n' "$enabled" >"$RUN/$mode.toml"
    serve_tagwarden "TW_PID[$mode]" "$BIN" "$RUN/$mode.toml" "$RUN/$mode.log" "http://127.0.0.1:${ADMIN[$mode]}/healthz" 90 \
        --listen "127.0.0.1:${PORT[$mode]}" --admin-listen "127.0.0.1:${ADMIN[$mode]}" \
        --upstream "$reg" --database-url "${DBURL[$mode]}"
    PIDS+=("${TW_PID[$mode]}")
    curl -sS -o /dev/null -H "Accept: $ACCEPT" "http://127.0.0.1:${PORT[$mode]}/v2/bench/app/manifests/latest"
}
start_tw off false
start_tw on true

counter() { curl -s "http://127.0.0.1:${ADMIN[$1]}/metrics" | awk -v n="$2" '$1 == n { print int($2) }'; }

# METHOD MODE ROUND: CONCURRENCY connections of manifest reads for SECONDS_EACH; sets
# RPS and DONE_N (the requests answered). A failed or non-2xx answer aborts.
reads() {
    local url="http://127.0.0.1:${PORT[$2]}/v2/bench/app/manifests/latest" out="$RUN/$1-$2-$3.out"
    local errors failed non2xx
    if [ "$1" = GET ]; then
        timeout $((SECONDS_EACH + 60)) wrk -t2 -c"$CONCURRENCY" -d"${SECONDS_EACH}s" --timeout 30s --latency \
            -H "Accept: $ACCEPT" "$url" >"$out" 2>&1 || die "wrk failed: $(tail -n 3 "$out")"
        read -r RPS _ _ errors DONE_N <<<"$(python3 "$ROOT/bench/bench.py" wrk "$out")"
        [ "$RPS" != FAIL ] && [ "$errors" = 0 ] || die "round $3 GET $2: $errors errors: $(tail -n 3 "$out")"
        return
    fi
    timeout $((SECONDS_EACH + 60)) ab -q -k -i -c "$CONCURRENCY" -t "$SECONDS_EACH" -n 10000000 \
        -H "Accept: $ACCEPT" "$url" >"$out" 2>&1 || die "ab failed: $(tail -n 3 "$out")"
    failed=$(awk '/^Failed requests/ { print $3 }' "$out")
    non2xx=$(awk '/^Non-2xx responses/ { print $3 }' "$out")
    [ "${failed:-0}" = 0 ] && [ -z "$non2xx" ] || die "round $3 HEAD $2: $failed failed, ${non2xx:-0} non-2xx"
    RPS=$(awk '/^Requests per second/ { print $4 }' "$out")
    DONE_N=$(awk '/^Complete requests/ { print $3 }' "$out")
}

declare -A RATES
COMPLETE_ON=1 # the warm-up GET
for method in $METHODS; do
    for r in $(seq 1 "$ROUNDS"); do
        order="off on"
        [ $((r % 2)) = 0 ] && order="on off"
        for mode in $order; do
            reads "$method" "$mode" "$r"
            [ "$mode" = on ] && COMPLETE_ON=$((COMPLETE_ON + DONE_N))
            RATES[$method-$mode]="${RATES[$method-$mode]:-} $RPS"
            log "round $r $method pulls $mode: $RPS/s ($DONE_N requests)"
        done
    done
done

sleep 3 # the last batch
rows=$(psql "${DBURL[on]}" -XAtc 'select count(*) from pull_log')
recorded=$(counter on tagwarden_pulls_recorded_total)
dropped=$(counter on tagwarden_pulls_dropped_total)
{
    echo
    echo "machine: $(machine_line), $(free -h | awk '/^Mem:/ { print $2 }'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "binary: $BIN"
    echo "manifest reads, GET by wrk -t2 -c$CONCURRENCY, HEAD by ab -k -c $CONCURRENCY, ${SECONDS_EACH}s x $ROUNDS rounds each, median:"
    for method in $METHODS; do
        # shellcheck disable=SC2086
        off=$(median ${RATES[$method-off]})
        # shellcheck disable=SC2086
        on=$(median ${RATES[$method-on]})
        ratio=$(python3 -c "print(f'{$on / $off:.3f}')")
        printf '  %-4s pulls off: %s/s (rounds:%s)\n' "$method" "$off" "${RATES[$method-off]}"
        printf '  %-4s pulls on:  %s/s (rounds:%s)\n' "$method" "$on" "${RATES[$method-on]}"
        printf '  %-4s on / off:  %s\n' "$method" "$ratio"
    done
    echo "pull log of the \"on\" tagwarden: $COMPLETE_ON reads answered in time (wrk leaves up to $CONCURRENCY in flight when it stops; the log records those too), $rows rows, recorded $recorded, dropped $dropped"
}
