#!/usr/bin/env bash
# Check the audit pages in a real headless browser (Debian's chromium):
#   1. installs chromium if it is missing (apt-get install -y chromium);
#   2. starts a registry (docker-registry, Basic auth for two users), a fresh database
#      and tagwarden with an auditor token, all on free loopback ports;
#   3. pushes a small history with skopeo: release 1.0.0 created and re-pushed by
#      ci-bot, then other bytes refused for alice; latest created and moved twice;
#      nightly created and deleted;
#   4. without a session: `chromium --headless --dump-dom` of the tag page must show the
#      sign-in form and nothing from the ledger;
#   5. signs in with curl (POST /ui/login) for a session cookie, hands it to chromium
#      over the DevTools protocol (Network.setCookie, Page.navigate), checks the text
#      (Runtime.evaluate of document.body.innerText) of the pages of both tags, a
#      digest, the repository and the search page for tags, digests and identities,
#      and takes a 1200x900 screenshot of each (Page.captureScreenshot);
#   6. checks each screenshot is a non-blank PNG of that size.
#
#   scripts/check-audit-page.sh [OUT_DIR]     screenshots go to OUT_DIR
#                                            (default .tmp/audit-page)
#
# Environment (all optional):
#   PG_ADMIN_URL      a database to create the scratch database from
#                     (default postgres://postgres@127.0.0.1:5432/postgres)
#   TAGWARDEN_BIN     the tagwarden binary (default: cargo build, then
#                     ${CARGO_TARGET_DIR:-target}/debug/tagwarden)
#   CHROMIUM          the browser (default chromium)
#
# docker-registry, skopeo, htpasswd and psql come from scripts/provision.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

OUT=${1:-$ROOT/.tmp/audit-page}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
CHROMIUM=${CHROMIUM:-chromium}
HELPER="$ROOT/scripts/check-audit-page.py"
WIDTH=1200
HEIGHT=900

log() { printf 'check-audit-page: %s\n' "$*" >&2; }
die() {
    printf 'check-audit-page: ERROR: %s\n' "$*" >&2
    exit 1
}

WORK=
DB_NAME=
REGISTRY_PID=
APP_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "$APP_PID" "$REGISTRY_PID"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [ -n "$DB_NAME" ]; then
        psql "$PG_ADMIN_URL" -Xqc "drop database if exists $DB_NAME" >/dev/null 2>&1 || true
    fi
    if [ "$rc" -ne 0 ] && [ -n "$WORK" ]; then
        log "kept $WORK for inspection (logs: registry.log, tagwarden.log)"
    elif [ -n "$WORK" ]; then
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Wait until URL answers HTTP at all, while PID lives.
wait_http() {
    local url=$1 pid=$2 what=$3 _
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || die "$what exited at start; see $WORK/$what.log"
        if curl -s -o /dev/null --max-time 2 "$url"; then
            return
        fi
        sleep 0.2
    done
    die "$what did not answer $url within 20s; see $WORK/$what.log"
}

ensure_tools() {
    if ! command -v "$CHROMIUM" >/dev/null 2>&1; then
        log "installing chromium (apt-get install -y chromium)"
        [ "$(id -u)" = 0 ] || die "chromium is missing; run: sudo apt-get install -y chromium"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || {
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
        }
        command -v "$CHROMIUM" >/dev/null 2>&1 || die "chromium did not install"
    fi
    local tool
    for tool in docker-registry skopeo htpasswd psql curl python3; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/provision.sh"
    done
    psql "$PG_ADMIN_URL" -XAtqc 'select 1' >/dev/null 2>&1 ||
        die "PostgreSQL does not answer at $PG_ADMIN_URL: run scripts/provision.sh"
}

ensure_tagwarden() {
    if [ -z "${TAGWARDEN_BIN:-}" ]; then
        log "building tagwarden (cargo build)"
        cargo build --locked --bin tagwarden >&2
        TAGWARDEN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/tagwarden"
    fi
    [ -x "$TAGWARDEN_BIN" ] || die "no tagwarden binary at $TAGWARDEN_BIN"
}

