# `make run` and `make test` each set up .venv from the lock file first; nothing else is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
UI_PORT ?= 5000
BENCH_DATA ?= ../shared/datasets/cifar10-train-jpg.tar.gz
BENCH_SEEDS ?= 0 1 2
# make test runs this many pytest workers (pytest-xdist), each taking whole test files, so a
# module's shared fixtures and its file order hold; 0 runs the suite in one process.
TEST_WORKERS ?= 2
# Stages run `python -m imgclf.stages.*`: the venv's python must come first on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: install run test lint audit format ui bench clean server postgres

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

run: install
	$(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: install audit
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/actionlint
	$(BIN)/hadolint Dockerfile

# pip-audit checks the locked packages against PyPI's advisory data. Without that service it
# checks nothing (offline it even calls every package "not found" and exits 0): a notice, never a
# pass. Findings always fail; AUDIT_STRICT=1 (CI, online) fails the notice too.
PIP_AUDIT ?= $(BIN)/pip-audit
AUDIT_REQUIREMENTS ?= requirements.lock
AUDIT_STRICT ?= 0
AUDIT_NETWORK_ERRORS := Max retries exceeded|ConnectionError|ProxyError|NameResolutionError|Temporary failure in name resolution|Network is unreachable|timed out

audit: install
	@out=$$($(PIP_AUDIT) -r $(AUDIT_REQUIREMENTS) --no-deps --disable-pip --progress-spinner off 2>&1); \
	status=$$?; \
	pinned=$$(grep -c '^[A-Za-z0-9].*==' $(AUDIT_REQUIREMENTS)); \
	unchecked=$$(printf '%s\n' "$$out" | grep -c 'could not be audited'); \
	if [ $$status -ne 0 ] && printf '%s\n' "$$out" | grep -q 'known vulnerabilit'; then \
		printf '%s\n' "$$out"; \
		echo "audit: FAILED: known vulnerabilities in $(AUDIT_REQUIREMENTS) (above)"; exit 1; \
	elif [ $$unchecked -ge $$pinned ] || printf '%s\n' "$$out" | grep -Eq '$(AUDIT_NETWORK_ERRORS)'; then \
		printf '%s\n' "$$out" | grep -E '$(AUDIT_NETWORK_ERRORS)' | tail -n 1; \
		echo "audit: NOTICE: could not audit offline: the vulnerability service was unreachable," \
			"so none of the $$pinned packages was checked. Run 'make audit' with network access."; \
		[ "$(AUDIT_STRICT)" != 1 ] || { echo "audit: AUDIT_STRICT=1: failing"; exit 1; }; \
	elif [ $$status -ne 0 ]; then \
		printf '%s\n' "$$out"; echo "audit: FAILED: pip-audit exited $$status"; exit $$status; \
	else \
		printf '%s\n' "$$out"; \
		echo "audit: no known vulnerabilities in $(AUDIT_REQUIREMENTS)" \
			"($$((pinned - unchecked)) of $$pinned packages checked)"; \
	fi

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# The MLflow UI over the project's own store (what plain `mlflow ui` opens here), on loopback
# only. A store at imgclf's old place, mlruns/mlflow.db, moves first: mlflow would otherwise
# create an empty mlflow.db beside it.
ui: install
	$(BIN)/python -c "import pathlib, sys, imgclf.tracking.store as s; \
		sys.excepthook = lambda kind, error, trace: print(error, file=sys.stderr); \
		s.resolve_tracking_uri({}, pathlib.Path.cwd())"
	$(BIN)/mlflow ui --host 127.0.0.1 --port $(UI_PORT) \
		--backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns

# The team tracking server (docs/guide/scaling.md): mlflow server on the PostgreSQL database in
# MLFLOW_BACKEND_STORE_URI, artifacts in SERVER_ARTIFACTS (a folder, s3://..., gs://...).
# Loopback unless SERVER_HOST says otherwise, which needs SERVER_AUTH=1 (MLflow's basic-auth).
SERVER_HOST ?= 127.0.0.1
SERVER_PORT ?= 5000
SERVER_ARTIFACTS ?= $(CURDIR)/mlartifacts
SERVER_AUTH ?= 0
server: install
	$(BIN)/imgclf server --host $(SERVER_HOST) --port $(SERVER_PORT) \
		--artifacts $(SERVER_ARTIFACTS) $(if $(filter 1,$(SERVER_AUTH)),--auth)

# A throw-away PostgreSQL in .postgres/ on PG_PORT, to try `make server` on one machine
# (stop it with `scripts/postgres-dev.sh stop .postgres`).
PG_PORT ?= 5432
postgres:
	scripts/postgres-dev.sh start $(CURDIR)/.postgres $(PG_PORT) mlflow mlflow_auth

# imgclf against a hand-written Keras script on one machine: bench/run_benchmarks.py measures
# into docs/results/performance.json, then bench/render writes docs/results/performance.md
# (`python bench/render` alone rebuilds every page under docs/results/ from its JSON).
bench: install
	$(BIN)/python bench/run_benchmarks.py $(BENCH_DATA) --seeds $(BENCH_SEEDS)
	$(BIN)/python bench/render performance

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
