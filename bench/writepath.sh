#!/usr/bin/env bash
# The write path of a new immutable tag: PUTs of new release tags straight to the
# registry vs through tagwarden, before and after a change, in one run. With
# CONNECTIONS connections for the rate, and with one for the latency at p50 (the
# added latency is tagwarden's p50 minus the registry's, in the same round).
#
#   bench/writepath.sh
#
# Paths, each in its own repository of one registry (Debian's docker-registry 2.8):
#   direct    the registry
#   before    BEFORE_BIN (a tagwarden built from the commit to compare with), defaults
#             or BEFORE_CONFIG (e.g. the skip path's, to compare a change to it)
#   probe     this checkout, defaults (the existence probe on every new tag)
#   skip      this checkout, [enforce] ledger_complete = true (the probe skipped)
# Each tagwarden has its own fresh ledger database, vacuumed before each run where the
# server runs without autovacuum (bench/lib.sh). The order of the paths rotates
# every round. The client is wrk with bench/put-tags.lua (THREADS threads for the
# CONNECTIONS connections, one thread for the one connection): its own CPU time comes
# out of the same cores, equally for every path.
#
# Environment (all optional): BEFORE_BIN (required for the before path; without it the
# path is left out), BEFORE_CONFIG (the before path's TOML, without a [reconcile] table:
# the script turns reconciliation off on every path; default none), ROUNDS
# (default 3), SECONDS_PER_RUN (default 10), CONNECTIONS (default 8), THREADS
# (default 2), TAGWARDEN_BIN (skip the release build), PG_ADMIN_URL (default
# postgres://postgres@127.0.0.1:5432/postgres), URL_SUFFIX (appended to every
# tagwarden's database URL, e.g. '?host=/var/run/postgresql' for the Unix socket of a
# Postgres on the same host), KEEP_RUN_DIR=1.
# Prints a Markdown block for BENCHMARKS.md, with the issue's targets checked.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=writepath
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECTIONS=${CONNECTIONS:-8}
THREADS=${THREADS:-2}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
need_tools docker-registry wrk curl psql python3
RUN=$(mktemp -d "${TMPDIR:-/tmp}/tw-bench-writepath.XXXXXX")
REG_PID=
declare -A TW_PID=() PORT=() DB=() ADMIN=() PUTS=()

cleanup() {
    local p
    for p in "${!TW_PID[@]}"; do stop_pid "${TW_PID[$p]}"; done
    stop_pid "$REG_PID"
    for p in "${!DB[@]}"; do drop_db "${DB[$p]}"; done
    remove_run_dir
}
install_traps

build
PATHS=(direct)
[ -z "${BEFORE_BIN:-}" ] || { [ -x "$BEFORE_BIN" ] || die "BEFORE_BIN=$BEFORE_BIN is not an executable"; PATHS+=(before); }
PATHS+=(probe skip)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
read -r TICKS_START STEAL_START <<<"$(cpu_ticks)"

PORT[direct]=$(free_ports)
start_registry "${PORT[direct]}"

start_tagwarden() { # PATH BINARY CONFIG
    local p=$1 url
    read -r "PORT[$p]" "ADMIN[$p]" <<<"$(free_ports 2)"
    DB[$p]="tagwarden_bench_writepath_${p}_$$"
    url=$(create_db "${DB[$p]}")${URL_SUFFIX:-}
    printf '%s\n' "$3" >"$RUN/$p.toml"
    serve_tagwarden "TW_PID[$p]" "$2" "$RUN/$p.toml" "$RUN/$p.log" "http://127.0.0.1:${ADMIN[$p]}/healthz" 90 \
        --listen "127.0.0.1:${PORT[$p]}" --admin-listen "127.0.0.1:${ADMIN[$p]}" \
        --upstream "http://127.0.0.1:${PORT[direct]}" --database-url "$url"
}
# Every path's repository is in the one registry, so each tagwarden's background
# reconciliation (every 10 minutes) would walk the others' and record their tags as
# drift, and spend CPU in the rounds it overlaps: it is off on every path.
NO_RECONCILE=$'[reconcile]\nenabled = false'
[ -z "${BEFORE_BIN:-}" ] || start_tagwarden before "$BEFORE_BIN" "${BEFORE_CONFIG:-}
$NO_RECONCILE"
start_tagwarden probe "$BIN" "$NO_RECONCILE"
start_tagwarden skip "$BIN" "[enforce]
ledger_complete = true
$NO_RECONCILE"

