#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (two worker processes: one per core).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The Prefect UI test drives Debian's Chromium; install it where we can (root with apt, as on CI).
# Without it that one test skips and says why.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "note: chromium/chromedriver not installed and no root apt: the browser test will be skipped" >&2
  fi
fi
# No telemetry: this machine (and CI) has no network beyond the package registries.
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
# Lint and format first (pyproject.toml [tool.ruff]): seconds, and a style slip fails before the long suite.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest -n "${DEEPCLUST_TEST_WORKERS:-2}" --dist loadgroup "$@"