start_registry() {
    local port
    port=$(free_port)
    REGISTRY="127.0.0.1:$port"
    {
        htpasswd -Bbn ci-bot "$CI_PASSWORD"
        htpasswd -Bbn alice "$ALICE_PASSWORD"
    } >"$WORK/htpasswd" 2>/dev/null
    cat >"$WORK/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
auth:
  htpasswd:
    realm: check-audit-page
    path: $WORK/htpasswd
EOF
    docker-registry serve "$WORK/registry.yml" >"$WORK/docker-registry.log" 2>&1 &
    REGISTRY_PID=$!
    wait_http "http://$REGISTRY/v2/" "$REGISTRY_PID" docker-registry
}

start_tagwarden() {
    DB_NAME="tagwarden_page_check_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    psql "$PG_ADMIN_URL" -Xqc "create database $DB_NAME" >/dev/null
    local db_url="${PG_ADMIN_URL%/*}/$DB_NAME"
    PROXY="127.0.0.1:$(free_port)"
    ADMIN="127.0.0.1:$(free_port)"
    cat >"$WORK/tagwarden.toml" <<EOF
[[admin.tokens]]
name = "page-check"
token = "$TOKEN"
role = "auditor"
EOF
    env -u RUST_LOG "$TAGWARDEN_BIN" serve --config "$WORK/tagwarden.toml" \
        --listen "$PROXY" --admin-listen "$ADMIN" \
        --upstream "http://$REGISTRY" --database-url "$db_url" \
        >"$WORK/tagwarden.log" 2>&1 &
    APP_PID=$!
    wait_http "http://$ADMIN/healthz" "$APP_PID" tagwarden
}

# push USER:PASSWORD IMAGE_DIR TAG -> exit status of skopeo
push() {
    skopeo --insecure-policy copy --quiet --preserve-digests --dest-tls-verify=false \
        --dest-creds "$1" "oci:$2:image" "docker://$PROXY/driftwood/web:$3" \
        >>"$WORK/skopeo.log" 2>&1
}

push_history() {
    local name
    for name in a b c d; do
        python3 "$HELPER" image "$WORK/image-$name" >"$WORK/image-$name.digest"
    done
    A=$(cat "$WORK/image-a.digest")
    B=$(cat "$WORK/image-b.digest")
    C=$(cat "$WORK/image-c.digest")
    D=$(cat "$WORK/image-d.digest")
    local ci="ci-bot:$CI_PASSWORD" alice="alice:$ALICE_PASSWORD"
    push "$ci" "$WORK/image-a" 1.0.0 || die "push of 1.0.0 failed; see $WORK/skopeo.log"
    push "$ci" "$WORK/image-a" 1.0.0 || die "identical re-push of 1.0.0 failed"
    if push "$alice" "$WORK/image-b" 1.0.0; then
        die "other bytes for release 1.0.0 were accepted"
    fi
    push "$ci" "$WORK/image-a" latest || die "push of latest failed"
    push "$ci" "$WORK/image-b" latest || die "move of latest failed"
    push "$alice" "$WORK/image-c" latest || die "second move of latest failed"
    push "$ci" "$WORK/image-d" nightly || die "push of nightly failed"
    skopeo --insecure-policy delete --tls-verify=false --creds "$ci" \
        "docker://$PROXY/driftwood/web:nightly" >>"$WORK/skopeo.log" 2>&1 ||
        die "delete of nightly failed; see $WORK/skopeo.log"
    log "pushed: 1.0.0 = ${A:0:19}… (refused ${B:0:19}…), latest ${A:0:19}… -> ${B:0:19}… -> ${C:0:19}…, nightly deleted"
}

sign_in() {
    local headers
    headers=$(curl -s -o /dev/null -D - --max-time 10 \
        --data-urlencode "token=$TOKEN" --data-urlencode "next=/ui/" \
        "http://$ADMIN/ui/login")
    COOKIE=$(printf '%s\n' "$headers" | tr -d '\r' |
        sed -n 's/^[Ss]et-[Cc]ookie: \(tagwarden_session=[^;]*\);.*/\1/p')
    [ -n "$COOKIE" ] || die "signing in gave no session cookie: $headers"
}

