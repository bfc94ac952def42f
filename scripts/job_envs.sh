#!/usr/bin/env bash
# Build one small venv per SageMaker image in .cache/envs/<name>/ from envs/<name>.txt (the image's
# pinned libraries): xgboost-<tag> for the XGBoost images (training jobs run in them, tests load models
# the way the image does), spark-<version> for the Spark processing image (this project's PySpark is
# linked in), lambda-<runtime> for an AWS Lambda deployment package (the libraries only, installed with
# pip --target for Lambda's platform, no venv). Quick and silent the second time: a stamp holds the hash of the pins it was built from.
#   scripts/job_envs.sh                      every envs/*.txt
#   scripts/job_envs.sh 3.0-5 spark-3.5      only those (a bare tag means xgboost-<tag>)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=${ML_LIFECYCLE_ENVS:-.cache/envs}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] %s\033[0m\n' "$*" >&2; exit 1; }

if [ $# -gt 0 ]; then FILES=(); for t in "$@"; do
  case "$t" in spark-*|xgboost-*|lambda-*) FILES+=("envs/$t.txt");; *) FILES+=("envs/xgboost-$t.txt");; esac; done
else FILES=(envs/*.txt); fi
for req in "${FILES[@]}"; do
  [ -f "$req" ] || die "$req not found: the images with pinned libraries are $(ls envs/*.txt | tr '\n' ' ')"
  name=$(basename "$req" .txt)
  env=$DEST/$name
  want=$(sha256sum "$req" | cut -c1-16)
  if [ -f "$env/.installed" ] && [ "$(cat "$env/.installed")" = "$want" ] && { [ -x "$env/bin/python" ] || [ -d "$env/python" ]; }; then
    say "$env is up to date"; continue
  fi
  if [[ $name == lambda-* ]]; then  # a deployment package's libraries: Lambda's platform and Python, not this machine's venv
    say "building $env from $req (AWS Lambda ${name#lambda-}, manylinux2014 x86_64)"
    rm -rf "$env"; mkdir -p "$env"
    pyver=${name#lambda-python}
    .venv/bin/python -m pip install -q --disable-pip-version-check --only-binary=:all: --platform manylinux2014_x86_64 \
      --implementation cp --python-version "$pyver" --no-deps --target "$env/python" -r "$req" \
      || die "could not install $req for Lambda into $env (see the pip error above)"
    echo "$want" > "$env/.installed"; continue
  fi
  say "building $env from $req (image ${name#xgboost-})"
  rm -rf "$env"
  "$PY" -m venv "$env"
  "$env/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: -r "$req" \
    || die "could not install $req into $env (see the pip error above)"
  if [[ $name == spark-* ]]; then  # the image's own PySpark: link this project's (same Spark line) instead of a 300 MB copy
    site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    for pkg in pyspark py4j; do
      src=$(.venv/bin/python -c "import $pkg, os; print(os.path.dirname($pkg.__file__))") \
        || die "$pkg is not installed in .venv: run make setup first"
      ln -sfn "$src" "$site/$pkg"
    done
  fi
  echo "$want" > "$env/.installed"
done
