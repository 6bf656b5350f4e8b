#!/usr/bin/env bash
# Build Glia's four images from deploy/docker/Dockerfile (make images).
#
# Engine: Docker when `docker info` answers, otherwise podman (daemonless; install it with
# `make container-tools`). No engine: exit 1 with the reason; never a silent skip.
# Base: PYTHON_IMAGE when set. Otherwise Docker builds on the Dockerfile's default,
# python:3.11-slim, and podman on the local Debian base of base-image.sh (made once and
# cached), since a daemonless build is mostly what runs where no registry can be reached.
#
# Usage: deploy/docker/build.sh [IMAGE ...]       (default: all four)
#        deploy/docker/build.sh --check           (which engine would build; exit 1 and the
#                                                  reason when none works)
# Environment: IMAGE_PREFIX (glia/), IMAGE_TAG (dev), PYTHON_IMAGE, CONTAINER_ENGINE
#              (docker or podman: skip the detection), CONTAINERS_CONF.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PREFIX="${IMAGE_PREFIX-glia/}"
TAG="${IMAGE_TAG:-dev}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"

# image (= Dockerfile target) -> workspace package, port ("-": none)
declare -A PACKAGE=([chat-api]=glia-chat-api [extractor]=glia-extractor
                    [card-query]=glia-card-query [migrations]=glia-common)
declare -A PORT=([chat-api]=8000 [extractor]=8002 [card-query]=8001 [migrations]=-)
ALL=(chat-api extractor card-query migrations)

log() { echo "images: $*" >&2; }
die() { log "$*"; exit 1; }

detect_engine() {
  if [[ -n "${CONTAINER_ENGINE:-}" ]]; then echo "$CONTAINER_ENGINE"; return; fi
  local docker podman
  if ! command -v docker >/dev/null; then
    docker="docker is not installed"
  elif docker="$(docker info 2>&1 >/dev/null)"; then
    echo docker
    return
  else
    docker="docker info: $(printf '%s\n' "$docker" | grep -v '^$' | tail -n1)"
  fi
  if ! command -v podman >/dev/null; then
    die "no Docker engine answers ($docker) and podman is not installed: run 'make container-tools' (apt-get installs podman, runc, debootstrap)"
  fi
  if ! podman="$(podman info 2>&1 >/dev/null)"; then
    die "no Docker engine answers ($docker) and podman does not work here (podman info: $(printf '%s\n' "$podman" | tail -n1))"
  fi
  log "no Docker engine answers ($docker): building with podman"
  echo podman
}

if [[ "${1:-}" == --check ]]; then
  engine="$(detect_engine)"
  echo "images: $engine works here"
  exit 0
fi

images=("$@")
((${#images[@]})) || images=("${ALL[@]}")
for image in "${images[@]}"; do
  [[ -n "${PACKAGE[$image]:-}" ]] || die "unknown image '$image' (known: ${ALL[*]})"
done

engine="$(detect_engine)"
args=(-f "$HERE/Dockerfile")
case "$engine" in
  docker) export DOCKER_BUILDKIT=1 ;;
  # docker format keeps HEALTHCHECK (OCI image configs have no such field); the build's
  # RUN steps share the host's network, as a Docker build's default bridge would allow.
  podman) args+=(--format docker --network host) ;;
  *) die "CONTAINER_ENGINE must be docker or podman, not '$engine'" ;;
esac
base="${PYTHON_IMAGE:-}"
if [[ -z "$base" && "$engine" == podman ]]; then
  base="$("$HERE/base-image.sh")"
fi
[[ -n "$base" ]] && args+=(--build-arg "PYTHON_IMAGE=$base")
# Hosts whose egress re-signs TLS trust their own CA bundle: hand it to the downloading
# steps (a build secret: it is never stored in an image).
ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
[[ -r "$ca" ]] && args+=(--secret "id=ca-certificates,src=$ca")
revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"

for image in "${images[@]}"; do
  ref="$PREFIX$image:$TAG"
  log "building $ref with $engine (base ${base:-python:3.11-slim})"
  port_arg=()
  [[ "${PORT[$image]}" == - ]] || port_arg=(--build-arg "PORT=${PORT[$image]}")
  start=$SECONDS
  "$engine" build "${args[@]}" --target "$image" \
    --build-arg "PACKAGE=${PACKAGE[$image]}" "${port_arg[@]}" \
    --label "org.opencontainers.image.title=glia-$image" \
    --label "org.opencontainers.image.description=Glia $image (uv workspace package ${PACKAGE[$image]})" \
    --label "org.opencontainers.image.revision=$revision" \
    -t "$ref" "$ROOT" >&2
  log "built $ref in $((SECONDS - start)) s"
done

echo
printf '%-32s %10s\n' IMAGE SIZE
for image in "${images[@]}"; do
  ref="$PREFIX$image:$TAG"
  bytes="$("$engine" image inspect --format '{{.Size}}' "$ref")"
  awk -v ref="$ref" -v b="$bytes" 'BEGIN { printf "%-32s %7.0f MB\n", ref, b / 1e6 }'
done
