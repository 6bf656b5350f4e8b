"""The chat turn route: send a message, stream the reply as Server-Sent Events."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Header
from fastapi.sse import EventSourceResponse, ServerSentEvent
from opentelemetry import trace

from glia_chat_api.deps import EngineDep, RunnerDep, SettingsDep
from glia_chat_api.turns.runner import replay
from glia_chat_api.turns.schemas import MessageCreate
from glia_chat_api.turns.service import (
    ConversationNotFound,
    IdempotencyKeyReused,
    NewTurn,
    TurnInProgress,
    begin_turn,
)
from glia_chat_api.turns.store import RecordedTurn
from glia_common.web.problems import PROBLEM_RESPONSES, ProblemError, not_found
from glia_common.web.request_id import current_request_id
from glia_common.web.security import CurrentPrincipal

router = APIRouter(prefix="/v1/conversations", tags=["messages"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeat a request with the same key to replay its outcome instead of "
        "creating a second message.",
    ),
]


def _current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else secrets.token_hex(16)


async def _start_turn(
    conversation_id: uuid.UUID,
    body: MessageCreate,
    principal: CurrentPrincipal,
    engine: EngineDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> NewTurn | RecordedTurn:
    """Everything that can fail before the stream starts, answered as a plain problem."""
    structlog.contextvars.bind_contextvars(conversation_id=str(conversation_id))
    try:
        return await begin_turn(
            engine,
            user_id=principal.user_id,
            conversation_id=conversation_id,
            content=body.content,
            idempotency_key=idempotency_key,
            request_id=current_request_id(),
            trace_id=_current_trace_id(),
            history_limit=settings.chat_history_messages,
        )
    except ConversationNotFound as exc:
        raise not_found("conversation") from exc
    except IdempotencyKeyReused as exc:
        raise ProblemError(
            422,
            "this Idempotency-Key was used with a different request",
            code="idempotency_key_reused",
        ) from exc
    except TurnInProgress as exc:
        raise ProblemError(
            409,
            "a request with this Idempotency-Key is still running",
            code="request_in_progress",
        ) from exc


@router.post(
    "/{conversation_id}/messages",
    response_class=EventSourceResponse,
    summary="Send a message and stream the reply (Server-Sent Events)",
    responses={
        **PROBLEM_RESPONSES,
        409: PROBLEM_RESPONSES[422] | {"description": "The same Idempotency-Key is still running"},
    },
)
async def post_message(
    turn: Annotated[NewTurn | RecordedTurn, Depends(_start_turn)], runner: RunnerDep
) -> AsyncIterator[ServerSentEvent]:
    if isinstance(turn, RecordedTurn):
        for event in replay(turn):
            yield event
        return
    async for event in runner.stream(turn):
        yield event
