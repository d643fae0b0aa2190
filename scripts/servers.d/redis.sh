# Redis for leader-redis's tests: loopback port 56379, persistence off (a restart loses every key,
# which the restart tests rely on), pidfile/logfile/dir under $STATE/redis. Sourced by scripts/servers.

REDIS_PORT=56379

redis_dir() { echo "$STATE/redis"; }

# Installs Debian's redis-server (which brings redis-cli) if missing.
redis_install() {
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    return 0
  fi
  log "installing redis-server (apt-get)"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >&2
  # Debian starts its own service on 6379; ours is separate and that one is left alone.
}

redis_ping() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

redis_port_closed() { ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; }

is_up_redis() { command -v redis-cli >/dev/null && redis_ping; }

url_redis() { echo "redis://127.0.0.1:$REDIS_PORT"; }

up_redis() {
  redis_install || return 1
  local dir; dir="$(redis_dir)"
  mkdir -p "$dir"
  if redis_ping; then return 0; fi
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" || return 1
  if ! wait_until 10 redis_ping; then
    log "redis did not answer within 10 s; last lines of $dir/redis.log:"
    tail -n 20 "$dir/redis.log" >&2 || true
    return 1
  fi
}

down_redis() {
  if redis_ping; then
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  fi
  # The daemon may take a moment to close its port; wait for that rather than for the pid.
  wait_until 10 redis_port_closed || { log "redis still answers on $REDIS_PORT"; return 1; }
  rm -f "$(redis_dir)/redis.pid"
}

restart_redis() {
  down_redis && up_redis
}
