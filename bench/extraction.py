"""Part 2: extraction by glia-extractor (rule-based: no LLM key), next to a plain
asyncpg loop doing the same reads and writes (``bench/baselines/extract_loop.py``).

Conversations (two turns, four complete messages) are written straight into
PostgreSQL; their turns then "end" by an ``ExtractionRequested`` message published to
the ``glia`` exchange (persistent, publisher confirms), so the extractor is measured,
not the chat API or its outbox relay. Turn end = the request's offered time; a
conversation is done when ``extraction_state`` makes it ``current``; lag = its
``derived_at`` minus the offered time (one host, one clock).

1. Burst: N conversations offered at the same instant -> runs/s (N / time until the
   last is current) and lag p50/p99. Taken in ``extraction_rounds`` bursts of N / rounds
   in which Glia and the loop take turns (runs/s: all runs over the time they took).
2. Steady: arrivals at half of Glia's burst rate (same rate for both) -> lag p50/p99.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.context import Amqp, Ctx
from bench.infra import free_port, service_env, stop
from bench.moments import MOMENTS, MomentTimeline, explain
from bench.seed import (
    Conv,
    count_current,
    current_at,
    insert_finished_conversations,
    run_outcomes,
    spread,
    users,
)
from bench.stats import figure, slowest, summary_ms

POLL_S = 0.05
# Conversations extracted before the first burst, not measured: the extractor opens its
# driver connections as deliveries need them (up to its prefetch of 16, + 2), while the
# loop opens all of its own before its clock starts. A quick 200-conversation burst ran at
# 0.72 of the loop cold, and at 0.93 and 1.04 after this warm-up.
EXTRACTOR_WARMUP = 48


async def wait_current(ctx: Ctx, convs: list[Conv], timeout_s: float) -> int:
    ids = [c.id for c in convs]
    deadline = time.monotonic() + timeout_s
    n = 0
    while time.monotonic() < deadline:
        n = await count_current(ctx.admin, ids)
        if n >= len(ids):
            return n
        await asyncio.sleep(POLL_S)
    return n


async def lags(ctx: Ctx, offered: dict[Any, float]) -> tuple[list[float], float | None]:
    """Per conversation: derived_at - offered (s); and the last derived_at."""
    done = await current_at(ctx.admin, list(offered))
    out = [done[c] - t for c, t in offered.items() if c in done]
    return out, max(done.values()) if done else None


def _timeout(n: int) -> float:
    return max(60.0, n / 20.0)


async def glia_burst(
    ctx: Ctx, amqp: Amqp, convs: list[Conv], *, keep_lags: bool = False
) -> dict[str, Any]:
    t0 = time.time()
    for i in range(0, len(convs), 500):
        await asyncio.gather(*(amqp.publish_request(c, t0) for c in convs[i : i + 500]))
    published = time.time()
    n = await wait_current(ctx, convs, _timeout(len(convs)))
    lag, last = await lags(ctx, {c.id: t0 for c in convs})
    elapsed = (last - t0) if last else None
    return {
        "n": len(convs),
        "current": n,
        "publish_s": round(published - t0, 3),
        "elapsed_s": None if elapsed is None else round(elapsed, 3),
        "runs_per_s": None if not elapsed else round(n / elapsed, 2),
        "lag_ms": summary_ms(lag),
        "runs": await run_outcomes(ctx.admin, [c.id for c in convs]),
        **({"lags_s": lag} if keep_lags else {}),
    }


async def glia_steady(
    ctx: Ctx, amqp: Amqp, convs: list[Conv], rate: float, timeline: MomentTimeline
) -> dict[str, Any]:
    offered: dict[Any, float] = {}
    tasks: set[asyncio.Task[None]] = set()
    failures = 0

    async def publish(c: Conv, at: float) -> None:
        nonlocal failures
        try:
            await amqp.publish_request(c, at)
        except Exception:
            failures += 1

    wall0, base = time.time(), time.perf_counter()
    for i, c in enumerate(convs):
        due = base + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        at = wall0 + (due - base)
        offered[c.id] = at
        task = asyncio.create_task(publish(c, at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks), timeout=30)
    n = await wait_current(ctx, convs, _timeout(len(convs)))
    done = await current_at(ctx.admin, list(offered))
    lag = [done[c] - t for c, t in offered.items() if c in done]
    # The timeline counts in perf_counter() time, PostgreSQL's clock in wall time.
    to_perf = timeline.wall_offset
    worst = sorted(done, key=lambda c: done[c] - offered[c], reverse=True)[:MOMENTS]
    return {
        "slowest": slowest([(offered[c] - wall0, done[c] - offered[c]) for c in done]),
        # Where the slowest runs' time went (bench/moments.py); per request = per run.
        "moments": explain(
            timeline,
            wall0 - to_perf,
            [(offered[c] - to_perf, done[c] - to_perf, done[c] - offered[c], "") for c in worst],
            [t - to_perf for t in done.values()],
        ),
        "rate": round(rate, 2),
        "n": len(convs),
        "current": n,
        "publish_failures": failures,
        "lag_ms": summary_ms(lag),
        "runs": await run_outcomes(ctx.admin, [c.id for c in convs]),
    }


async def baseline(
    ctx: Ctx, convs: list[Conv], name: str, rate: float | None, *, keep_lags: bool = False
) -> dict[str, Any]:
    """Run the loop over ``convs``; it lingers when done, stopped after the CPU window."""
    items = ctx.run_dir / f"{name}-items.json"
    out = ctx.run_dir / f"{name}-out.json"
    items.write_text(json.dumps([[str(c.id), c.user_id] for c in convs]))
    out.unlink(missing_ok=True)  # a repeated phase must not read the last attempt's result
    args = [
        "python",
        "-m",
        "bench.baselines.extract_loop",
        "--db",
        ctx.infra.app_url,
        "--items",
        str(items),
        "--out",
        str(out),
        "--concurrency",
        str(ctx.knobs.extract_loop_concurrency),
        "--timeout",
        str(_timeout(len(convs))),
    ]
    if rate is not None:
        args += ["--rate", str(rate)]
    proc = ctx.procs.make(name, args, service_env(ctx.infra, ctx.jwt_secret), None)
    ctx.procs.start(proc)
    assert proc.popen is not None
    deadline = time.monotonic() + _timeout(len(convs)) + 30
    while not out.exists():
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} failed ({proc.popen.poll()}):\n{proc.tail()}")
        await asyncio.sleep(POLL_S)
    result = json.loads(out.read_text())
    offered = {c.id: result["offered"][str(c.id)] for c in convs}
    lag, last = await lags(ctx, offered)
    n = len(lag)
    elapsed = (last - result["t0"]) if last else None
    return {
        "n": len(convs),
        "current": n,
        "rate": rate,
        "elapsed_s": None if elapsed is None else round(elapsed, 3),
        "runs_per_s": None if not elapsed or rate is not None else round(n / elapsed, 2),
        "lag_ms": summary_ms(lag),
        "outcomes": result["outcomes"],
        **({"lags_s": lag} if keep_lags else {}),
    }


def combined_bursts(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one side as one burst: runs over the time they took."""
    current = sum(r["current"] for r in rounds)
    elapsed = [r["elapsed_s"] for r in rounds]
    return {
        "n": sum(r["n"] for r in rounds),
        "current": current,
        "elapsed_s": None if None in elapsed else round(sum(elapsed), 3),
        "runs_per_s": None if None in elapsed else round(current / sum(elapsed), 2),
        "runs_per_s_by_round": [r["runs_per_s"] for r in rounds],
        # Each round's lags, pooled: a round is a burst of its own size.
        "lag_ms": summary_ms([lag for r in rounds for lag in r["lags_s"]]),
        "rounds": [{k: v for k, v in r.items() if k != "lags_s"} for r in rounds],
    }


