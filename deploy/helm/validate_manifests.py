"""Validate rendered Kubernetes manifests strictly against the Kubernetes JSON schemas.

Runs with the tools virtualenv (deploy/helm/tools.sh --python), which has
kubernetes-validate. Every document of every file (or of stdin, "-") must be a known
Kubernetes kind that validates with --strict semantics (no unknown fields) against each
requested Kubernetes version. Unlike the kubernetes-validate CLI, an unknown kind is an
error, not a warning, so a misspelt kind cannot slip through; custom resources of the
API groups in CRD_GROUPS (KEDA, Prometheus Operator) have no bundled schema and are only
checked for their envelope (apiVersion, kind, metadata.name, spec).

Usage: python validate_manifests.py [-k 1.29] [-k 1.37] FILE|- ...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes_validate import utils as kv

CRD_GROUPS = ("keda.sh", "monitoring.coreos.com")
DEFAULT_VERSIONS = ("1.29", kv.latest_version())


def documents(source: str) -> Iterator[tuple[int, Any]]:
    text = sys.stdin.read() if source == "-" else Path(source).read_text()
    for index, doc in enumerate(yaml.safe_load_all(text)):
        if doc is not None:
            yield index, doc


def name_of(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


def check(doc: Any, versions: list[str]) -> list[str]:
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return ["not a Kubernetes object (apiVersion and kind are required)"]
    if not (doc.get("metadata") or {}).get("name"):
        return ["metadata.name is missing"]
    group = str(doc["apiVersion"]).rpartition("/")[0]
    if group in CRD_GROUPS:
        return [] if isinstance(doc.get("spec"), dict) else ["custom resource without a spec"]
    errors = []
    for version in versions:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(root)"
            errors.append(f"k8s {e.version}: {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            errors.append(f"k8s {version}: unknown kind: {e.message}")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--kubernetes-version", action="append", dest="versions")
    parser.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    versions = args.versions or list(DEFAULT_VERSIONS)

    failures = count = 0
    for source in args.files:
        for index, doc in documents(source):
            count += 1
            errors = check(doc, versions)
            label = f"{source}[{index}] {name_of(doc) if isinstance(doc, dict) else '?'}"
            for error in errors:
                print(f"INVALID {label}: {error}")
            failures += bool(errors)
            if not errors and not args.quiet:
                print(f"ok {label}")
    if count == 0:
        print("no manifests to validate", file=sys.stderr)
        return 1
    print(
        f"validated {count} manifests against Kubernetes {', '.join(versions)}: {failures} invalid"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
