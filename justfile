# leader: distributed leader election. `just` lists the recipes; CI runs `scripts/test`.

[private]
default:
    @just --list --unsorted

# Everything CI runs: start servers, fmt, clippy, doc, all tests.
test:
    scripts/test

# One provider's server and suite, e.g. `just test-provider postgres`. sqlserver and consul start
# their servers with Docker (docker-compose.yml), which this machine does not have.
test-provider NAME:
    #!/usr/bin/env bash
    set -euo pipefail
    case "{{NAME}}" in
      sqlserver)
        docker compose up -d --wait sqlserver
        LEADER_TEST_SQLSERVER_URL='mssql://sa:LeaderTest_Passw0rd@127.0.0.1:1433/master?trust_server_certificate=true' \
          LEADER_TEST_REQUIRE=sqlserver cargo test -p leader-sqlserver ;;
      consul)
        docker compose up -d --wait consul
        LEADER_TEST_CONSUL_URL='consul://127.0.0.1:8500' LEADER_TEST_REQUIRE=consul cargo test -p leader-consul ;;
      memory|fs|core|testkit|bench|cli)
        cargo test -p leader-{{NAME}} ;;
      *)
        scripts/test {{NAME}} ;;
    esac

# Start the local test servers (all, or the ones named).
servers-up *NAMES:
    scripts/servers up {{NAMES}}

# Stop the local test servers.
servers-down *NAMES:
    scripts/servers down {{NAMES}}

# Print `export LEADER_TEST_*_URL=...` for the servers that are up: eval "$(just servers-env)".
servers-env:
    @scripts/servers env

# Latency, handoff and failover for a store URL (default memory://).
bench STORE="memory://" *ARGS:
    cargo run --release -p leader-bench --features all -- --store {{STORE}} {{ARGS}}

# fmt check, clippy with every feature, docs without warnings.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

# The quickstart: three participants, an election and a handoff.
quickstart:
    cargo run --example quickstart
