"""Part 4: chat never waits for extraction.

glia-extractor now runs *with* the fake LLM as its extraction endpoint. Full chat
turns (request sent -> ``done``) are measured in an open loop at a quarter of part 1's
maximum rate twice: with the fake's ``extraction`` target answering at once, then with
it in ``slow`` mode (``delay_s`` = 10: every extraction call waits 10 s, holding the
extractor's prefetch and its connections). Ratio = slow / fast; ~1 means decoupled.

Why a quarter, not half: on two cores, every turn's extraction running at once takes a
third of a core or more. At half load that contention alone made chat ~25% slower in
the fast window than in the slow one (ratio 0.78), which measures CPU sharing, not
coupling. Coupling - chat waiting on extraction - would push the ratio far above 1 at
any rate; a quarter load keeps the sharing small enough not to hide it either way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.chat import make_pool, turn_request
from bench.context import Amqp, Ctx
from bench.extraction import start_extractor
from bench.infra import stop
from bench.load import open_loop
from bench.stats import figure, slowest, summary_ms

SLOW_S = 10.0


async def window(ctx: Ctx, glia_url: str, rate: float, label: str) -> dict[str, Any]:
    pool = await make_pool(ctx, max(50, int(rate * ctx.knobs.decoupling_s) + 10))
    started = await ctx.admin.fetchval("SELECT clock_timestamp()")
    async with ctx.cpu(f"decoupling {label}", profile="glia-chat-api"):
        result = await open_loop(rate, ctx.knobs.decoupling_s, turn_request(ctx, glia_url, pool))
    ok = [(t, s) for t, s in result.samples if s.ok]
    t0 = min((t for t, _ in ok), default=0.0)
    runs = await ctx.admin.fetch(
        "SELECT status, count(*) AS n, percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) "
        "AS p50 FROM extraction_runs WHERE started_at >= $1 GROUP BY status",
        started,
    )
    out: dict[str, Any] = {
        "rate": round(rate, 2),
        "offered": result.offered,
        "errors": len(result.samples) - len(ok),
        "dropped": result.dropped,
        "turn_ms": summary_ms([s.end - t for t, s in ok]),
        "start_ms": summary_ms([s.start - t for t, s in ok if s.start]),
        "slowest_turn": slowest([(t - t0, s.end - t) for t, s in ok]),
        "extraction_runs_started": {
            r["status"]: {"n": int(r["n"]), "llm_latency_p50_ms": r["p50"]} for r in runs
        },
    }
    print(
        f"    extraction {label:<5}: turn p50 {out['turn_ms']['p50']} ms p99 "
        f"{out['turn_ms']['p99']} ms ({out['errors']} errors); "
        f"runs {out['extraction_runs_started']}"
    )
    return out


async def settle(ctx: Ctx) -> None:
    """Until the outbox is published and the queue is empty (bounded), then a breath."""
    await ctx.wait_outbox_drained()
    async with Amqp(ctx.infra.amqp_url) as amqp:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _ = await amqp.queue_state()
            if ready == 0:
                break
            await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)


async def run(ctx: Ctx, glia_url: str, rate: float) -> dict[str, Any]:
    await ctx.wait_outbox_drained()
    async with Amqp(ctx.infra.amqp_url) as amqp:
        await amqp.purge()
    await ctx.configure_fake(target="extraction", mode="ok", delay_s=0)
    extractor = await start_extractor(
        ctx,
        "glia-extractor-llm",
        GLIA_LLM_API_KEY="bench-key",
        GLIA_LLM_BASE_URL=ctx.fake_base,
    )
    try:
        # Warm the new extractor (connections, first LLM calls) before measuring.
        warm = await make_pool(ctx, 20)
        await open_loop(rate, 2.0, turn_request(ctx, glia_url, warm))
        await settle(ctx)
        fast = await window(ctx, glia_url, rate, "fast")
        # Let the fast window's extractions finish before the slow one starts.
        await settle(ctx)
        await ctx.configure_fake(target="extraction", mode="slow", delay_s=SLOW_S)
        slow = await window(ctx, glia_url, rate, "slow")
    finally:
        await ctx.configure_fake(target="extraction", mode="ok", delay_s=0)
    # In-flight slow calls would hold a graceful stop for up to 10 s: not what is measured.
    await asyncio.to_thread(stop, extractor, 5.0)
    ctx.details["decoupling"] = {"slow_s": SLOW_S, "fast": fast, "slow": slow}
    return {
        "turn_p50_ms": figure(slow["turn_ms"]["p50"], fast["turn_ms"]["p50"], "ms"),
        "turn_p99_ms": figure(slow["turn_ms"]["p99"], fast["turn_ms"]["p99"], "ms"),
        "rate": figure(rate, rate, "turns/s"),
    }
