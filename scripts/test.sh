#!/usr/bin/env bash
# The one command that checks tagwarden: provisioning, formatting, lints, the example
# configurations, docker-compose.yml, and the whole test suite. CI runs exactly this.
#
#   scripts/test.sh
#
# Environment (all optional):
#   DATABASE_URL      Postgres for the tests (default postgres://postgres@127.0.0.1:5432/postgres)
#   CI                left as given; with CI=true, tests that need an outside tool fail
#                     instead of skipping when it is missing
#   TEST_TIMEOUT      limit for building and running the tests (default 45m)
#   CARGO_TARGET_DIR  honoured as usual
#
# Every step runs even after an earlier one fails (except provisioning), so one run
# shows every problem. Exits non-zero if any step failed; the last line counts the tests.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
TEST_TIMEOUT=${TEST_TIMEOUT:-45m}

# Extra provisioning for tests that need it: oras-py (tests/e2e/oras_e2e.rs), the container
# engines (tests/e2e/clients_e2e.rs) and zuul-registry (tests/e2e/second_registry_e2e.rs).
PROVISION_ARGS=(--with-oras --with-engines --with-zuul)

LOG_DIR="$ROOT/.tmp/test-logs"
mkdir -p "$LOG_DIR"
TEST_LOG="$LOG_DIR/cargo-test.log"
: >"$TEST_LOG"

SUITE_START=$(date +%s)
STEPS=()
FAILED=()

# step NAME COMMAND...: run one step, time it, remember how it went.
step() {
    local name=$1 start status
    shift
    printf '\n==> %s: %s\n' "$name" "$*"
    start=$(date +%s)
    if "$@"; then
        status=ok
    else
        status="FAILED (exit $?)"
        FAILED+=("$name")
    fi
    STEPS+=("$(printf '%-14s %-16s %4ss' "$name" "$status" "$(($(date +%s) - start))")")
    printf '<== %s: %s\n' "$name" "$status"
}

run_tests() {
    # --no-fail-fast: run every test binary even when one fails, so the counts are whole.
    timeout --kill-after=60s "$TEST_TIMEOUT" \
        cargo test --locked --no-fail-fast --all-targets 2>&1 | tee -a "$TEST_LOG"
    local targets=${PIPESTATUS[0]}
    timeout --kill-after=60s "$TEST_TIMEOUT" \
        cargo test --locked --no-fail-fast --doc 2>&1 | tee -a "$TEST_LOG"
    local docs=${PIPESTATUS[0]}
    [ "$targets" -eq 124 ] || [ "$docs" -eq 124 ] &&
        echo "test.sh: the tests did not finish within TEST_TIMEOUT=$TEST_TIMEOUT" >&2
    [ "$targets" -eq 0 ] && [ "$docs" -eq 0 ]
}

fmt_check() {
    cargo fmt --all --check || {
        echo "test.sh: formatting differs; 'cargo fmt --all' fixes it" >&2
        return 1
    }
}

summary() {
    local passed failed ignored line
    read -r passed failed ignored < <(
        sed -E 's/\x1b\[[0-9;]*m//g' "$TEST_LOG" |
            sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' |
            awk '{p+=$1; f+=$2; i+=$3} END {print p+0, f+0, i+0}'
    )
    printf '\n==> summary (CI=%s, %ss in all)\n' "${CI:-unset}" "$(($(date +%s) - SUITE_START))"
    for line in "${STEPS[@]}"; do
        printf '    %s\n' "$line"
    done
    if [ "${#FAILED[@]}" -eq 0 ]; then
        echo "test.sh: all steps passed"
    else
        echo "test.sh: FAILED steps: ${FAILED[*]} (test output: ${TEST_LOG#"$ROOT"/})"
    fi
    echo "tests: $passed passed, $failed failed, $ignored skipped"
}

step provision scripts/provision.sh "${PROVISION_ARGS[@]}"
if [ "${#FAILED[@]}" -ne 0 ]; then
    echo "test.sh: provisioning failed; nothing else can run" >&2
    summary
    exit 1
fi
step fmt fmt_check
step clippy cargo clippy --locked --all-targets -- -D warnings
# The shipped binary alone: without the tests' dev-dependencies, whose features would
# otherwise hide a feature the binary needs but does not ask for.
step clippy-bin cargo clippy --locked --bins -- -D warnings
# Licenses, duplicate crates and sources of the dependency tree (deny.toml). Not the
# advisories: their database is on GitHub, out of reach of the CI machines.
step deny cargo deny --locked check licenses bans sources
step tests run_tests
step compose scripts/check-compose.sh
# docker-compose.yml brought up for real on a private dockerd, around the binary the
# tests just built (a release build would add minutes and check nothing more here).
step compose-up env COMPOSE_UP_BINARY="${CARGO_TARGET_DIR:-$ROOT/target}/debug/tagwarden" \
    scripts/check-compose-up.sh

summary
[ "${#FAILED[@]}" -eq 0 ]
