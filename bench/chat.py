"""Part 1: chat turns through glia-chat-api, next to the bare relay baseline.

1. Closed loop: ``clients`` clients, each streaming one turn after another for a fixed
   time -> completed turns/s (turns that ended with ``done`` inside the window); Glia and
   the relay take turns in ``chat_rounds`` rounds of ``chat_s / chat_rounds``. The
   clients are spread out over a turn's time first (``closed_loop(desync=True)``), so a
   round does not count them in waves.
2. Open loop at half of Glia's max (the same rate for both): time to the ``start``
   event p50/p99, full turn, and the delay added between the LLM's first token and the
   first ``delta`` (see README: start->first delta minus the fake's own TTFT, which a
   probe measures by calling the fake directly during the same run).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from bench.context import ConvPool, Ctx
from bench.load import (
    ClosedResult,
    TurnSample,
    closed_loop,
    fake_ttft,
    open_loop,
    periodic,
    sse_turn,
)
from bench.moments import MOMENTS, explain
from bench.seed import insert_conversations, spread, users
from bench.stats import figure, percentile, slowest, summary_ms

USER_TEXT = (
    "We decided to launch the beta in May. TODO: book the venue for the kickoff. "
    "What is the budget for the event?"
)
BODY = json.dumps({"content": USER_TEXT}).encode()
PROBE_BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are Glia, a helpful assistant."},
            {"role": "user", "content": USER_TEXT},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
).encode()
PROBE_INTERVAL_S = 0.2
DESYNC_WARMUP_S = 2.0


async def make_pool(ctx: Ctx, size: int) -> ConvPool:
    convs = spread(size, users("chat", 64))
    await insert_conversations(ctx.app_pool, convs, "bench chat")
    return ConvPool(convs)


def turn_request(ctx: Ctx, base_url: str, pool: ConvPool) -> Callable[..., Awaitable[TurnSample]]:
    headers = {u: {**ctx.auth(u), "Content-Type": "application/json"} for u in users("chat", 64)}

    async def request(*_: int) -> TurnSample:
        conv = pool.next()
        url = f"{base_url}/v1/conversations/{conv.id}/messages"
        return await sse_turn(ctx.session, url, headers[conv.user_id], BODY)

    return request


def _kind(s: TurnSample) -> str:
    return s.terminal or "unknown"


async def closed_round(
    ctx: Ctx, name: str, base_url: str, pool: ConvPool, round_: int
) -> ClosedResult:
    """One round of a closed loop (``chat_s / chat_rounds`` long)."""
    k = ctx.knobs
    async with ctx.cpu(f"chat closed {name}", profile={"glia": "glia-chat-api"}.get(name, name)):
        return await closed_loop(
            k.clients,
            # Covers the clients' first turn and their spreading out (desync), at the
            # 0.3-0.8 s a turn takes in this loop.
            max(k.warmup_s, DESYNC_WARMUP_S) if round_ == 0 else DESYNC_WARMUP_S,
            k.chat_s / k.chat_rounds,
            turn_request(ctx, base_url, pool),
            ok=lambda s: s.ok and s.deltas == 20,
            kind=_kind,
            desync=True,
        )


def combined(name: str, clients: int, rounds: list[ClosedResult]) -> dict[str, Any]:
    loop = ClosedResult.merged(rounds)
    per_round = [round(r.rate, 1) for r in rounds]
    print(
        f"    {name:<6} closed loop, {clients} clients: {loop.rate:8.1f} turns/s "
        f"({loop.errors} errors; rounds {per_round})"
    )
    return {
        "turns_per_s": round(loop.rate, 2),
        "turns_per_s_by_round": per_round,
        "completed": loop.completed,
        "errors": loop.errors,
        "error_kinds": loop.error_kinds,
        "turn_ms": summary_ms([s.end - s.sent for s in loop.samples]),
    }


async def opened(ctx: Ctx, name: str, base_url: str, pool: ConvPool, rate: float) -> dict[str, Any]:
    k = ctx.knobs
    done = False
    probe_url = f"{ctx.fake_base}/chat/completions"

    async def probe() -> float | None:
        return await fake_ttft(ctx.session, probe_url, PROBE_BODY)

    probe_task = asyncio.create_task(periodic(PROBE_INTERVAL_S, lambda: done, probe))
    server = {"glia": "glia-chat-api"}.get(name, name)
    timeline = ctx.moments(server)
    try:
        async with ctx.cpu(f"chat open {name}", profile=server), timeline:
            result = await open_loop(rate, k.chat_s, turn_request(ctx, base_url, pool))
    finally:
        done = True
    ttfts = [t for t in await probe_task if t is not None]

    ok = [(t, s) for t, s in result.samples if s.ok and s.start and s.first_delta]
    errors = len(result.samples) - len(ok)
    start = [s.start - t for t, s in ok]
    to_first = [s.first_delta - s.start for _, s in ok]
    turn = [s.end - t for t, s in ok]
    t0 = min((t for t, _ in ok), default=0.0)
    slowest_starts = sorted(ok, key=lambda p: p[1].start - p[0], reverse=True)[:MOMENTS]
    fake_p50 = percentile(ttfts, 50)
    gap_p50 = percentile(to_first, 50)
    added = None if fake_p50 is None or gap_p50 is None else (gap_p50 - fake_p50) * 1000
    out: dict[str, Any] = {
        "rate": round(rate, 2),
        "offered": result.offered,
        "answered_ok": len(ok),
        "errors": errors,
        "dropped": result.dropped,
        "start_ms": summary_ms(start),
        "start_to_first_delta_ms": summary_ms(to_first),
        "fake_ttft_ms": summary_ms(ttfts),
        "first_token_added_p50_ms": None if added is None else round(added, 3),
        "turn_ms": summary_ms(turn),
        "slowest_start": slowest([(t - t0, s.start - t) for t, s in ok]),
        # Where the slowest starts' time went (bench/moments.py); per request = per turn.
        "moments": explain(
            timeline,
            t0,
            [(t, s.start, s.start - t, "") for t, s in slowest_starts],
            [s.end for _, s in ok],
        ),
        "send_lag_ms": result.send_lag_ms,
    }
    print(
        f"    {name:<6} open loop {rate:6.1f}/s: start p50 {out['start_ms']['p50']} ms "
        f"p99 {out['start_ms']['p99']} ms, first token added p50 {out['first_token_added_p50_ms']}"
        f" ms, turn p50 {out['turn_ms']['p50']} ms ({errors} errors, {result.dropped} dropped)"
    )
    return out


async def run(ctx: Ctx, glia_url: str, relay_url: str) -> dict[str, Any]:
    k = ctx.knobs
    pool = await make_pool(ctx, 1000 if k.quick else 6000)
    # Glia and the relay take turns in rounds, each round starting with the other one, so
    # that a drift in the host's speed meets both.
    rounds: dict[str, list[ClosedResult]] = {"glia": [], "relay": []}
    urls = {"glia": glia_url, "relay": relay_url}
    for r in range(k.chat_rounds):
        for name in ("glia", "relay") if r % 2 == 0 else ("relay", "glia"):
            rounds[name].append(await closed_round(ctx, name, urls[name], pool, r))
            if name == "glia":
                await ctx.wait_outbox_drained()
    glia_closed = combined("glia", k.clients, rounds["glia"])
    relay_closed = combined("relay", k.clients, rounds["relay"])
    rate = max(1.0, glia_closed["turns_per_s"] / 2)
    glia_open = await opened(ctx, "glia", glia_url, pool, rate)
    await ctx.wait_outbox_drained()
    relay_open = await opened(ctx, "relay", relay_url, pool, rate)
    ctx.details["chat"] = {
        "clients": k.clients,
        "closed": {"glia": glia_closed, "relay": relay_closed},
        "open": {"glia": glia_open, "relay": relay_open},
    }
    return {
        "turns_per_s": figure(glia_closed["turns_per_s"], relay_closed["turns_per_s"], "turns/s"),
        "start_p50_ms": figure(glia_open["start_ms"]["p50"], relay_open["start_ms"]["p50"], "ms"),
        "start_p99_ms": figure(glia_open["start_ms"]["p99"], relay_open["start_ms"]["p99"], "ms"),
        "first_token_added_p50_ms": figure(
            glia_open["first_token_added_p50_ms"], relay_open["first_token_added_p50_ms"], "ms"
        ),
        "start_to_first_delta_p99_ms": figure(
            glia_open["start_to_first_delta_ms"]["p99"],
            relay_open["start_to_first_delta_ms"]["p99"],
            "ms",
        ),
        "turn_p50_ms": figure(glia_open["turn_ms"]["p50"], relay_open["turn_ms"]["p50"], "ms"),
        "turn_p99_ms": figure(glia_open["turn_ms"]["p99"], relay_open["turn_ms"]["p99"], "ms"),
        "half_load_rate": figure(rate, rate, "turns/s"),
    }
