#!/usr/bin/env bash
# Validate docker-compose.yml without a Docker engine, then check the properties the
# deployment relies on: only tagwarden can reach the registry and Postgres, and the
# admin port is published on loopback only.
#
#   scripts/check-compose.sh [FILE]     (default: docker-compose.yml)
#
# Uses `docker compose` (v2 plugin) when installed, else `docker-compose` (Debian's
# package, 1.29: `config` needs no engine). With neither, it skips, unless CI=true.
set -euo pipefail

FILE=${1:-docker-compose.yml}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    if [ "${CI:-}" = true ]; then
        echo "check-compose: no compose validator (docker compose or docker-compose); run scripts/provision.sh" >&2
        exit 1
    fi
    echo "check-compose: skipped: neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 0
fi

# Interpolation must not depend on the caller's environment or a stray .env file.
normalized=$(env -i PATH="$PATH" HOME="${HOME:-/root}" "${COMPOSE[@]}" \
    --project-directory "$ROOT" -f "$FILE" config)
echo "check-compose: $FILE is valid for ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || echo '?'))"

# The normalized form is YAML. Read it with a Python that has PyYAML: Debian's (a
# dependency of its docker-compose package) or whichever python3 is first on PATH.
PYTHON=
for candidate in /usr/bin/python3 python3; do
    if "$candidate" -c 'import yaml' 2>/dev/null; then
        PYTHON=$candidate
        break
    fi
done
if [ -z "$PYTHON" ]; then
    if [ "${CI:-}" = true ]; then
        echo "check-compose: no python3 with PyYAML to check the network layout" >&2
        exit 1
    fi
    echo "check-compose: network layout not checked: no python3 with PyYAML" >&2
    exit 0
fi

printf '%s\n' "$normalized" | "$PYTHON" -c '
import sys, yaml

doc = yaml.safe_load(sys.stdin)
services, networks = doc["services"], doc.get("networks") or {}
problems = []

def nets(name):
    n = services[name].get("networks") or {}
    return set(n) if isinstance(n, (dict, list)) else set()

internal = {k for k, v in networks.items() if (v or {}).get("internal")}
if not internal:
    problems.append("no network is internal: true")
for name in ("postgres", "registry"):
    if name not in services:
        problems.append(f"service {name} is missing")
        continue
    if services[name].get("ports"):
        problems.append(f"{name} publishes ports: only tagwarden may be reachable")
    on = sorted(nets(name)) or ["default"]
    if set(on) - internal:
        problems.append(f"{name} must be only on internal networks, is on {on}")
tw = services.get("tagwarden", {})
if not nets("tagwarden") & internal:
    problems.append("tagwarden is not on the internal network")
if not nets("tagwarden") - internal:
    problems.append("tagwarden has no non-internal network to publish its port on")
for p in tw.get("ports") or []:
    target = int(p["target"]) if isinstance(p, dict) else int(str(p).rsplit(":", 1)[-1].split("/")[0])
    host_ip = p.get("host_ip", "") if isinstance(p, dict) else (str(p).split(":")[0] if str(p).count(":") == 2 else "")
    if target == 5001 and host_ip not in ("127.0.0.1", "::1"):
        where = host_ip or "all addresses"
        problems.append(f"admin port 5001 is published on {where}, not loopback")
cond = ((tw.get("depends_on") or {}).get("postgres") or {}).get("condition")
if cond != "service_healthy":
    problems.append("tagwarden must depend on postgres being healthy")
if "healthcheck" not in services.get("postgres", {}):
    problems.append("postgres has no healthcheck")

for p in problems:
    print("check-compose: " + p, file=sys.stderr)
if problems:
    sys.exit(1)
print("check-compose: registry and postgres are internal only; admin port on loopback")
'
