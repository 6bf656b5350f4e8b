"""A turn's statements, on the asyncpg connection: they are the chat API's hot path, so
each step of a turn is one statement (no ORM), run in a short user-scoped transaction
(``glia_common.db.user_connection``) that the caller opens.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from glia_common.db import sql_literal
from glia_common.messaging import EXTRACTION_ROUTING_KEY, ExtractionRequested


def lock_user_turns(user_id: str) -> str:
    """The statement that makes a user's turns begin one at a time (every replica),
    until the transaction ends: the usage read after it counts every turn begun before
    it. As literal SQL, so that it can go with the transaction's first round trip
    (``user_connection(first=...)``); the usage read, a statement of its own after it,
    then still sees in READ COMMITTED every turn committed before the lock was granted."""
    key = sql_literal("glia.turns:" + user_id)
    return f"SELECT pg_advisory_xact_lock(hashtextextended({key}, 0)); "


# What the per-user limits count: replies streaming now, and turns begun in the window
# (with when the oldest of those leaves it).
# The window starts from statement_timestamp(), not clock_timestamp(): a volatile bound is
# no index condition, and the user's every turn ever would be read to count the minute's.
USAGE = """
SELECT (SELECT count(*) FROM messages WHERE user_id = $1 AND status = 'streaming') AS streaming,
       count(*) AS recent,
       extract(epoch FROM min(created_at) + make_interval(secs => $2) - statement_timestamp())
           AS window_frees_in_s
  FROM turns
 WHERE user_id = $1 AND created_at > statement_timestamp() - make_interval(secs => $2)
"""

# The start of a turn in one statement, if the conversation is visible: its update time,
# the user's message (complete) and an empty streaming reply, in that order, and the
# turn. It also reads the history the model sees, which (same snapshot) does not yet
# include the new message.
BEGIN = """
WITH conversation AS (
    UPDATE conversations SET updated_at = clock_timestamp() WHERE id = $1 RETURNING id
), exchange AS (
    INSERT INTO messages (id, conversation_id, user_id, role, content, status)
    SELECT m.id, c.id, $2, m.role, m.content, m.status
      FROM conversation c,
           (VALUES (1, $3::uuid, 'user', $4::text, 'complete'),
                   (2, $5::uuid, 'assistant', '', 'streaming')) AS m(n, id, role, content, status)
     ORDER BY m.n
), turn AS (
    INSERT INTO turns (id, conversation_id, user_id, user_message_id, assistant_message_id,
                       idempotency_key, request_hash, request_id, trace_id)
    SELECT $6, c.id, $2, $3, $5, $7, $8, $9, $10 FROM conversation c
), history AS (
    SELECT seq, role, content FROM messages
     WHERE conversation_id = $1 AND status = 'complete'
     ORDER BY seq DESC LIMIT $11
)
SELECT EXISTS (SELECT 1 FROM conversation) AS found,
       coalesce((SELECT array_agg(role ORDER BY seq) FROM history), '{}') AS roles,
       coalesce((SELECT array_agg(content ORDER BY seq) FROM history), '{}') AS contents
"""

# The end of a turn in one statement: the message's final state, the turn's outcome, the
# conversation's update time and the extraction request, all only if the message was
# still streaming (the sweeper may have settled it already).
SETTLE = """
WITH settled AS (
    UPDATE messages SET content = $1, status = $2, updated_at = clock_timestamp()
     WHERE id = $3 AND status = 'streaming'
    RETURNING id
), turn AS (
    UPDATE turns
       SET finish_reason = $4, usage = $5::jsonb, error_code = $6, error_message = $7,
           error_retryable = $8, delta_ends = $15, finished_at = clock_timestamp()
     WHERE id = $9 AND EXISTS (SELECT 1 FROM settled)
), conversation AS (
    UPDATE conversations SET updated_at = clock_timestamp()
     WHERE id = $10 AND EXISTS (SELECT 1 FROM settled)
)
INSERT INTO outbox (user_id, conversation_id, routing_key, payload, headers)
SELECT $11, $10, $12, $13::jsonb, $14::jsonb FROM settled
RETURNING id
"""


# A turn as stored (its ids, its text so far, where each delta ends, and its outcome once
# settled): what a repeated request replays and a resumed stream follows.
RECORDED = """
SELECT t.id AS turn_id, t.conversation_id, t.user_message_id, t.assistant_message_id,
       t.request_hash, t.request_id, t.trace_id, t.finish_reason, t.usage, t.error_code,
       t.error_message, t.error_retryable, t.delta_ends, m.status, m.content
  FROM turns t JOIN messages m ON m.id = t.assistant_message_id
