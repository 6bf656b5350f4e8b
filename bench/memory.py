"""Resident memory of the processes the bench started, from ``/proc/<pid>/status``.

``VmRSS`` is what a process holds in RAM now; ``VmHWM`` is the kernel's high-water mark
of it since the process started, so a spike between two samples is not missed. Both are
read, never computed: no allocator introspection, nothing injected into the services.
MB here are MiB (the kernel's kB / 1024).

A service's memory is read idle (after start-up, before any load), during every
measured window (a sample every half second and one right after the window; the
window's maximum is kept) and, in the soak, every 10 s for the whole soak, where
:func:`growth` says whether it kept growing after the warm-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

from bench.sampling import PeriodicSampler
from bench.stats import figure

GROWTH_PCT = 10.0  # growth after warm-up above which (with a positive slope) memory "grew"


def read(pid: int) -> dict[str, float] | None:
    """``{"rss_mb", "hwm_mb"}`` of a running process; None once it has gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return parse_status(text)


def parse_status(text: str) -> dict[str, float] | None:
    fields: dict[str, float] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0]) / 1024  # "  123456 kB"
    if "VmRSS" not in fields:
        return None  # a zombie, or a kernel thread
    return {
        "rss_mb": round(fields["VmRSS"], 1),
        "hwm_mb": round(fields.get("VmHWM", fields["VmRSS"]), 1),
    }


def snapshot(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    out = {}
    for name, pid in pids.items():
        mem = read(pid)
        if mem is not None:
            out[name] = mem
    return out


class Sampler(PeriodicSampler):
    """Samples the memory of ``pids()`` every ``interval_s`` while the block runs, and
    once more on leaving it. Keeps, per process, the maximum and last RSS, the last
    high-water mark and (``keep_series``) every ``(seconds since start, RSS)``."""

    def __init__(
        self, pids: Callable[[], dict[str, int]], interval_s: float, keep_series: bool = False
    ) -> None:
        super().__init__(interval_s)
        self._pids = pids
        self.keep_series = keep_series
        self.started = 0.0
        self.stats: dict[str, dict[str, float]] = {}
        self.series: dict[str, list[tuple[float, float]]] = {}

    def sample(self) -> None:
        t = round(time.perf_counter() - self.started, 1)
        for name, mem in snapshot(self._pids()).items():
            s = self.stats.setdefault(name, {"rss_max_mb": 0.0, "samples": 0})
            s["rss_max_mb"] = max(s["rss_max_mb"], mem["rss_mb"])
            s["rss_last_mb"] = mem["rss_mb"]
            s["hwm_mb"] = mem["hwm_mb"]
            s["samples"] += 1
            if self.keep_series:
                self.series.setdefault(name, []).append((t, mem["rss_mb"]))

    async def __aenter__(self) -> Self:
        self.started = time.perf_counter()
        return await super().__aenter__()


# --------------------------------------------------------------------------- default run

# Per service: its Glia process and full-load windows, then its baseline's (the figure's
# "baseline" is the bare process doing the same job, read the same way).
SERVICES: dict[str, tuple[str, tuple[str, ...], str, tuple[str, ...]]] = {
    "chat_api": ("glia-chat-api", ("chat closed glia",), "relay", ("chat closed relay",)),
    "extractor": (
        "glia-extractor-rules",
        ("extraction burst glia",),
        "extract-loop-burst",
        ("extraction burst loop",),
    ),
    "card_query": (
        "glia-card-query",
        ("cards closed glia 200", "cards closed glia 304"),
        "cards-route",
        ("cards closed route 200", "cards closed route 304"),
    ),
}


def _at_load(
    windows: dict[str, dict[str, dict[str, float]]], process: str, labels: Sequence[str]
) -> tuple[float | None, float | None]:
    """(max RSS, high-water mark) of ``process`` over the windows ``labels``."""
    seen = [windows[lbl][process] for lbl in labels if process in windows.get(lbl, {})]
    if not seen:
        return None, None
    return max(s["rss_max_mb"] for s in seen), max(s["hwm_mb"] for s in seen)


def figures(details: dict[str, Any]) -> dict[str, Any]:
    """The ``memory`` section of a default run from ``details["memory"]``: per service,
    RSS idle, RSS at full load (the maximum sampled in its closed-loop / burst windows)
    and the peak (VmHWM) by then; the baseline process's next to each. Services whose
    part did not run are left out."""
    idle = details.get("idle", {})
    windows = details.get("windows", {})
    out: dict[str, Any] = {}
    for key, (glia, glia_windows, base, base_windows) in SERVICES.items():
        load, peak = _at_load(windows, glia, glia_windows)
        base_load, base_peak = _at_load(windows, base, base_windows)
        idle_rss = idle.get(glia, {}).get("rss_mb")
        if idle_rss is not None:
            out[f"{key}_idle_mb"] = figure(idle_rss, idle.get(base, {}).get("rss_mb"), "MB")
        if load is not None:
            out[f"{key}_load_mb"] = figure(load, base_load, "MB")
            out[f"{key}_peak_mb"] = figure(peak, base_peak, "MB")
    return out


# --------------------------------------------------------------------------- soak


def slope_per_min(samples: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, MB)`` samples, in MB per minute."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return None
    cov = sum((t - mt) * (v - mv) for t, v in samples)
    return cov / var * 60.0


def growth(samples: Sequence[tuple[float, float]], warmup_s: float) -> dict[str, Any]:
    """RSS over a soak, from the first sample at or after ``warmup_s``: first, last, max,
    growth (last - first, MB and % of first), the least-squares slope (MB/min), and
    ``grew``: growth above GROWTH_PCT % *and* a positive slope (a single late spike that
    returns, or a high start that falls, is not growth)."""
    kept = [(t, v) for t, v in samples if t >= warmup_s] or list(samples[-1:])
    if not kept:
        return {"samples": 0}
    first, last = kept[0][1], kept[-1][1]
    slope = slope_per_min(kept)
    pct = (last - first) / first * 100 if first else None
    return {
        "samples": len(kept),
        "first_mb": round(first, 1),
        "last_mb": round(last, 1),
        "max_mb": round(max(v for _, v in kept), 1),
        "growth_mb": round(last - first, 1),
        "growth_pct": None if pct is None else round(pct, 1),
        "slope_mb_per_min": None if slope is None else round(slope, 3) + 0.0,  # no -0.0
        "grew": pct is not None and slope is not None and pct > GROWTH_PCT and slope > 0,
    }
