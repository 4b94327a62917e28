#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for the tests, never the system's one.
#
#   scripts/postgres-local.sh start DIR   initdb into DIR, listen on 127.0.0.1 on a
#                                         free port, print postgresql://devid@127.0.0.1:PORT/devid
#                                         (also written to DIR/url)
#   scripts/postgres-local.sh stop DIR    stop that cluster and delete its files
#
# With DEVID_TEST_POSTGRES_URL set, `start` starts nothing and hands that URL on.
# As root the server runs as the user `postgres` (or `nobody`): PostgreSQL
# refuses to run as root. Every step is bounded by a timeout.
set -euo pipefail

pg_bin=${DEVID_PG_BIN:-/usr/lib/postgresql/15/bin}
db_user=devid
db_name=devid

usage() {
  echo "usage: $0 start|stop DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)

run_as=()
server_user=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  if getent passwd postgres >/dev/null; then server_user=postgres; else server_user=nobody; fi
  run_as=(runuser -u "$server_user" --)
fi

# Where the cluster lives: DIR itself, unless the server's user cannot reach it
# (a root-only parent directory) or the socket path would exceed the 107 bytes
# a unix socket name may have; then a private directory under /tmp, named in DIR/cluster-dir.
cluster_dir() {
  if [ -f "$dir/cluster-dir" ]; then
    cat "$dir/cluster-dir"
    return
  fi
  local c="$dir"
  if [ ${#c} -gt 80 ]; then
    c=""
  elif [ ${#run_as[@]} -gt 0 ]; then
    chown "$server_user" "$dir"
    if ! "${run_as[@]}" test -w "$dir" -a -x "$dir"; then c=""; fi
  fi
  if [ -z "$c" ]; then
    c=$(mktemp -d /tmp/devid-pg.XXXXXX)
    if [ ${#run_as[@]} -gt 0 ]; then chown "$server_user" "$c"; fi
  fi
  echo "$c" >"$dir/cluster-dir"
  echo "$c"
}

pg_ctl() {
  timeout 60 "${run_as[@]}" "$pg_bin/pg_ctl" "$@"
}

start() {
  if [ -n "${DEVID_TEST_POSTGRES_URL:-}" ]; then
    echo "$DEVID_TEST_POSTGRES_URL" >"$dir/url"
    echo "$DEVID_TEST_POSTGRES_URL"
    return
  fi
  local c
  c=$(cluster_dir)
  if [ -f "$dir/url" ] && pg_ctl -D "$c/data" status >/dev/null 2>&1; then
    cat "$dir/url"
    return
  fi
  # A server left behind by an interrupted run: stopped before its files go.
  if [ -f "$c/data/postmaster.pid" ]; then
    pg_ctl -D "$c/data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$c/data" "$c/run" "$dir/url"
  "${run_as[@]}" mkdir -p "$c/run"
  if ! timeout 120 "${run_as[@]}" "$pg_bin/initdb" -D "$c/data" -U "$db_user" -A trust -E UTF8 \
    --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
    echo "postgres-local: initdb failed:" >&2
    tail -n 20 "$dir/initdb.log" >&2
    exit 1
  fi
  local port attempt
  for attempt in 1 2 3 4 5 6 7 8; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if [ -n "$(ss -Htln "sport = :$port" 2>/dev/null)" ]; then continue; fi
    # Throwaway data: no fsync. Only TCP on loopback and a socket inside the cluster directory.
    if pg_ctl -D "$c/data" -l "$c/server.log" -w -t 30 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$c/run -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null; then
      break
    fi
    # Another process may have taken the port between the check and the bind.
    if ! grep -q "could not bind\|could not create any TCP/IP sockets" "$c/server.log" 2>/dev/null \
      || [ "$attempt" -eq 8 ]; then
      echo "postgres-local: the server did not start:" >&2
      tail -n 20 "$c/server.log" >&2 || true
      exit 1
    fi
  done
  timeout 30 "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U "$db_user" "$db_name"
  local url="postgresql://$db_user@127.0.0.1:$port/$db_name"
  echo "$url" >"$dir/url"
  echo "$url"
}

stop() {
  rm -f "$dir/url"
  [ -f "$dir/cluster-dir" ] || return 0
  local c
  c=$(cat "$dir/cluster-dir")
  if [ -f "$c/data/postmaster.pid" ]; then
    pg_ctl -D "$c/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
      || pg_ctl -D "$c/data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$c/data" "$c/run" "$c/server.log"
  if [ "$c" != "$dir" ]; then rmdir "$c" 2>/dev/null || true; fi
  rm -f "$dir/cluster-dir" "$dir/initdb.log"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
