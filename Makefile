# Thin targets over uv. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup run test unit lint format e2e bench helm-lint clean

setup: ## install uv if missing, then the whole workspace into .venv
	@command -v uv >/dev/null 2>&1 || test -x $(HOME)/.local/bin/uv || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@$(UV) --version >/dev/null 2>&1 || { echo "uv not found after install"; exit 1; }
	$(UV) sync --frozen --all-packages

.env:
	@echo "GLIA_JWT_SECRET=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')" > .env
	@echo "wrote .env with a fresh development GLIA_JWT_SECRET"

run: setup .env ## migrate, then run every service against the local PostgreSQL and RabbitMQ
	$(VENV)/glia-migrate
	@bash scripts/run-all.sh

test: setup ## every test: unit, integration (real PostgreSQL + RabbitMQ) and e2e
	$(VENV)/pytest $(PYTEST_ARGS)

unit: setup
	$(VENV)/pytest -m "not integration and not e2e" $(PYTEST_ARGS)

e2e: setup
	$(VENV)/pytest tests/e2e $(PYTEST_ARGS)

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy libs/common/src services/chat-api/src services/extractor/src services/card-query/src

format: setup
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
