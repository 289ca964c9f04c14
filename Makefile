# Two commands on a fresh machine: `make demo` (install what the service needs + run the demo) and
# `make test` (install the test extras too + run every check and test). Both create ./.venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# what the service needs (the demo), and what the tests need on top (PySpark, Playwright, ...)
RUNTIME := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed-test
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test test-cluster lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

# the test extras include the runtime, so this stamps both
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(RUNTIME) $(STAMP)

install: $(STAMP)

demo: $(RUNTIME)
	$(BIN)/consentry demo --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy src

unit: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -p no:cacheprovider -m "not cluster"

# Tests that start clusters of their own (Spark standalone and Connect): one at a time, apart from the rest.
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m cluster

test: lint typecheck unit

clean:
	rm -rf $(VENV) consentry-data artifacts
