#!/usr/bin/env bash
# README.md is generated from nbs/index.ipynb (nbdev_readme needs Quarto, which is not installable here).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/jupyter nbconvert --log-level=ERROR --to markdown nbs/index.ipynb --output-dir . --output README >/dev/null
sed -i '1s/^/<!-- generated from nbs\/index.ipynb by `make readme`: edit the notebook, not this file -->\n\n/' README.md
