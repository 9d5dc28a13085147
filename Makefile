# Two commands do everything on a fresh machine (Python 3.11, Java 17):
#   make demo   install, generate sample shards, run the mini pipeline on local Ray
#   make test   install, run the test suite (what .ci/run calls)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lmr-installed

.PHONY: setup demo test lint bench clean airflow-venv chromium

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build)
	$(BIN)/pip install -q 'torch==2.13.0'
	$(BIN)/pip install -q -e '.[spark,train,tracking,dev]'
	$(BIN)/lmrefinery models fetch
	$(MAKE) chromium
	touch $(STAMP)

# The report's browser test (tests/test_report_browser.py) drives Debian's chromium through
# Playwright; installed once, only when missing (CI runs as root; elsewhere sudo is used if present).
CHROMIUM ?= /usr/bin/chromium
chromium:
	@test -x $(CHROMIUM) || { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

demo: setup
	$(BIN)/lmrefinery demo

# Airflow for the DAG test (tests/test_deploy_ray.py) lives in its own virtualenv:
# its dependency pins clash with ours. The Ray client there submits jobs only.
AF_VENV ?= .venv-airflow
AIRFLOW_VERSION ?= 3.3.2
RAY_VERSION ?= 2.60.0
AF_STAMP := $(AF_VENV)/.lmr-airflow-installed

airflow-venv: $(AF_STAMP)

$(AF_STAMP): Makefile
	test -x $(AF_VENV)/bin/python || $(PY) -m venv $(AF_VENV)
	$(AF_VENV)/bin/pip install -q --upgrade pip
	$(AF_VENV)/bin/pip install -q 'apache-airflow==$(AIRFLOW_VERSION)' 'ray[default]==$(RAY_VERSION)'
	touch $(AF_STAMP)

test: setup airflow-venv
	$(BIN)/python -m pytest -q --durations=30 tests

# ruff + mypy (the same checks tests/test_habits.py makes in `make test`)
lint: setup
	$(BIN)/ruff check lib jobs tests bench deploy
	$(BIN)/mypy

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/run_all.py

clean:
	rm -rf runs samples .pytest_cache
