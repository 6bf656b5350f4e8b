"""The results table, the targets (PASS/MISS) and the machine description."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.infra import REPO

# The figure sections, in the order they are printed; "memory": baseline = the bare
# process of the same part; "scale_out": value = 2 processes, baseline = 1.
SECTIONS = ("chat", "extraction", "cards", "decoupling", "memory", "scale_out")

# Which direction is good, per figure (ratio = value / baseline either way).
HIGHER_IS_BETTER = {
    "turns_per_s",
    "runs_per_s",
    "rps_200",
    "rps_304",
    "fastapi_floor_rps_200",
    "fastapi_floor_rps_304",
}


@dataclass(frozen=True)
class Target:
    name: str
    section: str
    figure: str
    field: str  # "value" or "ratio"
    check: Callable[[float], bool]
    text: str


TARGETS = [
    Target(
        "chat throughput",
        "chat",
        "turns_per_s",
        "ratio",
        lambda r: r >= 0.75,
        "turns/s >= 75% of the bare relay",
    ),
    Target(
        "chat start p50",
        "chat",
        "start_p50_ms",
        "value",
        lambda v: v < 15,
        "half load: start p50 < 15 ms",
    ),
    Target(
        "chat start p99",
        "chat",
        "start_p99_ms",
        "value",
        lambda v: v < 20,
        "half load: start p99 < 20 ms",
    ),
    Target(
        "chat first token",
        "chat",
        "first_token_added_p50_ms",
        "value",
        lambda v: v < 5,
        "half load: added first-token delay p50 < 5 ms",
    ),
    Target(
        "extraction vs loop",
        "extraction",
        "runs_per_s",
        "ratio",
        lambda r: r >= 0.8,
        ">= 80% of the asyncpg loop",
    ),
    Target(
        "extraction lag p50",
        "extraction",
        "steady_lag_p50_ms",
        "value",
        lambda v: v < 50,
        "half load: lag p50 < 50 ms",
    ),
    Target(
        "extraction lag p99",
        "extraction",
        "steady_lag_p99_ms",
        "value",
        lambda v: v < 20,
        "half load: lag p99 < 20 ms",
    ),
    Target(
        "cards throughput (200)",
        "cards",
        "rps_200",
        "ratio",
        lambda r: r >= 0.75,
        "req/s >= 75% of the bare route (full reads)",
    ),
    Target(
        "cards throughput (304)",
        "cards",
        "rps_304",
        "ratio",
        lambda r: r >= 0.75,
        "req/s >= 75% of the bare route (If-None-Match)",
    ),
    Target(
        "cards p99 (200)",
        "cards",
        "p99_200_ms",
        "value",
        lambda v: v < 20,
        "half load: p99 < 20 ms (full reads)",
    ),
    Target(
        "cards p99 (304)",
        "cards",
        "p99_304_ms",
        "value",
        lambda v: v < 20,
        "half load: p99 < 20 ms (If-None-Match)",
    ),
    Target(
        "decoupling",
        "decoupling",
        "turn_p50_ms",
        "ratio",
        lambda r: 0.9 <= r <= 1.1,
        "turn p50 slow/fast extraction within 0.9..1.1",
    ),
]


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for t in TARGETS:
        fig = results.get(t.section, {}).get(t.figure)
        value = None if fig is None else fig.get(t.field)
        status = "n/a" if value is None else ("PASS" if t.check(value) else "MISS")
        out.append(
            {
                "target": t.name,
                "rule": t.text,
                "measured": value,
                "field": t.field,
                "figure": f"{t.section}.{t.figure}",
                "status": status,
            }
        )
    return out


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:,.3g}" if abs(v) < 1 else f"{v:,.2f}"
    return str(v)


def _better(section: str, name: str, unit: str) -> str:
    if name in HIGHER_IS_BETTER:
        return "higher"
    if "rate" in name or unit == "cores":
        return "-"
    if section == "decoupling":
        return "~1"
    return "lower"


def grid(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """A Markdown table: the first row is the header, the first column left-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


def table(results: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    """The figures of every section run, then the targets (left out when none applies:
    the soak and scale-out modes print their own tables)."""
    rows = [("figure", "glia", "baseline", "ratio", "unit", "better")]
    for section in SECTIONS:
        for name, fig in results.get(section, {}).items():
            if not isinstance(fig, dict) or "value" not in fig:
                continue
            rows.append(
                (
                    f"{section}.{name}",
                    fmt(fig["value"]),
                    fmt(fig["baseline"]),
                    fmt(fig["ratio"]),
                    fig["unit"],
                    _better(section, name, fig["unit"]),
                )
            )
    lines = grid(rows) if len(rows) > 1 else []
    if all(t["status"] == "n/a" for t in targets):
        return "\n".join(lines)
    lines.append("")
    tw = max(len(t["target"]) for t in targets)
    rw = max(len(t["rule"]) for t in targets)
    lines.append(f"| {'target'.ljust(tw)} | {'rule'.ljust(rw)} | measured | result |")
    lines.append(f"|{'-' * (tw + 2)}|{'-' * (rw + 2)}|----------|--------|")
    for t in targets:
        lines.append(
            f"| {t['target'].ljust(tw)} | {t['rule'].ljust(rw)} | {fmt(t['measured']).rjust(8)} "
            f"| {t['status'].ljust(6)} |"
        )
    return "\n".join(lines)


def _run(*args: str) -> str:
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def code_fingerprint() -> str:
    """``<HEAD> tree:<digest>``: the digest covers the content of every tracked file outside
    bench/ as it is on disk (committed or not). Equal digests at the start and the end of a
    run = every process ran the same code."""
    head = _run("git", "-C", str(REPO), "rev-parse", "--short", "HEAD") or "unknown"
    files = _run("git", "-C", str(REPO), "ls-files", "--", ".", ":(exclude)bench")
    digest = hashlib.sha256()
    for name in sorted(files.splitlines()):
        digest.update(name.encode() + b"\0")
        try:
            digest.update((REPO / name).read_bytes())
        except OSError:
            digest.update(b"<missing>")
    return f"{head} tree:{digest.hexdigest()[:12]}"


def machine(pg_version: str) -> dict[str, Any]:
    versions: dict[str, str] = {}
    for dist in (
        "glia-common",
        "glia-chat-api",
        "glia-extractor",
        "glia-card-query",
        "fastapi",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "sqlalchemy",
        "asyncpg",
        "faststream",
        "aio-pika",
        "openai",
        "httpx",
        "aiohttp",
        "pydantic",
        "pyjwt",
        "opentelemetry-sdk",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    versions["postgresql"] = pg_version
    rabbit = _run("rabbitmqctl", "-q", "version")
    if rabbit:
        versions["rabbitmq"] = rabbit
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
    }
