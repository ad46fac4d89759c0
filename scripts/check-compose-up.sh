#!/usr/bin/env bash
# Bring docker-compose.yml up for real on a private dockerd, with images built here:
# Debian stand-ins for postgres:16, registry:2 and distroless (scripts/compose-standins/)
# and tagwarden's runtime image around a host-built release binary. Then push
# and pull through tagwarden on localhost:5000, check that a release tag refuses other
# bytes with the 409 message, and that the registry and Postgres are out of reach.
#
#   scripts/check-compose-up.sh
#
# Environment (all optional):
#   COMPOSE_UP_CACHE  where the debootstrapped base is kept between runs, outside the
#                     checkout so that fresh clones share it (default
#                     ~/.cache/tagwarden/compose-up; delete it to bootstrap again)
#   COMPOSE_UP_BINARY a tagwarden binary to put in the image instead of building a
#                     release one (scripts/test.sh passes the debug binary the tests
#                     just built: the check is about the deployment, not the optimiser)
#   DEBIAN_MIRROR     for debootstrap, and so for the stand-ins' apt (default deb.debian.org)
#   TMPDIR            where the daemon's data root and the run's files go
#   CARGO_TARGET_DIR  honoured as usual
#   CI                with CI=true a missing tool fails instead of being installed
#
# Needs root (dockerd, debootstrap), the Debian archive, and host ports 5000 and
# 127.0.0.1:5001 free. Everything it starts is torn down on exit, also on failure.
# Prints PASS or FAIL last; exits non-zero on failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CACHE=${COMPOSE_UP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tagwarden/compose-up}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_TAR="$CACHE/bookworm-minbase.tar"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROJECT="twcomposeup$$"
IMG=tw-compose-up
READY_TIMEOUT=180

