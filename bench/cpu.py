"""Where the cores went during a measured window: CPU time per process, from /proc.

Everything shares the machine (the load generator included), so each run records how
many cores each party used: the bench process, every process it started, PostgreSQL
(the backends connected to the bench's database), RabbitMQ (beam.smp, all vhosts),
the machine as a whole (/proc/stat), and what is left: "not the bench" (PostgreSQL's
shared background processes, other programs, the kernel, and the time the hypervisor
gave this machine's virtual CPUs to someone else). Processes that exit inside the window
are missed; the numbers are a guide, not an audit.

That last part, the host's *steal* time, is also recorded on its own ("stolen by the
host"), and second by second (``StealTimeline``): a latency outlier in a second in which
the host took the CPUs away is the host's, not the measured process's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.sampling import PeriodicSampler

TICK = os.sysconf("SC_CLK_TCK")
STOLEN = "stolen by the host"


def proc_stat(pid: int | str) -> tuple[str, int] | None:
    """(name, CPU ticks: user + system) of process ``pid``; None once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    close = raw.rindex(")")  # the name may hold spaces and parentheses
    fields = raw[close + 2 :].split()
    return raw[raw.index("(") + 1 : close], int(fields[11]) + int(fields[12])


def _proc_ticks(pid: int) -> int | None:
    stat = proc_stat(pid)
    return None if stat is None else stat[1]


def scan_processes(database: str) -> tuple[list[int], list[int]]:
    """(PostgreSQL backends of the bench's database, RabbitMQ processes)."""
    pg: list[int] = []
    mq: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry.name}/comm").read_text().strip()
            if comm == "beam.smp":
                mq.append(int(entry.name))
            elif comm == "postgres":
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
                if f" {database} ".encode() in cmdline:
                    pg.append(int(entry.name))
        except OSError:
            continue
    return pg, mq


def machine_busy() -> tuple[int, int, int]:
    """(busy ticks, total ticks, stolen ticks) of all CPUs. Busy includes stolen: time a
    virtual CPU wanted to run while the hypervisor ran something else."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return total - idle, total, parts[7]


class CpuMeter:
    def __init__(self, children: Callable[[], dict[str, int]], database: str) -> None:
        self._children = children
        self._database = database

    def snapshot(self) -> tuple[float, dict[str, int], tuple[int, int, int]]:
        ticks: dict[str, int] = {}
        own = _proc_ticks(os.getpid())
        ticks["bench (load generator)"] = own or 0
        for name, pid in self._children().items():
            t = _proc_ticks(pid)
            if t is not None:
                ticks[name] = t
        pg, mq = scan_processes(self._database)
        for label, group in (("postgresql (bench db)", pg), ("rabbitmq", mq)):
            ticks[label] = sum(t for t in (_proc_ticks(p) for p in group) if t is not None)
        return time.perf_counter(), ticks, machine_busy()

    @staticmethod
    def cores(
        before: tuple[float, dict[str, int], tuple[int, int, int]],
        after: tuple[float, dict[str, int], tuple[int, int, int]],
    ) -> dict[str, float]:
        """Cores used per party over the window (1.0 = one core busy all the time)."""
        wall = max(after[0] - before[0], 1e-6)
        out = {
            # A process started inside the window had used nothing before it.
            name: round((after[1][name] - before[1].get(name, 0)) / TICK / wall, 2)
            for name in after[1]
        }
        busy = after[2][0] - before[2][0]
        total = max(after[2][1] - before[2][1], 1)
        cpus = os.cpu_count() or 1
        ours = sum(out.values())
        out["machine (all)"] = round(busy / total * cpus, 2)
        # Anything else: other databases' backends, other programs, the kernel, the host...
        out["not the bench"] = round(max(0.0, out["machine (all)"] - ours), 2)
        # ... of which the host's share.
        out[STOLEN] = round((after[2][2] - before[2][2]) / total * cpus, 2)
        kept = ("machine (all)", "not the bench", STOLEN)
        return {k: v for k, v in out.items() if v > 0.005 or k in kept}


def background_cores(seconds: float = 2.0) -> float:
    """Cores busy on the whole machine over ``seconds`` (before the bench starts anything)."""
    b0, t0, _ = machine_busy()
    time.sleep(seconds)
    b1, t1, _ = machine_busy()
    return round((b1 - b0) / max(t1 - t0, 1) * (os.cpu_count() or 1), 2)


class StealTimeline(PeriodicSampler):
    """The host's steal time, sampled every ``interval_s`` while the block runs: in all,
    and the most it stole in any one second (summed over the CPUs, so up to 1,000 ms per
    CPU), with when that second began (seconds into the block). The kernel counts steal
    in ticks (10 ms): shorter thefts show only as they add up."""

    def __init__(self, interval_s: float = 0.1) -> None:
        super().__init__(interval_s)
        self.samples: list[tuple[float, int]] = []

    def sample(self) -> None:
        self.samples.append((time.perf_counter(), machine_busy()[2]))

    def stats(self) -> dict[str, Any]:
        """``{"stolen_ms", "max_per_s_ms", "max_at_s"}`` (ms of CPU time)."""
        if len(self.samples) < 2:
            return {"stolen_ms": 0.0, "max_per_s_ms": 0.0, "max_at_s": None}
        t0 = self.samples[0][0]
        ms = 1000 / TICK
        worst, at = 0, None
        j = 0
        for i, (t, ticks) in enumerate(self.samples):
            # The sample that ends the span starting at sample i.
            j = max(j, i)
            while j + 1 < len(self.samples) and self.samples[j + 1][0] - t <= 1.0:
                j += 1
            stolen = self.samples[j][1] - ticks
            if stolen > worst:
                worst, at = stolen, round(t - t0, 1)
        return {
            "stolen_ms": round((self.samples[-1][1] - self.samples[0][1]) * ms, 1),
            "max_per_s_ms": round(worst * ms, 1),
            "max_at_s": at,
        }
