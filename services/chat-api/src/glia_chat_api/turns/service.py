"""A turn's transactions: begin (before the stream), checkpoints, and settle (after it).

Each is one short user-scoped transaction of its own; none is open while the model
is awaited.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from glia_chat_api.llm import ChatTurnMessage
from glia_chat_api.turns.signals import TURNS_CHANNEL, signal_payload
from glia_chat_api.turns.store import RecordedTurn, TurnStore, lock_user_turns
from glia_common.db import Database, user_connection


class ConversationNotFound(Exception):
    pass


class TurnInProgress(Exception):
    """The Idempotency-Key belongs to a turn that is still streaming."""


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before with a different request."""


class TurnLimitReached(Exception):
    """The user has too many turns running, or began too many in the last minute."""

    def __init__(self, limit: str, retry_after_s: float, detail: str) -> None:
        super().__init__(detail)
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TurnLimits:
    concurrent: int  # replies streaming at once, per user
    per_minute: int  # turns begun per minute, per user


RATE_WINDOW_S = 60.0
# A user at the concurrency limit may try again once one of the turns has ended: soon.
CONCURRENCY_RETRY_S = 2.0


@dataclass(frozen=True, slots=True)
class NewTurn:
    user_id: str
    conversation_id: uuid.UUID
    turn_id: uuid.UUID
    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID
    request_id: str
    trace_id: str
    history: list[ChatTurnMessage]


def request_hash(conversation_id: uuid.UUID, content: str) -> str:
    return hashlib.sha256(f"{conversation_id}\n{content}".encode()).hexdigest()


async def begin_turn(
    database: Database,
    *,
    user_id: str,
    conversation_id: uuid.UUID,
    content: str,
    idempotency_key: str | None,
    request_id: str,
    trace_id: str,
    history_limit: int,
    limits: TurnLimits,
) -> NewTurn | RecordedTurn:
    """Commit the user message and an empty streaming assistant message, or find the
    recorded turn of a repeated request; one transaction either way. A repeat is never
    limited; a new turn is, per user, across every replica."""
    fingerprint = request_hash(conversation_id, content)
    # A request without a key is a new turn: the user's lock comes with the transaction's
    # first round trip. A keyed one may be a replay, which is never limited nor waits:
    # it takes the lock only once it is known to be new.
    try:
        async with user_connection(
            database, user_id, first="" if idempotency_key else lock_user_turns(user_id)
        ) as conn:
            store = TurnStore(conn)
            if idempotency_key is not None:
                earlier = await store.by_idempotency_key(idempotency_key)
                if earlier is not None:
                    if earlier.request_hash != fingerprint:
                        raise IdempotencyKeyReused
                    if earlier.status == "streaming":
                        raise TurnInProgress
                    return earlier
                await store.lock_turns(user_id)
            usage = await store.usage(user_id, RATE_WINDOW_S)
            if usage.streaming >= limits.concurrent:
                raise TurnLimitReached(
                    "turns_concurrent",
                    CONCURRENCY_RETRY_S,
                    f"at most {limits.concurrent} replies may stream at once; wait for one to end",
                )
            if usage.recent >= limits.per_minute:
                raise TurnLimitReached(
                    "turns_per_minute",
                    usage.window_frees_in_s,
                    f"at most {limits.per_minute} messages per minute",
                )
            begun = await store.begin(
                conversation_id=conversation_id,
                user_id=user_id,
                content=content,
                idempotency_key=idempotency_key,
                request_hash=fingerprint,
                request_id=request_id,
                trace_id=trace_id,
                history_limit=history_limit,
            )
    except asyncpg.UniqueViolationError as exc:
        # A concurrent request with the same Idempotency-Key won the insert.
        raise TurnInProgress from exc
    if begun is None:
        raise ConversationNotFound
    return NewTurn(
        user_id=user_id,
        conversation_id=conversation_id,
        turn_id=begun.turn_id,
        user_message_id=begun.user_message_id,
        assistant_message_id=begun.assistant_message_id,
        request_id=request_id,
        trace_id=trace_id,
        history=[ChatTurnMessage(role=role, content=text) for role, text in begun.history],  # type: ignore[arg-type]
    )


@dataclass(frozen=True, slots=True)
class TurnOutcome:
    status: str  # complete | failed | incomplete
    content: str
    delta_ends: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_retryable: bool | None = None


class TurnRef(Protocol):
    """What names a turn in the store (a NewTurn, or a RecordedTurn)."""

    @property
    def turn_id(self) -> uuid.UUID: ...
    @property
    def conversation_id(self) -> uuid.UUID: ...
    @property
    def assistant_message_id(self) -> uuid.UUID: ...
    @property
    def request_id(self) -> str: ...


async def settle_turn(
    database: Database,
    user_id: str,
    turn: TurnRef,
    outcome: TurnOutcome,
    *,
    trace_headers: dict[str, str],
    announce: bool,
) -> bool:
    """Store the assistant message's final state and, in the same transaction, request
    extraction through the outbox (and, when the turn is followed from another replica,
    announce it). False when the turn had already been settled."""
    async with user_connection(database, user_id) as conn:
        store = TurnStore(conn)
        settled = await store.settle(
            turn_id=turn.turn_id,
            message_id=turn.assistant_message_id,
            conversation_id=turn.conversation_id,
            user_id=user_id,
            content=outcome.content,
            status=outcome.status,
            finish_reason=outcome.finish_reason,
            usage=outcome.usage,
            error_code=outcome.error_code,
            error_message=outcome.error_message,
            error_retryable=outcome.error_retryable,
            request_id=turn.request_id,
            trace_headers=trace_headers,
            delta_ends=outcome.delta_ends,
        )
        if settled and announce:
            await store.notify(TURNS_CHANNEL, signal_payload("progress", turn.assistant_message_id))
        return settled


async def checkpoint_turn(
    database: Database,
    turn: NewTurn,
    content: str,
    delta_ends: list[int],
    *,
    announce: bool,
) -> None:
    """Save the streamed text so far and where its deltas end; also the heartbeat that
    keeps a live turn from being swept."""
    async with user_connection(database, turn.user_id) as conn:
        store = TurnStore(conn)
        await store.checkpoint(turn.turn_id, turn.assistant_message_id, content, delta_ends)
        if announce:
            await store.notify(TURNS_CHANNEL, signal_payload("progress", turn.assistant_message_id))


async def load_turn(
    database: Database, user_id: str, conversation_id: uuid.UUID, message_id: uuid.UUID
) -> RecordedTurn | None:
    """The turn whose reply is ``message_id`` in this user's conversation, as stored."""
    async with user_connection(database, user_id) as conn:
        return await TurnStore(conn).by_message(conversation_id, message_id)
