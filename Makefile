# The two set-up commands of the README, and the rest of the developer loop.
# Everything installs into ./.venv so the machine's own Python stays untouched.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Run the main job on the embedded default: a local S3 emulator, a sample dataset,
# prefetched and read back, with a throughput comparison.
demo: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[s3,bench]'
	$(BIN)/shardcache demo

# Install everything the tests need (pip extras, Azurite from npm) and run them all.
test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	bash scripts/install-test-deps.sh
	$(BIN)/python -m pytest

# mypy with no argument checks the three packages named in pyproject ([tool.mypy] packages)
lint: $(BIN)/python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m benchmarks.run

bench-quick: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m benchmarks.run --quick

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
