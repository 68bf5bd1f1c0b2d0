#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (two worker processes: one per core).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n "${DEEPCLUST_TEST_WORKERS:-2}" --dist loadgroup "$@"