log() { printf 'check-compose-up: %s\n' "$*" >&2; }
fail() {
    printf 'check-compose-up: FAIL: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "needs root (dockerd and debootstrap)"

# Missing tools are installed from Debian, except under CI=true, where provisioning is
# expected to have done it and a gap must show.
need=()
for entry in debootstrap:debootstrap dockerd:docker.io docker-compose:docker-compose \
    curl:curl cargo:; do
    cmd=${entry%%:*} pkg=${entry#*:}
    command -v "$cmd" >/dev/null 2>&1 && continue
    [ -n "$pkg" ] || fail "'$cmd' is missing (install a Rust toolchain)"
    need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    [ "${CI:-}" != true ] || fail "missing packages under CI=true: ${need[*]} (provision the machine)"
    log "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null ||
        fail "could not install ${need[*]}"
fi

# The docker CLI of dockerd's own release: a newer CLI earlier in PATH may speak an API
# this daemon does not. docker-compose runs no CLI; it talks to the socket itself.
engine=$(dockerd --version | awk '{print $3}')
DOCKER=
for cli in $(type -ap docker); do
    if [ "$("$cli" --version | awk '{print $3}')" = "$engine" ]; then
        DOCKER=$cli
        break
    fi
done
[ -n "$DOCKER" ] || DOCKER=$(command -v docker) || fail "no docker CLI"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tw-compose-up.XXXXXX")
export DOCKER_HOST="unix://$WORK/docker.sock"
DOCKERD_PID=
COMPOSE_UP=0
RESULT=1

compose() {
    POSTGRES_IMAGE="$IMG/postgres:local" REGISTRY_IMAGE="$IMG/registry:local" \
        TAGWARDEN_IMAGE="$IMG/tagwarden:local" \
        docker-compose --project-directory "$ROOT" -f "$ROOT/docker-compose.yml" \
        -p "$PROJECT" "$@"
}

stop_dockerd() {
    [ -n "$DOCKERD_PID" ] || return 0
    kill "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    kill -9 "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
    DOCKERD_PID=
}

cleanup() {
    set +e
    if [ "$COMPOSE_UP" = 1 ]; then
        if [ "$RESULT" != 0 ]; then
            log "container logs (last 30 lines each):"
            compose logs --no-color --tail 30 >&2
        fi
        compose down -v --remove-orphans --timeout 15 >/dev/null 2>&1
    fi
    stop_dockerd
    # Overlay layers and netns mounts the daemon left, deepest first.
    awk '{print $5}' /proc/self/mountinfo | grep "^$WORK/" | sort -r |
        while read -r m; do umount -l "$m"; done
    rm -rf "$WORK"
    if [ "$RESULT" = 0 ]; then
        echo "check-compose-up: PASS"
    else
        echo "check-compose-up: FAIL (see above)"
    fi
}
trap 'RESULT=$?; cleanup; exit $RESULT' EXIT
trap 'exit 130' INT TERM

# A daemon of its own, configured like the tests' (tests/support/engines.rs): private
# socket and roots, no iptables, no default bridge. User-defined bridges (compose's
# networks) and the userland proxy for published ports work without either.
start_dockerd() {
    local driver=$1
    mkdir -p "$WORK/data" "$WORK/exec"
    echo '{}' >"$WORK/daemon.json"
    dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver "$driver" \
        --config-file "$WORK/daemon.json" --data-root "$WORK/data" --exec-root "$WORK/exec" \
        --host "$DOCKER_HOST" --pidfile "$WORK/docker.pid" >>"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 60); do
        "$DOCKER" version >/dev/null 2>&1 && return 0
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    stop_dockerd
    return 1
}
start_dockerd overlay2 || start_dockerd vfs ||
    fail "dockerd did not start: $(tail -n 20 "$WORK/dockerd.log")"
log "dockerd $engine up ($("$DOCKER" info --format '{{.Driver}}' 2>/dev/null)), CLI $DOCKER"

# The base system, bootstrapped once: it takes minutes, then is only imported.
if [ ! -s "$BASE_TAR" ]; then
    log "debootstrapping bookworm (minbase) into $CACHE, once"
    mkdir -p "$CACHE"
    rm -rf "$CACHE/rootfs.partial"
    debootstrap --variant=minbase bookworm "$CACHE/rootfs.partial" "$MIRROR" \
        >"$CACHE/debootstrap.log" 2>&1 ||
        fail "debootstrap failed: $(tail -n 20 "$CACHE/debootstrap.log")"
    tar -C "$CACHE/rootfs.partial" --numeric-owner -cf "$BASE_TAR.partial" .
    mv "$BASE_TAR.partial" "$BASE_TAR"
    rm -rf "$CACHE/rootfs.partial"
fi
"$DOCKER" import "$BASE_TAR" "$IMG/base:bookworm" >/dev/null

# The stand-ins. Host networking for apt: the daemon has no default bridge to build on.
for standin in runtime postgres registry; do
    log "building the $standin stand-in"
    DOCKER_BUILDKIT=0 "$DOCKER" build -q --network host \
        --build-arg BASE_IMAGE="$IMG/base:bookworm" \
        -f "scripts/compose-standins/$standin.Dockerfile" -t "$IMG/$standin:local" \
        scripts/compose-standins >"$WORK/build-$standin.log" 2>&1 ||
        fail "the $standin stand-in did not build: $(tail -n 20 "$WORK/build-$standin.log")"
done

# tagwarden's runtime image around the binary built here
# (scripts/compose-standins/tagwarden.Dockerfile); the context holds just what it copies.
if [ -n "${COMPOSE_UP_BINARY:-}" ]; then
    [ -x "$COMPOSE_UP_BINARY" ] || fail "COMPOSE_UP_BINARY=$COMPOSE_UP_BINARY is not an executable"
    BINARY=$COMPOSE_UP_BINARY
    log "using the tagwarden binary $BINARY"
else
    log "building tagwarden (release) on the host"
    cargo build --release --locked --bin tagwarden >"$WORK/cargo.log" 2>&1 ||
        fail "cargo build failed: $(tail -n 30 "$WORK/cargo.log")"
    BINARY=$TARGET_DIR/release/tagwarden
fi
mkdir -p "$WORK/ctx/target/release"
cp scripts/compose-standins/tagwarden.Dockerfile "$WORK/ctx/Dockerfile"
cp -r config "$WORK/ctx/"
cp "$BINARY" "$WORK/ctx/target/release/tagwarden"
DOCKER_BUILDKIT=0 "$DOCKER" build -q \
    --build-arg RUNTIME_IMAGE="$IMG/runtime:local" -t "$IMG/tagwarden:local" \
    "$WORK/ctx" >"$WORK/build-tagwarden.log" 2>&1 ||
    fail "tagwarden's image did not build: $(tail -n 20 "$WORK/build-tagwarden.log")"

log "docker-compose up (project $PROJECT)"
COMPOSE_UP=1
compose up -d --no-build >"$WORK/compose-up.log" 2>&1 ||
    fail "docker-compose up failed: $(tail -n 20 "$WORK/compose-up.log")"

deadline=$((SECONDS + READY_TIMEOUT))
until curl -fsS -o /dev/null --max-time 3 http://127.0.0.1:5001/readyz; do
    [ "$SECONDS" -lt "$deadline" ] || fail "tagwarden's /readyz did not answer 200 within ${READY_TIMEOUT}s"
    sleep 1
done
log "tagwarden is ready on 127.0.0.1:5001"

# Push and pull through tagwarden with docker. Images FROM scratch with one file: tiny,
# offline, and different bytes for the second push.
push_image() { # push_image REF CONTENT -> prints the pushed digest
    local ctx="$WORK/img-$RANDOM"
    mkdir -p "$ctx"
    printf 'FROM scratch\nCOPY f /f\n' >"$ctx/Dockerfile"
    printf '%s\n' "$2" >"$ctx/f"
    DOCKER_BUILDKIT=0 "$DOCKER" build -q -t "$1" "$ctx" >/dev/null
    "$DOCKER" push "$1" >"$ctx/push.log" 2>&1
    local rc=$?
    cat "$ctx/push.log" >&2
    [ "$rc" -eq 0 ] || return "$rc"
    sed -nE 's/.*digest: (sha256:[0-9a-f]{64}).*/\1/p' "$ctx/push.log"
}

REF=localhost:5000/demo/app:1.0.0
digest=$(push_image "$REF" "first $PROJECT") || fail "push of $REF through tagwarden failed"
[ -n "$digest" ] || fail "push of $REF printed no digest"
log "pushed $REF as $digest"
"$DOCKER" rmi -f "$REF" >/dev/null
"$DOCKER" pull "$REF" >"$WORK/pull.log" 2>&1 || fail "pull of $REF failed: $(cat "$WORK/pull.log")"
grep -q "$digest" "$WORK/pull.log" || fail "pull of $REF got another digest: $(cat "$WORK/pull.log")"
log "pulled $REF back, $digest"

if out=$(push_image "$REF" "second $PROJECT" 2>&1); then
    fail "a push of other bytes to release tag $REF succeeded: $out"
fi
expected="tag demo/app:1.0.0 is immutable: bound to $digest since"
grep -qF "$expected" <<<"$out" || fail "the refused push did not print '$expected': $out"
log "other bytes on $REF refused: $(grep -oF "$expected" <<<"$out" | head -n 1) ..."

# The binding is in the compose Postgres, i.e. the ledger lives in its volume.
row=$(compose exec -T postgres psql -U tagwarden -d tagwarden -Atc \
    "SELECT digest || ' ' || class FROM tag_bindings WHERE repository = 'demo/app' AND tag = '1.0.0'" 2>&1) ||
    fail "could not read the ledger: $row"
[ "$row" = "$digest immutable" ] || fail "ledger row for demo/app:1.0.0 is '$row', expected '$digest immutable'"
log "ledger in the postgres service: demo/app:1.0.0 -> $row"

# Reachability. From the host: only tagwarden's ports are published.
for svc in postgres registry; do
    id=$(compose ps -q "$svc")
    [ -n "$id" ] || fail "no $svc container"
    bound=$("$DOCKER" inspect -f '{{range $p, $b := .NetworkSettings.Ports}}{{if $b}}{{$p}} {{end}}{{end}}' "$id")
    [ -z "$bound" ] || fail "$svc publishes $bound on the host"
done
tw=$(compose ps -q tagwarden)
bound=$("$DOCKER" inspect -f '{{range $p, $b := .NetworkSettings.Ports}}{{range $b}}{{.HostIp}}:{{.HostPort}}->{{$p}} {{end}}{{end}}' "$tw")
log "published on the host: $bound(tagwarden only)"

# From a container on the public network only: tagwarden resolves and answers (so the
# probe itself works), the registry and Postgres do not resolve, so no name connects.
probe=$("$DOCKER" run --rm --network "${PROJECT}_public" "$IMG/base:bookworm" bash -c '
    for host in tagwarden registry postgres; do
        if getent hosts "$host" >/dev/null; then echo "$host:resolves"; else echo "$host:unresolved"; fi
    done
    for target in tagwarden/5000 registry/5000 postgres/5432; do
        if timeout 3 bash -c "exec 3<>/dev/tcp/$target" 2>/dev/null; then echo "$target:connects"
        else echo "$target:refused"; fi
    done' 2>&1) || fail "the probe container did not run: $probe"
log "from the public network: $(tr '\n' ' ' <<<"$probe")"
for want in tagwarden:resolves tagwarden/5000:connects registry:unresolved postgres:unresolved \
    registry/5000:refused postgres/5432:refused; do
    grep -qx "$want" <<<"$probe" || fail "from the public network, expected $want: $probe"
done

# By address, the internal network's isolation is docker's iptables rules, which this
# daemon runs without (like the tests' daemons); say what that leaves open.
reg=$(compose ps -q registry)
reg_ip=$("$DOCKER" inspect -f "{{(index .NetworkSettings.Networks \"${PROJECT}_internal\").IPAddress}}" "$reg")
if "$DOCKER" run --rm --network "${PROJECT}_public" "$IMG/base:bookworm" \
    timeout 3 bash -c "exec 3<>/dev/tcp/$reg_ip/5000" 2>/dev/null; then
    log "note: the registry's internal address $reg_ip:5000 IS reachable from the public network: this daemon runs with --iptables=false, which leaves internal networks unenforced by address"
else
    log "the registry's internal address $reg_ip:5000 is not reachable from the public network"
fi

RESULT=0
