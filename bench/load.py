"""Load generation: closed loops (max throughput) and open loops (latency at a fixed rate).

One asyncio process (uvloop when available) with aiohttp: the load generator shares the
machine's two cores with everything it measures, so it does as little as possible per
request: bodies are serialized once, SSE streams are scanned for ``event:`` lines only.

Open-loop latencies are measured from each request's *scheduled* time (not from when the
generator got round to sending it), so a stall anywhere shows up in the percentiles
instead of silently delaying later arrivals (no coordinated omission). The generator's
own lateness is reported next to them (``send_lag``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import aiohttp

from bench.stats import summary_ms


def new_session(limit: int = 0) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=None)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=60, sock_connect=5),
        skip_auto_headers=("User-Agent",),
        auto_decompress=False,
    )


# --------------------------------------------------------------------------- the generator


class GeneratorGc:
    """The load generator's own garbage-collection pauses over a window.

    The generator keeps every sample of the run, so a full collection of its heap grew to
    100 ms and more by the later parts, and every request in flight or due meanwhile
    looked that much slower. Entering freezes what exists (``gc.freeze``: later
    collections no longer scan it), and so does every collection of an older generation
    once it is done: what survived it is the window's samples and the requests in flight,
    which a later full collection would otherwise scan again and again (22-85 ms by the
    end of a card window whose reads had piled up). The pauses that remain are recorded,
    so a window can tell its own stalls from the generator's."""

    def __init__(self) -> None:
        self.pauses_s: list[float] = []
        self._began = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = perf_counter()
        else:
            self.pauses_s.append(perf_counter() - self._began)
            if info["generation"] > 0:
                gc.freeze()

    def __enter__(self) -> GeneratorGc:
        gc.freeze()
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def stats(self) -> dict[str, float]:
        return {
            "collections": len(self.pauses_s),
            "max_ms": round(max(self.pauses_s, default=0.0) * 1000, 3),
            "total_ms": round(sum(self.pauses_s) * 1000, 3),
        }


# --------------------------------------------------------------------------- requests


@dataclass(slots=True)
class TurnSample:
    """Times (perf_counter seconds) of one streamed turn; None when not seen."""

    sent: float
    start: float | None = None
    first_delta: float | None = None
    end: float | None = None
    terminal: str | None = None  # "done" | "error" | "http_<status>" | "exception"
    deltas: int = 0

    @property
    def ok(self) -> bool:
        return self.terminal == "done"


async def sse_turn(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
) -> TurnSample:
    sample = TurnSample(sent=perf_counter())
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            if resp.status != 200:
                await resp.read()
                sample.terminal = f"http_{resp.status}"
                sample.end = perf_counter()
                return sample
            async for line in resp.content:
                if not line.startswith(b"event:"):
                    continue
                name = line[6:].strip()
                now = perf_counter()
                if name == b"delta":
                    sample.deltas += 1
                    if sample.first_delta is None:
                        sample.first_delta = now
                elif name == b"start":
                    sample.start = now
                elif name in (b"done", b"error"):
                    sample.terminal = name.decode()
                    sample.end = now
    except (aiohttp.ClientError, TimeoutError) as exc:
        sample.terminal = f"exception:{type(exc).__name__}"
    if sample.end is None:
        sample.end = perf_counter()
        sample.terminal = sample.terminal or "no_terminal"
    return sample


@dataclass(slots=True)
class GetSample:
    sent: float
    end: float = 0.0
    status: int = 0
    request_id: str = ""  # the server's X-Request-ID, to find the request in its log


