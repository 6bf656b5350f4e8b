"""Where a slow request's time went: the machine, sampled every few milliseconds while a
latency window runs, read back at each of the window's slowest requests.

A request that takes 100 ms in a window whose usual is 8 ms waited somewhere. The
kernel counts most of the places it can have waited, and this samples them:

- the time a thread ran, and its *run delay*: the time it was ready to run but waited
  for a CPU (``/proc/<pid>/schedstat``) - of the server's event loop thread, of the
  PostgreSQL backends of the bench's database, and of the load generator's own loop;
- *pressure* (``/proc/pressure/{cpu,io,memory}``, ``some`` totals): the time at least one
  task of the machine was held up waiting for a CPU, for storage, or for memory;
- the host's *steal*, and each CPU's idle time (``/proc/stat``), in ticks of 10 ms:
  tasks that wait for a CPU while another CPU idles were queued on the busy one;
- every fifth sample, the CPU time of every process on the machine (``/proc/<pid>/stat``,
  in ticks of 10 ms): who ran meanwhile;
- the machine's speed: the CPU time (``CLOCK_THREAD_CPUTIME_ID``, which excludes the
  time the thread was not running) that a fixed piece of work takes. A host that runs this
  virtual CPU slower - a busy sibling hyperthread, a lower clock - without taking it away
  (no steal) shows here and nowhere else.

And the server's own part: its access log gives each request's duration inside the
application (``http.request``, ``duration_ms``), matched by the ``X-Request-ID`` it
answered with. A slow read whose server part was short waited outside it (the kernel's
queues, the generator); one whose server part was long, with no run delay and no
pressure, waited on something the kernel does not count as either (a lock, the network
between two processes that were both running).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import Any

from bench.cpu import TICK, proc_stat
from bench.sampling import PeriodicSampler

PRESSURE = ("cpu", "io", "memory")
CPUS = os.cpu_count() or 1
SCAN_EVERY = 5
MOMENTS = 5  # the slowest requests of a half-load window that are explained


def _schedstat_ns(pid: int) -> tuple[int, int] | None:
    """Nanoseconds thread ``pid`` has run, and waited on a run queue (None once it is
    gone)."""
    try:
        ran, waited = Path(f"/proc/{pid}/schedstat").read_text().split()[:2]
        return int(ran), int(waited)
    except (OSError, ValueError):
        return None


def _probe_ns() -> int:
    """CPU time of a fixed piece of work (30-55 us on the hosts measured so far)."""
    start = time.thread_time_ns()
    x = 0
    for i in range(1000):
        x ^= i * 7
    return time.thread_time_ns() - start


def _cpu_ticks() -> tuple[int, list[int]]:
    """(stolen ticks of all CPUs, idle ticks of each CPU) from ``/proc/stat``."""
    stolen, idle = 0, []
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            parts = line.split()
            if parts[0] == "cpu":
                stolen = int(parts[8])
            else:
                idle.append(int(parts[4]) + int(parts[5]))  # idle + iowait
    return stolen, idle


def _pressure_us(resource: str) -> int:
    """Microseconds in which some task waited for ``resource`` (0 without PSI)."""
    try:
        first = Path(f"/proc/pressure/{resource}").read_text().split("\n", 1)[0]
    except OSError:
        return 0
    return int(first.rsplit("total=", 1)[1])


class MomentTimeline(PeriodicSampler):
    """Samples, every ``interval_s``: how long each group of threads in ``watched``
    (name -> thread ids; a process's id is its main thread) ran and waited for a CPU,
    the machine's pressure totals, its stolen ticks and each CPU's idle ticks, and the
    time of the fixed work; every ``SCAN_EVERY`` samples, every process's CPU time."""

    def __init__(self, watched: dict[str, list[int]], interval_s: float = 0.02) -> None:
        super().__init__(interval_s)
        self.watched = watched
        self.wall_offset = time.time() - time.perf_counter()  # wall time = perf + offset
        self.times: list[float] = []
        self.rows: list[tuple[int, ...]] = []
        self.probes: list[int] = []
        self.scan_times: list[float] = []
        self.scans: list[dict[int, int]] = []
        self.names: dict[int, str] = {}
        self._last: dict[int, tuple[int, int]] = {}  # a thread that exits keeps its totals

    @property
    def columns(self) -> list[str]:
        return [
            f"{name} {what}" for name in self.watched for what in ("ran", "waited for a CPU")
        ] + [
            *(f"{r} pressure" for r in PRESSURE),
            "stolen by the host",
            *(f"cpu{i} idle" for i in range(CPUS)),
        ]

    def sample(self) -> None:
        row = []
        for pids in self.watched.values():
            stats = []
            for pid in pids:
                now = _schedstat_ns(pid)
                if now is not None:
                    self._last[pid] = now
                stats.append(self._last.get(pid, (0, 0)))
            row += [sum(ran for ran, _ in stats) // 1000, sum(w for _, w in stats) // 1000]
        row += [_pressure_us(r) for r in PRESSURE]
        stolen, idle = _cpu_ticks()
        row += [t * 1_000_000 // TICK for t in (stolen, *idle[:CPUS])]
        self.times.append(time.perf_counter())
        self.rows.append(tuple(row))
        self.probes.append(_probe_ns())
        if len(self.times) % SCAN_EVERY == 1:
            self.scan_times.append(time.perf_counter())
            self.scans.append(self._scan())

    def _scan(self) -> dict[int, int]:
        """CPU ticks (user + system) of every process."""
        out = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or (stat := proc_stat(entry.name)) is None:
                continue
            pid = int(entry.name)
            self.names.setdefault(pid, stat[0])
            out[pid] = stat[1]
        return out

    def who_ran(self, start: float, end: float, top: int = 4) -> dict[str, float]:
        """The processes that used the most CPU time (ms) from the last scan at or before
        ``start`` to the first at or after ``end``."""
        if not self.scans:
            return {}
        a = max(0, bisect_right(self.scan_times, start) - 1)
        b = min(len(self.scans) - 1, bisect_left(self.scan_times, end))
        used = {pid: ticks - self.scans[a].get(pid, ticks) for pid, ticks in self.scans[b].items()}
        busiest = sorted((t, pid) for pid, t in used.items() if t > 0)[-top:]
        span = round((self.scan_times[b] - self.scan_times[a]) * 1000)
        return {
            f"{self.names[pid]} ({pid})": round(t * 1000 / TICK, 1) for t, pid in reversed(busiest)
        } | {"scanned_ms": span}

    def _span(self, start: float, end: float) -> tuple[int, int]:
        """The last sample at or before ``start`` and the first at or after ``end``."""
        a = max(0, bisect_right(self.times, start) - 1)
        return a, min(len(self.times) - 1, bisect_left(self.times, end))

    def between(self, start: float, end: float) -> dict[str, Any]:
        """Each column's growth (ms) over the span around ``start``..``end``
        (``sampled_ms`` long), and how much slower the machine ran meanwhile."""
        if not self.times:
            return {}
        a, b = self._span(start, end)
        out: dict[str, Any] = {
            col: round((self.rows[b][i] - self.rows[a][i]) / 1000, 1)
            for i, col in enumerate(self.columns)
        }
        out["sampled_ms"] = round((self.times[b] - self.times[a]) * 1000, 1)
        # How much longer the fixed work took meanwhile than in the window as a whole
        # (1.0: the machine ran at its usual speed).
        usual = statistics.median(self.probes)
        out["slowdown"] = round(statistics.median(self.probes[a : b + 1]) / usual, 2)
        return out

    def server_cpu_per_request_ms(
        self, ends: list[float], start: float | None = None, end: float | None = None
    ) -> float | None:
        """The first watched group's CPU time (ms) over the requests that ended in the span
        around ``start``..``end`` (the whole window by default); ``ends`` sorted."""
        if not self.times:
            return None
        a, b = (0, len(self.times) - 1) if start is None or end is None else self._span(start, end)
        done = bisect_right(ends, self.times[b]) - bisect_left(ends, self.times[a])
        ran_us = self.rows[b][0] - self.rows[a][0]  # the first column: the server ran
        return round(ran_us / 1000 / done, 3) if done else None

    def slowest_speed(self, span_s: float = 0.5) -> dict[str, Any]:
        """The span of ``span_s`` in which the fixed work was slowest (median), as a
        multiple of its median over the window, and when it began (s into the window)."""
        if not self.probes:
            return {}
        usual = statistics.median(self.probes)
        worst, at = 0.0, 0.0
        j = 0
        for i, t in enumerate(self.times):
            while j + 1 < len(self.times) and self.times[j + 1] - t <= span_s:
                j += 1
            m = statistics.median(self.probes[i : j + 1])
            if m > worst:
                worst, at = m, t - self.times[0]
        return {
            "usual_us": round(usual / 1000, 1),
            "slowdown": round(worst / usual, 2),
            "at_s": round(at, 1),
        }

    def worst_gap_ms(self) -> float:
        """The longest time between two samples: how late the generator's own loop was."""
        gaps = (b - a for a, b in zip(self.times, self.times[1:], strict=False))
        return round(max(gaps, default=0.0) * 1000, 1)


def server_durations(log: Path, offset: int) -> dict[str, float]:
    """Request id -> ``duration_ms`` of the ``http.request`` lines written to ``log`` after
    byte ``offset`` (the server's JSON access log)."""
    out: dict[str, float] = {}
    with log.open("rb") as f:
        f.seek(offset)
        for line in f:
            if b'"http.request"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            rid = entry.get("request_id")
            if rid and "duration_ms" in entry:
                out[rid] = entry["duration_ms"]
    return out


def log_size(log: Path) -> int:
    try:
        return os.stat(log).st_size
    except OSError:
        return 0


def explain(
    timeline: MomentTimeline,
    t0: float,
    slow: list[tuple[float, float, float, str]],
    ends: list[float],
    durations: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The window's slowest requests ``(scheduled, end, latency_s, request_id)``, each
    with when (s into the window, which began at ``t0``), how long, the server's own part
    (``durations``: request id -> ms) and what the timeline saw meanwhile: the server's
    CPU time per request that ended then (``ends``: every request's end), next to the
    whole window's (``usual_...``)."""
    ends = sorted(ends)
    slowest = []
    for scheduled, end, latency, rid in sorted(slow):
        moment: dict[str, Any] = {"at_s": round(scheduled - t0, 3), "ms": round(latency * 1000, 1)}
        if durations is not None:
            moment["server_ms"] = durations.get(rid)
        moment["server_cpu_per_request_ms"] = timeline.server_cpu_per_request_ms(
            ends, scheduled, end
        )
        moment |= timeline.between(scheduled, end)
        moment["who_ran"] = timeline.who_ran(scheduled, end)
        slowest.append(moment)
    return {
        "usual_server_cpu_per_request_ms": timeline.server_cpu_per_request_ms(ends),
        "generator_worst_gap_ms": timeline.worst_gap_ms(),
        "machine_slowest_half_second": timeline.slowest_speed(),
        "slowest": slowest,
    }
