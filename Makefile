# One command runs the system (`make up`), one runs the tests (`make test`).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Extra arguments for the suite's first pass, e.g. a selection: make test PYTEST_ARGS='tests/unit -x'
PYTEST_ARGS ?=

.PHONY: venv prereqs up down status test lint bench bench-record reliability-record clean

$(BIN)/tradingsystem: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/tradingsystem

venv: $(BIN)/tradingsystem

up: venv
	$(BIN)/tradingsystem up

down: venv
	$(BIN)/tradingsystem down

status: venv
	$(BIN)/tradingsystem status

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# What the tests need beyond Python (promtool, systemd-analyze): installed, or named with its install command.
prereqs:
	PYTHON=$(PYTHON) VENV=$(VENV) bash tools/ci/prereqs.sh

# The container suite (marker `container`) runs whenever a Docker engine answers; docker-engine.sh installs and
# starts one where it can (Debian, root). With TRADINGSYSTEM_REQUIRE_CONTAINERS=1 (CI) a missing engine fails.
# After the suite on the embedded PostgreSQL, the tests on the shared database fixture run again on TimescaleDB
# (the project's image in a container) whenever a Docker engine answers.
test: prereqs venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	@tools/ci/docker-engine.sh || [ "$${TRADINGSYSTEM_REQUIRE_CONTAINERS:-0}" != 1 ] || { echo "make test:" \
	  "TRADINGSYSTEM_REQUIRE_CONTAINERS=1 but no Docker engine could be started (see above)" >&2; exit 1; }
	$(BIN)/pytest $(PYTEST_ARGS)
ifeq ($(strip $(PYTEST_ARGS)),)
	$(BIN)/python -m tests.support.timescaledb $(BIN)/python -m pytest -p tests.support.external_pg tests/integration tests/e2e
else
	@echo "TimescaleDB pass not run: PYTEST_ARGS selects a part of the suite"
endif

# Every benchmark in a short mode, into var/bench/<date>/; only bench-record rewrites bench/results/.
bench: venv
	$(BIN)/python -m bench.run_all

bench-record: venv
	$(BIN)/python -m bench.run_all --record

# The fault suite alone (it also runs in `make test`), rewriting bench/results/reliability.md with its counts.
reliability-record: venv
	TRADINGSYSTEM_RECORD_RELIABILITY=1 $(BIN)/pytest -m fault -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