async def start_extractor(ctx: Ctx, name: str, consumers: int = 1, **env: str) -> Any:
    """Start a glia-extractor; ready once the queue has ``consumers`` consumers (this
    one and those already running). Its idle memory is recorded then."""
    port = free_port()
    proc = ctx.procs.make(
        name,
        ["glia-extractor"],
        service_env(
            ctx.infra,
            ctx.jwt_secret,
            GLIA_HTTP_PORT=str(port),
            # The reconciler would otherwise re-request the bench's pre-written,
            # not-yet-offered conversations on its own schedule.
            GLIA_RECONCILE_INTERVAL_S="3600",
            GLIA_RECONCILE_GRACE_S="3600",
            **env,
        ),
        port,
    )
    await asyncio.to_thread(ctx.procs.start, proc)
    # Ready = consuming: the queue has as many consumers as asked.
    async with Amqp(ctx.infra.amqp_url) as amqp:
        for _ in range(300):
            _, consuming = await amqp.queue_state()
            if consuming >= consumers:
                break
            await asyncio.sleep(0.1)
        else:
            raise TimeoutError(f"{name} is not consuming:\n{proc.tail()}")
    ctx.processes[name] = proc
    ctx.memory_idle(name)
    return proc


async def run(ctx: Ctx) -> dict[str, Any]:
    k = ctx.knobs
    n = k.conversations
    user_ids = users("extract", 64)
    burst_glia, burst_base = spread(n, user_ids), spread(n, user_ids)
    warmup = spread(EXTRACTOR_WARMUP, user_ids)
    await insert_finished_conversations(ctx.app_pool, burst_glia + burst_base + warmup)

    # Requests left over from the chat part must not be in the way.
    async with Amqp(ctx.infra.amqp_url) as amqp:
        await amqp.purge()
    extractor = await start_extractor(ctx, "glia-extractor-rules", GLIA_LLM_API_KEY="")
    async with Amqp(ctx.infra.amqp_url) as amqp:
        warm = await glia_burst(ctx, amqp, warmup)
    if warm["current"] != len(warmup):
        raise RuntimeError(f"the extractor's warm-up did not finish: {warm}")

    # The burst is taken in rounds in which the extractor and the loop take turns, each
    # round starting with the other one, so that a drift in the host's speed meets both.
    rounds = k.extraction_rounds
    size = -(-n // rounds)
    glia_rounds: list[dict[str, Any]] = []
    loop_rounds: list[dict[str, Any]] = []
    for r in range(rounds):
        part = slice(r * size, (r + 1) * size)
        for side in ("glia", "loop") if r % 2 == 0 else ("loop", "glia"):
            if side == "glia":
                async with (
                    Amqp(ctx.infra.amqp_url) as amqp,
                    ctx.cpu("extraction burst glia", profile="glia-extractor-rules"),
                ):
                    glia_rounds.append(
                        await glia_burst(ctx, amqp, burst_glia[part], keep_lags=True)
                    )
            else:
                async with ctx.cpu("extraction burst loop"):
                    loop_rounds.append(
                        await baseline(
                            ctx, burst_base[part], "extract-loop-burst", None, keep_lags=True
                        )
                    )
                await asyncio.to_thread(stop, ctx.procs.started["extract-loop-burst"])
    g_burst = combined_bursts(glia_rounds)
    b_burst = combined_bursts(loop_rounds)
    for side, burst in (("glia", g_burst), ("loop", b_burst)):
        print(
            f"    {side:<6} burst of {n}{f' in {rounds} rounds' if rounds > 1 else ''}: "
            f"{burst['runs_per_s']} runs/s "
            f"(rounds {burst['runs_per_s_by_round']}), lag p50 {burst['lag_ms']['p50']} ms "
            f"p99 {burst['lag_ms']['p99']} ms"
        )

    rate = max(1.0, (g_burst["runs_per_s"] or 2.0) / 2)
    count = max(10, int(rate * k.extraction_steady_s))
    steady_glia, steady_base = spread(count, user_ids), spread(count, user_ids)
    await insert_finished_conversations(ctx.app_pool, steady_glia + steady_base)
    timeline = ctx.moments("glia-extractor-rules")
    async with (
        Amqp(ctx.infra.amqp_url) as amqp,
        ctx.cpu("extraction steady glia", profile="glia-extractor-rules"),
        timeline,
    ):
        g_steady = await glia_steady(ctx, amqp, steady_glia, rate, timeline)
    print(
        f"    glia   steady {rate:.1f}/s: lag p50 {g_steady['lag_ms']['p50']} ms "
        f"p99 {g_steady['lag_ms']['p99']} ms"
    )
    async with ctx.cpu("extraction steady loop"):
        b_steady = await baseline(ctx, steady_base, "extract-loop-steady", rate)
    await asyncio.to_thread(stop, ctx.procs.started["extract-loop-steady"])
    print(
        f"    loop   steady {rate:.1f}/s: lag p50 {b_steady['lag_ms']['p50']} ms "
        f"p99 {b_steady['lag_ms']['p99']} ms"
    )
    await asyncio.to_thread(stop, extractor)
    ctx.details["extraction"] = {
        "conversations": n,
        "extract_loop_concurrency": k.extract_loop_concurrency,
        "burst": {"glia": g_burst, "loop": b_burst},
        "steady": {"glia": g_steady, "loop": b_steady},
    }
    ctx.extracted = burst_glia
    return {
        "runs_per_s": figure(g_burst["runs_per_s"], b_burst["runs_per_s"], "runs/s"),
        "burst_lag_p50_ms": figure(g_burst["lag_ms"]["p50"], b_burst["lag_ms"]["p50"], "ms"),
        "burst_lag_p99_ms": figure(g_burst["lag_ms"]["p99"], b_burst["lag_ms"]["p99"], "ms"),
        "steady_lag_p50_ms": figure(g_steady["lag_ms"]["p50"], b_steady["lag_ms"]["p50"], "ms"),
        "steady_lag_p99_ms": figure(g_steady["lag_ms"]["p99"], b_steady["lag_ms"]["p99"], "ms"),
        "steady_rate": figure(rate, rate, "runs/s"),
    }
