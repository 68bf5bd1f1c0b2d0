#!/usr/bin/env bash
# Sets everything up, then runs the main job on the embedded demo corpus (writes runs/demo by default).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/deepclust demo "$@"
