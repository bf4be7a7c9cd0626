# `make run` and `make test` each set up .venv from the lock file first; nothing else is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
UI_PORT ?= 5000
# Stages run `python -m imgclf.stages.*`: the venv's python must come first on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: install run test lint format ui clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

run: install
	$(BIN)/dvc repro

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/actionlint

format: install
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

# The MLflow UI over the project's own store, on loopback only.
ui: install
	mkdir -p mlruns
	$(BIN)/mlflow ui --host 127.0.0.1 --port $(UI_PORT) \
		--backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
		--default-artifact-root $(CURDIR)/mlruns/artifacts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
