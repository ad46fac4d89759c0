#!/usr/bin/env bash
# Make this Debian 12 machine ready for the test suite. Safe to run again: it only
# installs what is missing, and runs `apt-get update` only when something is.
#
#   scripts/provision.sh              tools + Postgres check
#   scripts/provision.sh --with-oras  also the oras Python client in .tmp/venv
#   scripts/provision.sh --with-engines
#                                     also docker.io, podman, buildah and containerd
#                                     (for tests/e2e/clients_e2e.rs), checked to start
#   scripts/provision.sh --with-zuul  also zuul-registry (a second, bearer-token registry
#                                     for tests/e2e/second_registry_e2e.rs) in .tmp/zuul-venv
#   scripts/provision.sh --with-bench also the load generators and proxies of bench/
#                                     (wrk, ab, nginx, haproxy, socat)
#
# Environment:
#   DATABASE_URL   Postgres to check (default postgres://postgres@127.0.0.1:5432/postgres).
#                  If it points at this machine and a local cluster is installed but
#                  stopped, the cluster is started.
#
# Exits non-zero, saying what is missing and how to get it, when something cannot be
# provided. Flags combine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
ORAS_VENV="$ROOT/.tmp/venv"
# A venv of its own: zuul-registry brings openstacksdk, boto3 and CherryPy, which the
# oras venv has no use for.
ZUUL_VENV="$ROOT/.tmp/zuul-venv"
ZUUL_VERSION=1.3.0
CARGO_DENY_VERSION=0.20.2

log() { printf 'provision: %s\n' "$*" >&2; }
die() {
    printf 'provision: ERROR: %s\n' "$*" >&2
    exit 1
}

# Run a command as root: directly, or through passwordless sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        die "need root to run: $* (run this script as root, or allow passwordless sudo)"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found (tagwarden's tooling expects Debian 12); install by hand: $*"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root apt-get update -q >&2 || die "apt-get update failed: cannot install $*"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@" >&2 ||
        die "apt-get install $* failed"
}

# Commands the test suite runs, and the Debian package that provides each.
#   docker-registry  the upstream registry (CNCF distribution 2.8) the tests proxy to
#   skopeo           a real registry client for end-to-end tests
#   htpasswd         credentials for the registry's basic-auth tests
#   psql/pg_isready  checking and preparing the test database
#   docker-compose   offline validation of docker-compose.yml (no engine needed)
#   openssl          self-signed certificates for the TLS listener tests
REQUIRED=(
    "docker-registry:docker-registry"
    "skopeo:skopeo"
    "htpasswd:apache2-utils"
    "psql:postgresql-client"
    "pg_isready:postgresql-client"
    "docker-compose:docker-compose"
    "openssl:openssl"
)

# What bench/ needs besides the above: wrk drives every load, ab the manifest HEADs
# (wrk 4.1 hangs on a HEAD answer's Content-Length), nginx and haproxy are the proxies
# bench/run.sh compares with, socat the bare relay of bench/write-latency.sh.
BENCH=(
    "wrk:wrk"
    "ab:apache2-utils"
    "nginx:nginx-light"
    "haproxy:haproxy"
    "socat:socat"
)

