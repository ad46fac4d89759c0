# Functions shared by bench/run.sh and bench/ledger.sh. Source it after setting
# BENCH_NAME (the prefix of log lines), ROOT and BUILD_TIMEOUT.
# shellcheck shell=bash

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
    timeout "$BUILD_TIMEOUT" cargo build --release --locked >&2 ||
        die "cargo build --release --locked failed or took over ${BUILD_TIMEOUT}s"
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

# Run the caller's `cleanup` on every way out, saying why on a timeout.
install_traps() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'log "terminated (the BENCH_TIMEOUT of ${BENCH_TIMEOUT:-7200}s ran out, or a signal); cleaning up"; exit 143' TERM
}
