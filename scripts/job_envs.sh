#!/usr/bin/env bash
# Build one small venv per SageMaker XGBoost image in .cache/envs/xgboost-<image>/ from
# envs/xgboost-<image>.txt (the image's pinned libraries), so tests can load a model the way the
# image does. Quick and silent the second time: a stamp holds the hash of the pins it was built from.
#   scripts/job_envs.sh            every envs/xgboost-*.txt
#   scripts/job_envs.sh 3.0-5      only that image
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=${ML_LIFECYCLE_ENVS:-.cache/envs}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] %s\033[0m\n' "$*" >&2; exit 1; }

if [ $# -gt 0 ]; then FILES=(); for t in "$@"; do FILES+=("envs/xgboost-$t.txt"); done
else FILES=(envs/xgboost-*.txt); fi
for req in "${FILES[@]}"; do
  [ -f "$req" ] || die "$req not found: the images with pinned libraries are $(ls envs/xgboost-*.txt | tr '\n' ' ')"
  name=$(basename "$req" .txt)
  env=$DEST/$name
  want=$(sha256sum "$req" | cut -c1-16)
  if [ -f "$env/.installed" ] && [ "$(cat "$env/.installed")" = "$want" ] && [ -x "$env/bin/python" ]; then
    say "$env is up to date"; continue
  fi
  say "building $env from $req (image ${name#xgboost-})"
  rm -rf "$env"
  "$PY" -m venv "$env"
  "$env/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: -r "$req" \
    || die "could not install $req into $env (see the pip error above)"
  echo "$want" > "$env/.installed"
done
