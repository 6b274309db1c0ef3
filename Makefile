# One set of targets for people and CI. `make demo` and `make test` install what they need.
BIN := .venv/bin
PYTEST_ARGS ?=

.PHONY: all setup demo test check lint typecheck unit bench lab-check clean

all: test

setup:
	@scripts/bootstrap.sh all

# The simulated demo keeps its dashboard up until Enter; `make demo DEMO_ARGS=--no-wait` does not.
DEMO_ARGS ?=
demo: setup
	$(BIN)/lazarus demo $(DEMO_ARGS)

check: setup lint typecheck

lint:
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy

test: check
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

unit: setup
	$(BIN)/pytest -n 2 -m "not root and not lab" $(PYTEST_ARGS)

lab-check: setup
	$(BIN)/lazarus lab check

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