"""
RECORDED_BY_KEY = RECORDED + " WHERE t.idempotency_key = $1"
RECORDED_BY_MESSAGE = RECORDED + " WHERE t.assistant_message_id = $1 AND t.conversation_id = $2"

# The text so far and where its deltas end, while the message is still streaming; it
# also marks the turn alive for the stale-turn sweeper.
CHECKPOINT = """
WITH message AS (
    UPDATE messages SET content = $1, updated_at = clock_timestamp()
     WHERE id = $2 AND status = 'streaming'
    RETURNING id
)
UPDATE turns SET delta_ends = $3 WHERE id = $4 AND EXISTS (SELECT 1 FROM message)
"""


@dataclass(frozen=True, slots=True)
class TurnUsage:
    streaming: int  # the user's replies streaming now
    recent: int  # the user's turns begun in the window
    window_frees_in_s: float  # until the oldest of those leaves the window


@dataclass(frozen=True, slots=True)
class BegunTurn:
    turn_id: uuid.UUID
    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID
    history: list[tuple[str, str]]  # (role, content), oldest first, the new message last


@dataclass(frozen=True, slots=True)
class RecordedTurn:
    """A turn as stored: what a repeated request replays and a resumed stream follows."""

    turn_id: uuid.UUID
    conversation_id: uuid.UUID
    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID
    request_hash: str
    request_id: str
    trace_id: str
    status: str  # of the assistant message
    content: str
    finish_reason: str | None
    usage: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    error_retryable: bool | None
    delta_ends: list[int]

    @property
    def settled(self) -> bool:
        return self.status != "streaming"


class TurnStore:
    """Built from a connection in a user-scoped transaction (``user_connection``)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def lock_turns(self, user_id: str) -> None:
        """``lock_user_turns`` in a round trip of its own."""
        await self.conn.execute(lock_user_turns(user_id))

    async def usage(self, user_id: str, window_s: float) -> TurnUsage:
        """The user's turns now; call it holding the user's lock (``lock_user_turns``)."""
        row = await self.conn.fetchrow(USAGE, user_id, window_s)
        assert row is not None
        return TurnUsage(
            streaming=row["streaming"],
            recent=row["recent"],
            window_frees_in_s=float(row["window_frees_in_s"] or 0.0),
        )

    async def begin(
        self,
        *,
        conversation_id: uuid.UUID,
        user_id: str,
        content: str,
        idempotency_key: str | None,
        request_hash: str,
        request_id: str,
        trace_id: str,
        history_limit: int,
    ) -> BegunTurn | None:
        """None when the conversation is not visible (missing, or another user's)."""
        turn_id, user_message_id, assistant_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        row = await self.conn.fetchrow(
            BEGIN,
            conversation_id,
            user_id,
            user_message_id,
            content,
            assistant_id,
            turn_id,
            idempotency_key,
            request_hash,
            request_id,
            trace_id,
            max(history_limit - 1, 0),
        )
        assert row is not None
        if not row["found"]:
            return None
        history = list(zip(row["roles"], row["contents"], strict=True))
        if history_limit > 0:
            history.append(("user", content))
        return BegunTurn(turn_id, user_message_id, assistant_id, history)

    async def settle(
        self,
        *,
        turn_id: uuid.UUID,
        message_id: uuid.UUID,
        conversation_id: uuid.UUID,
        user_id: str,
        content: str,
        status: str,
        finish_reason: str | None,
        usage: dict[str, Any] | None,
        error_code: str | None,
        error_message: str | None,
        error_retryable: bool | None,
        request_id: str,
        trace_headers: dict[str, str],
        delta_ends: list[int],
    ) -> bool:
        """End the turn and request extraction; False when it was already settled."""
        payload = ExtractionRequested.now(conversation_id, user_id, request_id)
        outbox_id = await self.conn.fetchval(
            SETTLE,
            content,
            status,
            message_id,
            finish_reason,
            json.dumps(usage) if usage is not None else None,
            error_code,
            error_message,
            error_retryable,
            turn_id,
            conversation_id,
            user_id,
            EXTRACTION_ROUTING_KEY,
            payload.model_dump_json(),
            json.dumps(trace_headers),
            delta_ends,
        )
        return outbox_id is not None

    async def checkpoint(
        self, turn_id: uuid.UUID, message_id: uuid.UUID, content: str, delta_ends: list[int]
    ) -> None:
        await self.conn.execute(CHECKPOINT, content, message_id, delta_ends, turn_id)

    async def notify(self, channel: str, payload: str) -> None:
        """A notification sent when this transaction commits."""
        await self.conn.execute("SELECT pg_notify($1, $2)", channel, payload)

    async def by_idempotency_key(self, key: str) -> RecordedTurn | None:
        # user_id is implied by row-level security; the unique index is (user_id, key).
        return _recorded(await self.conn.fetchrow(RECORDED_BY_KEY, key))

    async def by_message(
        self, conversation_id: uuid.UUID, message_id: uuid.UUID
    ) -> RecordedTurn | None:
        """The turn whose reply is ``message_id``, if it is in this visible conversation."""
        return _recorded(await self.conn.fetchrow(RECORDED_BY_MESSAGE, message_id, conversation_id))


def _recorded(row: asyncpg.Record | None) -> RecordedTurn | None:
    if row is None:
        return None
    values = dict(row)
    if isinstance(values["usage"], str):
        values["usage"] = json.loads(values["usage"])
    values["delta_ends"] = list(values["delta_ends"])
    return RecordedTurn(**values)
