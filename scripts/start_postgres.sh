#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 and print its SQLAlchemy URL (last line of stdout).
# Usage: export ARCH_LAB_PG_URL="$(bash scripts/start_postgres.sh)"; ...; bash scripts/stop_postgres.sh "$ARCH_LAB_PG_URL"
# The port is ARCH_LAB_PG_PORT when set and free, otherwise a free port picked here. ARCH_LAB_PG_OPTIONS adds
# server options (e.g. "-c shared_buffers=256MB"). A failed start removes what it created and exits non-zero with
# the server's log on stderr.
set -Eeuo pipefail  # -E: the ERR trap below also fires inside functions (as_pg)
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  echo "error: no PostgreSQL server under /usr/lib/postgresql/*/bin; install it (apt-get install postgresql)" >&2
  exit 1
fi
port_free() { python3 -c "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null; }
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
port=${ARCH_LAB_PG_PORT:-55432}
if ! port_free "$port"; then
  port=$(free_port)
fi
dir=$(mktemp -d /tmp/arch_lab_pg.XXXXXX)
chown postgres "$dir" 2>/dev/null || true
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
cleanup() {
  as_pg "$bin/pg_ctl -D $dir/data stop -m immediate" >/dev/null 2>&1 || true
  [ -f "$dir/log" ] && tail -n 20 "$dir/log" >&2
  rm -rf "$dir"
}
trap 'cleanup; echo "error: could not start PostgreSQL on 127.0.0.1:$port (see the log above)" >&2' ERR
as_pg "$bin/initdb -D $dir/data -U postgres -A trust >/dev/null"
as_pg "$bin/pg_ctl -D $dir/data -o '-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 ${ARCH_LAB_PG_OPTIONS:-}' -l $dir/log -w start >/dev/null"
as_pg "$bin/createdb -h 127.0.0.1 -p $port -U postgres arch_lab"
trap - ERR
echo "postgresql+psycopg2://postgres@127.0.0.1:$port/arch_lab"
