# The two commands a user needs: `make run` (the whole lifecycle, locally) and `make test`.
SHELL := /bin/bash
VENV  := .venv/bin
export SPARK_VERSION := 3.5
export PYTHONUNBUFFERED := 1

.PHONY: setup run test unit notebooks check readme docs lab bench clean

setup:            ## venv, Java check, Maven jars, Jupyter kernel (idempotent)
	@bash scripts/setup.sh

run: setup        ## run notebooks 00 -> 08 into runs/<run-id>/ with a summary
	@$(VENV)/ml-lifecycle run

check: setup      ## notebooks clean and in sync with the library
	@bash scripts/check_nbdev.sh

unit: setup       ## fast unit tests of the library
	@$(VENV)/pytest -m "not notebooks and not scale" tests

notebooks: setup  ## every notebook through papermill
	@$(VENV)/pytest -m notebooks tests

test: setup check ## everything CI runs (two pytest processes side by side: scripts/test.sh)
	@bash scripts/test.sh

readme: setup     ## README.md from nbs/index.ipynb
	@bash scripts/readme.sh

docs: setup       ## the docs site in _site/ from the last green run (make run first)
	@$(VENV)/python docs/build.py

bench: setup      ## benchmarks (bench/README.md): prints a table, writes bench/results/; ARGS="--only train --quick"
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk) >/dev/null; } \
	  || echo "[bench] note: wrk not found (apt-get install wrk); the endpoint benchmark needs it"
	@$(VENV)/python bench/run.py $(ARGS)

lab: setup        ## open the notebooks in JupyterLab
	@$(VENV)/jupyter lab nbs $$([ "$$(id -u)" = 0 ] && echo --allow-root)  # root: a container, a CI image

clean:
	rm -rf runs lake .pytest_cache
