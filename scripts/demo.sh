#!/usr/bin/env bash
# Sets everything up, then runs the main job on the embedded demo corpus (writes runs/demo by default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# No telemetry: this machine (and CI) has no network beyond the package registries.
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
exec .venv/bin/deepclust demo "$@"
