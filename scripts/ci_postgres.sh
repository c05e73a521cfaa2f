#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the tracking tests and print its URL.
#
#   export DERMSIGHT_TEST_POSTGRES_URL="$(scripts/ci_postgres.sh)"
#
# Installs Debian's `postgresql` package when no server binaries are present (needs root or
# sudo), creates a cluster in $DERMSIGHT_PG_DIR (default $TMPDIR/dermsight-pg) listening on
# 127.0.0.1:$DERMSIGHT_PG_PORT (default 54329) only, a login role `dermsight` (CREATEDB: the
# tests create one database per test) and a database `dermsight`; autovacuum is off (its workers
# could hold the per-test databases the tests drop). Re-running it while the
# server is up just prints the URL. Stop it with: scripts/ci_postgres.sh stop
# Everything but the URL goes to stderr.
set -euo pipefail

PORT="${DERMSIGHT_PG_PORT:-54329}"
DIR="${DERMSIGHT_PG_DIR:-${TMPDIR:-/tmp}/dermsight-pg}"
URL="postgresql+psycopg://dermsight:dermsight@127.0.0.1:${PORT}/dermsight"

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

BIN="$(find_bin)"
if [ -z "$BIN" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing PostgreSQL from Debian packages..." >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq --no-install-recommends postgresql >&2
  BIN="$(find_bin)"
  [ -n "$BIN" ] || { echo "PostgreSQL binaries not found after install" >&2; exit 1; }
fi

# the server refuses to run as root: use the package's `postgres` account then
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir "$DIR" --shell /bin/sh postgres
  AS=(runuser -u postgres --)
else
  AS=()
fi

if [ "${1:-}" = "stop" ]; then
  "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >&2 || true
  exit 0
fi

if "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
  echo "$URL"
  exit 0
fi

mkdir -p "$DIR"
[ "$(id -u)" -eq 0 ] && chown postgres "$DIR"
if [ ! -f "$DIR/data/PG_VERSION" ]; then
  "${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U postgres -A trust --no-sync -E UTF8 >&2
fi
"${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start \
  -o "-c listen_addresses=127.0.0.1 -p ${PORT} -k ${DIR} -c fsync=off -c max_connections=200 -c autovacuum=off" >&2

PSQL=("${AS[@]}" "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='dermsight'")" != "1" ]; then
  "${PSQL[@]}" -c "CREATE ROLE dermsight LOGIN CREATEDB PASSWORD 'dermsight'" >&2
fi
if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname='dermsight'")" != "1" ]; then
  "${PSQL[@]}" -c "CREATE DATABASE dermsight OWNER dermsight" >&2
fi
echo "$URL"
