#!/usr/bin/env bash
# Fail when a notebook is not clean or the generated library is out of sync with nbs/.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(git status --porcelain -- nbs ml_lifecycle)
.venv/bin/nbdev_export
.venv/bin/nbdev_clean
after=$(git status --porcelain -- nbs ml_lifecycle)
if [ "$before" != "$after" ]; then
  echo "nbdev_export / nbdev_clean changed files: run them and commit the result." >&2
  git status --porcelain -- nbs ml_lifecycle >&2
  git --no-pager diff --stat -- nbs ml_lifecycle >&2
  exit 1
fi
echo "[check] notebooks are clean and the library is in sync"