main() {
    ensure_tools
    ensure_tagwarden
    mkdir -p "$ROOT/.tmp" "$OUT"
    WORK=$(mktemp -d "$ROOT/.tmp/check-audit-page.XXXXXX")
    TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    CI_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    ALICE_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    start_registry
    start_tagwarden
    push_history

    local release="http://$ADMIN/ui/tag?repository=driftwood%2Fweb&tag=1.0.0"
    local latest="http://$ADMIN/ui/tag?repository=driftwood%2Fweb&tag=latest"
    local chrome_flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
        --disable-background-networking --disable-component-update --disable-sync)

    # Without a session: the sign-in form, nothing from the ledger.
    local dom
    dom=$("$CHROMIUM" "${chrome_flags[@]}" --user-data-dir="$(mktemp -d "$WORK/profile.XXXXXX")" \
        --dump-dom "$release" 2>"$WORK/chromium-anonymous.log")
    grep -q 'action="/ui/login"' <<<"$dom" || die "no sign-in form without a session: $dom"
    if grep -q -e "${A#sha256:}" -e "${A:7:12}" -e 'ci-bot' -e 'alice' <<<"$dom"; then
        die "ledger data shown without a session: $dom"
    fi
    "$CHROMIUM" "${chrome_flags[@]}" --user-data-dir="$(mktemp -d "$WORK/profile.XXXXXX")" \
        --window-size=$WIDTH,$HEIGHT --screenshot="$OUT/audit-page-signed-out.png" \
        "$release" >>"$WORK/chromium-anonymous.log" 2>&1
    python3 "$HELPER" png "$OUT/audit-page-signed-out.png" $WIDTH $HEIGHT
    log "without a session: the sign-in page, no ledger data"

    sign_in
    python3 "$HELPER" browse --chromium "$CHROMIUM" --cookie "$COOKIE" --url "$release" \
        --out "$OUT/audit-page.png" --width $WIDTH --height $HEIGHT \
        --expect 'driftwood/web:1.0.0' --expect "$A" --expect "${B:0:19}" \
        --expect 'REFUSED' --expect 'ci-bot' --expect 'alice' --expect 'semver-releases' \
        --absent 'Sign in'
    python3 "$HELPER" png "$OUT/audit-page.png" $WIDTH $HEIGHT
    python3 "$HELPER" browse --chromium "$CHROMIUM" --cookie "$COOKIE" --url "$latest" \
        --out "$OUT/audit-page-latest.png" --width $WIDTH --height $HEIGHT \
        --expect 'driftwood/web:latest' --expect "$C" --expect "${A:0:19}" \
        --expect "${B:0:19}" --expect 'move' --expect 'alice' --absent 'Sign in'
    python3 "$HELPER" png "$OUT/audit-page-latest.png" $WIDTH $HEIGHT
    python3 "$HELPER" browse --chromium "$CHROMIUM" --cookie "$COOKIE" \
        --url "http://$ADMIN/ui/digest?digest=${A/:/%3A}" \
        --out "$OUT/audit-page-digest.png" --width $WIDTH --height $HEIGHT \
        --expect "$A" --expect '1.0.0' --expect 'latest' --absent 'Sign in'
    python3 "$HELPER" png "$OUT/audit-page-digest.png" $WIDTH $HEIGHT
    python3 "$HELPER" browse --chromium "$CHROMIUM" --cookie "$COOKIE" \
        --url "http://$ADMIN/ui/repository?repository=driftwood%2Fweb&include_deleted=true" \
        --out "$OUT/audit-page-repository.png" --width $WIDTH --height $HEIGHT \
        --expect '1.0.0' --expect 'latest' --expect 'nightly' --expect 'deleted' \
        --expect "${C:0:19}" --absent 'Sign in'
    python3 "$HELPER" png "$OUT/audit-page-repository.png" $WIDTH $HEIGHT
    python3 "$HELPER" browse --chromium "$CHROMIUM" --cookie "$COOKIE" --url "http://$ADMIN/ui/" \
        --out "$OUT/audit-page-search.png" --width $WIDTH --height $HEIGHT \
        --expect 'Search the tag ledger' --expect 'driftwood/web' --absent 'Sign in'
    python3 "$HELPER" png "$OUT/audit-page-search.png" $WIDTH $HEIGHT

    log "passed; screenshots in ${OUT#"$ROOT"/}/"
}

main "$@"
