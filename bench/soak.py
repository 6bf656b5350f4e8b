"""Soak (``--soak S``): the three services together at half of the machine for S
seconds. Does a process keep growing, do latencies drift?

The default run loads one service at a time, for seconds; a leak or a slow drift (a
cache without a bound, a table scanned more as it grows) needs minutes with everything
running. First the maxima, quickly, with everything started: a short closed loop of
chat turns (the extractor consuming what their outbox publishes) and one of card reads.
Then, for S seconds, at once:

- chat turns, open loop at a quarter of the chat maximum (``SHARE``), each on a
  conversation of its own (histories stay one turn long: a turn's work must not grow
  with the soak);
- extraction: one rule-based run per turn, requested through the outbox as in
  production (its arrivals are the turns');
- card reads (200), open loop at a quarter of the card maximum, of ``clients``
  conversations extracted beforehand (8 cards each), as in part 3;
- each service's RSS every 10 s (:class:`bench.memory.Sampler`).

Reported: per process, :func:`bench.memory.growth` after the warm-up (60 s, or 10% of a
shorter soak); per minute, the p50/p99 of chat ``start`` and of card reads.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

from bench import cards
from bench.chat import make_pool, turn_request
from bench.context import Amqp, Ctx
from bench.decoupling import settle
from bench.extraction import glia_burst, start_extractor
from bench.infra import pids, stop
from bench.load import GetSample, TurnSample, closed_loop, open_loop
from bench.memory import Sampler, growth
from bench.report import fmt, grid
from bench.seed import count_current, insert_finished_conversations, run_outcomes, spread, users
from bench.stats import summary_ms

SAMPLE_S = 10.0  # RSS sample interval
MINUTE_S = 60.0  # latency bucket
WARMUP_S = 60.0  # memory growth counts from here (or 10% of a shorter soak)
# Half of the machine, not half of each service: the two load streams (turns with their
# extraction, and reads) share it, so each gets half of what it reached alone, halved
# again. Half of each alone, at once, is more than two cores do: queues then grow for
# the whole soak, and so does the memory holding them.
SHARE = 0.5 / 2
SERVICES = {
    "chat-api": "glia-chat-api",
    "extractor": "glia-extractor-rules",
    "card-query": "glia-card-query",
}


def warmup_for(duration_s: float) -> float:
    return min(WARMUP_S, 0.1 * duration_s)


def per_minute(
    pairs: Sequence[tuple[float, float | None]], bucket_s: float = MINUTE_S
) -> list[dict[str, Any]]:
    """``(offset s since the soak began, latency s, or None for a failed request)`` ->
    per bucket (minute 0, 1, ...): answered, failed, p50/p99/max in ms. The last bucket
    of a soak that is not a whole number of minutes is partial."""
    ok: dict[int, list[float]] = {}
    failed: dict[int, int] = {}
    for offset, latency in pairs:
        b = int(offset // bucket_s)
        ok.setdefault(b, [])
        if latency is None:
            failed[b] = failed.get(b, 0) + 1
        else:
            ok[b].append(latency)
    out = []
    for b in sorted(ok):
        s = summary_ms(ok[b])
        out.append(
            {
                "minute": b,
                "n": s["n"],
                "errors": failed.get(b, 0),
                "p50": s["p50"],
                "p99": s["p99"],
                "max": s["max"],
            }
        )
    return out


async def maxima(
    ctx: Ctx, chat_url: str, card_url: str, card_convs: list[Any]
) -> tuple[float, float]:
    """(chat turns/s, card reads/s): short closed loops, one service at a time."""
    k = ctx.knobs
    pool = await make_pool(ctx, 1000 if k.quick else 3000)
    async with ctx.cpu("soak max chat"):
        chat = await closed_loop(
            k.clients,
            k.warmup_s,
            3.0 if k.quick else 10.0,
            turn_request(ctx, chat_url, pool),
            ok=lambda s: s.ok and s.deltas == 20,
            kind=lambda s: s.terminal or "unknown",
        )
    await settle(ctx)  # the extractor has caught up with those turns
    async with ctx.cpu("soak max cards"):
        read = await closed_loop(
            k.clients,
            min(k.warmup_s, 2.0),
            2.0 if k.quick else 5.0,
            cards.reader(ctx, card_url, card_convs, None),
            ok=lambda s: s.status == 200,
            kind=lambda s: str(s.status),
            max_requests_per_client=200_000,
        )
    print(f"    maxima: chat {chat.rate:.1f} turns/s, card reads {read.rate:.1f} req/s")
    return chat.rate, read.rate


def _offsets(samples: list[tuple[float, Any]]) -> float:
    return min((t for t, _ in samples), default=0.0)


async def run(ctx: Ctx, chat_url: str, duration_s: float) -> dict[str, Any]:
    k = ctx.knobs
    extractor = await start_extractor(ctx, SERVICES["extractor"], GLIA_LLM_API_KEY="")
    card_query = cards.card_query(ctx)
    await asyncio.to_thread(ctx.procs.start, card_query)
    ctx.memory_idle(SERVICES["card-query"])  # chat-api's: at its start (bench.run)

    # The card readers' conversations: extracted once, read all along.
    card_convs = spread(k.clients, users("soak-cards", k.clients))
    await insert_finished_conversations(ctx.app_pool, card_convs)
    async with Amqp(ctx.infra.amqp_url) as amqp:
        await glia_burst(ctx, amqp, card_convs)

    chat_max, cards_max = await maxima(ctx, chat_url, card_query.url, card_convs)
    chat_rate, cards_rate = max(1.0, chat_max * SHARE), max(1.0, cards_max * SHARE)
    pool = await make_pool(ctx, int(chat_rate * duration_s * 1.05) + 100)
    await settle(ctx)

    read = cards.reader(ctx, card_query.url, card_convs, None)
    counter = itertools.count()

    async def card_arrival(_: int) -> GetSample:
        return await read(next(counter))

    def watched() -> dict[str, int]:
        running = pids(ctx.procs)
        return {n: running[n] for n in SERVICES.values() if n in running}

    print(
        f"    soak {duration_s:.0f} s: chat {chat_rate:.1f} turns/s, "
        f"card reads {cards_rate:.1f} req/s, extraction by the turns' outbox"
    )
    async with ctx.cpu("soak"), Sampler(watched, SAMPLE_S, keep_series=True) as sampler:
        turns, reads = await asyncio.gather(
            open_loop(chat_rate, duration_s, turn_request(ctx, chat_url, pool)),
            open_loop(cards_rate, duration_s, card_arrival),
        )
        async with Amqp(ctx.infra.amqp_url) as amqp:
            backlog, _ = await amqp.queue_state()
    await settle(ctx)
    requested = [c.id for c in pool.convs[: turns.offered - turns.dropped]]  # in turn order
    extracted = await count_current(ctx.admin, requested)
    outcomes = await run_outcomes(ctx.admin, requested)
    for p in (extractor, card_query):
        await asyncio.to_thread(stop, p)

    t0 = min(_offsets(turns.samples), _offsets(reads.samples))
    chat_pairs: list[tuple[float, float | None]] = []
    for t, s in turns.samples:
        assert isinstance(s, TurnSample)
        chat_pairs.append((t - t0, s.start - t if s.ok and s.start is not None else None))
    read_pairs = [(t - t0, s.end - t if s.status == 200 else None) for t, s in reads.samples]

    warmup = warmup_for(duration_s)
    idle = ctx.details.get("memory", {}).get("idle", {})
    memory = {}
    for service, process in SERVICES.items():
        series = sampler.series.get(process, [])
        memory[service] = {
            "process": process,
            "idle_mb": idle.get(process, {}).get("rss_mb"),
            **growth(series, warmup),
            "hwm_mb": sampler.stats.get(process, {}).get("hwm_mb"),
        }
    ctx.details["soak"] = {
        "memory_series": {s: sampler.series.get(p, []) for s, p in SERVICES.items()},
        "chat_send_lag_ms": turns.send_lag_ms,
        "cards_send_lag_ms": reads.send_lag_ms,
    }
    result = {
        "duration_s": duration_s,
        "warmup_s": warmup,
        "sample_interval_s": SAMPLE_S,
        "rates": {
            "chat_max_turns_per_s": round(chat_max, 1),
            "chat_turns_per_s": round(chat_rate, 1),
            "cards_max_rps": round(cards_max, 1),
            "cards_rps": round(cards_rate, 1),
        },
        "memory": memory,
        "grew": [s for s, m in memory.items() if m.get("grew")],
        "latency_ms": {
            "chat_start": summary_ms([lat for _, lat in chat_pairs if lat is not None]),
            "cards_read": summary_ms([lat for _, lat in read_pairs if lat is not None]),
        },
        "latency_per_minute": {
            "chat_start_ms": per_minute(chat_pairs),
            "cards_read_ms": per_minute(read_pairs),
        },
        "chat": {
            "offered": turns.offered,
            "answered": len(turns.samples),
            "dropped": turns.dropped,
        },
        "cards": {
            "offered": reads.offered,
            "answered": len(reads.samples),
            "dropped": reads.dropped,
        },
        "extraction": {
            "requested": len(requested),
            "current_after": extracted,
            "queue_backlog_at_end": backlog,
            "runs": outcomes,
        },
    }
    grew = ", ".join(s for s, m in memory.items() if m.get("grew")) or "none"
    print(f"    soak done: memory grew in {grew}; extraction backlog at the end {backlog}")
    return result


def table(soak: dict[str, Any]) -> str:
    """The soak's memory per process, then chat start and card reads per minute."""
    rows: list[tuple[str, ...]] = [
        (
            "process (RSS, MB)",
            "idle",
            "first",
            "last",
            "max",
            "peak (HWM)",
            "growth",
            "growth %",
            "slope MB/min",
            "grew",
        )
    ]
    for service, m in soak["memory"].items():
        rows.append(
            (
                service,
                *(
                    fmt(m.get(k))
                    for k in (
                        "idle_mb",
                        "first_mb",
                        "last_mb",
                        "max_mb",
                        "hwm_mb",
                        "growth_mb",
                        "growth_pct",
                        "slope_mb_per_min",
                    )
                ),
                "YES" if m.get("grew") else "no",
            )
        )
    lines = grid(rows)
    lines.append("")
    chat = soak["latency_per_minute"]["chat_start_ms"]
    reads = {b["minute"]: b for b in soak["latency_per_minute"]["cards_read_ms"]}
    per: list[tuple[str, ...]] = [
        (
            "minute",
            "turns",
            "start p50 ms",
            "p99",
            "failed",
            "reads",
            "read p50 ms",
            "p99",
            "failed",
        )
    ]
    for b in chat:
        rd = reads.get(b["minute"], {})
        per.append(
            (
                str(b["minute"]),
                str(b["n"]),
                fmt(b["p50"]),
                fmt(b["p99"]),
                str(b["errors"]),
                str(rd.get("n", 0)),
                fmt(rd.get("p50")),
                fmt(rd.get("p99")),
                str(rd.get("errors", 0)),
            )
        )
    lines += grid(per)
    r = soak["rates"]
    lines.append(
        f"\nsoak {soak['duration_s']:.0f} s at chat {r['chat_turns_per_s']} turns/s (max "
        f"{r['chat_max_turns_per_s']}), card reads {r['cards_rps']} req/s (max "
        f"{r['cards_max_rps']}); memory from {soak['warmup_s']:.0f} s, a sample every "
        f"{soak['sample_interval_s']:.0f} s; grew = growth > 10% and slope > 0"
    )
    return "\n".join(lines)
