# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test lint bench bench-quick chaos chaos-small clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/exportd serve

# Two test processes (pytest-xdist): most tests wait on servers, workers and databases,
# so the suite takes about 11 minutes on 2 cores instead of 18.
TEST_PROCESSES ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench.run --quick

# Fault injection against real processes (see chaos/README.md); needs the PostgreSQL
# binaries in /usr/lib/postgresql/*/bin, and root for the tmpfs of the full-disk fault.
chaos: $(STAMP)
	$(BIN)/python -m chaos.run --store all

chaos-small: $(STAMP)
	$(BIN)/python -m chaos.run --small --store all

lint: $(STAMP)
	$(BIN)/ruff check src tests bench chaos
	$(BIN)/ruff format --check src tests bench chaos
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .exportd .pytest_cache .mypy_cache .ruff_cache
