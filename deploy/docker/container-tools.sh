#!/usr/bin/env bash
# Install what `make images` and `make images-test` need on a host without a Docker engine
# (make container-tools): podman and runc (daemonless builds and containers) and
# debootstrap (the local base image). Debian's packages, as root; does nothing when all
# three are installed.
set -euo pipefail

PACKAGES=(podman runc debootstrap)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  echo "container-tools: ${PACKAGES[*]} are installed"
  exit 0
fi
command -v apt-get >/dev/null \
  || { echo "container-tools: no apt-get here: install ${missing[*]} with the system's package manager" >&2; exit 1; }
((EUID == 0)) \
  || { echo "container-tools: needs root: sudo apt-get install --no-install-recommends ${missing[*]}" >&2; exit 1; }
echo "container-tools: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -qy --no-install-recommends "${missing[@]}"
