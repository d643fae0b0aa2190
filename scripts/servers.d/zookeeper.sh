# ZooKeeper (standalone) for leader-zookeeper's tests: loopback port 52181, data under
# $STATE/zookeeper, tickTime=500 so that test sessions can be 1-60 s. Sourced by scripts/servers.

ZK_PORT=52181
ZK_JARS=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar

zk_dir() { echo "$STATE/zookeeper"; }

# Installs Debian's zookeeper package (and nc for the four-letter words) if missing.
zk_install() {
  if [ -f /usr/share/java/zookeeper.jar ] && [ -f /usr/share/java/slf4j-simple.jar ] \
    && command -v java >/dev/null && command -v nc >/dev/null; then
    return 0
  fi
  log "installing zookeeper (apt-get)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq zookeeper netcat-openbsd >&2
  # Debian's zookeeper pulls in slf4j but not necessarily the simple binding.
  [ -f /usr/share/java/slf4j-simple.jar ] \
    || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libslf4j-java >&2
}

zk_serving() { echo srvr | nc -w 3 127.0.0.1 "$ZK_PORT" 2>/dev/null | grep -q "Mode: standalone"; }

zk_port_closed() { ! nc -z -w 1 127.0.0.1 "$ZK_PORT" 2>/dev/null; }

# A loaded machine can leave one 4lw probe unanswered: ask up to three times.
is_up_zookeeper() {
  command -v nc >/dev/null || return 1
  local i
  for i in 1 2 3; do
    zk_serving && return 0
    [ "$i" = 3 ] || sleep 0.3
  done
  return 1
}

# The session timeout is the lease: 4 s, the test lease the suites and leader-bench use here.
url_zookeeper() { echo "zk://127.0.0.1:$ZK_PORT/leader-test?session_timeout=4s"; }

# forceSync=no: the transaction log is not fsynced per write (a test server, as PostgreSQL runs with
# fsync off and etcd on tmpfs here). Its fsyncs on the disk the suites share stalled other suites'
# file operations for most of a second (leader-fs's fsync of a directory, its renames).
up_zookeeper() {
  zk_install || return 1
  local dir; dir="$(zk_dir)"
  mkdir -p "$dir/data"
  cat >"$dir/zoo.cfg" <<EOF
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
tickTime=500
minSessionTimeout=1000
maxSessionTimeout=60000
initLimit=10
syncLimit=5
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,stat,conf
forceSync=no
EOF
  # A server from an earlier run that still answers is reused (up is idempotent).
  if zk_serving; then return 0; fi
  nohup java -Xmx256m -cp "$ZK_JARS" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
    >"$dir/zookeeper.log" 2>&1 </dev/null &
  echo $! >"$dir/zookeeper.pid"
  if ! wait_until 30 zk_serving; then
    log "zookeeper did not serve within 30 s; last lines of $dir/zookeeper.log:"
    tail -n 20 "$dir/zookeeper.log" >&2 || true
    return 1
  fi
}

down_zookeeper() {
  local dir; dir="$(zk_dir)"
  if [ -f "$dir/zookeeper.pid" ]; then
    kill "$(cat "$dir/zookeeper.pid")" 2>/dev/null || true
    rm -f "$dir/zookeeper.pid"
  fi
  # The process lingers until reaped; the closed port is what says it is gone.
  wait_until 15 zk_port_closed
}

# Keeps the data directory: tokens (zxids) must keep growing across the restart.
restart_zookeeper() {
  down_zookeeper
  up_zookeeper
}
