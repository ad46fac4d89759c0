#!/usr/bin/env bash
# Run tagwarden for real on this machine, without Docker:
#   - a registry (Debian's docker-registry, CNCF distribution 2.8) on 127.0.0.1:5002,
#     storing under .tmp/registry, with deletes enabled;
#   - a `tagwarden` database on the local Postgres;
#   - tagwarden itself: cargo run --release -- serve --config config/tagwarden.toml
#     (clients on 0.0.0.0:5000, admin on 127.0.0.1:5001).
# Ctrl-C stops tagwarden, then the registry.
#
#   scripts/run-local.sh [SERVE FLAGS...]   e.g. --log-format json
#   scripts/run-local.sh --registry-only    just the registry, until Ctrl-C
#
# Environment (all optional):
#   REGISTRY_ADDR     where the registry listens (default 127.0.0.1:5002; the example
#                     config's upstream.url must match, or set TAGWARDEN_UPSTREAM__URL)
#   PG_ADMIN_URL      a database to connect to for creating `tagwarden`
#                     (default postgres://postgres@127.0.0.1:5432/postgres)
#   TAGWARDEN_CONFIG  configuration file (default config/tagwarden.toml)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

REGISTRY_ADDR=${REGISTRY_ADDR:-127.0.0.1:5002}
REGISTRY_DIR="$ROOT/.tmp/registry"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB_NAME=tagwarden
CONFIG=${TAGWARDEN_CONFIG:-config/tagwarden.toml}

log() { printf 'run-local: %s\n' "$*" >&2; }
die() {
    printf 'run-local: ERROR: %s\n' "$*" >&2
    exit 1
}

REGISTRY_PID=
APP_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$APP_PID" ] && kill -0 "$APP_PID" 2>/dev/null; then
        log "stopping tagwarden"
        kill -TERM "$APP_PID" 2>/dev/null || true
        wait "$APP_PID" 2>/dev/null || true
    fi
    if [ -n "$REGISTRY_PID" ] && kill -0 "$REGISTRY_PID" 2>/dev/null; then
        log "stopping the registry"
        kill -TERM "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Is something accepting connections on HOST:PORT?
listening() {
    local host=${1%:*} port=${1##*:}
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

start_registry() {
    command -v docker-registry >/dev/null 2>&1 ||
        die "docker-registry not found: run scripts/provision.sh (or apt-get install docker-registry)"
    listening "$REGISTRY_ADDR" &&
        die "something already listens on $REGISTRY_ADDR; stop it or set REGISTRY_ADDR (and TAGWARDEN_UPSTREAM__URL)"

    mkdir -p "$REGISTRY_DIR/data"
    # One instance, so a per-run secret for upload state is enough.
    local secret
    secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    cat >"$REGISTRY_DIR/config.yml" <<EOF
# Written by scripts/run-local.sh on every start.
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
  secret: $secret
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    docker-registry serve "$REGISTRY_DIR/config.yml" >>"$REGISTRY_DIR/registry.log" 2>&1 &
    REGISTRY_PID=$!

    local _
    for _ in $(seq 1 50); do
        kill -0 "$REGISTRY_PID" 2>/dev/null ||
            die "the registry exited at start; see $REGISTRY_DIR/registry.log:
$(tail -n 5 "$REGISTRY_DIR/registry.log")"
        if listening "$REGISTRY_ADDR"; then
            log "registry on http://$REGISTRY_ADDR (pid $REGISTRY_PID, data in ${REGISTRY_DIR#"$ROOT"/}/data, log in ${REGISTRY_DIR#"$ROOT"/}/registry.log)"
            return
        fi
        sleep 0.2
    done
    die "the registry did not start listening on $REGISTRY_ADDR within 10s; see $REGISTRY_DIR/registry.log"
}

ensure_database() {
    # Installs nothing when all is there; starts a stopped local cluster.
    DATABASE_URL=$PG_ADMIN_URL "$ROOT/scripts/provision.sh"
    local exists
    exists=$(psql "$PG_ADMIN_URL" -XAtqc "select 1 from pg_database where datname = '$DB_NAME'") ||
        die "cannot query PostgreSQL at $PG_ADMIN_URL"
    if [ "$exists" != 1 ]; then
        log "creating database $DB_NAME"
        psql "$PG_ADMIN_URL" -Xqc "create database $DB_NAME" ||
            die "could not create database $DB_NAME"
    fi
}

main() {
    if [ "${1:-}" = --registry-only ]; then
        start_registry
        log "Ctrl-C to stop"
        wait "$REGISTRY_PID"
        return
    fi

    [ -f "$CONFIG" ] || die "no configuration file at $CONFIG"
    ensure_database
    start_registry

    log "building and starting tagwarden (the first release build takes a few minutes)"
    # In the background so that this script keeps its traps and stops the registry after.
    cargo run --locked --release --bin tagwarden -- serve --config "$CONFIG" "$@" &
    APP_PID=$!
    local rc=0
    wait "$APP_PID" || rc=$?
    APP_PID=
    log "tagwarden exited with status $rc"
    return "$rc"
}

main "$@"
