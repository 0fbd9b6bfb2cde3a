#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 and print its SQLAlchemy URL.
# Usage: export ARCH_LAB_PG_URL="$(bash scripts/start_postgres.sh)"
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
port=${ARCH_LAB_PG_PORT:-55432}
dir=$(mktemp -d /tmp/arch_lab_pg.XXXXXX)
chown postgres "$dir" 2>/dev/null || true
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
as_pg "$bin/initdb -D $dir/data -U postgres -A trust >/dev/null"
as_pg "$bin/pg_ctl -D $dir/data -o '-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200' -l $dir/log -w start >/dev/null"
as_pg "$bin/createdb -h 127.0.0.1 -p $port -U postgres arch_lab"
echo "postgresql+psycopg2://postgres@127.0.0.1:$port/arch_lab"
