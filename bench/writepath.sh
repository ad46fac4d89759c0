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
#   probe     this checkout, defaults (the existence probe on every new tag)
#   skip      this checkout, [enforce] ledger_complete = true (the probe skipped)
# Each tagwarden has its own fresh ledger database. The order of the paths rotates
# every round. The client is bench/put-spread.py (one Python thread per connection):
# its own CPU time comes out of the same cores, equally for every path.
#
# Environment (all optional): BEFORE_BIN (required for the before path; without it the
# path is left out), ROUNDS (default 3), SECONDS_PER_RUN (default 10), CONNECTIONS
# (default 8), TAGWARDEN_BIN (skip the release build), PG_ADMIN_URL (default
# postgres://postgres@127.0.0.1:5432/postgres), KEEP_RUN_DIR=1.
# Prints a Markdown block for BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export LC_ALL=C
BENCH_NAME=writepath
BUILD_TIMEOUT=${BUILD_TIMEOUT:-3600}
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
CONNECTIONS=${CONNECTIONS:-8}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
RUN=$(mktemp -d "${TMPDIR:-/tmp}/tw-bench-writepath.XXXXXX")
REG_PID=
declare -A TW_PID=() PORT=() DB=()

cleanup() {
    local p
    for p in "${!TW_PID[@]}"; do stop_pid "${TW_PID[$p]}"; done
    stop_pid "$REG_PID"
    for p in "${!DB[@]}"; do
        psql "$PG_ADMIN_URL" -Xqc "drop database if exists ${DB[$p]} with (force)" >/dev/null 2>&1 || true
    done
    remove_run_dir
}
install_traps

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

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
PATHS=(direct)
[ -z "${BEFORE_BIN:-}" ] || { [ -x "$BEFORE_BIN" ] || die "BEFORE_BIN=$BEFORE_BIN is not an executable"; PATHS+=(before); }
PATHS+=(probe skip)

mkdir -p "$RUN/registry"
PORT[direct]=$(port)
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
  addr: 127.0.0.1:${PORT[direct]}
YML
docker-registry serve "$RUN/registry.yml" >"$RUN/registry.log" 2>&1 &
REG_PID=$!
wait_http "http://127.0.0.1:${PORT[direct]}/v2/" "$REG_PID"

start_tagwarden() { # PATH BINARY CONFIG
    local p=$1 bin=$2 admin
    PORT[$p]=$(port) admin=$(port)
    DB[$p]="tagwarden_bench_writepath_${p}_$$"
    psql "$PG_ADMIN_URL" -Xqc "create database ${DB[$p]}" >/dev/null
    printf '%s\n' "$3" >"$RUN/$p.toml"
    env -u TAGWARDEN_CONFIG "$bin" serve --config "$RUN/$p.toml" \
        --listen "127.0.0.1:${PORT[$p]}" --admin-listen "127.0.0.1:$admin" \
        --upstream "http://127.0.0.1:${PORT[direct]}" --database-url "${PG_ADMIN_URL%/*}/${DB[$p]}" \
        >"$RUN/$p.log" 2>&1 &
    TW_PID[$p]=$!
    wait_http "http://127.0.0.1:$admin/healthz" "${TW_PID[$p]}"
    echo "$admin" >"$RUN/$p.admin"
}
[ -z "${BEFORE_BIN:-}" ] || start_tagwarden before "$BEFORE_BIN" ""
start_tagwarden probe "$BIN" ""
start_tagwarden skip "$BIN" "[enforce]
ledger_complete = true"

