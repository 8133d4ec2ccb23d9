#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the test suite and print its URL (last line of stdout).
#
#   export RLHFKIT_TEST_PG_URL="$(scripts/start_test_postgres.sh)"
#   pytest -m postgres tests/feedback tests/load
#
# initdb and pg_ctl run as the "postgres" user (PostgreSQL refuses to run as root); the server
# lives in a fresh temp dir, listens on 127.0.0.1 only, on a free port, with a random password
# (SCRAM) -- no default password. Stop it with the command printed on stderr.
set -euo pipefail

PG_BIN="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
  echo "no PostgreSQL binaries found (apt-get install postgresql, or set PG_BIN)" >&2
  exit 1
fi

as_postgres() {
  if [[ "$(id -un)" == "postgres" ]]; then "$@"; else runuser -u postgres -- "$@"; fi
}

DIR="$(mktemp -d /tmp/rlhfkit-pg.XXXXXX)"
chmod 700 "$DIR"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
PASSWORD="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
printf '%s\n' "$PASSWORD" > "$DIR/pwfile"
chmod 600 "$DIR/pwfile"
if [[ "$(id -un)" != "postgres" ]]; then chown -R postgres: "$DIR"; fi

as_postgres "$PG_BIN/initdb" -D "$DIR/data" -U postgres -E UTF8 --auth=scram-sha-256 \
  --pwfile="$DIR/pwfile" > "$DIR/initdb.log" 2>&1
rm -f "$DIR/pwfile"
as_postgres "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=300" start > /dev/null
as_postgres env PGPASSWORD="$PASSWORD" \
  "$PG_BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres rlhfkit_test

echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (data $DIR);" \
     "stop: runuser -u postgres -- $PG_BIN/pg_ctl -D $DIR/data stop -m fast" >&2
echo "postgresql://postgres:${PASSWORD}@127.0.0.1:${PORT}/rlhfkit_test"
