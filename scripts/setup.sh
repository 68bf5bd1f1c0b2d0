#!/usr/bin/env bash
# Creates .venv (or reuses it) and installs deepclust with the pinned dependency set.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${DEEPCLUST_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.deepclust-installed"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # torch is pinned in constraints.txt to the release whose CPU build this machine keeps on disk;
  # on other machines pip takes the same release from PyPI.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[pipeline,test]"
  echo "$want" > "$stamp"
fi
