# Thin targets over uv. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup run test unit lint format e2e bench chaos chaos-regressions helm-lint images clean

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

test: setup helm-lint ## every test: unit, integration (real PostgreSQL + RabbitMQ) and e2e; the charts too
	$(VENV)/pytest $(PYTEST_ARGS)

unit: setup
	$(VENV)/pytest -m "not integration and not e2e" $(PYTEST_ARGS)

e2e: setup
	$(VENV)/pytest tests/e2e $(PYTEST_ARGS)

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy libs/common/src services/chat-api/src services/extractor/src services/card-query/src chaos

bench: setup ## performance benchmark against bare baselines (QUICK=1: under two minutes); not part of `make test`
	$(VENV)/python -m bench.run $(if $(QUICK),--quick) $(BENCH_ARGS)

chaos: setup ## faults on a random schedule under load, then a checker (QUICK=1: CI, < 3 min; SEED=n replays); not part of `make test`
	$(VENV)/python -m chaos.run $(if $(QUICK),--quick) $(if $(SEED),--seed $(SEED)) $(CHAOS_ARGS)

chaos-regressions: setup ## replay every seed that found a product bug (chaos/regressions.txt); full ones restart PostgreSQL
	@failed=0; while read -r seed mode _; do \
	  case "$$seed" in ''|\#*) continue;; esac; \
	  $(VENV)/python -m chaos.run --seed $$seed $$([ "$$mode" = quick ] && echo --quick) $(CHAOS_ARGS) </dev/null || failed=1; \
	done < chaos/regressions.txt; exit $$failed

format: setup
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

helm-lint: ## lint, render and validate every Helm chart (installs helm + kubernetes-validate into .tools/)
	@bash deploy/helm/lint.sh

IMAGE_PREFIX ?= glia/
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)

images: ## build the service and migrations images (skipped when no Docker engine answers)
	@if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then \
	  echo "images: no Docker engine answers ('docker info' failed): skipping the image builds"; \
	  exit 0; \
	fi; \
	set -e; \
	for svc in chat-api extractor card-query; do \
	  docker build -f services/$$svc/Dockerfile -t $(IMAGE_PREFIX)$$svc:$(IMAGE_TAG) .; \
	done; \
	docker build -f deploy/docker/migrations.Dockerfile -t $(IMAGE_PREFIX)migrations:$(IMAGE_TAG) .; \
	echo "built $(IMAGE_PREFIX){chat-api,extractor,card-query,migrations}:$(IMAGE_TAG)"

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
