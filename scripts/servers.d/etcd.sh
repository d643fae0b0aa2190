# etcd (standalone, one member) for leader-etcd's tests: client port 52379 (plain) and 52381
# (TLS with client certificates, from a throwaway CA made by openssl, when openssl is there; the
# TLS test finds the CA and the endpoint under $STATE/etcd/tls), peer port 52380, all on loopback;
# log and TLS files under $STATE/etcd, data in memory (see etcd_data_dir). Never 2379: a packaged
# etcd service may own it.
# Sourced by scripts/servers.
#
# Debian's etcd-server (3.4) and etcd-client (etcdctl) packages. protobuf-compiler comes along:
# the etcd-client crate's build script needs protoc (scripts/test also installs it before anything
# compiles, for runs that start no etcd).

ETCD_PORT=52379
ETCD_PEER_PORT=52380
ETCD_TLS_PORT=52381

etcd_dir() { echo "$STATE/etcd"; }

# etcd fsyncs its write-ahead log on every write, and on a disk shared with builds one fsync can
# take seconds (seen here: 3.8 s), far beyond a test lease. The test server keeps its data in
# memory (tmpfs) where there is one, as the PostgreSQL test server runs with fsync off; the data
# survives restarts of the server (not of the machine), which the restart tests need.
etcd_data_dir() {
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    echo "/dev/shm/leader-servers-$(printf '%s' "$STATE" | md5sum | cut -c1-8)/etcd"
  else
    echo "$(etcd_dir)/data"
  fi
}

# Installs etcd, etcdctl and protoc from Debian's packages if any is missing.
etcd_install() {
  if command -v etcd >/dev/null && command -v etcdctl >/dev/null && command -v protoc >/dev/null; then
    return 0
  fi
  log "installing etcd-server, etcd-client, protobuf-compiler (apt-get)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server etcd-client protobuf-compiler >&2
  # The package may start a service of its own on 2379; ours is separate and leaves it alone.
  command -v etcd >/dev/null || die "etcd-server installed but no etcd on PATH"
}

# A throwaway CA and a server certificate for 127.0.0.1/localhost under $dir/tls, for the TLS
# test. Made once; skipped (the server then has no TLS port) where openssl is missing.
etcd_tls() {
  local tls="$1/tls"
  command -v openssl >/dev/null || return 1
  if [ ! -f "$tls/server.key" ]; then
    mkdir -p "$tls"
    (
      cd "$tls" &&
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt \
          -days 3650 -subj "/CN=leader-etcd-test-ca" &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
          -subj "/CN=localhost" &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' >ext &&
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 3650 \
          -extfile ext
    ) >"$1/tls.log" 2>&1 || { log "could not make a test certificate (see $1/tls.log); TLS stays off"; rm -rf "$tls"; return 1; }
  fi
}

etcd_serving() {
  ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$ETCD_PORT" --dial-timeout 2s --command-timeout 3s \
    endpoint status >/dev/null 2>&1
}

etcd_port_closed() { ! (exec 3<>"/dev/tcp/127.0.0.1/$ETCD_PORT") 2>/dev/null; }

is_up_etcd() { command -v etcdctl >/dev/null && etcd_serving; }

url_etcd() { echo "etcd://127.0.0.1:$ETCD_PORT/leader-test"; }

up_etcd() {
  etcd_install || return 1
  if etcd_serving; then return 0; fi
  local dir; dir="$(etcd_dir)"
  mkdir -p "$dir"
  local clients="http://127.0.0.1:$ETCD_PORT"
  local tls_args=()
  if etcd_tls "$dir"; then
    clients="$clients,https://127.0.0.1:$ETCD_TLS_PORT"
    # Clients of the TLS port must show a certificate of the test CA too (the TLS test checks both).
    tls_args=(--cert-file "$dir/tls/server.crt" --key-file "$dir/tls/server.key"
      --client-cert-auth --trusted-ca-file "$dir/tls/ca.crt")
    echo "127.0.0.1:$ETCD_TLS_PORT" >"$dir/tls/endpoint"
  fi
  local peer="http://127.0.0.1:$ETCD_PEER_PORT"
  local data; data="$(etcd_data_dir)"
  mkdir -p "$(dirname "$data")"
  nohup etcd --name leader-test --data-dir "$data" \
    --listen-client-urls "$clients" --advertise-client-urls "$clients" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "leader-test=$peer" --initial-cluster-token leader-test \
    --logger zap --log-outputs stderr --log-level warn "${tls_args[@]}" \
    >"$dir/etcd.log" 2>&1 </dev/null &
  echo $! >"$dir/etcd.pid"
  if ! wait_until 30 etcd_serving; then
    log "etcd did not serve within 30 s; last lines of $dir/etcd.log:"
    tail -n 20 "$dir/etcd.log" >&2 || true
    return 1
  fi
}

down_etcd() {
  local dir; dir="$(etcd_dir)"
  if [ -f "$dir/etcd.pid" ]; then
    kill "$(cat "$dir/etcd.pid")" 2>/dev/null || true
    rm -f "$dir/etcd.pid"
  fi
  # The process lingers until reaped; the closed port is what says it is gone.
  wait_until 15 etcd_port_closed
}

# Keeps the data directory: revisions (the fencing tokens) keep growing across the restart.
restart_etcd() {
  down_etcd
  up_etcd
}