# One config and one layer blob in every path's repository.
image_blobs
for p in "${PATHS[@]}"; do seed_put_repos "http://127.0.0.1:${PORT[direct]}" "bench/${p}0"; done

# Not to be run in a subshell: RUN_NO numbers the runs so that no two share a tag.
RUN_NO=0
put() { # PATH THREADS CONNECTIONS -> sets RPS and P50_MS (errors abort)
    RUN_NO=$((RUN_NO + 1))
    local errors total
    [ "$1" = direct ] || vacuum_if_no_autovacuum "${DB[$1]}"
    read -r RPS P50_MS _ errors total <<<"$(put_tags "http://127.0.0.1:${PORT[$1]}/v2/bench/${1}0/manifests" \
        "$2" "$3" "$SECONDS_PER_RUN" "$RUN_NO" "$RUN/wrk-$1.out")"
    [ "$RPS" != FAIL ] || die "$1: wrk failed: $(tail -n 5 "$RUN/wrk-$1.out")"
    [ "$errors" = 0 ] || die "$1: $errors of $total PUTs failed (see $RUN/$1.log)"
    PUTS[$1]=$((${PUTS[$1]:-0} + total))
}

log "paths: ${PATHS[*]}; warm-up"
for p in "${PATHS[@]}"; do put "$p" 1 2; done
declare -A RATE=() P50=() ADDED=()
for r in $(seq 1 "$ROUNDS"); do
    n=${#PATHS[@]} order=()
    for i in $(seq 0 $((n - 1))); do order+=("${PATHS[$(((i + r) % n))]}"); done
    declare -A lat=()
    read -r round_ticks round_steal <<<"$(cpu_ticks)"
    for p in "${order[@]}"; do
        put "$p" "$THREADS" "$CONNECTIONS"
        RATE[$p]="${RATE[$p]:-} $RPS"
    done
    for p in "${order[@]}"; do
        put "$p" 1 1
        lat[$p]=$P50_MS
        P50[$p]="${P50[$p]:-} $P50_MS"
    done
    for p in "${PATHS[@]}"; do
        [ "$p" = direct ] && continue
        ADDED[$p]="${ADDED[$p]:-} $(awk -v a="${lat[$p]}" -v b="${lat[direct]}" 'BEGIN { printf "%.2f", a - b }')"
    done
    log "round $r: rate$(for p in "${PATHS[@]}"; do printf ' %s=%s' "$p" "${RATE[$p]##* }"; done)/s; p50$(for p in "${PATHS[@]}"; do printf ' %s=%s' "$p" "${lat[$p]}"; done) ms; $(stolen_since "$round_ticks" "$round_steal") % of the CPU stolen"
    unset lat
done

# shellcheck disable=SC2086
M_DIRECT=$(median ${RATE[direct]})
# The ledgers: every 201 bound a new tag and recorded one create (a few more than wrk
# counted: it stops with requests in flight), and the skip path left nothing pending.
CREATES=
for p in "${PATHS[@]}"; do
    [ "$p" = direct ] && continue
    # One snapshot for both counts; any action besides create is named with its count.
    read -r creates events others <<<"$(psql "${PG_ADMIN_URL%/*}/${DB[$p]}" -XAtF' ' -c \
        "select count(*) filter (where action = 'create'), count(*),
                coalesce((select string_agg(action || '=' || n, ',' order by action)
                          from (select action, count(*) n from tag_events
                                where action <> 'create' group by action) a), '-')
         from tag_events")"
    [ "$others" = - ] || events+=" ($others)"
    log "$p: ${PUTS[$p]} PUTs answered in time, $creates creates recorded, $events events"
    CREATES+="${CREATES:+; }\`$p\` ${PUTS[$p]} PUTs answered, $creates creates of $events events"
done
LEFT=$(psql "${PG_ADMIN_URL%/*}/${DB[skip]}" -XAtc "select count(*) from pending_writes where repository <> ''")
SKIPPED=$(curl -s "http://127.0.0.1:${ADMIN[skip]}/metrics" | awk '/^tagwarden_upstream_probes_total\{outcome="skipped"\}/ { print $2 }')
ASKED=$(curl -s "http://127.0.0.1:${ADMIN[probe]}/metrics" | awk '/^tagwarden_upstream_probes_total\{outcome="absent"\}/ { print $2 }')

# The before path's configuration on one line, for the header.
BEFORE_CONFIG_LINE=${BEFORE_CONFIG:-}
BEFORE_CONFIG_LINE=${BEFORE_CONFIG_LINE//$'\n'/; }
cat <<MD
### The write path of a new immutable tag: before and after, against the registry

\`bench/writepath.sh\` (ROUNDS=$ROUNDS SECONDS_PER_RUN=$SECONDS_PER_RUN CONNECTIONS=$CONNECTIONS THREADS=$THREADS${URL_SUFFIX:+ URL_SUFFIX=$URL_SUFFIX}${BEFORE_BIN:+ BEFORE_BIN=…}${BEFORE_CONFIG:+ BEFORE_CONFIG=\"$BEFORE_CONFIG_LINE\"}), $(machine_line), load average at the start $LOAD_START and at the end $(cut -d' ' -f1-3 /proc/loadavg), $(stolen_since "$TICKS_START" "$STEAL_START") % of the CPU time stolen by the hypervisor, tagwarden $(git rev-parse --short=12 HEAD), binary \`${BIN#"$ROOT"/}\`, client $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }') with \`bench/put-tags.lua\`.

| path | $CONNECTIONS connections: requests/s per round | median | × direct | 1 connection: p50 ms per round | median | added p50 ms per round | median |
| --- | --- | --- | --- | --- | --- | --- | --- |
MD
TARGETS=
for p in "${PATHS[@]}"; do
    # shellcheck disable=SC2086
    m=$(median ${RATE[$p]}) l=$(median ${P50[$p]})
    ratio=$(awk -v a="$m" -v b="$M_DIRECT" 'BEGIN { printf "%.2f", a / b }')
    if [ "$p" = direct ]; then
        echo "| $p |${RATE[$p]} | $m | 1.00 |${P50[$p]} | $l | | |"
    else
        # shellcheck disable=SC2086
        added=$(median ${ADDED[$p]})
        echo "| $p |${RATE[$p]} | $m | **$ratio** |${P50[$p]} | $l |${ADDED[$p]} | **$added** |"
        TARGETS+="- \`$p\`: rate $ratio × direct ($(awk -v r="$ratio" 'BEGIN { print (r >= 0.7) ? "meets" : "misses" }') ≥ 0.7×), added p50 $added ms ($(awk -v a="$added" 'BEGIN { print (a <= 1.5) ? "meets" : "misses" }') ≤ 1.5 ms)
"
    fi
done
cat <<MD

The targets (new immutable tags at ≥ 0.7× the direct rate with $CONNECTIONS connections, ≤ 1.5 ms added at p50 with one connection), on the medians:
$TARGETS
Ledgers (wrk counts the answers before it stops, the ledger also the requests then in flight): $CREATES.
Probes counted: the \`probe\` path asked the registry ${ASKED:-0} times (\`outcome="absent"\`), the \`skip\` path skipped ${SKIPPED:-0} (\`outcome="skipped"\`); pending writes left on the \`skip\` path: $LEFT.
MD
