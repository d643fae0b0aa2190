# PostgreSQL for leader-postgres's tests: a throwaway cluster from Debian's packages on loopback
# port 55432 (LEADER_POSTGRES_PORT overrides it, for a second cluster the disruptive tests start),
# trust authentication, fsync off, data and socket under $STATE/postgres (or $STATE/postgres-PORT
# for another port). The machine's own PostgreSQL service, if any, is left alone.
# Sourced by scripts/servers.
#
# initdb and postgres refuse to run as root, so as root every server command runs as the
# `postgres` user (runuser); the folders it writes are created owned by that user.

PG_PORT="${LEADER_POSTGRES_PORT:-55432}"

pg_dir() {
  if [ "$PG_PORT" = 55432 ]; then echo "$STATE/postgres"; else echo "$STATE/postgres-$PG_PORT"; fi
}

# Where the cluster really lives. The server runs as the `postgres` user, which may not be able to
# reach a checkout under a private home (/root is 0700): then the cluster goes under /var/tmp and
# $STATE/postgres is a link to it, so the rest of the tooling finds it at the usual place.
pg_real_dir() {
  local dir; dir="$(pg_dir)"
  if [ -L "$dir" ] || [ "$(id -u)" -ne 0 ]; then readlink -f "$dir"; return; fi
  mkdir -p "$dir"
  if runuser -u postgres -- test -x "$dir" 2>/dev/null; then echo "$dir"; return; fi
  local real
  real="/var/tmp/leader-servers-$(printf '%s' "$STATE" | md5sum | cut -c1-8)/$(basename "$dir")"
  mkdir -p "$real"
  chmod 755 "$(dirname "$real")" "$real"
  rm -rf "$dir"
  ln -s "$real" "$dir"
  echo "$real"
}

# The newest installed server version's bin folder (Debian keeps each under /usr/lib/postgresql/N).
pg_bin() {
  local v
  v="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)"
  [ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ] && echo "/usr/lib/postgresql/$v/bin"
}

pg_install() {
  if pg_bin >/dev/null; then return 0; fi
  log "installing postgresql (apt-get)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  # Debian's package creates and starts a cluster of its own on 5432; ours is separate.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
  pg_bin >/dev/null || die "postgresql installed but no /usr/lib/postgresql/*/bin/pg_ctl found"
}

# Runs a server binary as the postgres user when we are root (initdb/pg_ctl refuse root).
pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_mkdir() {
  if [ "$(id -u)" -eq 0 ]; then install -d -o postgres -g postgres -m 700 "$1"; else install -d -m 700 "$1"; fi
}

# A throwaway CA and a server certificate for 127.0.0.1/localhost under $dir/tls, so the TLS tests
# can connect with sslmode=require and that CA as their only root. Made once; skipped (the server
# then runs without TLS) where openssl is missing.
pg_tls() {
  local tls="$1/tls"
  command -v openssl >/dev/null || return 1
  if [ ! -f "$tls/server.key" ]; then
    mkdir -p "$tls"
    (
      cd "$tls" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt \
          -days 3650 -subj "/CN=leader-test-ca" &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
          -subj "/CN=localhost" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext &&
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 3650 \
          -extfile ext
    ) >"$1/tls.log" 2>&1 || { log "could not make a test certificate (see $1/tls.log); TLS stays off"; rm -rf "$tls"; return 1; }
  fi
  # The server refuses a key that others can read.
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$tls/server.key" "$tls/server.crt"; fi
  chmod 600 "$tls/server.key"
}

pg_ready() {
  local bin; bin="$(pg_bin)" || return 1
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres
}

pg_port_closed() { ! pg_ready; }

is_up_postgres() { pg_ready; }

url_postgres() { echo "postgres://postgres@127.0.0.1:$PG_PORT/postgres"; }

up_postgres() {
  pg_install || return 1
  local bin dir
  bin="$(pg_bin)"
  if pg_ready; then return 0; fi
  dir="$(pg_real_dir)"
  pg_mkdir "$dir/data"
  pg_mkdir "$dir/sock"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 || {
      log "initdb failed; last lines of $dir/initdb.log:"
      tail -n 20 "$dir/initdb.log" >&2 || true
      return 1
    }
  fi
  # The log file must be writable by the server's user.
  touch "$dir/server.log"
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir/server.log"; fi
  # A stale pid file from a killed server would make pg_ctl refuse to start.
  if [ -f "$dir/data/postmaster.pid" ] && ! pg_as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    rm -f "$dir/data/postmaster.pid"
  fi
  local opts="-p $PG_PORT -k $dir/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
  opts="$opts -c full_page_writes=off -c max_connections=300"
  # TLS is offered, not required: plain connections (the default sslmode=prefer of this crate) work too.
  if pg_tls "$dir"; then
    opts="$opts -c ssl=on -c ssl_cert_file=$dir/tls/server.crt -c ssl_key_file=$dir/tls/server.key"
  fi
  pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -o "$opts" start >/dev/null || {
    log "postgres did not start; last lines of $dir/server.log:"
    tail -n 20 "$dir/server.log" >&2 || true
    return 1
  }
  wait_until 30 pg_ready || { log "postgres does not answer on $PG_PORT"; return 1; }
}

down_postgres() {
  local bin dir
  bin="$(pg_bin)" || return 0
  dir="$(readlink -f "$(pg_dir)")"
  if [ -f "$dir/data/postmaster.pid" ]; then
    # Fast shutdown: a smart one (SIGTERM) waits for every pooled client to leave.
    pg_as_owner "$bin/pg_ctl" -D "$dir/data" -w -t 30 stop -m fast >/dev/null 2>&1 || true
  fi
  wait_until 15 pg_port_closed || { log "postgres still answers on $PG_PORT"; return 1; }
}

# Stops and starts the same cluster: leases, tokens and the schema survive.
restart_postgres() {
  down_postgres && up_postgres
}
