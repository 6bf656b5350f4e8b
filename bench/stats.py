"""Percentiles and figures.

Percentiles are nearest-rank over the sorted samples (what an HDR histogram reports,
without its bucketing error): p-th percentile = the smallest sample such that at least
p% of the samples are <= it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(samples: Sequence[float], p: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(samples_s: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p90/p99/max in milliseconds of samples given in seconds."""
    ms = sorted(s * 1000.0 for s in samples_s)

    def q(p: float) -> float | None:
        v = percentile(ms, p)
        return None if v is None else round(v, 3)

    return {
        "n": len(ms),
        "p50": q(50),
        "p90": q(90),
        "p99": q(99),
        "max": round(ms[-1], 3) if ms else None,
    }


def slowest(pairs: Sequence[tuple[float, float]], n: int = 10) -> list[list[float]]:
    """The ``n`` slowest of ``(offset_s, latency_s)`` pairs, as ``[offset_s, latency_ms]``:
    when in the window the outliers happened (one stall, or spread out?)."""
    worst = sorted(pairs, key=lambda p: p[1], reverse=True)[:n]
    return [[round(o, 3), round(lat * 1000, 1)] for o, lat in sorted(worst)]


def figure(value: float | None, baseline: float | None, unit: str) -> dict[str, Any]:
    """``{"value", "baseline", "ratio", "unit"}``; ratio = value / baseline."""
    ratio = None
    if value is not None and baseline not in (None, 0):
        ratio = round(value / baseline, 3)
    return {
        "value": None if value is None else round(value, 3),
        "baseline": None if baseline is None else round(baseline, 3),
        "ratio": ratio,
        "unit": unit,
    }
