# Azurite (the Azure Storage emulator, blob service only) for leader-azblob's tests: loopback port
# 50000, installed from npm under $STATE/tools/azurite, data in a fresh folder per start under
# $STATE/azblob. Sourced by scripts/servers.

AZ_PORT=50000
# The development-storage account every Azurite accepts; its key is public (Microsoft documents it).
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

az_dir() { echo "$STATE/azblob"; }
az_tools() { echo "$STATE/tools/azurite"; }
az_bin() { echo "$(az_tools)/node_modules/.bin/azurite-blob"; }

# Installs Azurite 3 from npm (~25 s, ~190 MB) unless it is already there.
az_install() {
  # An interrupted install leaves a tree that npm reports as broken: start that one afresh.
  if [ -x "$(az_bin)" ] && npm ls --prefix "$(az_tools)" --all >/dev/null 2>&1; then return 0; fi
  command -v npm >/dev/null || die "npm is needed to install Azurite (apt-get install nodejs npm)"
  log "installing azurite@3 (npm) into $(az_tools)"
  rm -rf "$(az_tools)"
  mkdir -p "$(az_tools)"
  (cd "$(az_tools)" && npm install --no-audit --no-fund --loglevel=error azurite@3 >&2) || return 1
  [ -x "$(az_bin)" ] && npm ls --prefix "$(az_tools)" --all >/dev/null 2>&1
}

# An unsigned request is refused with 403 once the blob service serves.
az_serving() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT?comp=list")" = 403 ]
}

az_port_closed() { ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$AZ_PORT/" ; }

is_up_azblob() { az_serving; }

# A URL leader-azblob's connect() reads: the dev account on loopback (plain HTTP, path-style) with
# the well-known key, container leader-test.
url_azblob() { echo "azblob://$AZ_ACCOUNT@127.0.0.1:$AZ_PORT/leader-test"; }

up_azblob() {
  az_install || return 1
  if az_serving; then return 0; fi
  local dir data old; dir="$(az_dir)"
  # A fresh data folder per start; the previous one (kept by restart_azblob) goes.
  old="$(cat "$dir/data.path" 2>/dev/null || true)"
  case "$old" in "$dir"/data-*) rm -rf "$old" ;; esac
  data="$dir/data-$(date +%s)-$$"
  mkdir -p "$data"
  # --skipApiVersionCheck: clients may send API versions newer than this Azurite knows;
  # --disableTelemetry: telemetry fails here without network.
  nohup "$(az_bin)" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" --location "$data" \
    --skipApiVersionCheck --disableTelemetry --silent >"$dir/azurite.log" 2>&1 </dev/null &
  echo $! >"$dir/azurite.pid"
  echo "$data" >"$dir/data.path"
  if ! wait_until 30 az_serving; then
    log "azurite did not serve within 30 s; last lines of $dir/azurite.log:"
    tail -n 20 "$dir/azurite.log" >&2 || true
    return 1
  fi
}

down_azblob() {
  local dir; dir="$(az_dir)"
  if [ -f "$dir/azurite.pid" ]; then
    kill "$(cat "$dir/azurite.pid")" 2>/dev/null || true
    rm -f "$dir/azurite.pid"
  fi
  # The process lingers until reaped; the closed port is what says it is gone.
  wait_until 15 az_port_closed
}

# Keeps the data folder of the running server, so blobs (and their tokens) survive the restart.
restart_azblob() {
  local dir data; dir="$(az_dir)"
  data="$(cat "$dir/data.path" 2>/dev/null || true)"
  down_azblob
  if [ -z "$data" ]; then up_azblob; return; fi
  az_install || return 1
  nohup "$(az_bin)" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" --location "$data" \
    --skipApiVersionCheck --disableTelemetry --silent >>"$dir/azurite.log" 2>&1 </dev/null &
  echo $! >"$dir/azurite.pid"
  wait_until 30 az_serving
}
