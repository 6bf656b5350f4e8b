"""The streams that follow a turn: every response of the turn routes is one of these.

A stream sends the turn's events with the ids of the original stream - all of them, or
only those after a client's ``Last-Event-ID`` - and always ends with exactly one
terminal event, even when the client had already seen it. It follows a turn running in
this process from memory, and any other turn from the database (checkpoints, woken by
the owner's progress signals, with a poll as the safety net), so a client may resume
through any replica. Idle streams get comment heartbeats so that proxies keep them open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi.sse import ServerSentEvent

from glia_chat_api import metrics
from glia_chat_api.turns.runner import LiveTurn
from glia_chat_api.turns.signals import TurnSignals
from glia_chat_api.turns.sse import (
    ENDED_ELSEWHERE,
    UNREADABLE,
    ErrorData,
    EventSequence,
    stored_events,
)
from glia_chat_api.turns.store import RecordedTurn
from glia_common.auth import Principal
from glia_common.settings import StreamSettings
from glia_common.web.streams import end_by, stream_deadline

HEARTBEAT = ServerSentEvent(comment="ping")
# How often a stream following a turn of another replica re-reads it without a signal,
# and renews its follow request.
POLL_S = 0.5
FOLLOW_RENEW_S = 5.0


# How long a stream following a stored turn keeps reading through database trouble.
READ_BUDGET_S = 10.0


def _is_terminal(event: ServerSentEvent) -> bool:
    return event.event in ("done", "error")


def interrupted(error: ErrorData, last_id: int) -> ServerSentEvent:
    """The end of a stream cut short while its turn goes on (``retryable``). It repeats
    the id of the last event sent, so a client resuming from it misses nothing."""
    return ServerSentEvent(event="error", id=str(max(last_id, 0)), raw_data=error.model_dump_json())


async def respond(
    events: AsyncIterator[ServerSentEvent],
    *,
    after: int,
    principal: Principal,
    settings: StreamSettings,
) -> AsyncIterator[ServerSentEvent]:
    """A turn stream as sent: its first event carries the reconnection delay for
    EventSource clients, and it ends by its token's expiry or the maximum lifetime with
    an ``error`` ``stream_expired`` (retryable). That event repeats the id of the last
    event sent, so a client resuming from it misses nothing. Counted in the open-streams
    gauge while it lasts."""
    deadline, reason = stream_deadline(principal, settings.sse_max_lifetime_s)
    last_id = after

    def expired() -> ServerSentEvent:
        error = ErrorData(
            code="stream_expired",
            message=f"the stream ended ({reason}); resume it with Last-Event-ID",
            retryable=True,
        )
        return interrupted(error, last_id)

    metrics.ACTIVE_STREAMS.inc()
    try:
        first = True
        async for event in end_by(events, deadline, expired):
            if first and event.comment is None:
                event = event.model_copy(update={"retry": settings.sse_retry_ms})
                first = False
            if event.id is not None:
                last_id = int(event.id)
            yield event
    finally:
        metrics.ACTIVE_STREAMS.dec()


async def follow_live(
    live: LiveTurn, after: int, heartbeat_s: float
) -> AsyncIterator[ServerSentEvent]:
    """A turn running in this process, from memory."""
    next_id = after + 1
    sent_terminal = False
    while True:
        while next_id < len(live.events):
            event = live.events[next_id]
            next_id += 1
            sent_terminal = _is_terminal(event)
            yield event
        if live.finished:
            if not sent_terminal:
                yield live.events[-1]
            return
        if not await live.wait_changed(heartbeat_s):
            yield HEARTBEAT


async def follow_stored(
    load: Callable[[], Awaitable[RecordedTurn | None]],
    signals: TurnSignals,
    message_id: uuid.UUID,
    after: int,
    heartbeat_s: float,
) -> AsyncIterator[ServerSentEvent]:
    """A turn as stored: replayed once it has settled, followed while another replica
    runs it. If the turn settled with fewer events than the client had seen (its replica
    died before saving them), the terminal event keeps its own id, at or below the
    client's Last-Event-ID: the text the client holds past it was not kept."""
    sent_up_to = after
    sent_terminal = False
    renew_at = 0.0
    quiet_since = time.monotonic()
    with signals.watch(message_id) as progressed:
        while True:
            try:
                turn = await _read(load)
            except Exception:
                yield interrupted(UNREADABLE, sent_up_to)
                return
            now = time.monotonic()
            if turn is not None and not turn.settled and now >= renew_at:
                # Ask the owner to save and announce its progress often; re-read after it.
                await signals.send("follow", message_id)
                renew_at = now + FOLLOW_RENEW_S
            if turn is None:  # deleted while it was followed
                yield EventSequence.at(max(sent_up_to + 1, 1)).error(ENDED_ELSEWHERE)
                return
            events = stored_events(turn)
            for event in events[sent_up_to + 1 :]:
                sent_up_to = int(event.id or 0)
                sent_terminal = _is_terminal(event)
                quiet_since = time.monotonic()
                yield event
            if turn.settled:
                if not sent_terminal:
                    yield events[-1]
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progressed.get(), POLL_S)
            if time.monotonic() - quiet_since >= heartbeat_s:
                quiet_since = time.monotonic()
                yield HEARTBEAT


async def _read(load: Callable[[], Awaitable[RecordedTurn | None]]) -> RecordedTurn | None:
    """``load()``, retried through database trouble for up to READ_BUDGET_S."""
    deadline = time.monotonic() + READ_BUDGET_S
    attempt = 0
    while True:
        try:
            return await load()
        except Exception:
            attempt += 1
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
