"""What every phase needs: the infrastructure, processes, knobs, users and tokens."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg

from bench.cpu import CpuMeter, StealTimeline, scan_processes
from bench.infra import Infra, Processes, pids
from bench.load import GeneratorGc
from bench.memory import Sampler, snapshot
from bench.moments import MomentTimeline
from bench.profile import Profiler
from bench.seed import Conv
from glia_common.auth import mint_token
from glia_common.settings import AuthSettings
from glia_e2e.processes import Process

MEMORY_INTERVAL_S = 0.5  # memory samples inside a measured window


@dataclass(frozen=True)
class Knobs:
    quick: bool
    clients: int
    conversations: int  # extraction burst size
    warmup_s: float
    chat_s: float  # closed and open loops of chat turns, each
    extraction_steady_s: float
    cards_s: float  # each closed and open loop of card reads
    decoupling_s: float
    extract_loop_concurrency: int
    # The closed loops of card reads take turns in this many rounds (cards_s in all each),
    # so a host whose speed drifts slows Glia and its baselines alike.
    cards_rounds: int = 1
    chat_rounds: int = 1  # the same for the closed loops of chat turns
    extraction_rounds: int = 1  # and for the extraction burst (conversations / rounds each)

    @staticmethod
    def make(quick: bool, clients: int, conversations: int | None, loop_workers: int) -> Knobs:
        if quick:
            return Knobs(
                quick=True,
                clients=clients,
                conversations=conversations or 200,
                warmup_s=1.0,
                chat_s=3.0,
                extraction_steady_s=4.0,
                cards_s=2.0,
                decoupling_s=4.0,
                extract_loop_concurrency=loop_workers,
                cards_rounds=2,
            )
        return Knobs(
            quick=False,
            clients=clients,
            conversations=conversations or 2000,
            warmup_s=3.0,
            chat_s=20.0,
            extraction_steady_s=15.0,
            cards_s=10.0,
            decoupling_s=20.0,
            extract_loop_concurrency=loop_workers,
            cards_rounds=5,
            chat_rounds=4,
            extraction_rounds=4,
        )


@dataclass
class Ctx:
    infra: Infra
    procs: Processes
    knobs: Knobs
    jwt_secret: str
    run_dir: Path
    fake: Process
    session: aiohttp.ClientSession
    admin: asyncpg.Connection
    app_pool: asyncpg.Pool
    results: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    extracted: list[Conv] = field(default_factory=list)  # conversations with cards
    profiler: Profiler | None = None
    windows: list[tuple[str, dict[str, float]]] = field(default_factory=list)
    _window_seconds: dict[str, float] = field(default_factory=dict)
    _generator_gc: dict[str, GeneratorGc] = field(default_factory=dict)

    @property
    def fake_base(self) -> str:
        return f"{self.fake.url}/v1"

    def moments(self, server: str) -> MomentTimeline:
        """A timeline (bench/moments.py) of process ``server``'s event loop, the bench
        database's PostgreSQL backends and this generator, for a half-load window."""
        return MomentTimeline(
            {
                server: [pids(self.procs)[server]],
                "PostgreSQL": scan_processes(self.infra.database)[0],
                "generator": [os.getpid()],
            }
        )

    @contextlib.asynccontextmanager
    async def cpu(self, label: str, profile: str | None = None) -> AsyncIterator[None]:
        """Record the cores each party used while the block ran, and the memory of each
        process the bench started (sampled meanwhile and right after), under ``label``;
        with ``--profile``, sample process ``profile`` with py-spy meanwhile."""
        meter = CpuMeter(lambda: pids(self.procs), self.infra.database)
        memory = Sampler(lambda: pids(self.procs), MEMORY_INTERVAL_S)
        target = pids(self.procs).get(profile) if profile and self.profiler else None
        sink = self.details.setdefault("profiles", {})
        pg_before = await self._pg_counters()
        before = meter.snapshot()
        profiled = self.profiler is not None and target is not None
        generator_gc = GeneratorGc()
        steal = StealTimeline()
        try:
            with generator_gc:
                async with memory, steal:
                    if self.profiler is not None and target is not None:
                        async with self.profiler.record(label, target, sink):
                            yield
                    else:
                        yield
        finally:
            after = meter.snapshot()
            cores = meter.cores(before, after)
            if profiled and self.profiler is not None:
                spy = round(self.profiler.last_cpu_s / max(after[0] - before[0], 1e-6), 2)
                cores["py-spy"] = spy
                cores["not the bench"] = round(max(0.0, cores["not the bench"] - spy), 2)
            self.windows.append((label, cores))
            pg_after = await self._pg_counters()
            pg = {k: pg_after[k] - pg_before[k] for k in pg_after}
            self._record(label, after[0] - before[0], cores, memory.stats, pg, generator_gc)
            self._record_steal(label, steal.stats())

    def _record(
        self,
        label: str,
        seconds: float,
        cores: dict[str, float],
        memory: dict[str, dict[str, float]],
        pg: dict[str, int],
        generator_gc: GeneratorGc,
    ) -> None:
        """A window's figures under ``label``; a label measured again (the rounds of an
        interleaved comparison) adds up: cores weighted by time, memory at its highest,
        counters summed."""
        cpu = self.details.setdefault("cpu_cores", {})
        mem = self.details.setdefault("memory", {}).setdefault("windows", {})
        counters = self.details.setdefault("pg_counters", {})
        seen = self._window_seconds.get(label, 0.0)
        if seen:
            old = cpu[label]
            cores = {
                k: round(
                    (old.get(k, 0.0) * seen + cores.get(k, 0.0) * seconds) / (seen + seconds), 2
                )
                for k in old.keys() | cores.keys()
            }
            for name, stats in mem[label].items():
                merged = memory.setdefault(name, dict(stats))
                for key, value in stats.items():
                    add = key == "samples"
                    merged[key] = (
                        merged.get(key, 0.0) + value if add else max(merged.get(key, 0.0), value)
                    )
            pg = {k: pg.get(k, 0) + counters[label].get(k, 0) for k in pg.keys() | counters[label]}
        if label in self._generator_gc:
            generator_gc.pauses_s.extend(self._generator_gc[label].pauses_s)
        self._generator_gc[label] = generator_gc
        self.details.setdefault("generator_gc", {})[label] = generator_gc.stats()
        self._window_seconds[label] = seen + seconds
        cpu[label] = cores
        mem[label] = memory
        counters[label] = pg

    def _record_steal(self, label: str, stats: dict[str, Any]) -> None:
        """The host's steal in the window ``label`` (``StealTimeline``); rounds of one label
        add up, and the worst second of any of them is kept."""
        sink = self.details.setdefault("host_steal", {})
        old = sink.get(label)
        if old is not None:
            worst = old if old["max_per_s_ms"] >= stats["max_per_s_ms"] else stats
            stats = {
                "stolen_ms": round(old["stolen_ms"] + stats["stolen_ms"], 1),
                "max_per_s_ms": worst["max_per_s_ms"],
                "max_at_s": worst["max_at_s"],
            }
        sink[label] = stats

    async def _pg_counters(self) -> dict[str, int]:
        """Sessions opened and transactions ended in the bench database (PostgreSQL's
        statistics: flushed by each backend at most once a second, so approximate)."""
        row = await self.admin.fetchrow(
            "SELECT sessions, xact_commit + xact_rollback AS xacts FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return {"new_sessions": int(row["sessions"]), "transactions": int(row["xacts"])}

    def memory_idle(self, *names: str) -> None:
        """Record the memory of processes ``names`` now: call it after their start-up,
        before any load reaches them."""
        running = pids(self.procs)
        idle = self.details.setdefault("memory", {}).setdefault("idle", {})
        idle.update(snapshot({n: running[n] for n in names if n in running}))

    def token(self, user_id: str) -> str:
        if user_id not in self._tokens:
            settings = AuthSettings(_env_file=None, jwt_secret=self.jwt_secret)
            self._tokens[user_id] = mint_token(settings, user_id, ttl_s=4 * 3600)
        return self._tokens[user_id]

    def auth(self, user_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id)}"}

    async def configure_fake(self, **fields: Any) -> None:
        async with self.session.post(
            f"{self.fake.url}/_fake/config", data=json.dumps(fields)
        ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"fake LLM config failed: {await resp.text()}")

    async def wait_outbox_drained(self, timeout_s: float = 60.0) -> int:
        """Until every outbox row is published (so no relay work spills into the next run)."""
        deadline = time.monotonic() + timeout_s
        left = 0
        while time.monotonic() < deadline:
            left = int(
                await self.admin.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            )
            if left == 0:
                return 0
            await asyncio.sleep(0.2)
        return left


