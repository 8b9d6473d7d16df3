# `make demo` and `make test` set everything up on a fresh machine: a virtualenv in .venv with
# the project and its dev extras, re-made whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,probe]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/llmgw demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	command -v wrk >/dev/null || apt-get install -y -qq wrk
	PYTHONPATH=tests:tests/bench $(BIN)/python tests/bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench-report