async def get(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> GetSample:
    sample = GetSample(sent=perf_counter())
    try:
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            sample.status = resp.status
            sample.request_id = resp.headers.get("X-Request-ID", "")
    except (aiohttp.ClientError, TimeoutError):
        sample.status = -1
    sample.end = perf_counter()
    return sample


async def fake_ttft(session: aiohttp.ClientSession, url: str, body: bytes) -> float | None:
    """Time from sending a streaming completion straight to the fake LLM to its first
    ``data:`` chunk (which carries the first piece of text): the fake's own TTFT."""
    sent = perf_counter()
    first: float | None = None
    try:
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            async for line in resp.content:
                if first is None and line.startswith(b"data:"):
                    first = perf_counter()
    except (aiohttp.ClientError, TimeoutError):
        return None
    return None if first is None else first - sent


# --------------------------------------------------------------------------- loops


@dataclass
class ClosedResult:
    completed: int
    errors: int
    window_s: float
    samples: list[Any] = field(default_factory=list)
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.completed / self.window_s if self.window_s > 0 else 0.0

    @staticmethod
    def merged(rounds: list[ClosedResult]) -> ClosedResult:
        """The rounds of one side as one loop: everything they counted, over their time."""
        kinds: dict[str, int] = {}
        for r in rounds:
            for kind, count in r.error_kinds.items():
                kinds[kind] = kinds.get(kind, 0) + count
        return ClosedResult(
            sum(r.completed for r in rounds),
            sum(r.errors for r in rounds),
            sum(r.window_s for r in rounds),
            [s for r in rounds for s in r.samples],
            kinds,
        )


async def closed_loop(
    clients: int,
    warmup_s: float,
    duration_s: float,
    request: Callable[[int, int], Awaitable[Any]],
    ok: Callable[[Any], bool],
    kind: Callable[[Any], str],
    *,
    max_requests_per_client: int = 1_000_000,
    desync: bool = False,
) -> ClosedResult:
    """``clients`` loops, each sending its next request when the last one is answered.
    Counts the requests that *finish* inside the measured window (after the warm-up).

    ``desync``: clients that all start at once and get the same service stay in step,
    finishing in waves; a window then counts whole waves, and its rate moves in steps of
    ``clients / duration_s``. With ``desync`` each client, after its first answer, waits
    ``c / clients`` of that answer's time, which spreads the clients evenly over one
    request's time (the warm-up must cover about two requests)."""
    t0 = perf_counter()
    window_start = t0 + warmup_s
    window_end = window_start + duration_s
    result = ClosedResult(0, 0, duration_s)

    async def client(c: int) -> None:
        for n in range(max_requests_per_client):
            if perf_counter() >= window_end:
                return
            sample = await request(c, n)
            end = sample.end
            if window_start <= end <= window_end:
                if ok(sample):
                    result.completed += 1
                    result.samples.append(sample)
                else:
                    result.errors += 1
                    k = kind(sample)
                    result.error_kinds[k] = result.error_kinds.get(k, 0) + 1
            if desync and n == 0:
                await asyncio.sleep(c / clients * (end - sample.sent))

    tasks = [asyncio.create_task(client(c)) for c in range(clients)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), warmup_s + duration_s + 60)
    finally:
        for t in tasks:
            t.cancel()
    return result


@dataclass
class OpenResult:
    rate: float
    duration_s: float
    offered: int
    samples: list[tuple[float, Any]]  # (scheduled time, sample)
    dropped: int
    send_lag_ms: dict[str, Any]


async def open_loop(
    rate: float,
    duration_s: float,
    request: Callable[[int], Awaitable[Any]],
    *,
    max_in_flight: int = 512,
    drain_timeout_s: float = 60.0,
) -> OpenResult:
    """Requests at fixed arrival times ``t0 + i / rate``, whatever the answers do.
    An arrival finding ``max_in_flight`` requests outstanding is dropped (and counted)."""
    total = max(1, int(rate * duration_s))
    interval = 1.0 / rate
    samples: list[tuple[float, Any]] = []
    lags: list[float] = []
    in_flight: set[asyncio.Task[None]] = set()
    dropped = 0

    async def one(i: int, scheduled: float) -> None:
        sample = await request(i)
        samples.append((scheduled, sample))

    t0 = perf_counter() + 0.05
    i = 0
    while i < total:
        now = perf_counter()
        due = t0 + i * interval
        if due > now:
            await asyncio.sleep(due - now)
            continue
        # Fire every arrival that is due (several at once if the loop was late).
        while i < total and t0 + i * interval <= now:
            scheduled = t0 + i * interval
            lags.append(now - scheduled)
            if len(in_flight) >= max_in_flight:
                dropped += 1
            else:
                task = asyncio.create_task(one(i, scheduled))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            i += 1
    if in_flight:
        _, pending = await asyncio.wait(set(in_flight), timeout=drain_timeout_s)
        for t in pending:
            t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*pending, return_exceptions=True)
    return OpenResult(rate, duration_s, total, samples, dropped, summary_ms(lags))


async def periodic(
    interval_s: float, until: Callable[[], bool], action: Callable[[], Awaitable[Any]]
) -> list[Any]:
    """Run ``action`` every ``interval_s`` until ``until()`` (at most 100,000 times)."""
    out: list[Any] = []
    for _ in range(100_000):
        if until():
            break
        out.append(await action())
        await asyncio.sleep(interval_s)
    return out
