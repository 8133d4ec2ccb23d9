#!/usr/bin/env bash
# Runs the whole test suite: installs the system packages the browser and PostgreSQL tests need
# (Debian's chromium and postgresql) when missing, starts a throwaway PostgreSQL server on 127.0.0.1,
# runs pytest, and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing ${need[*]} (Debian packages) for the browser and PostgreSQL tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "warning: ${need[*]} missing and not root: those tests will be skipped" >&2
  fi
fi

pg_dir=""
cleanup() { [ -n "$pg_dir" ] && bash scripts/stop_test_postgres.sh "$pg_dir" >/dev/null 2>&1 || true; }
trap cleanup EXIT
if [ -z "${RLHFKIT_TEST_PG_URL:-}" ] && [ -f scripts/start_test_postgres.sh ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if out=$(bash scripts/start_test_postgres.sh); then
    export RLHFKIT_TEST_PG_URL="$(echo "$out" | grep -E '^postgresql' | tail -1)"
    pg_dir="$(echo "$out" | grep -E '^PGDIR=' | tail -1 | cut -d= -f2-)"
    echo "PostgreSQL for tests: $RLHFKIT_TEST_PG_URL"
  else
    echo "warning: could not start a test PostgreSQL server; PostgreSQL tests will be skipped" >&2
  fi
fi

"$PY" -m pytest -q "$@"
