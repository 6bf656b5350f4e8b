"""The nemesis: injects the schedule's faults at their times, heals each after its
duration, and records every fault in the history (``proc: nemesis``).

Faults overlap freely. On one proxy link the strongest active fault wins (a cut over a
stall), and healing one fault leaves the others on that link in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from typing import Any

from chaos.cluster import Cluster, pg_ctl, pg_ready, rabbitmqctl
from chaos.history import History
from chaos.schedule import ALL, SERVICES, Fault


class Nemesis:
    def __init__(self, cluster: Cluster, history: History, schedule: list[Fault]) -> None:
        self.cluster = cluster
        self.history = history
        self.schedule = schedule
        self.injected = 0
        self.skipped = 0
        self.last_healed = 0.0  # history time
        self._link_faults: dict[str, list[str]] = {link: [] for link in cluster.links}
        self._link_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._paused: Counter[int] = Counter()  # overlapping pauses of one process

    async def run(self) -> None:
        self._tasks = [asyncio.create_task(self._one(f)) for f in self.schedule]
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _one(self, f: Fault) -> None:
        await asyncio.sleep(max(0.0, f.at_s - self.history.now()))
        t0 = self.history.now()
        detail: dict[str, Any] = {}
        try:
            applied = await self._inject(f, detail)
        except Exception as exc:
            self.history.record("nemesis", f.kind, t0, "error", f.to_json(), {"exc": repr(exc)})
            return
        if not applied:
            self.skipped += 1
            self.history.record("nemesis", f.kind, t0, "error", f.to_json(), detail)
            return
        self.injected += 1
        try:
            await asyncio.sleep(f.duration_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._heal(f, detail))
            self.last_healed = max(self.last_healed, self.history.now())
            self.history.record("nemesis", f.kind, t0, "ok", f.to_json(), detail)

    # ------------------------------------------------------------------ inject / heal

    async def _inject(self, f: Fault, detail: dict[str, Any]) -> bool:
        c = self.cluster
        if f.kind == "kill":
            pid = c.pid(f.target)
            if pid is None:
                detail["skipped"] = "not running"
                return False
            c.services[f.target].kill()
            detail["pid"] = pid
            return True
        if f.kind == "pause":
            pid = c.pid(f.target)
            if pid is None:
                detail["skipped"] = "not running"
                return False
            os.kill(pid, signal.SIGSTOP)
            self._paused[pid] += 1
            detail["pid"] = pid
            return True
        if f.kind in ("pg_cut", "pg_stall", "mq_cut", "mq_stall"):
            await self._links(f, add=True)
            return True
        if f.kind == "mq_stop":
            c.mq_stopped = True
            out = await asyncio.to_thread(rabbitmqctl, "stop_app")
            detail["rc"] = out.returncode
            return True
        if f.kind == "pg_restart":
            began = time.monotonic()
            out = await asyncio.to_thread(pg_ctl, "restart")
            detail |= {"rc": out.returncode, "took_s": round(time.monotonic() - began, 1)}
            return out.returncode == 0
        if f.kind == "llm":
            assert c.llm is not None
            fields: dict[str, Any] = {"mode": f.mode, "delay_s": 0.0}
            if f.mode == "slow":
                fields |= {"delay_s": 0.3, "chunk_delay_s": f.chunk_delay_s}
            await c.llm.aconfigure(f.target, **fields)  # type: ignore[arg-type]
            return True
        raise ValueError(f"unknown fault {f.kind}")

    async def _heal(self, f: Fault, detail: dict[str, Any]) -> None:
        c = self.cluster
        if f.kind == "kill":
            detail["ready"] = await c.restart(f.target)
        elif f.kind == "pause":
            pid = int(detail["pid"])
            self._paused[pid] -= 1
            if self._paused[pid] <= 0:  # the last pause of it ends
                del self._paused[pid]
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        elif f.kind in ("pg_cut", "pg_stall", "mq_cut", "mq_stall"):
            await self._links(f, add=False)
        elif f.kind == "mq_stop":
            out = await asyncio.to_thread(rabbitmqctl, "start_app")
            await asyncio.to_thread(rabbitmqctl, "await_startup")
            c.mq_stopped = out.returncode != 0
        elif f.kind == "pg_restart":
            for _ in range(120):
                if await asyncio.to_thread(pg_ready):
                    break
                await asyncio.sleep(0.5)
        elif f.kind == "llm":
            assert c.llm is not None
            await c.llm.aconfigure(f.target, mode="ok", delay_s=0.0, chunk_delay_s=0.0)  # type: ignore[arg-type]

    async def _links(self, f: Fault, *, add: bool) -> None:
        backend, action = f.kind.split("_")
        names = SERVICES if f.target == ALL else (f.target,)
        links = [f"{backend}:{n}" for n in names]
        async with self._link_lock:
            for link in links:
                faults = self._link_faults[link]
                before = _effective(faults)
                if add:
                    faults.append(action)
                else:
                    faults.remove(action)
                after = _effective(faults)
                if after == before:
                    continue
                # A stall replaced by a cut, or a cut by a stall, starts from a clean link.
                await self.cluster.proxy(link, "restore")
                if after is not None:
                    await self.cluster.proxy(link, after)

    async def heal_everything(self) -> None:
        """After the run (or on an interruption): no fault may outlive the schedule."""
        self.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pid in list(self._paused):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._paused.clear()
        c = self.cluster
        with contextlib.suppress(Exception):
            await c.proxy("*", "restore")
        if c.mq_stopped:
            await asyncio.to_thread(rabbitmqctl, "start_app")
            await asyncio.to_thread(rabbitmqctl, "await_startup")
            c.mq_stopped = False
        if c.llm is not None:
            with contextlib.suppress(Exception):
                await c.llm.aconfigure("all", mode="ok", delay_s=0.0, chunk_delay_s=0.0)
        for name in SERVICES:
            if c.pid(name) is None:
                await c.restart(name)


def _effective(faults: list[str]) -> str | None:
    return "cut" if "cut" in faults else "stall" if "stall" in faults else None
