"""The turn routes: send a message and stream the reply, resume a reply's stream, cancel
a running turn. All streams are Server-Sent Events of the fixed protocol (``turns.sse``)."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, Header, Query, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from opentelemetry import propagate, trace
from pydantic import BaseModel

from glia_chat_api import metrics
from glia_chat_api.deps import RunnerDep, SettingsDep, SignalsDep, TurnDatabaseDep
from glia_chat_api.turns.schemas import MessageCreate
from glia_chat_api.turns.service import (
    ConversationNotFound,
    IdempotencyKeyReused,
    NewTurn,
    TurnInProgress,
    TurnLimitReached,
    TurnLimits,
    TurnOutcome,
    begin_turn,
    load_turn,
    settle_turn,
)
from glia_chat_api.turns.sse import CANCELLED, stored_events
from glia_chat_api.turns.store import RecordedTurn
from glia_chat_api.turns.streams import follow_live, follow_stored, respond
from glia_common.web.limits import rate_limited
from glia_common.web.problems import PROBLEM_RESPONSES, ProblemError, not_found
from glia_common.web.request_id import current_request_id
from glia_common.web.security import CurrentPrincipal

router = APIRouter(prefix="/v1/conversations", tags=["messages"])

# A cancel that reaches another replica waits this long for it to settle the turn; past
# that (the replica died, or the signal was lost) the turn is settled in the database.
CANCEL_GRACE_S = 2.0
# Last-Event-ID: an event id of this protocol (0, 1, 2, ...).
MAX_EVENT_ID = 10**9

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
    database: TurnDatabaseDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> NewTurn | RecordedTurn:
    """Everything that can fail before the stream starts, answered as a plain problem."""
    structlog.contextvars.bind_contextvars(conversation_id=str(conversation_id))
    try:
        return await begin_turn(
            database,
            user_id=principal.user_id,
            conversation_id=conversation_id,
            content=body.content,
            idempotency_key=idempotency_key,
            request_id=current_request_id(),
            trace_id=_current_trace_id(),
            history_limit=settings.chat_history_messages,
            limits=TurnLimits(
                concurrent=settings.turns_concurrent_per_user,
                per_minute=settings.turns_per_minute_per_user,
            ),
        )
    except ConversationNotFound as exc:
        raise not_found("conversation") from exc
    except IdempotencyKeyReused as exc:
        raise ProblemError(
            422,
            "this Idempotency-Key was used with a different request",
            code="idempotency_key_reused",
        ) from exc
    except TurnLimitReached as exc:
        raise rate_limited(exc.limit, exc.retry_after_s, exc.detail) from exc
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
        413: PROBLEM_RESPONSES[422] | {"description": "The request body is too large"},
        429: PROBLEM_RESPONSES[422]
        | {"description": "Too many turns running, or begun in the last minute"},
    },
)
async def post_message(
    turn: Annotated[NewTurn | RecordedTurn, Depends(_start_turn)],
    principal: CurrentPrincipal,
    runner: RunnerDep,
    settings: SettingsDep,
) -> AsyncIterator[ServerSentEvent]:
    if isinstance(turn, RecordedTurn):  # a repeated request: the recorded outcome
        events = _replay(stored_events(turn))
    else:
        events = follow_live(runner.start(turn), -1, settings.sse_heartbeat_s)
    async for event in respond(events, after=-1, principal=principal, settings=settings):
        yield event


async def _replay(events: list[ServerSentEvent]) -> AsyncIterator[ServerSentEvent]:
    for event in events:
        yield event


@dataclass(frozen=True, slots=True)
class _TurnTarget:
    user_id: str
    turn: RecordedTurn


async def _owned_turn(
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
    principal: CurrentPrincipal,
    database: TurnDatabaseDep,
) -> _TurnTarget:
    """The caller's turn whose reply is ``message_id``; another user's, a user message, or
    a missing one is 404."""
    structlog.contextvars.bind_contextvars(conversation_id=str(conversation_id))
    turn = await load_turn(database, principal.user_id, conversation_id, message_id)
    if turn is None:
        raise not_found("message")
    return _TurnTarget(principal.user_id, turn)


async def _last_event_id(
    header: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            description="The id of the last event received: only later events are sent.",
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Query(description="As the Last-Event-ID header, for clients that cannot set it."),
    ] = None,
) -> int:
    """-1 when absent (the whole stream)."""
    raw = header if header not in (None, "") else last_event_id
    if raw is None or raw == "":
        return -1
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_EVENT_ID:
        raise ProblemError(
            422,
            "Last-Event-ID must be the id of an event of this stream (0, 1, 2, ...)",
            code="invalid_last_event_id",
        )
    return int(raw)


@router.get(
    "/{conversation_id}/messages/{message_id}/events",
    response_class=EventSourceResponse,
    summary="Resume a reply's stream (Server-Sent Events, Last-Event-ID)",
    responses=PROBLEM_RESPONSES,
)
async def turn_events(
    target: Annotated[_TurnTarget, Depends(_owned_turn)],
    after: Annotated[int, Depends(_last_event_id)],
    principal: CurrentPrincipal,
    database: TurnDatabaseDep,
    runner: RunnerDep,
    signals: SignalsDep,
    settings: SettingsDep,
) -> AsyncIterator[ServerSentEvent]:
    turn = target.turn
    live = runner.get(turn.assistant_message_id)
    if live is not None:
        metrics.RESUMES.labels("live").inc()
        events = follow_live(live, after, settings.sse_heartbeat_s)
    else:
        metrics.RESUMES.labels("stored").inc()

        async def load() -> RecordedTurn | None:
            return await load_turn(
                database, target.user_id, turn.conversation_id, turn.assistant_message_id
            )

        events = follow_stored(
            load, signals, turn.assistant_message_id, after, settings.sse_heartbeat_s
        )
    async for event in respond(events, after=after, principal=principal, settings=settings):
        yield event


class CancelAccepted(BaseModel):
    assistant_message_id: uuid.UUID
    status: Literal["complete", "streaming", "failed", "incomplete"]


@router.post(
    "/{conversation_id}/messages/{message_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CancelAccepted,
    summary="End a running turn early (its reply is kept, incomplete)",
    responses=PROBLEM_RESPONSES,
)
async def cancel_turn(
    target: Annotated[_TurnTarget, Depends(_owned_turn)],
    database: TurnDatabaseDep,
    runner: RunnerDep,
    signals: SignalsDep,
) -> CancelAccepted:
    """Accepted whatever the turn's state; a turn that already ended stays as it is. The
    answer comes once the turn has settled, so a read after it sees the final state."""
    turn = target.turn
    if not turn.settled:
        turn = await _cancel(target, database, runner, signals)
    return CancelAccepted(assistant_message_id=turn.assistant_message_id, status=turn.status)


async def _cancel(
    target: _TurnTarget, database: TurnDatabaseDep, runner: RunnerDep, signals: SignalsDep
) -> RecordedTurn:
    turn, user_id = target.turn, target.user_id
    mid = turn.assistant_message_id

    async def reload() -> RecordedTurn | None:
        return await load_turn(database, user_id, turn.conversation_id, mid)

    live = runner.get(mid)
    if live is not None:
        # Runs here. Once its outcome is decided the cancel comes too late: it settles
        # as decided, and the answer reports it.
        runner.cancel(mid)
        await live.wait_finished(CANCEL_GRACE_S + 5.0)
        return await reload() or turn
    # Another replica runs it, or ran it and died: ask, then settle it here if nobody did.
    await signals.send("cancel", mid)
    deadline = time.monotonic() + CANCEL_GRACE_S
    while True:
        current = await reload()
        if current is None or current.settled:
            return current or turn
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    headers: dict[str, str] = {}
    propagate.inject(headers)
    outcome = TurnOutcome(
        status="incomplete",
        content=current.content,
        delta_ends=current.delta_ends,
        error_code=CANCELLED.code,
        error_message=CANCELLED.message,
        error_retryable=CANCELLED.retryable,
    )
    if await settle_turn(database, user_id, current, outcome, trace_headers=headers, announce=True):
        metrics.TURNS.labels("cancelled").inc()
    return await reload() or current
