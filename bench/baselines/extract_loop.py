"""Baseline for extraction: a plain asyncpg loop doing the extractor's reads and writes.

Per conversation, on one pooled connection, as ``glia_extractor.extraction.service``
does (same statements, same order, same transactions), but with no broker, no
FastStream, no SQLAlchemy, no telemetry and no metrics:

1. take the conversation's advisory lock (``pg_advisory_lock(hashtextextended(...))``);
2. transaction as the user (``glia.user_id``): the conversation exists; read its
   complete messages in order; ``source_hash`` (``glia_extractor.extraction.hashing``);
   skip a source that already has a succeeded run; close abandoned runs; count earlier
   attempts; insert the ``running`` run row;
3. ``glia_extractor.extraction.rules.extract_cards`` (the rule-based path: no LLM key);
4. transaction as the user: the conversation still exists; lock ``extraction_state``;
   delete the cards; insert the new ones; upsert ``extraction_state``; ``pg_notify``;
   finish the run row (succeeded, fallback, ``not_configured``);
5. release the advisory lock.

``--concurrency`` workers take conversations from an in-process queue: all at once
(burst) or at a fixed arrival rate (``--rate``). Writes ``{"t0": epoch, "offered":
{conversation_id: epoch}, "outcomes": {...}}`` to ``--out``, then lingers with its
connections open until SIGTERM (so the bench can read its CPU time).

Run: ``python -m bench.baselines.extract_loop --db URL --items FILE --out FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
import uuid
from typing import Any

import asyncpg

from glia_extractor.extraction.hashing import source_hash
from glia_extractor.extraction.rules import extract_cards
from glia_extractor.extraction.types import SourceMessage

LOCK_TIMEOUT = "140000ms"  # as the service: 2 x (timeout x (retries + 1) + 10 s)


async def extract_one(conn: asyncpg.Connection, conversation_id: uuid.UUID, user_id: str) -> str:
    key = f"glia.extraction:{conversation_id}"
    async with conn.transaction():
        await conn.execute("SELECT set_config('lock_timeout', $1, true)", LOCK_TIMEOUT)
        await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('glia.user_id', $1, true)", user_id)
            if (
                await conn.fetchval("SELECT 1 FROM conversations WHERE id = $1", conversation_id)
                is None
            ):
                return "no_conversation"
            rows = await conn.fetch(
                "SELECT id, role, content FROM messages "
                "WHERE conversation_id = $1 AND status = 'complete' ORDER BY seq",
                conversation_id,
            )
            if not rows:
                return "no_messages"
            messages = [SourceMessage(id=r[0], role=r[1], content=r[2]) for r in rows]
            digest = source_hash(messages)
            if await conn.fetchval(
                "SELECT 1 FROM extraction_runs WHERE conversation_id = $1 "
                "AND source_hash = $2 AND status = 'succeeded' LIMIT 1",
                conversation_id,
                digest,
            ):
                return "duplicate"
            await conn.execute(
                "UPDATE extraction_runs SET status = 'failed', "
                "error = 'abandoned: the worker stopped before finishing', "
                "finished_at = clock_timestamp() "
                "WHERE conversation_id = $1 AND status = 'running'",
                conversation_id,
            )
            attempt = await conn.fetchval(
                "SELECT count(*) FROM extraction_runs WHERE conversation_id = $1 "
                "AND source_hash = $2",
                conversation_id,
                digest,
            )
            run_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO extraction_runs (id, conversation_id, user_id, status, source_hash, "
                "provider, model, attempt, request_id, trace_id, replay) "
                "VALUES ($1, $2, $3, 'running', $4, 'rules', 'glia-rules-v1', $5, $6, NULL, false)",
                run_id,
                conversation_id,
                user_id,
                digest,
                attempt + 1,
                "bench-baseline",
            )

        started = time.perf_counter()
        drafts = extract_cards(messages)
        latency_ms = int((time.perf_counter() - started) * 1000)

        async with conn.transaction():
            await conn.execute("SELECT set_config('glia.user_id', $1, true)", user_id)
            if (
                await conn.fetchval("SELECT 1 FROM conversations WHERE id = $1", conversation_id)
                is None
            ):
                return "no_conversation"
            count = await conn.fetchval(
                "SELECT source_message_count FROM extraction_state "
                "WHERE conversation_id = $1 FOR UPDATE",
                conversation_id,
            )
            if count is not None and count > len(messages):
                return "superseded"
            await conn.execute("DELETE FROM cards WHERE conversation_id = $1", conversation_id)
            if drafts:
                await conn.executemany(
                    "INSERT INTO cards (id, conversation_id, user_id, kind, title, body, origin, "
                    "source_message_ids, source_hash, run_id, position) "
                    "VALUES ($1, $2, $3, $4, $5, $6, 'fallback', $7, $8, $9, $10)",
                    [
                        (
                            uuid.uuid4(),
                            conversation_id,
                            user_id,
                            d.kind,
                            d.title,
                            d.body,
                            list(d.source_message_ids),
                            digest,
                            run_id,
                            i,
                        )
                        for i, d in enumerate(drafts)
                    ],
                )
            await conn.execute(
                "INSERT INTO extraction_state (conversation_id, user_id, source_hash, "
                "source_message_count, run_id, derived_at) "
                "VALUES ($1, $2, $3, $4, $5, clock_timestamp()) "
                "ON CONFLICT (conversation_id) DO UPDATE SET source_hash = excluded.source_hash, "
                "source_message_count = excluded.source_message_count, "
                "run_id = excluded.run_id, derived_at = excluded.derived_at",
                conversation_id,
                user_id,
                digest,
                len(messages),
                run_id,
            )
            await conn.execute(
                "SELECT pg_notify('glia_cards', $1)", f"{user_id}\n{conversation_id}"
            )
            await conn.execute(
                "UPDATE extraction_runs SET finished_at = clock_timestamp(), "
                "status = 'succeeded', latency_ms = $2, fallback_used = true, "
                "failure_class = 'not_configured', error = NULL, card_count = $3 WHERE id = $1",
                run_id,
                latency_ms,
                len(drafts),
            )
        return "succeeded"
    finally:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)


async def main_async(
    args: argparse.Namespace, items: list[tuple[uuid.UUID, str]]
) -> dict[str, Any]:
    pool = await asyncpg.create_pool(args.db, min_size=args.concurrency, max_size=args.concurrency)
    queue: asyncio.Queue[tuple[uuid.UUID, str] | None] = asyncio.Queue()
    outcomes: dict[str, int] = {}
    offered: dict[str, float] = {}

    async def worker() -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            async with pool.acquire() as conn:
                try:
                    outcome = await extract_one(conn, *item)
                except Exception as exc:  # counted, reported; the loop goes on
                    outcome = f"error:{type(exc).__name__}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    t0 = time.time()
    if args.rate is None:
        for c, u in items:
            offered[str(c)] = t0
            queue.put_nowait((c, u))
    else:
        base = time.perf_counter()
        for i, (c, u) in enumerate(items):
            due = base + i / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            offered[str(c)] = t0 + (due - base)
            queue.put_nowait((c, u))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.wait_for(asyncio.gather(*workers), args.timeout)
    result = {"t0": t0, "offered": offered, "outcomes": outcomes}
    tmp = f"{args.out}.tmp"
    with open(tmp, "w") as f:  # noqa: ASYNC230 - once, after the measurement
        json.dump(result, f)
    os.replace(tmp, args.out)
    # Linger (connections open) until stopped, so the bench can read this process's
    # CPU time, and its backends', before they are gone.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.linger)
    await pool.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="the app role's postgresql:// URL")
    parser.add_argument("--items", required=True, help="JSON [[conversation_id, user_id], ...]")
    parser.add_argument("--out", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=float, default=None, help="arrivals/s (default: burst)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--linger", type=float, default=120.0, help="max seconds to wait")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with open(args.items) as f:
        items = [(uuid.UUID(c), u) for c, u in json.load(f)]
    asyncio.run(main_async(args, items))


if __name__ == "__main__":
    main()
