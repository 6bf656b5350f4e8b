# syntax=docker/dockerfile:1
# Glia migrations image: glia-migrate (from glia-common), run once per release by the
# migrations chart's pre-install/pre-upgrade hook Job. Build from the repository root:
#   docker build -f deploy/docker/migrations.Dockerfile -t glia/migrations:TAG .   (or: make images)
# Same layout as the service images (uv's Docker guide for workspaces).

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
# uv from PyPI, pinned (equivalently: COPY --from=ghcr.io/astral-sh/uv:${UV_VERSION} /uv /bin/uv).
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app

# 1. Third-party dependencies of glia-common only (cached until uv.lock or a pyproject changes).
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY services/chat-api/pyproject.toml services/chat-api/
COPY services/extractor/pyproject.toml services/extractor/
COPY services/card-query/pyproject.toml services/card-query/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package glia-common

# 2. glia-common itself (models, Alembic environment and versions), as a wheel.
COPY libs/common/ libs/common/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package glia-common

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 glia \
 && useradd --system --uid 10001 --gid glia --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin glia
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GLIA_LOG_FORMAT=json
WORKDIR /app
USER 10001:10001
# A one-shot job: no port, no health check.
HEALTHCHECK NONE
CMD ["glia-migrate"]
