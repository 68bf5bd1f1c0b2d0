#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (two worker processes: one per core).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# No telemetry: this machine (and CI) has no network beyond the package registries.
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
exec .venv/bin/python -m pytest -n "${DEEPCLUST_TEST_WORKERS:-2}" --dist loadgroup "$@"
