"""Test data written straight into PostgreSQL as the app role (row-level security on),
one transaction per user with ``glia.user_id`` set, as the services themselves do."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

import asyncpg

# Two turns of a planning chat: enough for the rules to find every kind of card.
CONVERSATION = (
    (
        "user",
        "We decided to launch the beta in May. TODO: book the venue for the kickoff. "
        "What is the budget for the event?",
    ),
    (
        "assistant",
        "Understood. You decided on a May launch and still need to book the venue. "
        "The budget has not been set yet; I'll note it as an open question.",
    ),
    (
        "user",
        "The budget is 12,000 euros. Please send the invitations by Friday. "
        "Let's go with the riverside venue. Who will host the demo?",
    ),
    (
        "assistant",
        "Noted: a budget of 12,000 euros, invitations due by Friday and the riverside "
        "venue. Deciding who hosts the demo is still open.",
    ),
)


@dataclass(frozen=True, slots=True)
class Conv:
    id: uuid.UUID
    user_id: str


def users(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(count)]


def spread(count: int, user_ids: list[str]) -> list[Conv]:
    return [Conv(uuid.uuid4(), user_ids[i % len(user_ids)]) for i in range(count)]


def _by_user(convs: list[Conv]) -> dict[str, list[uuid.UUID]]:
    grouped: dict[str, list[uuid.UUID]] = defaultdict(list)
    for c in convs:
        grouped[c.user_id].append(c.id)
    return grouped


async def insert_conversations(pool: asyncpg.Pool, convs: list[Conv], title: str) -> None:
    """Empty conversations (for chat turns)."""
    for user_id, ids in _by_user(convs).items():
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('glia.user_id', $1, true)", user_id)
            await conn.execute(
                "INSERT INTO conversations (id, user_id, title) SELECT unnest($1::uuid[]), $2, $3",
                ids,
                user_id,
                title,
            )


async def insert_finished_conversations(pool: asyncpg.Pool, convs: list[Conv]) -> None:
    """Conversations whose turns have ended: ``CONVERSATION``'s messages, all complete,
    and no extraction yet (as right after the last turn's commit)."""
    for user_id, ids in _by_user(convs).items():
        msg_ids: list[uuid.UUID] = []
        msg_convs: list[uuid.UUID] = []
        roles: list[str] = []
        contents: list[str] = []
        for cid in ids:
            for role, content in CONVERSATION:
                msg_ids.append(uuid.uuid4())
                msg_convs.append(cid)
                roles.append(role)
                contents.append(content)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('glia.user_id', $1, true)", user_id)
            await conn.execute(
                "INSERT INTO conversations (id, user_id, title) SELECT unnest($1::uuid[]), $2, $3",
                ids,
                user_id,
                "bench extraction",
            )
            await conn.execute(
                "INSERT INTO messages (id, conversation_id, user_id, role, content, status) "
                "SELECT m.id, m.conversation_id, $5, m.role, m.content, 'complete' "
                "FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[]) WITH ORDINALITY "
                "AS m(id, conversation_id, role, content, n) ORDER BY m.n",
                msg_ids,
                msg_convs,
                roles,
                contents,
                user_id,
            )


async def current_at(admin: asyncpg.Connection, ids: list[uuid.UUID]) -> dict[uuid.UUID, float]:
    """Conversations whose cards are ``current`` -> ``derived_at`` (epoch seconds)."""
    rows = await admin.fetch(
        "SELECT s.conversation_id, extract(epoch FROM s.derived_at)::float8 AS t "
        "FROM extraction_state s JOIN conversations c ON c.id = s.conversation_id "
        "WHERE s.conversation_id = ANY($1::uuid[]) "
        "AND s.source_message_count >= c.complete_message_count",
        ids,
    )
    return {r["conversation_id"]: r["t"] for r in rows}


async def count_current(admin: asyncpg.Connection, ids: list[uuid.UUID]) -> int:
    return int(
        await admin.fetchval(
            "SELECT count(*) FROM extraction_state s JOIN conversations c "
            "ON c.id = s.conversation_id WHERE s.conversation_id = ANY($1::uuid[]) "
            "AND s.source_message_count >= c.complete_message_count",
            ids,
        )
    )


async def run_outcomes(admin: asyncpg.Connection, ids: list[uuid.UUID]) -> dict[str, int]:
    rows = await admin.fetch(
        "SELECT status || coalesce('/' || failure_class, '') AS k, count(*) AS n "
        "FROM extraction_runs WHERE conversation_id = ANY($1::uuid[]) GROUP BY 1",
        ids,
    )
    return {r["k"]: int(r["n"]) for r in rows}
