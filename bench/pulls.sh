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
#   SECONDS_EACH  duration of each ab run (default 10)
#   CONCURRENCY   ab connections (default 32)
#   METHODS       which manifest reads to measure (default "GET HEAD")
#   TAGWARDEN_BIN use this tagwarden binary instead of building a release one
#   PG_ADMIN_URL  Postgres for the two throwaway databases
#                 (default postgres://postgres@127.0.0.1:5432/postgres)
#   BENCH_TMPDIR  where the run directory goes (default $TMPDIR or /tmp)
#   KEEP_RUN_DIR  1 to keep the run directory
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export LC_ALL=C
ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-10}
CONCURRENCY=${CONCURRENCY:-32}
METHODS=${METHODS:-GET HEAD}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
BENCH_NAME=pulls
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
ACCEPT="application/vnd.oci.image.manifest.v1+json"

for tool in docker-registry ab curl psql python3; do
    command -v "$tool" >/dev/null || die "$tool is missing: run scripts/provision.sh"
done

RUN=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/tagwarden-pulls-bench.XXXXXX")
PIDS=()
DBS=()
cleanup() {
    local pid db
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for db in "${DBS[@]}"; do
        timeout 30 psql "$PG_ADMIN_URL" -Xqc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
    done
    if [ "${KEEP_RUN_DIR:-0}" = 1 ]; then log "run directory kept: $RUN"; else rm -rf "$RUN"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_200() {
    local url=$1 i
    for i in $(seq 1 300); do
        [ "$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$url")" = 200 ] && return 0
        sleep 0.2
    done
    die "$url did not answer 200"
}

build

P_REG=$(free_port)
cat >"$RUN/registry.yml" <<EOF
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
EOF
docker-registry serve "$RUN/registry.yml" >"$RUN/registry.log" 2>&1 &
PIDS+=($!)
wait_200 "http://127.0.0.1:$P_REG/v2/"

# One small image, straight into the registry.
reg="http://127.0.0.1:$P_REG"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$RUN/config.json"
cfg="sha256:$(sha256sum "$RUN/config.json" | cut -d' ' -f1)"
loc=$(curl -sS -o /dev/null -D - -X POST "$reg/v2/bench/app/blobs/uploads/" | awk -F': ' 'tolower($1)=="location" { print $2 }' | tr -d '\r')
case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
# Not form-encoded: the registry would read the body as a form looking for `digest`.
code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary @"$RUN/config.json" "${loc}${sep}digest=$cfg")
[ "$code" = 201 ] || die "seeding the config blob: HTTP $code"
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[]}' \
    "$ACCEPT" "$cfg" "$(stat -c %s "$RUN/config.json")" >"$RUN/manifest.json"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H "Content-Type: $ACCEPT" \
    --data-binary @"$RUN/manifest.json" "$reg/v2/bench/app/manifests/latest")
[ "$code" = 201 ] || die "seeding the manifest: HTTP $code"

declare -A PORT ADMIN DBURL
start_tw() {
    local mode=$1 enabled=$2 db
    db="tagwarden_pulls_bench_${mode}_$$"
    timeout 30 psql "$PG_ADMIN_URL" -Xqc "create database $db" >/dev/null || die "create database $db"
    DBS+=("$db")
    DBURL[$mode]="${PG_ADMIN_URL%/*}/$db"
    PORT[$mode]=$(free_port)
    ADMIN[$mode]=$(free_port)
    printf '[log]\nlevel = "warn"\n[pulls]\nenabled = %s\n' "$enabled" >"$RUN/$mode.toml"
    env -u TAGWARDEN_CONFIG "$BIN" serve --config "$RUN/$mode.toml" \
        --listen "127.0.0.1:${PORT[$mode]}" --admin-listen "127.0.0.1:${ADMIN[$mode]}" \
        --upstream "$reg" --database-url "${DBURL[$mode]}" >"$RUN/$mode.log" 2>&1 &
    PIDS+=($!)
    wait_200 "http://127.0.0.1:${ADMIN[$mode]}/healthz"
    curl -sS -o /dev/null -H "Accept: $ACCEPT" "http://127.0.0.1:${PORT[$mode]}/v2/bench/app/manifests/latest"
}
start_tw off false
start_tw on true

counter() { curl -s "http://127.0.0.1:${ADMIN[$1]}/metrics" | awk -v n="$2" '$1 == n { print int($2) }'; }

declare -A RATES
COMPLETE_ON=1 # the warm-up GET
for method in $METHODS; do
    head_flag=()
    [ "$method" = HEAD ] && head_flag=(-i)
    for r in $(seq 1 "$ROUNDS"); do
        order="off on"
        [ $((r % 2)) = 0 ] && order="on off"
        for mode in $order; do
            out="$RUN/ab-$method-$mode-$r.out"
            timeout $((SECONDS_EACH + 60)) ab -q -k "${head_flag[@]}" -c "$CONCURRENCY" -t "$SECONDS_EACH" -n 10000000 \
                -H "Accept: $ACCEPT" "http://127.0.0.1:${PORT[$mode]}/v2/bench/app/manifests/latest" >"$out" 2>&1 ||
                die "ab failed: $(tail -n 3 "$out")"
            rps=$(awk '/^Requests per second/ { print $4 }' "$out")
            done_n=$(awk '/^Complete requests/ { print $3 }' "$out")
            failed=$(awk '/^Failed requests/ { print $3 }' "$out")
            non2xx=$(awk '/^Non-2xx responses/ { print $3 }' "$out")
            [ "${failed:-0}" = 0 ] && [ -z "$non2xx" ] || die "round $r $method $mode: $failed failed, ${non2xx:-0} non-2xx"
            [ "$mode" = on ] && COMPLETE_ON=$((COMPLETE_ON + done_n))
            RATES[$method-$mode]="${RATES[$method-$mode]:-} $rps"
            log "round $r $method pulls $mode: $rps/s ($done_n requests)"
        done
    done
done

sleep 3 # the last batch
rows=$(psql "${DBURL[on]}" -XAtc 'select count(*) from pull_log')
recorded=$(counter on tagwarden_pulls_recorded_total)
dropped=$(counter on tagwarden_pulls_dropped_total)
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
{
    echo
    echo "machine: $(nproc) cores, $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(free -h | awk '/^Mem:/ { print $2 }')"
    echo "binary: $BIN"
    echo "manifest reads, ab -k -c $CONCURRENCY, ${SECONDS_EACH}s x $ROUNDS rounds each, median:"
    for method in $METHODS; do
        off=$(echo "${RATES[$method-off]}" | median)
        on=$(echo "${RATES[$method-on]}" | median)
        ratio=$(python3 -c "print(f'{$on / $off:.3f}')")
        printf '  %-4s pulls off: %s/s (rounds:%s)\n' "$method" "$off" "${RATES[$method-off]}"
        printf '  %-4s pulls on:  %s/s (rounds:%s)\n' "$method" "$on" "${RATES[$method-on]}"
        printf '  %-4s on / off:  %s\n' "$method" "$ratio"
    done
    echo "pull log of the \"on\" tagwarden: $COMPLETE_ON reads sent, $rows rows, recorded $recorded, dropped $dropped"
}
