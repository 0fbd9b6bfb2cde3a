#!/usr/bin/env bash
# The test command: a fresh environment, a PostgreSQL server on loopback for the distributed-sweep
# tests (installed from Debian's packages when missing), lint and type checks, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# shellcheck disable=SC1091
source .venv/bin/activate

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "warning: could not install postgresql; distributed-sweep tests will say why they skip"
fi
if [ -z "${ARCH_LAB_PG_URL:-}" ] && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  if url="$(bash scripts/start_postgres.sh)"; then
    export ARCH_LAB_PG_URL="$url"
    trap 'bash scripts/stop_postgres.sh "$ARCH_LAB_PG_URL"' EXIT  # the server this run started goes with it
  fi
fi

ruff check arch_lab tests benchmarks analysis
ruff format --check arch_lab tests benchmarks analysis
mypy  # the library, with the settings of [tool.mypy] in pyproject.toml
python -m pytest -q "$@"