class ConvPool:
    """Conversations handed out round-robin: each gets few turns, so histories stay short."""

    def __init__(self, convs: list[Conv]) -> None:
        self.convs = convs
        self._next = itertools.count()

    def next(self) -> Conv:
        return self.convs[next(self._next) % len(self.convs)]


class Amqp:
    """A publisher on the bench's vhost, straight to the ``glia`` exchange."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: aio_pika.abc.AbstractConnection | None = None
        self.channel: aio_pika.abc.AbstractChannel | None = None
        self.exchange: aio_pika.abc.AbstractExchange | None = None

    async def __aenter__(self) -> Amqp:
        self.connection = await aio_pika.connect(self.url, timeout=10)
        self.channel = await self.connection.channel(publisher_confirms=True)
        self.exchange = await self.channel.get_exchange("glia", ensure=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()

    async def publish_request(self, conv: Conv, requested_at_epoch: float) -> None:
        assert self.exchange is not None
        from datetime import UTC, datetime

        body = {
            "conversation_id": str(conv.id),
            "user_id": conv.user_id,
            "request_id": f"bench-{conv.id.hex[:12]}",
            "requested_at": datetime.fromtimestamp(requested_at_epoch, UTC).isoformat(),
        }
        await self.exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=f"bench-{conv.id}",
            ),
            routing_key="extraction.requested",
            mandatory=True,
            timeout=10,
        )

    async def queue_state(self, name: str = "glia.extraction") -> tuple[int, int]:
        """(messages ready, consumers) of a queue."""
        assert self.channel is not None
        q = await self.channel.declare_queue(name, passive=True)
        result = q.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)

    async def purge(self, name: str = "glia.extraction") -> None:
        assert self.channel is not None
        q = await self.channel.get_queue(name, ensure=True)
        await q.purge()