# One config and one layer blob in every path's repository.
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$RUN/config.json"
head -c 1024 /dev/urandom >"$RUN/layer.bin"
digest() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
CONFIG_DIGEST=$(digest "$RUN/config.json") CONFIG_SIZE=$(stat -c %s "$RUN/config.json")
LAYER_DIGEST=$(digest "$RUN/layer.bin") LAYER_SIZE=1024
upload() {
    local repo=$1 file=$2 d=$3 base="http://127.0.0.1:${PORT[direct]}" loc
    loc=$(curl -sS -o /dev/null -D - -X POST "$base/v2/$repo/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1)=="location:" { print $2 }')
    case "$loc" in /*) loc="$base$loc" ;; esac
    case "$loc" in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
    [ "$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -T "$file" -H 'Content-Type: application/octet-stream' "$loc")" = 201 ] ||
        die "upload to $repo failed"
}
for p in "${PATHS[@]}"; do
    upload "bench/${p}0" "$RUN/config.json" "$CONFIG_DIGEST"
    upload "bench/${p}0" "$RUN/layer.bin" "$LAYER_DIGEST"
done

RUN_NO=0
put() { # PATH CONNECTIONS -> "requests/s p50_ms" (errors abort)
    RUN_NO=$((RUN_NO + 1))
    local rps errors total p50
    read -r rps errors total p50 <<<"$(python3 bench/put-spread.py 127.0.0.1 "${PORT[$1]}" "$SECONDS_PER_RUN" "$2" \
        0 "bench/$1" "$RUN_NO" "$CONFIG_DIGEST" "$CONFIG_SIZE" "$LAYER_DIGEST" "$LAYER_SIZE")"
    [ "$errors" = 0 ] || die "$1: $errors of $total PUTs failed (see $RUN/$1.log)"
    echo "$rps $p50"
}

log "paths: ${PATHS[*]}; warm-up"
for p in "${PATHS[@]}"; do put "$p" 2 >/dev/null; done
declare -A RATE=() P50=() ADDED=()
for r in $(seq 1 "$ROUNDS"); do
    n=${#PATHS[@]} order=()
    for i in $(seq 0 $((n - 1))); do order+=("${PATHS[$(((i + r) % n))]}"); done
    declare -A lat=()
    for p in "${order[@]}"; do
        read -r rate _ <<<"$(put "$p" "$CONNECTIONS")"
        RATE[$p]="${RATE[$p]:-} $rate"
    done
    for p in "${order[@]}"; do
        read -r _ p50 <<<"$(put "$p" 1)"
        lat[$p]=$p50
        P50[$p]="${P50[$p]:-} $p50"
    done
    for p in "${PATHS[@]}"; do
        [ "$p" = direct ] && continue
        ADDED[$p]="${ADDED[$p]:-} $(awk -v a="${lat[$p]}" -v b="${lat[direct]}" 'BEGIN { printf "%.2f", a - b }')"
    done
    log "round $r: rate$(for p in "${PATHS[@]}"; do printf ' %s=%s' "$p" "${RATE[$p]##* }"; done)/s; p50$(for p in "${PATHS[@]}"; do printf ' %s=%s' "$p" "${lat[$p]}"; done) ms"
    unset lat
done

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# shellcheck disable=SC2086
M_DIRECT=$(median ${RATE[direct]})
# The ledgers: every 201 bound a tag and recorded one create, and the skip path left
# nothing pending.
for p in "${PATHS[@]}"; do
    [ "$p" = direct ] && continue
    url="${PG_ADMIN_URL%/*}/${DB[$p]}"
    creates=$(psql "$url" -XAtc "select count(*) from tag_events where action = 'create'")
    log "$p: $creates creates recorded"
done
LEFT=$(psql "${PG_ADMIN_URL%/*}/${DB[skip]}" -XAtc "select count(*) from pending_writes")
SKIPPED=$(curl -s "http://127.0.0.1:$(cat "$RUN/skip.admin")/metrics" | awk '/^tagwarden_upstream_probes_total\{outcome="skipped"\}/ { print $2 }')
ASKED=$(curl -s "http://127.0.0.1:$(cat "$RUN/probe.admin")/metrics" | awk '/^tagwarden_upstream_probes_total\{outcome="absent"\}/ { print $2 }')

cat <<MD
### The write path of a new immutable tag: before and after, against the registry

\`bench/writepath.sh\` (ROUNDS=$ROUNDS SECONDS_PER_RUN=$SECONDS_PER_RUN CONNECTIONS=$CONNECTIONS${BEFORE_BIN:+ BEFORE_BIN=…}), $(nproc) cores ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), load average at the end $(cut -d' ' -f1-3 /proc/loadavg), tagwarden $(git rev-parse --short=12 HEAD), binary \`${BIN#"$ROOT"/}\`.

| path | $CONNECTIONS connections: requests/s per round | median | × direct | 1 connection: p50 ms per round | median | added p50 ms per round | median |
| --- | --- | --- | --- | --- | --- | --- | --- |
MD
for p in "${PATHS[@]}"; do
    # shellcheck disable=SC2086
    m=$(median ${RATE[$p]}) l=$(median ${P50[$p]})
    ratio=$(awk -v a="$m" -v b="$M_DIRECT" 'BEGIN { printf "%.2f", a / b }')
    if [ "$p" = direct ]; then
        echo "| $p |${RATE[$p]} | $m | 1.00 |${P50[$p]} | $l | | |"
    else
        # shellcheck disable=SC2086
        echo "| $p |${RATE[$p]} | $m | **$ratio** |${P50[$p]} | $l |${ADDED[$p]} | **$(median ${ADDED[$p]})** |"
    fi
done
cat <<MD

Probes counted: the \`probe\` path asked the registry ${ASKED:-0} times (\`outcome="absent"\`), the \`skip\` path skipped ${SKIPPED:-0} (\`outcome="skipped"\`); pending writes left on the \`skip\` path: $LEFT.
MD
