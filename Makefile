# Thin targets over uv. `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup run test unit lint format e2e bench helm-lint browser images images-test base-image container-tools chaos chaos-regressions clean

# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set nothing is cached
# on import, and a module a process first imports while serving (anyio's backend, say)
# would be compiled from source inside a request, a 100-470 ms stall (bench/README.md).
setup: ## install uv if missing, then the whole workspace into .venv
	@command -v uv >/dev/null 2>&1 || test -x $(HOME)/.local/bin/uv || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@$(UV) --version >/dev/null 2>&1 || { echo "uv not found after install"; exit 1; }
	$(UV) sync --frozen --all-packages --compile-bytecode

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
	$(VENV)/mypy libs/common/src services/chat-api/src services/extractor/src services/card-query/src clients/cli/src chaos

bench: setup ## performance benchmark against bare baselines (QUICK=1: under two minutes; SOAK=S: a soak of S seconds; SCALE=1: 2 processes next to 1; TAILS=N: the card-read p99 at half and quarter load, N rounds); not part of `make test`
	$(VENV)/python -m bench.run $(if $(QUICK),--quick) $(if $(SOAK),--soak $(SOAK)) $(if $(SCALE),--scale-out) $(if $(TAILS),--tails $(TAILS)) $(BENCH_ARGS)

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

CHROMIUM ?= $(or $(GLIA_CHROMIUM),/usr/bin/chromium)

browser: ## the headless browser of the web client's tests: Debian's chromium package (apt-get, as root)
	@if [ -x "$(CHROMIUM)" ]; then echo "browser: $$($(CHROMIUM) --version 2>/dev/null || echo $(CHROMIUM))"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && \
	  echo "browser: installed $$($(CHROMIUM) --version)"; \
	else echo "browser: no $(CHROMIUM) and no apt-get: install Chromium and set GLIA_CHROMIUM"; exit 1; fi

IMAGE_PREFIX ?= glia/
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
IMAGE_ENV = IMAGE_PREFIX=$(IMAGE_PREFIX) IMAGE_TAG=$(IMAGE_TAG) $(if $(PYTHON_IMAGE),PYTHON_IMAGE=$(PYTHON_IMAGE))

images: ## build the four images (Docker when it answers, otherwise podman); fails with the reason when neither works
	@$(IMAGE_ENV) bash deploy/docker/build.sh

images-test: setup images ## run the images as the charts render them and drive one turn through them (not in `make test`)
	$(VENV)/python deploy/docker/smoke.py --prefix $(IMAGE_PREFIX) --tag $(IMAGE_TAG)

base-image: ## the local Debian base image for podman builds (debootstrap, cached; make images makes it when needed)
	@bash deploy/docker/base-image.sh

container-tools: ## apt-get install podman, runc and debootstrap when missing (hosts without a Docker engine)
	@bash deploy/docker/container-tools.sh

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
