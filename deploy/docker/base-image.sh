#!/usr/bin/env bash
# Make a local Python base image from Debian's packages, for machines that cannot pull
# python:3.11-slim from a registry (make base-image; make images uses it with podman).
#
#   debootstrap --variant=minbase of Debian bookworm (its python3 is 3.11, the version the
#   images are built for) + python3, python3-venv (the build stage bootstraps uv with it),
#   ca-certificates and passwd (useradd); security updates applied; documentation, man
#   pages, locales and apt lists removed; imported into podman as one layer.
#
# The tag carries a hash of the recipe (the package list and the two functions below,
# without their comments), so a changed recipe makes a new image. The root filesystem
# tarball is kept in $GLIA_CACHE_DIR (default ~/.cache/glia): a machine whose image store
# was emptied re-imports it instead of bootstrapping again. Prints the tag on stdout;
# progress goes to stderr, and the tools' own output only when they fail.
#
# Usage: deploy/docker/base-image.sh [--tag]   (--tag: only print the tag, build nothing)
# Environment: DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR, GLIA_CACHE_DIR, CONTAINERS_CONF.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates,passwd
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
CACHE="${GLIA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/glia}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/containers.conf}"

log() { echo "base-image: $*" >&2; }
die() { log "$*"; exit 1; }

quietly() {  # run a step; show its output only when it fails
  local what="$1" out
  shift
  if ! out="$("$@" 2>&1)"; then
    printf '%s\n' "$out" | tail -n 40 >&2
    die "$what failed"
  fi
}

root=""
cleanup() {  # unmount and delete a half-made root filesystem
  [[ -n "$root" ]] || return 0
  umount -l "$root/proc" 2>/dev/null || true
  rm -rf "$root"
}
trap cleanup EXIT

# Writes the root filesystem of the base image to $1 as a tar archive.
bootstrap() {
  local tarball="$1"
  ((EUID == 0)) || die "debootstrap needs root (or copy $tarball from a machine that made it)"
  command -v debootstrap >/dev/null || die "debootstrap is missing: run 'make container-tools'"
  root="$(mktemp -d /var/tmp/glia-base.XXXXXX)"
  log "debootstrap $SUITE ($PACKAGES) from $MIRROR"
  # Like Debian's own slim images: never install documentation, man pages or locales.
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' \
    >"$root/etc/dpkg/dpkg.cfg.d/glia-slim"
  quietly debootstrap debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR"

  log "applying $SUITE-updates and $SUITE-security"
  printf '%s\n' "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY_MIRROR $SUITE-security main" >"$root/etc/apt/sources.list"
  mount -t proc proc "$root/proc"
  quietly "apt-get upgrade" chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive sh -ec 'apt-get -q update; apt-get -qy upgrade; apt-get clean'
  umount "$root/proc"

  # What an image does not need at run time: package lists, caches, logs, and the
  # build host's resolver and hostname (the container runtime provides its own).
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  : >"$root/etc/machine-id"

  mkdir -p "$(dirname "$tarball")"
  # Sorted names and numeric owners: the same packages give the same archive layout.
  tar --numeric-owner --xattrs --sort=name -C "$root" -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  log "wrote $tarball ($(du -h "$tarball" | cut -f1))"
}

# Imports the tarball $1 as the image $2 (a comment change keeps the tag).
import_base() {
  log "importing $1 as $2"
  quietly "podman import" podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.opencontainers.image.title=glia-base" \
    --change "LABEL org.opencontainers.image.description=\"Debian $SUITE with python3, for Glia's images\"" \
    "$1" "$2"
}

recipe="$(printf '%s\n' "$SUITE" "$PACKAGES" "$(declare -f bootstrap import_base)" \
  | sha256sum | cut -c1-12)"
TAG="localhost/glia-base:python3.11-$SUITE-$recipe"
TARBALL="$CACHE/glia-base-$SUITE-$recipe.tar"

if [[ "${1:-}" == --tag ]]; then echo "$TAG"; exit 0; fi

command -v podman >/dev/null || die "podman is missing: run 'make container-tools'"
if podman image exists "$TAG"; then
  log "$TAG is present"
else
  [[ -s "$TARBALL" ]] || bootstrap "$TARBALL"
  import_base "$TARBALL" "$TAG"
fi
echo "$TAG"
