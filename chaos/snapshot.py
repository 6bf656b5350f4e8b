"""After the faults: wait (bounded) for the system to quiesce, then read what it holds,
from the database (the admin connection, straight to PostgreSQL), the broker, and the
card API as each user."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aio_pika
import asyncpg
import httpx

from chaos.checker import Snapshot, live_sources
from chaos.cluster import Cluster

MESSAGES = """
SELECT id::text, conversation_id::text, user_id, role, content, status
  FROM messages ORDER BY seq
"""


async def read_database(conn: asyncpg.Connection) -> Snapshot:
    snap = Snapshot()
    for r in await conn.fetch("SELECT id::text, user_id FROM conversations"):
        snap.conversations[r["id"]] = r["user_id"]
    snap.messages = [dict(r) for r in await conn.fetch(MESSAGES)]
    snap.turns = [
        dict(r)
        for r in await conn.fetch(
            "SELECT id::text, conversation_id::text, user_id, idempotency_key,"
            " user_message_id::text, assistant_message_id::text FROM turns"
        )
    ]
    snap.cards = [
        {**dict(r), "source_message_ids": [str(s) for s in r["source_message_ids"]]}
        for r in await conn.fetch(
            "SELECT id::text, conversation_id::text, user_id, source_hash, run_id::text,"
            " source_message_ids FROM cards ORDER BY conversation_id, position"
        )
    ]
    snap.runs = [
        dict(r)
        for r in await conn.fetch(
            "SELECT id::text, conversation_id::text, user_id, status, source_hash, replay,"
            " request_id, error FROM extraction_runs ORDER BY started_at"
        )
    ]
    for r in await conn.fetch(
        "SELECT conversation_id::text, user_id, source_hash, run_id::text FROM extraction_state"
    ):
        snap.states[r["conversation_id"]] = dict(r)
    snap.outbox = [
        dict(r)
        for r in await conn.fetch(
            "SELECT id, conversation_id::text, user_id, sent_at IS NOT NULL AS sent FROM outbox"
        )
    ]
    return snap


def pending(snap: Snapshot, queues: dict[str, tuple[int, int]]) -> list[str]:
    """What still keeps the system from being quiet and converged."""
    out = []
    streaming = sum(1 for m in snap.messages if m["status"] == "streaming")
    if streaming:
        out.append(f"{streaming} messages streaming")
    unsent = sum(1 for o in snap.outbox if not o["sent"])
    if unsent:
        out.append(f"{unsent} outbox rows unsent")
    running = sum(1 for r in snap.runs if r["status"] == "running")
    if running:
        out.append(f"{running} runs running")
    ready, unacked = queues.get("glia.extraction", (0, 0))
    if ready or unacked:
        out.append(f"queue {ready}+{unacked}")
    stale = sum(
        1
        for conv, expected in live_sources(snap).items()
        if expected is not None and snap.states.get(conv, {}).get("source_hash") != expected
    )
    if stale:
        out.append(f"{stale} conversations not current")
    return out


async def quiesce(cluster: Cluster, timeout_s: float) -> tuple[float | None, list[str]]:
    """Poll until nothing is pending; (monotonic time it happened, or None; last pending)."""
    deadline = time.monotonic() + timeout_s
    last: list[str] = ["not read yet"]
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(cluster.admin_url, timeout=5)
            try:
                snap = await read_database(conn)
            finally:
                await conn.close()
            queues = await asyncio.to_thread(cluster.queue_depths)
            last = pending(snap, queues)
            if "glia.extraction" not in queues:
                last.append("queue not listed")
            if not last:
                return time.monotonic(), []
        except (OSError, asyncpg.PostgresError) as exc:
            last = [f"database: {exc!r}"]
        await asyncio.sleep(1.0)
    return None, last


async def drain_dlq(url: str) -> list[str]:
    """Every body in the dead-letter queue (consumed: the run's vhost goes next)."""
    bodies: list[str] = []
    connection = await aio_pika.connect(url, timeout=10)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue("glia.extraction.dlq", passive=True)
        while True:
            message = await queue.get(no_ack=True, fail=False, timeout=5)
            if message is None:
                break
            bodies.append(message.body.decode(errors="replace"))
    finally:
        await connection.close()
    return bodies


async def read_api(
    cluster: Cluster, snap: Snapshot, tokens: dict[str, str]
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """The card API's view of every live conversation, as its owner; and every user's
    full conversation listing (for leaks)."""
    fresh: dict[str, dict[str, Any]] = {}
    seen: dict[str, list[str]] = {}
    cards_url = cluster.url("cards-0")
    chat_url = cluster.url("chat-0")
    async with httpx.AsyncClient(timeout=15.0) as client:
        for conv, user in snap.conversations.items():
            token = tokens.get(user)
            if token is None:
                continue
            r = await client.get(
                f"{cards_url}/v1/cards",
                params={"conversation_id": conv, "limit": 100},
                headers={"Authorization": f"Bearer {token}"},
            )
            if r.status_code != 200:
                fresh[conv] = {"state": f"HTTP {r.status_code}", "card_ids": []}
                continue
            body = r.json()
            extraction = body.get("extraction") or {}
            fresh[conv] = {
                "state": extraction.get("state"),
                "source_hash": extraction.get("source_hash"),
                "card_ids": [c["id"] for c in body.get("items", [])],
            }
        for user, token in tokens.items():
            ids: list[str] = []
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"limit": 100}
                if cursor:
                    params["cursor"] = cursor
                r = await client.get(
                    f"{chat_url}/v1/conversations",
                    params=params,
                    headers={"Authorization": f"Bearer {token}"},
                )
                r.raise_for_status()
                page = r.json()
                ids += [c["id"] for c in page["items"]]
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            seen[user] = ids
    return fresh, seen


async def collect(cluster: Cluster, tokens: dict[str, str]) -> Snapshot:
    conn = await asyncpg.connect(cluster.admin_url, timeout=10)
    try:
        snap = await read_database(conn)
    finally:
        await conn.close()
    snap.queues = await asyncio.to_thread(cluster.queue_depths)
    snap.dlq = await drain_dlq(cluster.broker_vhost_url())
    snap.api_fresh, snap.api_seen = await read_api(cluster, snap, tokens)
    return snap
