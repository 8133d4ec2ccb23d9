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

pg_stop=""
cleanup() { [ -n "$pg_stop" ] && eval "$pg_stop" >/dev/null 2>&1 || true; }
trap cleanup EXIT
if [ -z "${RLHFKIT_TEST_PG_URL:-}" ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  err="$(mktemp)"
  if url="$(bash scripts/start_test_postgres.sh 2>"$err")"; then
    export RLHFKIT_TEST_PG_URL="$(echo "$url" | tail -n 1)"
    pg_stop="$(grep -o 'stop: .*' "$err" | sed 's/^stop: //')"
    echo "PostgreSQL for tests on $(echo "$RLHFKIT_TEST_PG_URL" | sed 's#.*@##')"
  else
    echo "warning: could not start a test PostgreSQL server; PostgreSQL tests will be skipped" >&2
    cat "$err" >&2
  fi
  rm -f "$err"
fi

"$PY" -m pytest -q "$@"
