"""Runs turns: the model stream is driven by a task of its own, apart from the HTTP
response, so a client that disconnects, or a server that shuts down, still leaves the
assistant message settled (incomplete, with the text so far) and extraction requested.

No database session is held while the model is awaited: one short transaction per
checkpoint and one to settle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from enum import StrEnum

from fastapi.sse import ServerSentEvent
from opentelemetry import propagate
from sqlalchemy.ext.asyncio import AsyncEngine

from glia_chat_api import metrics
from glia_chat_api.llm import ChatError, ChatModel
from glia_chat_api.turns.service import NewTurn, TurnOutcome, checkpoint_turn, settle_turn
from glia_chat_api.turns.sse import DoneData, ErrorData, EventSequence, StartData
from glia_chat_api.turns.store import RecordedTurn
from glia_common.telemetry import get_logger

log = get_logger(__name__)

CHECKPOINT_INTERVAL_S = 2.0
INCOMPLETE = ErrorData(code="incomplete", message="the stream was interrupted", retryable=True)
UNSAVED = ErrorData(
    code="storage_unavailable", message="the reply could not be saved", retryable=True
)
# The stale-turn sweeper, or a deleted conversation, ended the turn before this stream did.
ENDED_ELSEWHERE = ErrorData(
    code="turn_ended",
    message="the turn was ended elsewhere (its conversation was deleted, or it timed out)",
    retryable=False,
)


class Settled(StrEnum):
    STORED = "stored"
    ENDED_ELSEWHERE = "ended_elsewhere"  # the message was no longer streaming
    UNSAVED = "unsaved"  # the database could not be reached


@dataclass(frozen=True, slots=True)
class _Delta:
    text: str


@dataclass(frozen=True, slots=True)
class _End:
    outcome: TurnOutcome
    settled: Settled


class TurnRunner:
    def __init__(
        self,
        engine: AsyncEngine,
        model: ChatModel,
        on_settled: Callable[[], None] = lambda: None,
    ) -> None:
        self._engine = engine
        self._model = model
        self._on_settled = on_settled
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def stream(self, turn: NewTurn) -> AsyncIterator[ServerSentEvent]:
        events = EventSequence()
        yield events.start(
            StartData(
                conversation_id=turn.conversation_id,
                user_message_id=turn.user_message_id,
                assistant_message_id=turn.assistant_message_id,
                request_id=turn.request_id,
                trace_id=turn.trace_id,
            )
        )
        queue: asyncio.Queue[_Delta | _End] = asyncio.Queue()
        task = asyncio.create_task(self._drive(turn, queue), name=f"turn-{turn.turn_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        metrics.ACTIVE_STREAMS.inc()
        started = time.perf_counter()
        first_delta = True
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Delta):
                    if first_delta:
                        metrics.FIRST_TOKEN.observe(time.perf_counter() - started)
                        first_delta = False
                    yield events.delta(item.text)
                    continue
                outcome = item.outcome
                if item.settled is Settled.UNSAVED:
                    yield events.error(UNSAVED)
                elif item.settled is Settled.ENDED_ELSEWHERE:
                    yield events.error(ENDED_ELSEWHERE)
                elif outcome.status == "complete":
                    yield events.done(
                        DoneData(
                            assistant_message_id=turn.assistant_message_id,
                            finish_reason="length" if outcome.finish_reason == "length" else "stop",
                            usage=outcome.usage,
                        )
                    )
                else:
                    yield events.error(
                        ErrorData(
                            code=outcome.error_code or "internal_error",
                            message=outcome.error_message or "the reply failed",
                            retryable=bool(outcome.error_retryable),
                        )
                    )
                return
        finally:
            metrics.ACTIVE_STREAMS.dec()
            # The client went away (or the server is stopping): stop the model; the
            # driver settles the message as incomplete.
            if not task.done():
                task.cancel()

    async def _drive(self, turn: NewTurn, out: asyncio.Queue[_Delta | _End]) -> None:
        parts: list[str] = []
        outcome: TurnOutcome | None = None
        last_checkpoint = time.monotonic()
        try:
            async with aclosing(self._model.stream(turn.history)) as chunks:
                async for chunk in chunks:
                    if chunk.text:
                        parts.append(chunk.text)
                        out.put_nowait(_Delta(chunk.text))
                    if chunk.finish_reason is not None:
                        outcome = TurnOutcome(
                            status="complete",
                            content="".join(parts),
                            finish_reason=chunk.finish_reason,
                            usage=chunk.usage,
                        )
                    if time.monotonic() - last_checkpoint >= CHECKPOINT_INTERVAL_S:
                        await self._checkpoint(turn, "".join(parts))
                        last_checkpoint = time.monotonic()
            if outcome is None:
                raise ChatError(
                    "llm_bad_response",
                    "the language model ended without finishing",
                    retryable=True,
                    failure_class="provider_error",
                )
        except ChatError as exc:
            log.warning(
                "turn.llm_failed",
                failure_class=exc.failure_class,
                code=exc.code,
                conversation_id=str(turn.conversation_id),
            )
            outcome = TurnOutcome(
                status="failed",
                content="".join(parts),
                error_code=exc.code,
                error_message=exc.message,
                error_retryable=exc.retryable,
            )
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            outcome = TurnOutcome(
                status="incomplete",
                content="".join(parts),
                error_code=INCOMPLETE.code,
                error_message=INCOMPLETE.message,
                error_retryable=INCOMPLETE.retryable,
            )
            log.info(
                "turn.client_gone",
                conversation_id=str(turn.conversation_id),
                chars=len(outcome.content),
            )
        except Exception:
            log.exception("turn.failed", conversation_id=str(turn.conversation_id))
            outcome = TurnOutcome(
                status="failed",
                content="".join(parts),
                error_code="internal_error",
                error_message="the reply failed",
                error_retryable=True,
            )
        # Shielded: a second cancellation must not lose the final state.
        settled = await asyncio.shield(self._settle(turn, outcome))
        metrics.TURNS.labels(outcome.status if settled is Settled.STORED else settled.value).inc()
        out.put_nowait(_End(outcome, settled))

    async def _checkpoint(self, turn: NewTurn, text: str) -> None:
        try:
            await checkpoint_turn(self._engine, turn, text)
        except Exception as exc:  # a missed checkpoint only costs durability of partial text
            log.warning("turn.checkpoint_failed", error=type(exc).__name__)

    async def _settle(self, turn: NewTurn, outcome: TurnOutcome) -> Settled:
        headers: dict[str, str] = {}
        propagate.inject(headers)
        for attempt in range(3):
            try:
                stored = await settle_turn(self._engine, turn, outcome, headers)
            except Exception as exc:
                log.warning(
                    "turn.settle_failed",
                    attempt=attempt + 1,
                    error=type(exc).__name__,
                    conversation_id=str(turn.conversation_id),
                )
                await asyncio.sleep(0.2 * (attempt + 1))
                continue
            if not stored:
                return Settled.ENDED_ELSEWHERE
            self._on_settled()
            return Settled.STORED
        return Settled.UNSAVED

    async def drain(self, timeout_s: float) -> None:
        """On shutdown: let running turns finish, then cut the rest short (settled incomplete)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)


def replay(turn: RecordedTurn) -> list[ServerSentEvent]:
    """The recorded outcome of an earlier request, as a stream of the same form."""
    events = EventSequence()
    out = [
        events.start(
            StartData(
                conversation_id=turn.conversation_id,
                user_message_id=turn.user_message_id,
                assistant_message_id=turn.assistant_message_id,
                request_id=turn.request_id,
                trace_id=turn.trace_id,
            )
        )
    ]
    if turn.content:
        out.append(events.delta(turn.content))
    if turn.status == "complete":
        out.append(
            events.done(
                DoneData(
                    assistant_message_id=turn.assistant_message_id,
                    finish_reason="length" if turn.finish_reason == "length" else "stop",
                    usage=turn.usage,
                )
            )
        )
    else:
        out.append(
            events.error(
                ErrorData(
                    code=turn.error_code or INCOMPLETE.code,
                    message=turn.error_message or INCOMPLETE.message,
                    retryable=turn.error_retryable if turn.error_retryable is not None else True,
                )
            )
        )
    return out
