# shellcheck shell=bash
# Throwaway PostgreSQL 15 clusters for integration tests and the demo. Source this file.
#
#   pg_start DIR    init (once) and start a cluster under DIR; export BROKER_DATABASE_URL
#   pg_stop DIR     fast shutdown          pg_restart DIR   stop + start
#   pg_kill DIR     immediate shutdown (a crash: the next start runs recovery)
#   pg_is_up DIR    status 0 when the server accepts connections
#   pg_psql DIR ... psql as the broker role on database broker (extra args passed through)
#
# Layout: DIR/data (the cluster), DIR/postgres.log, DIR/port, and the unix socket in DIR.
# Only a unix socket, unless PG_PORT is set at the first start: then also 127.0.0.1:PG_PORT
# (remembered for later starts). Trust authentication: for tests only. Needs nothing but the
# postgresql-15 binaries (no pg_createcluster, no systemd). As root, initdb and postgres run as
# the `postgres` user (they refuse root); DIR is chowned to it.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

_pg_err() { echo "pg.sh: $*" >&2; }

# Run a cluster command as its owner, from / so the owner need not read our cwd.
_pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u postgres -- "$@")
  else
    (cd / && "$@")
  fi
}

# DIR goes into a config file, a URL and a socket path: keep it plain and short enough.
_pg_check_dir() {
  local dir=$1
  if [ -z "$dir" ]; then _pg_err "usage: ${FUNCNAME[1]} DIR"; return 1; fi
  if ! [[ $dir =~ ^/[A-Za-z0-9._/-]+$ ]]; then
    _pg_err "DIR must be an absolute path of [A-Za-z0-9._/-]: '$dir'"; return 1
  fi
  # sun_path holds 107 bytes; the socket is DIR/.s.PGSQL.NNNNN
  if [ $((${#dir} + 16)) -gt 107 ]; then _pg_err "DIR is too long for a unix socket path: $dir"; return 1; fi
  if [ ! -x "$PG_BIN/postgres" ]; then _pg_err "PostgreSQL 15 not found in $PG_BIN (apt-get install postgresql-15)"; return 1; fi
}

# "PORT TCP" of the cluster: PG_PORT when set, else what the first start recorded, else 5432 0.
_pg_port_line() {
  local dir=$1 line
  if [ -n "${PG_PORT:-}" ]; then
    if ! [[ $PG_PORT =~ ^[0-9]{1,5}$ ]] || [ "$PG_PORT" -lt 1 ] || [ "$PG_PORT" -gt 65535 ]; then
      _pg_err "PG_PORT must be a TCP port number: '$PG_PORT'"; return 1
    fi
    echo "$PG_PORT 1"; return 0
  fi
  if [ -r "$dir/port" ] && read -r line <"$dir/port" && [[ $line =~ ^[0-9]{1,5}\ [01]$ ]]; then
    echo "$line"; return 0
  fi
  echo "5432 0"
}

_pg_port() { local l; l=$(_pg_port_line "$1") || return 1; echo "${l%% *}"; }

_pg_export_url() {
  local dir=$1 port
  port=$(_pg_port "$dir") || return 1
  export BROKER_DATABASE_URL="postgresql:///broker?host=$dir&port=$port&user=broker"
}

_pg_log_tail() {
  local f
  for f in "$@"; do
    [ -r "$f" ] && { echo "--- last lines of $f:"; tail -n 20 "$f"; } >&2
  done
}

# As root: the postgres user must reach DIR through every parent directory.
_pg_fix_perms() {
  local dir=$1 p
  [ "$(id -u)" = 0 ] || return 0
  if ! id postgres >/dev/null 2>&1; then _pg_err "no 'postgres' user (is postgresql-15 installed?)"; return 1; fi
  if ! chown postgres:postgres "$dir" || ! chmod 0755 "$dir"; then
    _pg_err "cannot chown $dir to postgres"; return 1
  fi
  p=$(dirname "$dir")
  while [ "$p" != / ]; do
    if ! runuser -u postgres -- test -x "$p"; then
      chmod o+x "$p" || { _pg_err "postgres cannot traverse $p"; return 1; }
    fi
    p=$(dirname "$p")
  done
}

_pg_superuser_psql() {
  local dir=$1; shift
  "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$dir" -p "$(_pg_port "$dir")" -U postgres "$@"
}

pg_is_up() {
  local dir=$1 port
  _pg_check_dir "$dir" 2>/dev/null || return 1
  port=$(_pg_port "$dir") || return 1
  "$PG_BIN/pg_isready" -q -h "$dir" -p "$port" -t 2 >/dev/null 2>&1
}

pg_start() {
  local dir=$1 line port tcp listen conf
  _pg_check_dir "$dir" || return 1
  mkdir -p "$dir" || { _pg_err "cannot create $dir"; return 1; }
  _pg_fix_perms "$dir" || return 1
  line=$(_pg_port_line "$dir") || return 1
  port=${line%% *}; tcp=${line##* }

  if [ ! -s "$dir/data/PG_VERSION" ]; then
    # A half-made data directory from an interrupted init cannot be reused.
    rm -rf "$dir/data"
    if ! _pg_as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C \
      --no-sync >"$dir/initdb.log" 2>&1; then
      _pg_err "initdb failed in $dir/data"; _pg_log_tail "$dir/initdb.log"; return 1
    fi
    echo "include_if_exists = 'broker.conf'" >>"$dir/data/postgresql.conf"
  fi

  listen="''"
  [ "$tcp" = 1 ] && listen="'127.0.0.1'"
  conf="# written by tests/integration/lib/pg.sh
listen_addresses = $listen
port = $port
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 100
shared_buffers = 32MB
log_min_messages = warning
log_min_error_statement = panic"
  if [ "$(cat "$dir/data/broker.conf" 2>/dev/null)" != "$conf" ]; then
    # Port or listen address changed: a running server must restart to apply it.
    pg_stop "$dir" || return 1
    printf '%s\n' "$conf" >"$dir/data/broker.conf" || { _pg_err "cannot write $dir/data/broker.conf"; return 1; }
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir/data/broker.conf"
    chmod 0600 "$dir/data/broker.conf"
  fi
  echo "$port $tcp" >"$dir/port"

  if ! pg_is_up "$dir"; then
    if ! _pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 -s start >/dev/null 2>&1; then
      _pg_err "PostgreSQL did not start in $dir"; _pg_log_tail "$dir/postgres.log"; return 1
    fi
  fi

  # The broker connects as a plain role that owns its database (CREATEDB for tests' scratch DBs).
  if [ "$(_pg_superuser_psql "$dir" -d postgres -c "select 1 from pg_roles where rolname = 'broker'")" != 1 ]; then
    _pg_superuser_psql "$dir" -d postgres -c "create role broker login createdb" || { _pg_err "cannot create role broker"; return 1; }
  fi
  if [ "$(_pg_superuser_psql "$dir" -d postgres -c "select 1 from pg_database where datname = 'broker'")" != 1 ]; then
    _pg_superuser_psql "$dir" -d postgres -c "create database broker owner broker" || { _pg_err "cannot create database broker"; return 1; }
  fi
  _pg_export_url "$dir"
}

pg_stop() {
  local dir=$1
  _pg_check_dir "$dir" || return 1
  [ -s "$dir/data/postmaster.pid" ] || return 0
  if ! _pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 -s stop >/dev/null 2>&1; then
    # pg_ctl fails when the pid file is stale (the server is already gone); fine if nothing runs.
    if _pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      _pg_err "PostgreSQL in $dir did not stop"; _pg_log_tail "$dir/postgres.log"; return 1
    fi
  fi
}

pg_kill() {
  local dir=$1
  _pg_check_dir "$dir" || return 1
  [ -s "$dir/data/postmaster.pid" ] || return 0
  if ! _pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 60 -s stop >/dev/null 2>&1; then
    if _pg_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      _pg_err "PostgreSQL in $dir did not stop"; return 1
    fi
  fi
}

pg_restart() {
  local dir=$1
  pg_stop "$dir" && pg_start "$dir"
}

pg_psql() {
  local dir=$1; shift
  _pg_check_dir "$dir" || return 1
  "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$dir" -p "$(_pg_port "$dir")" -U broker -d broker "$@"
}
