"""Part 3: card reads from glia-card-query, next to a bare Starlette + asyncpg route
(``bench/baselines/cards_route.py``), and the same route on bare FastAPI
(``bench/baselines/cards_fastapi.py``: the framework's own share, closed loop only).

Each of ``clients`` clients reads the cards of its own conversation (its own user;
conversations extracted in part 2, 8 cards each): ``GET /v1/cards?conversation_id=``,
either plainly (200 with the cards) or with ``If-None-Match`` set to the ETag it got
(304). Closed loop -> max requests/s per mode, the three servers taking turns in
``cards_rounds`` rounds so that a drift in the host's speed meets them all; then an open
loop at half of Glia's max (the same rate for both) -> latency p50/p99.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bench.context import Ctx
from bench.infra import free_port, service_env, stop
from bench.load import ClosedResult, GetSample, closed_loop, get, open_loop
from bench.moments import MOMENTS, explain, log_size, server_durations
from bench.seed import Conv
from bench.stats import figure, slowest, summary_ms
from glia_e2e.processes import Process

PROCESS = {"glia": "glia-card-query", "route": "cards-route", "fastapi": "cards-fastapi"}


async def etags(ctx: Ctx, base: str, convs: list[Conv]) -> list[str]:
    out = []
    for c in convs:
        async with ctx.session.get(
            f"{base}/v1/cards?conversation_id={c.id}", headers=ctx.auth(c.user_id)
        ) as resp:
            body = await resp.json()
            if resp.status != 200 or body["extraction"]["state"] != "current":
                raise RuntimeError(f"{base}: unexpected answer {resp.status} {body}")
            out.append(resp.headers["ETag"])
    return out


def reader(
    ctx: Ctx, base: str, convs: list[Conv], tags: list[str] | None
) -> Callable[..., Awaitable[GetSample]]:
    targets = []
    for i, c in enumerate(convs):
        headers = ctx.auth(c.user_id)
        if tags is not None:
            headers["If-None-Match"] = tags[i]
        targets.append((f"{base}/v1/cards?conversation_id={c.id}", headers))
    n = len(targets)

    async def request(client: int, _: int = 0) -> GetSample:
        url, headers = targets[client % n]
        return await get(ctx.session, url, headers)

    return request


async def closed_round(
    ctx: Ctx, name: str, base: str, convs: list[Conv], tags: list[str] | None, round_: int
) -> ClosedResult:
    """One round of a closed loop (``cards_s / cards_rounds`` long)."""
    k = ctx.knobs
    want = 304 if tags is not None else 200
    mode = "304" if tags is not None else "200"
    async with ctx.cpu(f"cards closed {name} {mode}", profile=PROCESS[name]):
        return await closed_loop(
            k.clients,
            min(k.warmup_s, 2.0) if round_ == 0 else 0.5,
            k.cards_s / k.cards_rounds,
            reader(ctx, base, convs, tags),
            ok=lambda s: s.status == want,
            kind=lambda s: str(s.status),
            max_requests_per_client=200_000,
        )


def combined(name: str, mode: str, rounds: list[ClosedResult]) -> dict[str, Any]:
    loop = ClosedResult.merged(rounds)
    per_round = [round(r.rate, 1) for r in rounds]
    print(
        f"    {name:<6} {mode} closed loop: {loop.rate:8.1f} req/s "
        f"({loop.errors} errors; rounds {per_round})"
    )
    return {
        "rps": round(loop.rate, 1),
        "rps_by_round": per_round,
        "errors": loop.errors,
        "error_kinds": loop.error_kinds,
        "latency_ms": summary_ms([s.end - s.sent for s in loop.samples]),
    }


async def measure(
    ctx: Ctx, name: str, base: str, convs: list[Conv], tags: list[str] | None, rate: float
) -> dict[str, Any]:
    """An open loop at ``rate``: latency at that load."""
    k = ctx.knobs
    want = 304 if tags is not None else 200
    request = reader(ctx, base, convs, tags)
    mode = "304" if tags is not None else "200"
    counter = iter(range(10_000_000))

    async def arrival(_: int) -> GetSample:
        return await request(next(counter))

    # Warm up at the same rate first (not recorded), as the closed loops do: the process
    # has sat idle through the other windows, and the target is about steady load.
    warm = await open_loop(rate, min(k.warmup_s, 1.0), arrival)
    warm_max_ms = max((s.end - t for t, s in warm.samples), default=0.0) * 1000
    server = ctx.procs.started[PROCESS[name]]
    timeline = ctx.moments(server.name)
    offset = log_size(server.log_path)
    async with ctx.cpu(f"cards open {name} {mode}", profile=PROCESS[name]), timeline:
        opened = await open_loop(rate, k.cards_s, arrival)
    ok = [(t, s) for t, s in opened.samples if s.status == want]
    lat = summary_ms([s.end - t for t, s in ok])
    t0 = min((t for t, _ in ok), default=0.0)
    worst = sorted(ok, key=lambda p: p[1].end - p[0], reverse=True)[:MOMENTS]
    moments = explain(
        timeline,
        t0,
        [(t, s.end, s.end - t, s.request_id) for t, s in worst],
        [s.end for _, s in ok],
        server_durations(server.log_path, offset),
    )
    print(f"    {name:<6} {mode} open loop {rate:7.1f}/s: p50 {lat['p50']} ms p99 {lat['p99']} ms")
    return {
        "rate": round(rate, 1),
        "offered": opened.offered,
        "errors": len(opened.samples) - len(ok),
        "dropped": opened.dropped,
        "latency_ms": lat,
        "slowest": slowest([(t - t0, s.end - t) for t, s in ok]),
        # Where the slowest reads' time went (bench/moments.py).
        "moments": moments,
        "send_lag_ms": opened.send_lag_ms,
        "warmup_max_ms": round(warm_max_ms, 1),  # the first requests after sitting idle
    }


def card_query(ctx: Ctx) -> Process:
    """glia-card-query on a free port (not started)."""
    port = free_port()
    env = service_env(ctx.infra, ctx.jwt_secret, GLIA_HTTP_PORT=str(port))
    return ctx.procs.make(PROCESS["glia"], ["glia-card-query"], env, port)


def baseline(ctx: Ctx, name: str, module: str) -> Process:
    """A bare baseline (``bench/baselines/<module>.py``) on a free port (not started)."""
    port = free_port()
    return ctx.procs.make(
        PROCESS[name],
        [
            "uvicorn",
            f"bench.baselines.{module}:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        service_env(ctx.infra, ctx.jwt_secret),
        port,
    )


async def run(ctx: Ctx) -> dict[str, Any]:
    k = ctx.knobs
    convs = ctx.extracted[: k.clients]
    glia = card_query(ctx)
    baselines = [baseline(ctx, "route", "cards_route"), baseline(ctx, "fastapi", "cards_fastapi")]
    route, fastapi = baselines
    await asyncio.to_thread(ctx.procs.start, glia, route, fastapi)
    ctx.memory_idle(glia.name, route.name, fastapi.name)
    bases = {"glia": glia.url, "route": route.url, "fastapi": fastapi.url}
    tags = {name: await etags(ctx, base, convs) for name, base in bases.items()}

    closed: dict[str, dict[str, Any]] = {}
    opened: dict[str, dict[str, Any]] = {}
    names = list(bases)
    for mode in ("200", "304"):
        rounds: dict[str, list[ClosedResult]] = {name: [] for name in names}
        for r in range(k.cards_rounds):
            # Each round starts with the next one: no side always runs first.
            for name in names[r % len(names) :] + names[: r % len(names)]:
                etag = tags[name] if mode == "304" else None
                rounds[name].append(await closed_round(ctx, name, bases[name], convs, etag, r))
        for name in names:
            closed[f"{name}_{mode}"] = combined(name, mode, rounds[name])
    for mode in ("200", "304"):
        rate = max(1.0, closed[f"glia_{mode}"]["rps"] / 2)
        for name in ("glia", "route"):
            base = bases[name]
            opened[f"{name}_{mode}"] = await measure(
                ctx, name, base, convs, tags[name] if mode == "304" else None, rate
            )
    ctx.details["cards"] = {"clients": len(convs), "closed": closed, "open": opened}
    for p in (glia, route, fastapi):
        await asyncio.to_thread(stop, p)

    def fig(
        kind: dict[str, dict[str, Any]],
        key: str,
        mode: str,
        unit: str,
        q: str = "",
        of: str = "glia",
    ) -> Any:
        g, r = kind[f"{of}_{mode}"], kind[f"route_{mode}"]
        if q:
            return figure(g["latency_ms"][q], r["latency_ms"][q], unit)
        return figure(g[key], r[key], unit)

    return {
        "rps_200": fig(closed, "rps", "200", "req/s"),
        "rps_304": fig(closed, "rps", "304", "req/s"),
        # The same route on bare FastAPI, next to the bare Starlette route.
        "fastapi_floor_rps_200": fig(closed, "rps", "200", "req/s", of="fastapi"),
        "fastapi_floor_rps_304": fig(closed, "rps", "304", "req/s", of="fastapi"),
        "p50_200_ms": fig(opened, "", "200", "ms", "p50"),
        "p99_200_ms": fig(opened, "", "200", "ms", "p99"),
        "p50_304_ms": fig(opened, "", "304", "ms", "p50"),
        "p99_304_ms": fig(opened, "", "304", "ms", "p99"),
        "half_load_rate_200": figure(
            opened["glia_200"]["rate"], opened["route_200"]["rate"], "req/s"
        ),
        "half_load_rate_304": figure(
            opened["glia_304"]["rate"], opened["route_304"]["rate"], "req/s"
        ),
    }


TAIL_LOADS = (0.5, 0.25)  # of Glia's closed-loop maximum
TAIL_TARGET_MS = 20.0


async def tails(ctx: Ctx, rounds: int) -> dict[str, Any]:
    """``--tails``: the full-read p99 against the load. Glia and the bare route take
    turns in open windows at each of ``TAIL_LOADS`` of Glia's closed-loop maximum, the
    same rate for both, ``rounds`` times; each window's slowest reads explained
    (bench/moments.py). A stall of Glia's own shows as Glia's tail alone; a machine
    that runs out of room shows in both, and less at the lower load."""
    k = ctx.knobs
    convs = ctx.extracted[: k.clients]
    glia, route = card_query(ctx), baseline(ctx, "route", "cards_route")
    await asyncio.to_thread(ctx.procs.start, glia, route)
    bases = {"glia": glia.url, "route": route.url}
    # The best of three rounds: a fresh process's first round opens its connections.
    rates = [(await closed_round(ctx, "glia", glia.url, convs, None, r)).rate for r in range(3)]
    maximum = max(rates)
    print(f"    glia   200 closed loop: {maximum:8.1f} req/s (rounds {[round(r) for r in rates]})")
    windows = []
    for r in range(rounds):
        for load in TAIL_LOADS:
            for name in ("glia", "route") if r % 2 == 0 else ("route", "glia"):
                got = await measure(ctx, name, bases[name], convs, None, maximum * load)
                windows.append({"round": r, "load": load, "server": name, **got})
    for p in (glia, route):
        await asyncio.to_thread(stop, p)
    summary: dict[str, Any] = {}
    for load in TAIL_LOADS:
        for name in bases:
            p99 = [
                w["latency_ms"]["p99"] for w in windows if (w["server"], w["load"]) == (name, load)
            ]
            summary[f"{name} at {load} of the maximum"] = {
                "p99_ms": p99,
                f"windows_under_{TAIL_TARGET_MS:.0f}_ms": sum(v < TAIL_TARGET_MS for v in p99),
                "windows": len(p99),
            }
    return {"glia_max_rps": round(maximum, 1), "summary": summary, "windows": windows}


def tails_table(result: dict[str, Any]) -> str:
    lines = [f"card reads, full, p99 by window (Glia's maximum {result['glia_max_rps']} req/s):"]
    for label, s in result["summary"].items():
        under = s[f"windows_under_{TAIL_TARGET_MS:.0f}_ms"]
        lines.append(
            f"  {label:<28} {under} of {s['windows']} under {TAIL_TARGET_MS:.0f} ms: "
            + ", ".join(f"{v:.1f}" for v in s["p99_ms"])
        )
    return "\n".join(lines)
