# upkeep: `make run` for users, `make test` for developers and CI.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= upkeep.yaml

.PHONY: run test coverage lint typecheck unit services install dev-install bench bench-tools bench-logs bench-backup bench-sql bench-redis bench-pg-reindex docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs upkeep into .venv; re-runs when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
dev-install: $(VENV)/.dev-installed

# The main job: a starter config for this machine if there is none, then every check.
# upkeep's exit code is the worst status (0 ok, 1 warning, 2 critical, 3 unknown);
# `make run` reports it rather than failing on a warning.
run: install
	@test -f $(CONFIG) || $(BIN)/upkeep init -c $(CONFIG)
	@$(BIN)/upkeep check -c $(CONFIG); status=$$?; \
	  echo "upkeep check exit status $$status (0 ok, 1 warning, 2 critical, 3 unknown)"; \
	  test $$status -le 3

services:
	@bash scripts/ensure-services.sh

lint: dev-install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: dev-install
	$(BIN)/mypy --strict src tests

unit: dev-install
	$(BIN)/pytest tests/unit -q

# Bytecode is compiled once up front: where PYTHONDONTWRITEBYTECODE is set (this machine's
# default), each CLI process a test spawns would otherwise compile every module again.
# Four workers on two cores: many tests wait on subprocesses, services and sockets.
# The end-to-end tests fork each CLI call from a server that has imported the CLI once
# (tests/support/cli_zygote.py); UPKEEP_TEST_EXEC=1 starts a fresh interpreter per call.
# --durations=25 lists the slowest tests, so a slow new one shows in CI's output.
test: dev-install services lint typecheck
	$(BIN)/python -m compileall -q src tests > /dev/null
	$(BIN)/pytest -q -n 4 --dist worksteal --durations=25

# Coverage of upkeep, the CLI and daemons the tests start included (pyproject.toml's
# [tool.coverage.*]); one total line here, `$(BIN)/coverage report` for each file's figure.
# The floor sits a little below the measured figure: a change that drops tested code fails.
# Not part of `make test`: measuring the spawned processes costs ~65 % more CPU (13 min
# instead of 8 on this machine), past the ten minutes `make test` is held to.
coverage: dev-install services
	$(BIN)/python -m compileall -q src tests > /dev/null
	$(BIN)/pytest -q -n 4 --dist worksteal --cov=upkeep --cov-report= --cov-fail-under=89

# The peers the benchmarks compare against (logrotate, GoAccess) come from Debian's packages.
bench-tools:
	@UPKEEP_BENCH_TOOLS=1 bash scripts/ensure-services.sh

bench: dev-install bench-tools
	$(BIN)/python benchmarks/checks.py

bench-backup: dev-install services
	$(BIN)/python benchmarks/backup.py

bench-sql: dev-install services
	$(BIN)/python benchmarks/sql_retention.py --mariadb

bench-redis: dev-install services
	$(BIN)/python benchmarks/redis_bigkeys.py

bench-pg-reindex: dev-install services
	$(BIN)/python benchmarks/pg_reindex.py

bench-logs: dev-install bench-tools
	$(BIN)/python benchmarks/logs.py
	$(BIN)/python benchmarks/logs_analyze.py --lines 1000000
	$(BIN)/python benchmarks/logs_probe.py

docs: dev-install
	$(BIN)/python -m upkeep.docs probes > docs/probes.md
	$(BIN)/python -m upkeep.docs config > docs/config.md
	$(BIN)/python -m upkeep.docs api > docs/api.md

clean:
	rm -rf $(VENV) .upkeep .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.*
