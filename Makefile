# Two commands do everything on a fresh machine (Python 3.11, Java 17):
#   make demo   install, generate sample shards, run the mini pipeline on local Ray
#   make test   install, run the test suite (what .ci/run calls)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lmr-installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned to the CPU build (an unpinned torch pulls a multi-GB CUDA build)
	$(BIN)/pip install -q 'torch==2.13.0'
	$(BIN)/pip install -q -e '.[spark,train,dev]'
	$(BIN)/lmrefinery models fetch
	touch $(STAMP)

demo: setup
	$(BIN)/lmrefinery demo

test: setup
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/run_all.py

clean:
	rm -rf runs samples .pytest_cache
