# Two commands on a fresh machine: `make demo` (install + run the demo service) and `make test`
# (install + run every check and test). Both create ./.venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-cluster lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/consentry demo

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
