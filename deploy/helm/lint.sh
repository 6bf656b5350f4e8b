#!/usr/bin/env bash
# Lint, render and validate Glia's Helm charts (make helm-lint).
#
# For every chart (all by default, or the names/paths given):
#   1. helm dependency update --skip-refresh   (file://../lib only: offline)
#   2. helm lint --strict                      with the default values and with each ci/*.yaml
#                                              (values.schema.json is enforced here)
#   3. helm template                           with the same value sets, into a temp dir
# then validate_manifests.py checks every rendered manifest strictly against the Kubernetes
# schemas of kubernetes-validate (unknown fields and unknown kinds fail; KEDA/Prometheus
# Operator custom resources are only envelope-checked). Tools come from tools.sh.
#
# Usage: deploy/helm/lint.sh [CHART|PATH ...] [-- EXTRA HELM ARGS]
#   e.g. deploy/helm/lint.sh chat-api -- --set replicaCount=abc     (must fail)
# Exit status: 0 when everything passed, 1 otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELM="$("$HERE/tools.sh")"
PY="$("$HERE/tools.sh" --python)"
TOOLS="$(dirname "$(dirname "$HELM")")"
# Helm's own config and cache live with the tools: no user repositories or plugins involved.
export HELM_CONFIG_HOME="$TOOLS/helm/config" HELM_CACHE_HOME="$TOOLS/helm/cache" \
       HELM_DATA_HOME="$TOOLS/helm/data"
NAMESPACE=glia
KUBE_VERSIONS=(-k 1.29 -k 1.37)

charts=()
extra=()
while (($#)); do
  case "$1" in
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,16p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) charts+=("$1"); shift ;;
  esac
done
((${#charts[@]})) || charts=(lib chat-api extractor card-query migrations)

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
failed=0
fail() { echo "FAIL $*"; failed=1; }

run() {  # run a command quietly; show its output only when it fails
  local what="$1"; shift
  local log
  if log="$("$@" 2>&1)"; then
    echo "ok   $what"
  else
    fail "$what"
    printf '%s\n' "$log" | sed 's/^/     | /'
    return 1
  fi
}

for chart in "${charts[@]}"; do
  dir="$chart"
  [[ -f "$dir/Chart.yaml" ]] || dir="$HERE/$chart"
  [[ -f "$dir/Chart.yaml" ]] || { fail "$chart: no Chart.yaml"; continue; }
  name="$(basename "$dir")"

  if grep -qE '^type:[[:space:]]*library' "$dir/Chart.yaml"; then
    run "$name: lint (library)" "$HELM" lint --strict "$dir" || true
    continue
  fi
  if grep -q '^dependencies:' "$dir/Chart.yaml"; then
    run "$name: dependency update" "$HELM" dependency update --skip-refresh "$dir" || continue
  fi

  sets=(default)
  for f in "$dir"/ci/*.yaml; do [[ -e "$f" ]] && sets+=("$f"); done
  for set in "${sets[@]}"; do
    label="default values"
    values=()
    if [[ "$set" != default ]]; then label="ci/$(basename "$set")"; values=(-f "$set"); fi
    run "$name: lint --strict ($label)" \
      "$HELM" lint --strict "$dir" "${values[@]}" "${extra[@]}" || continue
    rendered="$out/$name--$(basename "${set%.yaml}").yaml"
    if "$HELM" template "glia-$name" "$dir" --namespace "$NAMESPACE" \
         "${values[@]}" "${extra[@]}" >"$rendered" 2>"$rendered.err"; then
      echo "ok   $name: template ($label)"
    else
      fail "$name: template ($label)"
      sed 's/^/     | /' "$rendered.err"
      rm -f "$rendered"
    fi
  done
done

shopt -s nullglob
manifests=("$out"/*.yaml)
if ((${#manifests[@]})); then
  if "$PY" "$HERE/validate_manifests.py" --quiet "${KUBE_VERSIONS[@]}" "${manifests[@]}" \
       >"$out/validate.log" 2>&1; then
    echo "ok   kubernetes-validate --strict: $(tail -n1 "$out/validate.log")"
  else
    fail "kubernetes-validate --strict"
    sed "s|$out/||; s/^/     | /" "$out/validate.log"
  fi
fi

if ((failed)); then
  echo "helm-lint: FAILED"
  exit 1
fi
echo "helm-lint: all charts passed"
