# Thruway: `make run` starts the gateway, `make test` runs lint and the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= config.example.yaml
SOURCES := proxy middlewares providers tests bench

.PHONY: install run test lint fmt bench bench-quick clean

install: $(STAMP)

# Re-installs when the project's dependencies change; idempotent otherwise.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/thruway --config $(CONFIG)

lint: install
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

# The benchmark (bench/README.md): wrk from Debian when it can be installed, else an asyncio client.
bench: install
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && apt-get install -y -qq wrk) \
		|| echo "wrk unavailable: using the asyncio client"
	$(BIN)/python -m bench.run

bench-quick: install
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && apt-get install -y -qq wrk) \
		|| echo "wrk unavailable: using the asyncio client"
	$(BIN)/python -m bench.run --quick

fmt: install
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
