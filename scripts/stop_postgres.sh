#!/usr/bin/env bash
# Stop a server started by scripts/start_postgres.sh and remove its files. Usage: bash scripts/stop_postgres.sh URL
set -euo pipefail
url=${1:?usage: stop_postgres.sh URL (as printed by start_postgres.sh)}
port=$(python3 -c "import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).port)" "$url")
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
for pid_file in /tmp/arch_lab_pg.*/data/postmaster.pid; do
  [ -f "$pid_file" ] || continue
  if [ "$(sed -n 4p "$pid_file")" = "$port" ]; then
    dir=$(dirname "$(dirname "$pid_file")")
    as_pg "$bin/pg_ctl -D $dir/data stop -m fast" >/dev/null 2>&1 || true
    rm -rf "$dir"
    exit 0
  fi
done
echo "warning: no arch_lab PostgreSQL server found on port $port" >&2