# Install what is missing of the "command:package" entries given.
ensure_packages() {
    local entry cmd pkg missing=()
    for entry in "$@"; do
        cmd=${entry%%:*}
        pkg=${entry#*:}
        if ! command -v "$cmd" >/dev/null 2>&1; then
            # Add each package once, however many of its commands are missing.
            case " ${missing[*]} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
        fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
        for entry in "$@"; do
            cmd=${entry%%:*}
            command -v "$cmd" >/dev/null 2>&1 ||
                die "'$cmd' is still missing after installing ${entry#*:}"
        done
        warn_about_registry_service
    fi
}

# On a machine with systemd, installing Debian's docker-registry also starts a registry
# service on :5000, which scripts/run-local.sh needs for tagwarden itself.
warn_about_registry_service() {
    if command -v systemctl >/dev/null 2>&1 &&
        systemctl is-active --quiet docker-registry.service 2>/dev/null; then
        log "note: docker-registry.service is running on :5000; scripts/run-local.sh needs that port."
        log "      Stop it with: systemctl disable --now docker-registry.service"
    fi
}

ensure_rust() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install the Rust toolchain (rustup, stable >= 1.85)"
    cargo fmt --version >/dev/null 2>&1 ||
        die "rustfmt not found: rustup component add rustfmt"
    cargo clippy --version >/dev/null 2>&1 ||
        die "clippy not found: rustup component add clippy"
    # cargo-deny checks the dependency tree's licenses and sources (deny.toml). It is
    # built from crates.io once per machine (minutes), then found in ~/.cargo/bin.
    if ! cargo deny --version >/dev/null 2>&1; then
        log "installing cargo-deny $CARGO_DENY_VERSION (built from crates.io, once)"
        cargo install --locked --quiet cargo-deny --version "$CARGO_DENY_VERSION" ||
            die "could not install cargo-deny $CARGO_DENY_VERSION from crates.io"
    fi
}

postgres_ok() {
    PGCONNECT_TIMEOUT=5 psql "$DATABASE_URL" -XAtqc 'select 1' >/dev/null 2>&1
}

