# Two commands on a fresh machine: `make run` (set up + start the portal) and `make test` (set up + whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: setup run test lint migrate seed bench check-deploy clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

migrate: setup
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

## Start web + Celery worker + beat on the embedded default (SQLite, filesystem broker); Ctrl-C stops all three.
run: seed
	@bin/run-portal

## ruff, the architecture contracts (import-linter), then the whole pytest suite (PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set, as in CI).
test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## Measure hot paths (JSON lines); set DATABASE_URL to report PostgreSQL figures.
bench: seed
	$(BIN)/python manage.py collectstatic --noinput -v0
	$(BIN)/python manage.py bench

check-deploy: setup
	DEBUG=0 SECRET_KEY=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(64))') \
	  $(BIN)/python manage.py check --deploy --fail-level WARNING

clean:
	rm -rf $(VENV) var *.egg-info test-artifacts
