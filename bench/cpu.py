"""Where the cores went during a measured window: CPU time per process, from /proc.

Everything shares the machine (the load generator included), so each run records how
many cores each party used: the bench process, every process it started, PostgreSQL
(the backends connected to the bench's database), RabbitMQ (beam.smp, all vhosts),
the machine as a whole (/proc/stat), and what is left: "not the bench" (PostgreSQL's
shared background processes, other programs, the kernel). Processes that exit inside
the window are missed; the numbers are a guide, not an audit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _proc_ticks(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _scan(database: str) -> tuple[list[int], list[int]]:
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


def _machine_busy() -> tuple[int, int]:
    """(busy ticks, total ticks) of all CPUs."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return total - idle, total


class CpuMeter:
    def __init__(self, children: Callable[[], dict[str, int]], database: str) -> None:
        self._children = children
        self._database = database

    def snapshot(self) -> tuple[float, dict[str, int], tuple[int, int]]:
        ticks: dict[str, int] = {}
        own = _proc_ticks(os.getpid())
        ticks["bench (load generator)"] = own or 0
        for name, pid in self._children().items():
            t = _proc_ticks(pid)
            if t is not None:
                ticks[name] = t
        pg, mq = _scan(self._database)
        for label, group in (("postgresql (bench db)", pg), ("rabbitmq", mq)):
            ticks[label] = sum(t for t in (_proc_ticks(p) for p in group) if t is not None)
        return time.perf_counter(), ticks, _machine_busy()

    @staticmethod
    def cores(
        before: tuple[float, dict[str, int], tuple[int, int]],
        after: tuple[float, dict[str, int], tuple[int, int]],
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
        # Anything else: other databases' backends, other programs, the kernel...
        out["not the bench"] = round(max(0.0, out["machine (all)"] - ours), 2)
        return {
            k: v for k, v in out.items() if v > 0.005 or k in ("machine (all)", "not the bench")
        }


def background_cores(seconds: float = 2.0) -> float:
    """Cores busy on the whole machine over ``seconds`` (before the bench starts anything)."""
    b0, t0 = _machine_busy()
    time.sleep(seconds)
    b1, t1 = _machine_busy()
    return round((b1 - b0) / max(t1 - t0, 1) * (os.cpu_count() or 1), 2)
