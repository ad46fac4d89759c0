# Functions shared by the scripts in bench/. Source it after setting BENCH_NAME (the
# prefix of log lines) and ROOT (the checkout, where it changes to); build() also reads
# BUILD_TIMEOUT.
# shellcheck shell=bash

cd "$ROOT"
export LC_ALL=C

log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf '[%s] ERROR: %s\n' "$BENCH_NAME" "$*" >&2
    exit 1
}

# Stop a process and the children it has (nginx's workers): TERM, then KILL after 10 s.
stop_pid() {
    local pid=$1 kids i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    for i in $kids; do kill -KILL "$i" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
}

# Set BIN: TAGWARDEN_BIN, or a release build of this checkout.
build() {
    if [ -n "${TAGWARDEN_BIN:-}" ]; then
        BIN=$TAGWARDEN_BIN
        [ -x "$BIN" ] || die "TAGWARDEN_BIN=$BIN is not an executable"
        log "using $BIN (no build)"
        return
    fi
    log "cargo build --release --locked (target dir ${CARGO_TARGET_DIR:-target})"
    timeout "${BUILD_TIMEOUT:-3600}" cargo build --release --locked >&2 ||
        die "cargo build --release --locked failed or took over ${BUILD_TIMEOUT:-3600}s"
    local target=${CARGO_TARGET_DIR:-$ROOT/target}
    case "$target" in /*) ;; *) target="$ROOT/$target" ;; esac
    BIN="$target/release/tagwarden"
    [ -x "$BIN" ] || die "no binary at $BIN after the build"
}

# Record the machine and the tagwarden commit with the caller's `meta KEY VALUE`.
meta_machine() {
    meta nproc "$(nproc)"
    meta cpu "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    meta mem "$(free -h | awk '/^Mem:/ { print $2 }')"
    meta kernel "$(uname -r)"
    meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
    local commit
    commit=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$ROOT" status --porcelain -- src migrations Cargo.toml Cargo.lock 2>/dev/null)" ]; then
        commit="$commit (with uncommitted changes)"
    fi
    [ -z "${TAGWARDEN_BIN:-}" ] || commit="$commit (binary from TAGWARDEN_BIN)"
    meta tagwarden_commit "$commit"
}

# The end of a cleanup: remove the run directory RUN, or keep it with KEEP_RUN_DIR=1.
remove_run_dir() {
    [ -n "$RUN" ] && [ -d "$RUN" ] || return 0
    if [ "${KEEP_RUN_DIR:-0}" = 1 ]; then
        log "kept $RUN"
    else
        rm -rf "$RUN"
    fi
}

# Run the caller's CLEANUP (a function, default `cleanup`) on every way out, saying why
# on a timeout.
install_traps() {
    trap "${1:-cleanup}" EXIT
    trap 'exit 130' INT
    trap 'log "terminated (the BENCH_TIMEOUT of ${BENCH_TIMEOUT:-7200}s ran out, or a signal); cleaning up"; exit 143' TERM
}

# Die unless every command given is on PATH; scripts/provision.sh --with-bench installs
# the benchmarks' tools (wrk, ab, nginx, haproxy) besides the test suite's.
need_tools() {
    local cmd missing=()
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    [ "${#missing[@]}" -eq 0 ] || die "missing: ${missing[*]} (run scripts/provision.sh --with-bench)"
    command -v cargo >/dev/null 2>&1 || [ -n "${TAGWARDEN_BIN:-}" ] ||
        die "cargo not found: install the Rust toolchain (stable >= 1.85), or set TAGWARDEN_BIN"
}

# N free TCP ports on 127.0.0.1 (default 1), space-separated.
free_ports() { python3 "$ROOT/bench/bench.py" free-ports "${1:-1}"; }

# Wait until URL answers 200 while PID lives ("" for no process); at most SECS seconds
# (default 60). WHAT names the server in the error.
wait_http() {
    local url=$1 pid=${2:-} what=${3:-$1} secs=${4:-60} i
    for i in $(seq 1 $((secs * 5))); do
        [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null || die "$what exited at start"
        if [ "$(curl -s -o /dev/null --max-time 2 -w '%{http_code}' "$url" 2>/dev/null)" = 200 ]; then
            return 0
        fi
        sleep 0.2
    done
    die "$what did not answer 200 on $url within ${secs}s"
}

# Start Debian's docker-registry on 127.0.0.1:PORT with its storage under RUN; sets
# REG_PID.
start_registry() {
    local port=$1
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
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
YML
    docker-registry serve "$RUN/registry.yml" >"$RUN/registry.log" 2>&1 &
    REG_PID=$!
    wait_http "http://127.0.0.1:$port/v2/" "$REG_PID" "the registry" 30
    log "registry on 127.0.0.1:$port (pid $REG_PID)"
}

# Start `BIN serve --config CONFIG FLAGS...` (no --config for CONFIG ""), logging to
# LOG, with no TAGWARDEN_* from this shell; sets the variable named PIDVAR to its pid (so
# that the cleanup finds it), then waits up to SECS seconds for HEALTHZ (a URL).
serve_tagwarden() { # PIDVAR BIN CONFIG LOG HEALTHZ SECS FLAGS...
    local pidvar=$1 bin=$2 config=$3 out=$4 healthz=$5 secs=$6 unset_env=() v
    shift 6
    for v in $(compgen -e); do
        case "$v" in TAGWARDEN_*) unset_env+=(-u "$v") ;; esac
    done
    env "${unset_env[@]}" "$bin" serve ${config:+--config "$config"} "$@" >>"$out" 2>&1 &
    printf -v "$pidvar" %s "$!"
    wait_http "$healthz" "$!" "tagwarden (see $out)" "$secs"
}

# The cleanup of a script with one registry (REG_PID), one tagwarden (TW_PID) and one
# throwaway database (DB_NAME) at a time.
server_cleanup() {
    stop_pid "$TW_PID"
    stop_pid "$REG_PID"
    [ -z "$DB_NAME" ] || drop_db "$DB_NAME"
    remove_run_dir
}

# Create a throwaway database NAME on PG_ADMIN_URL; print its URL.
create_db() {
    PGCONNECT_TIMEOUT=10 timeout 30 psql "$PG_ADMIN_URL" -Xqc "create database $1" >/dev/null ||
        die "could not create database $1 (is PostgreSQL up at $PG_ADMIN_URL?)"
    echo "${PG_ADMIN_URL%/*}/$1"
}
drop_db() {
    PGCONNECT_TIMEOUT=10 timeout 120 psql "$PG_ADMIN_URL" -Xqc "drop database if exists $1 with (force)" \
        >/dev/null 2>&1 || log "could not drop database $1; drop it by hand"
}

# VACUUM (ANALYZE) the throwaway database NAME before a run when the server's
# autovacuum is off (as on these machines; production servers have it on). Each push
# leaves a dead row behind (its pending write, deleted by the binding): unvacuumed,
# they slow every later push, and the paths measured last in a run would pay for the
# ones before them.
vacuum_if_no_autovacuum() { # NAME
    [ "$(PGCONNECT_TIMEOUT=10 psql "$PG_ADMIN_URL" -XAtc 'show autovacuum')" = off ] || return 0
    PGCONNECT_TIMEOUT=10 timeout 300 psql "${PG_ADMIN_URL%/*}/$1" -Xqc 'vacuum (analyze)' >/dev/null ||
        die "could not vacuum database $1"
}

# The small image that bench/put-tags.lua's manifests name: RUN/config.json and a 1 KiB
# RUN/layer.bin. Sets CONFIG_DIGEST, CONFIG_SIZE, LAYER_DIGEST and LAYER_SIZE.
image_blobs() {
    [ -s "$RUN/config.json" ] ||
        printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$RUN/config.json"
    head -c 1024 /dev/urandom >"$RUN/layer.bin"
    CONFIG_DIGEST="sha256:$(sha256sum "$RUN/config.json" | cut -d' ' -f1)"
    CONFIG_SIZE=$(stat -c %s "$RUN/config.json")
    LAYER_DIGEST="sha256:$(sha256sum "$RUN/layer.bin" | cut -d' ' -f1)"
    LAYER_SIZE=1024
}

# Upload FILE as a blob of REPO in one POST + PUT to the registry at BASE.
upload_blob() { # BASE REPO FILE DIGEST
    local base=$1 repo=$2 file=$3 digest=$4 loc
    loc=$(curl -sS --max-time 30 -o /dev/null -D - -X POST "$base/v2/$repo/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1)=="location:" { print $2 }')
    case "$loc" in /*) loc="$base$loc" ;; esac
    case "$loc" in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
    # Not form-encoded: the registry would read the body as a form looking for `digest`.
    [ "$(curl -sS --max-time 300 -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary @"$file" "$loc")" = 201 ] || die "uploading $file to $repo failed"
}

# The config and layer of image_blobs into each REPO at BASE.
seed_put_repos() { # BASE REPO...
    local base=$1 repo
    shift
    for repo in "$@"; do
        upload_blob "$base" "$repo" "$RUN/config.json" "$CONFIG_DIGEST"
        upload_blob "$base" "$repo" "$RUN/layer.bin" "$LAYER_DIGEST"
    done
}

# wrk with bench/put-tags.lua: new immutable tags PUT to URL (a repository's manifests
# endpoint) for SECS seconds; SPREAD=1 gives each thread a repository of its own. Output
# in OUT; prints "RPS P50_MS P99_MS ERRORS TOTAL" (FAIL for the numbers if wrk failed).
# RUN_NO must differ between runs against one repository (the tags are RUN_NO.T.N).
put_tags() { # URL THREADS CONNS SECS RUN_NO OUT [SPREAD]
    timeout $(($4 + 60)) wrk -t"$2" -c"$3" -d"$4s" --timeout 30s --latency -s "$ROOT/bench/put-tags.lua" "$1" -- \
        "$5" "$CONFIG_DIGEST" "$CONFIG_SIZE" "$LAYER_DIGEST" "$LAYER_SIZE" "${7:-0}" >"$6" 2>&1 || true
    python3 "$ROOT/bench/bench.py" wrk "$6"
}

# The median of the numbers given.
median() { printf '%s\n' "$@" | grep . | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# "N cores (CPU model)": the machine, for a report's first line.
machine_line() { echo "$(nproc) cores ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"; }

# All CPU time and the part of it the hypervisor gave to other guests (steal), in ticks
# since boot: on a shared virtual machine, what makes runs of one command disagree.
cpu_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9 }' /proc/stat; }
# The share of the CPU time since `cpu_ticks` printed $1 $2 that was stolen, in percent.
stolen_since() {
    cpu_ticks | awk -v t0="$1" -v s0="$2" '{ d = $1 - t0; printf "%.0f", (d > 0) ? 100 * ($2 - s0) / d : 0 }'
}

# ---------------------------------------------------------------------------------------
# Run files and the benchmarks of a loaded database behind the admin API (bench/ledger.sh,
# bench/pulls-ledger.sh): they set RUN, DB_NAME, DB_URL, P_ADMIN, TOKEN, HELPER (their
# Python helper, with a `result` command), MEASURED, CONNECTIONS, THREADS, WARMUP and
# DURATION.

meta() { printf '%s=%s\n' "$1" "$2" >>"$RUN/meta"; }
now() { date +%s.%N; }
# Seconds from T0 to T1 (both from now()), with DECIMALS decimals (default 0).
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.{sys.argv[3]}f}')" "$1" "$2" "${3:-0}"; }
admin_psql() { PGCONNECT_TIMEOUT=10 psql "$PG_ADMIN_URL" -X -v ON_ERROR_STOP=1 "$@"; }
db_psql() { PGCONNECT_TIMEOUT=10 psql "$DB_URL" -X -v ON_ERROR_STOP=1 "$@"; }

# Re-run the calling script bench/NAME under timeout(1) (BENCH_TIMEOUT, default 7200 s),
# which signals the whole process group when time is up, so that its EXIT trap cleans
# up; _BENCH_COMMAND records the command with the settings VAR... that are set. Returns
# in the re-run.
bound_run() { # NAME VAR... -- ARGS...
    [ -z "${_TAGWARDEN_BENCH_INNER:-}" ] || return 0
    export _TAGWARDEN_BENCH_INNER=1
    local name=$1 cmd="bench/$1"
    shift
    while [ "$#" -gt 0 ] && [ "$1" != -- ]; do
        if [ -n "${!1:-}" ]; then cmd="$1=$(printf '%q' "${!1}") $cmd"; fi
        shift
    done
    [ "$#" -eq 0 ] || shift
    export _BENCH_COMMAND="$cmd${*:+ $*}"
    exec timeout --kill-after=60 "${BENCH_TIMEOUT:-7200}" bash "$ROOT/bench/$name" "$@"
}

# The EXIT trap of a database benchmark: stop wrk and tagwarden, drop DB_NAME when
# DROP_DB=1 (or say that it is kept), show tagwarden's last lines after a failure.
db_bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_pid "${WRK_PID:-}"
    [ -z "$TW_PID" ] || log "stopping tagwarden"
    stop_pid "$TW_PID"
    if [ "$DROP_DB" = 1 ] && [ -n "$DB_NAME" ]; then
        log "dropping database $DB_NAME"
        drop_db "$DB_NAME"
    elif [ -n "$DB_NAME" ]; then
        log "kept database $DB_NAME (KEEP_DB=1): ${PG_ADMIN_URL%/*}/$DB_NAME"
    fi
    if [ "$rc" -ne 0 ] && [ -n "$RUN" ] && [ -s "$RUN/tagwarden.log" ]; then
        log "last lines of $RUN/tagwarden.log:"
        tail -n 15 "$RUN/tagwarden.log" >&2
    fi
    remove_run_dir
    exit "$rc"
}

# RUN/tagwarden.toml for the admin API with an auditor token (sets TOKEN) on DB_URL,
# and the TOML EXTRA. Nothing listens on the upstream port: the admin API never asks
# the registry.
write_config() { # TOKEN_NAME [EXTRA]
    TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    cat >"$RUN/tagwarden.toml" <<EOF
[server]
listen = "127.0.0.1:$P_PROXY"

[admin]
listen = "127.0.0.1:$P_ADMIN"

[[admin.tokens]]
name = "$1"
token = "$TOKEN"
role = "auditor"

[upstream]
url = "http://127.0.0.1:$P_UPSTREAM"

[database]
url = "$DB_URL"
${2:-}
[log]
level = "warn"
EOF
}

# Start tagwarden with RUN/tagwarden.toml; sets TW_PID and STARTUP_SECS (until /healthz
# answers). Migrations run first: quick on a fresh database, but a reused one may get a
# new migration applied to 10 million rows, so wait long.
start_tagwarden() {
    local t0
    t0=$(now)
    serve_tagwarden TW_PID "$BIN" "$RUN/tagwarden.toml" "$RUN/tagwarden.log" "http://127.0.0.1:$P_ADMIN/healthz" 600
    STARTUP_SECS=$(secs "$t0" "$(now)" 1)
    log "tagwarden up in ${STARTUP_SECS}s (pid $TW_PID, database $DB_NAME)"
}
stop_tagwarden() {
    stop_pid "$TW_PID"
    TW_PID=
}

# One request of each measured query by curl first: 200 and a body (matching PATTERN,
# a grep regex, when given), or stop here.
check_answers() { # [PATTERN]
    local name path code
    for name in $MEASURED; do
        case "$name" in *:*) continue ;; esac
        path=$(head -n 1 "$RUN/paths/$name.paths")
        code=$(curl -sS --max-time 30 -o "$RUN/check-$name.json" -w '%{http_code}' \
            -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$P_ADMIN$path") ||
            die "$name: GET $path failed"
        [ "$code" = 200 ] || die "$name: GET $path answered $code: $(head -c 300 "$RUN/check-$name.json")"
        [ -s "$RUN/check-$name.json" ] || die "$name: GET $path answered an empty body"
        [ -z "${1:-}" ] || grep -q "$1" "$RUN/check-$name.json" ||
            die "$name: GET $path: no items: $(head -c 300 "$RUN/check-$name.json")"
        log "$name: GET $path: 200, $(wc -c <"$RUN/check-$name.json") bytes"
    done
}

# wrk with bench/ledger-paths.lua for query KEY (NAME, or NAME:N for N connections and
# one thread) in round ROUND: random paths of RUN/paths/NAME.paths for DURATION seconds,
# after a WARMUP in the first round. Appends "KEY ROUND rps p50 p90 p99 max requests
# non200 empty errors" to RUN/results.tsv; sets FAILED=1 on a failure, a non-200, an
# empty answer or a socket error.
FAILED=0
WRK_PID=
measure() { # KEY ROUND
    local key=$1 round=$2 url="http://127.0.0.1:$P_ADMIN" line out="$RUN/wrk-$1-r$2.out"
    local name=${key%%:*} conns=$CONNECTIONS threads=$THREADS script="$ROOT/bench/ledger-paths.lua"
    case "$key" in *:*) conns=${key#*:} threads=1 ;; esac
    [ "$threads" -le "$conns" ] || threads=$conns
    if [ "$WARMUP" -gt 0 ] && [ "$round" = 1 ]; then
        timeout $((WARMUP + 60)) wrk -t"$threads" -c"$conns" -d"${WARMUP}s" --timeout 10s \
            -s "$script" "$url" -- "$RUN/paths/$name.paths" "$TOKEN" >"$RUN/wrk-$key-warmup.out" 2>&1 || true
    fi
    timeout $((DURATION + 120)) wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 10s \
        -s "$script" "$url" -- "$RUN/paths/$name.paths" "$TOKEN" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || true
    WRK_PID=
    line=$(python3 "$HELPER" result "$out") || line=FAIL
    if [ "$line" = FAIL ]; then
        log "$key: wrk failed: $(tail -n 5 "$out")"
        printf '%s\t%s\tFAIL\tFAIL\tFAIL\tFAIL\tFAIL\t0\t0\t0\t0\n' "$key" "$round" >>"$RUN/results.tsv"
        FAILED=1
        return
    fi
    local rps p50 p90 p99 mx n non200 empty errors
    read -r rps p50 p90 p99 mx n non200 empty errors <<<"$line"
    printf '%s\t%s\t%s\n' "$key" "$round" "$(tr ' ' '\t' <<<"$line")" >>"$RUN/results.tsv"
    log "$key ($conns connections, round $round): $rps req/s; p50 $p50 ms, p90 $p90 ms, p99 $p99 ms, max $mx ms; $n requests, $non200 non-200, $empty empty, $errors socket errors"
    if [ "$non200" != 0 ] || [ "$empty" != 0 ] || [ "$errors" != 0 ] || [ "$n" = 0 ]; then
        FAILED=1
    fi
}
