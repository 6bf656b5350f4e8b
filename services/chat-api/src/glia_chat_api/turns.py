"""A turn's transactions: begin (before the stream) and settle (after it).

Stateless functions that take the session first; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from glia_chat_api.llm import ChatTurnMessage
from glia_common.models import Message, Turn
from glia_common.repositories import (
    ConversationRepository,
    MessageRepository,
    TurnRepository,
)


class ConversationNotFound(Exception):
    pass


class TurnInProgress(Exception):
    """The Idempotency-Key belongs to a turn that is still streaming."""


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before with a different request."""


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


@dataclass(frozen=True, slots=True)
class RecordedTurn:
    """The settled outcome of an earlier request with the same Idempotency-Key."""

    turn: Turn
    assistant: Message


def request_hash(conversation_id: uuid.UUID, content: str) -> str:
    return hashlib.sha256(f"{conversation_id}\n{content}".encode()).hexdigest()


async def begin_turn(
    session: AsyncSession,
    *,
    user_id: str,
    conversation_id: uuid.UUID,
    content: str,
    idempotency_key: str | None,
    request_id: str,
    trace_id: str,
    history_limit: int,
) -> NewTurn | RecordedTurn:
    """Commit the user message and an empty streaming assistant message, or find the
    recorded turn of a repeated request."""
    turns = TurnRepository.from_session(session)
    messages = MessageRepository.from_session(session)
    fingerprint = request_hash(conversation_id, content)

    if idempotency_key is not None:
        earlier = await turns.by_idempotency_key(idempotency_key)
        if earlier is not None:
            if earlier.request_hash != fingerprint:
                raise IdempotencyKeyReused
            assistant = await messages.get(earlier.assistant_message_id)
            if assistant is None or assistant.status == "streaming":
                raise TurnInProgress
            return RecordedTurn(turn=earlier, assistant=assistant)

    if not await ConversationRepository.from_session(session).touch(conversation_id):
        raise ConversationNotFound
    user_message_id, assistant_id = await messages.add_exchange(
        conversation_id=conversation_id, user_id=user_id, content=content
    )
    turn_id = await turns.add(
        conversation_id=conversation_id,
        user_id=user_id,
        user_message_id=user_message_id,
        assistant_message_id=assistant_id,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        request_id=request_id,
        trace_id=trace_id,
    )
    history = await messages.latest_complete(conversation_id, history_limit)
    return NewTurn(
        user_id=user_id,
        conversation_id=conversation_id,
        turn_id=turn_id,
        user_message_id=user_message_id,
        assistant_message_id=assistant_id,
        request_id=request_id,
        trace_id=trace_id,
        history=[ChatTurnMessage(role=m.role, content=m.content) for m in history],  # type: ignore[arg-type]
    )


@dataclass(frozen=True, slots=True)
class TurnOutcome:
    status: str  # complete | failed | incomplete
    content: str
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_retryable: bool | None = None


async def settle_turn(
    session: AsyncSession, turn: NewTurn, outcome: TurnOutcome, trace_headers: dict[str, str]
) -> bool:
    """Store the assistant message's final state and, in the same transaction, request
    extraction through the outbox. False when the turn had already been settled."""
    return await TurnRepository.from_session(session).settle(
        turn_id=turn.turn_id,
        message_id=turn.assistant_message_id,
        conversation_id=turn.conversation_id,
        user_id=turn.user_id,
        content=outcome.content,
        status=outcome.status,
        finish_reason=outcome.finish_reason,
        usage=outcome.usage,
        error_code=outcome.error_code,
        error_message=outcome.error_message,
        error_retryable=outcome.error_retryable,
        request_id=turn.request_id,
        trace_headers=trace_headers,
    )
