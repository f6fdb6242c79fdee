#!/usr/bin/env bash
# Runs every Herald test. The tests start their own redis-server processes on free ports,
# so the binary must be installed; this script installs Debian's package when it can.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis-server not found: installing Debian's redis-server package" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is required by the tests: install it (sudo apt-get install redis-server) and run again" >&2
    exit 1
  fi
fi

# What every commit promises (README, Development): formatted, and clippy-clean.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# Supply chain (deny.toml): licenses, banned and duplicate crates, allowed sources.
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "cargo-deny not found: installing it from crates.io" >&2
  cargo install --locked cargo-deny@0.20.2
fi
cargo deny --offline check licenses bans sources

cargo test --workspace --all-targets --locked "$@"

# What is shipped for deployment: linted and validated without a cluster (with the test
# build's binaries).
./scripts/check-deploy.sh

# The parser's fuzz target (gateway/fuzz) lives outside the workspace because running it
# needs nightly and cargo-fuzz; make sure it still builds.
cargo check --manifest-path gateway/fuzz/Cargo.toml --target-dir target --locked