# Host part of the URL: postgres://user:pass@HOST:port/db (empty means the socket).
database_host() {
    local rest=${DATABASE_URL#*://}
    rest=${rest%%/*}
    rest=${rest##*@}
    case "$rest" in
        \[*\]*) rest=${rest#[}; rest=${rest%%]*} ;;
        *) rest=${rest%%:*} ;;
    esac
    printf '%s' "$rest"
}

start_local_clusters() {
    [ -d /etc/postgresql ] || return 1
    command -v pg_ctlcluster >/dev/null 2>&1 || return 1
    local dir version started=1
    for dir in /etc/postgresql/*/main; do
        [ -d "$dir" ] || continue
        version=$(basename "$(dirname "$dir")")
        log "starting local PostgreSQL cluster $version/main"
        if as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2; then
            started=0
        fi
    done
    return "$started"
}

ensure_postgres() {
    local shown
    shown=$(printf '%s' "$DATABASE_URL" | sed -E 's#(://[^:/@]+):[^@/]*@#\1:***@#') # hide a password
    if postgres_ok; then
        return
    fi
    case "$(database_host)" in
        "" | 127.0.0.1 | localhost | ::1)
            if start_local_clusters; then
                local _
                for _ in $(seq 1 30); do
                    postgres_ok && return
                    sleep 1
                done
            fi
            ;;
    esac
    local why
    why=$(PGCONNECT_TIMEOUT=5 psql "$DATABASE_URL" -XAtqc 'select 1' 2>&1 >/dev/null | head -n 3 || true)
    die "PostgreSQL is not reachable at $shown
    ${why:-no error text}
  Start it (Debian: pg_ctlcluster <version> main start), install it
  (apt-get install postgresql), or point DATABASE_URL at a reachable server."
}

# The oras Python client, for tests that push artifacts the way oras-py does. Cheap when
# already there. Tests find it at .tmp/venv/bin/python.
ensure_oras() {
    if [ -x "$ORAS_VENV/bin/python" ] && "$ORAS_VENV/bin/python" -c 'import oras' 2>/dev/null; then
        return
    fi
    command -v python3 >/dev/null 2>&1 || apt_install python3
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
    log "creating $ORAS_VENV with oras"
    mkdir -p "$(dirname "$ORAS_VENV")"
    python3 -m venv "$ORAS_VENV" || die "could not create a virtualenv at $ORAS_VENV"
    "$ORAS_VENV/bin/python" -m pip install -q --disable-pip-version-check 'oras>=0.2,<0.3' >&2 ||
        die "pip install oras failed (PyPI unreachable?)"
    "$ORAS_VENV/bin/python" -c 'import oras' || die "oras installed but cannot be imported"
}

# zuul-registry, the second upstream tests/e2e/second_registry_e2e.rs runs tagwarden in front
# of. Pinned: the tests assert what this version answers. Cheap when already there; tests
# find it at .tmp/zuul-venv/bin/zuul-registry.
ensure_zuul() {
    local python="$ZUUL_VENV/bin/python"
    if [ -x "$ZUUL_VENV/bin/zuul-registry" ] &&
        [ "$("$python" -c 'import importlib.metadata as m; print(m.version("zuul-registry"))' 2>/dev/null)" = "$ZUUL_VERSION" ]; then
        return
    fi
    command -v python3 >/dev/null 2>&1 || apt_install python3
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
    log "installing zuul-registry $ZUUL_VERSION into $ZUUL_VENV"
    mkdir -p "$(dirname "$ZUUL_VENV")"
    [ -x "$python" ] || python3 -m venv "$ZUUL_VENV" ||
        die "could not create a virtualenv at $ZUUL_VENV"
    "$python" -m pip install -q --disable-pip-version-check "zuul-registry==$ZUUL_VERSION" >&2 ||
        die "pip install zuul-registry==$ZUUL_VERSION failed (PyPI unreachable?)"
    "$python" -c 'import zuul_registry.main' ||
        die "zuul-registry installed but cannot be imported"
    [ -x "$ZUUL_VENV/bin/zuul-registry" ] || die "zuul-registry installed without its command"
}

# The container engines tests/e2e/clients_e2e.rs drives. The tests start their own daemons
# on private sockets; nothing here enables a service. As root no rootless helpers
# (uidmap for podman, slirp4netns, fuse-overlayfs) are needed beyond what the packages
# depend on, so recommends stay out.
#   dockerd, docker  docker.io (Debian's 20.10, with the classic builder)
#   podman           podman
#   buildah          buildah
#   containerd, ctr  containerd (also a dependency of docker.io)
#   debootstrap      the base system of scripts/check-compose-up.sh's local images
ENGINES=(
    "dockerd:docker.io"
    "podman:podman"
    "buildah:buildah"
    "containerd:containerd"
    "ctr:containerd"
    "debootstrap:debootstrap"
)

ensure_engines() {
    ensure_packages "${ENGINES[@]}"
    check_engines_start
}

# Start each daemon once on a private socket, the way the tests do, so a machine that
# cannot run them fails here with the daemon's own error rather than in every test.
check_engines_start() {
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/tw-provision-engines.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the trap must clean up this directory
    trap "stop_engine_check '$dir'" EXIT
    mkdir -p "$dir/docker/data" "$dir/docker/exec" "$dir/ctrd"
    echo '{}' >"$dir/docker/daemon.json"
    # No CRI and private sockets: nothing may reach the machine's own containerd.
    cat >"$dir/ctrd/config.toml" <<EOF
version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[ttrpc]
  address = "$dir/ctrd/containerd.sock.ttrpc"
[debug]
  address = "$dir/ctrd/debug.sock"
EOF
    dockerd --iptables=false --ip6tables=false --bridge=none \
        --config-file "$dir/docker/daemon.json" \
        --data-root "$dir/docker/data" --exec-root "$dir/docker/exec" \
        --host "unix://$dir/docker/docker.sock" --pidfile "$dir/docker/docker.pid" \
        >"$dir/docker/dockerd.log" 2>&1 &
    echo $! >"$dir/docker/daemon.pid"
    containerd --config "$dir/ctrd/config.toml" --root "$dir/ctrd/root" --state "$dir/ctrd/state" \
        --address "$dir/ctrd/containerd.sock" \
        >"$dir/ctrd/containerd.log" 2>&1 &
    echo $! >"$dir/ctrd/daemon.pid"
    local docker
    docker=$(docker_cli)
    wait_for_engine dockerd "$dir/docker/dockerd.log" \
        "$docker" --host "unix://$dir/docker/docker.sock" version
    wait_for_engine containerd "$dir/ctrd/containerd.log" \
        ctr --address "$dir/ctrd/containerd.sock" version
    local tool
    for tool in podman buildah; do
        "$tool" --root "$dir/$tool/root" --runroot "$dir/$tool/run" --storage-driver vfs \
            images >/dev/null 2>"$dir/$tool.err" ||
            die "$tool cannot open a private store: $(cat "$dir/$tool.err")"
    done
    log "engines: $("$docker" --version), $(podman --version), $(buildah --version | cut -d' ' -f1-3), $(containerd --version | awk '{print $1, $3}')"
    stop_engine_check "$dir"
    trap - EXIT
}

# The docker CLI of dockerd's own release (another docker may come first in PATH), else
# the first in PATH; tests/support/engines.rs picks it the same way.
docker_cli() {
    local engine cli
    engine=$(dockerd --version | awk '{print $3}')
    for cli in $(type -ap docker); do
        if [ "$("$cli" --version | awk '{print $3}')" = "$engine" ]; then
            printf '%s' "$cli"
            return
        fi
    done
    cli=$(command -v docker) || die "no docker CLI in PATH (docker.io provides it)"
    log "note: no docker CLI of dockerd's release ${engine%,}; using $cli"
    printf '%s' "$cli"
}

# wait_for_engine NAME LOG PROBE...: up to 30 s for PROBE to succeed.
wait_for_engine() {
    local name=$1 logfile=$2 _
    shift 2
    for _ in $(seq 1 60); do
        "$@" >/dev/null 2>&1 && return
        sleep 0.5
    done
    die "$name did not start; its log ends with:
$(tail -n 20 "$logfile" 2>/dev/null)"
}

stop_engine_check() {
    local dir=$1 pidfile pid mount
    for pidfile in "$dir/docker/daemon.pid" "$dir/ctrd/daemon.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$pid" 2>/dev/null || true
    done
    # Deepest first, whatever the daemons left mounted under the directory.
    awk -v d="$dir" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
    rm -rf "$dir"
}

main() {
    local with_oras=0 with_engines=0 with_zuul=0 with_bench=0 arg
    for arg in "$@"; do
        case "$arg" in
            --with-oras) with_oras=1 ;;
            --with-engines) with_engines=1 ;;
            --with-zuul) with_zuul=1 ;;
            --with-bench) with_bench=1 ;;
            -h | --help)
                sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
                exit 0
                ;;
            *) die "unknown argument: $arg (try --help)" ;;
        esac
    done

    ensure_packages "${REQUIRED[@]}"
    [ "$with_bench" -eq 0 ] || ensure_packages "${BENCH[@]}"
    ensure_rust
    ensure_postgres
    [ "$with_oras" -eq 0 ] || ensure_oras
    [ "$with_engines" -eq 0 ] || ensure_engines
    [ "$with_zuul" -eq 0 ] || ensure_zuul
    local summary
    summary="docker-registry $(docker-registry --version | awk '{print $NF}')"
    summary+=", skopeo $(skopeo --version | awk '{print $NF}')"
    summary+=", $(cargo deny --version)"
    summary+=", PostgreSQL $(PGCONNECT_TIMEOUT=5 psql "$DATABASE_URL" -XAtqc 'show server_version' | awk '{print $1}')"
    [ "$with_oras" -eq 0 ] || summary+=", oras in $ORAS_VENV"
    [ "$with_engines" -eq 0 ] || summary+=", docker/podman/buildah/containerd"
    [ "$with_zuul" -eq 0 ] || summary+=", zuul-registry $ZUUL_VERSION in $ZUUL_VENV"
    [ "$with_bench" -eq 0 ] || summary+=", wrk, ab, nginx, haproxy, socat"
    log "ok: $summary"
}

main "$@"
