"""Runs turns. Each turn is driven by a task of its own, apart from any HTTP response: a
turn outlives its client, and the model's output is stored to the end whoever is
listening. Streams follow a turn's events (``turns.streams``): the request that started
it, a client that reconnected, or - through the database - another replica.

No database session is held while the model is awaited: one short transaction per
checkpoint and one to settle.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from typing import Any

from fastapi.sse import ServerSentEvent
from opentelemetry import propagate

from glia_chat_api import metrics
from glia_chat_api.llm import ChatError, ChatModel
from glia_chat_api.llm.budget import HistoryBudget
from glia_chat_api.turns.service import (
    NewTurn,
    TurnOutcome,
    checkpoint_turn,
    load_turn,
    settle_turn,
)
from glia_chat_api.turns.sse import (
    CANCELLED,
    ENDED_ELSEWHERE,
    INCOMPLETE,
    UNSAVED,
    DoneData,
    ErrorData,
    EventSequence,
    StartData,
)
from glia_common.db import Database
from glia_common.telemetry import get_logger

log = get_logger(__name__)

# How often a running turn saves its text. A turn followed from another replica saves
# it much more often, so that stream lags the model by a fraction of a second.
CHECKPOINT_INTERVAL_S = 2.0
FOLLOWED_CHECKPOINT_INTERVAL_S = 0.1
# A turn waiting on a silent model still checkpoints this often: the heartbeat that tells
# the stale-turn sweeper its process is alive (GLIA_TURN_STALE_AFTER_S is a few of these).
HEARTBEAT_S = 5.0
# A follow request keeps a turn in the followed mode this long (followers renew it).
FOLLOWED_FOR_S = 10.0
# How long settling keeps trying through database trouble before the stream gives up.
SETTLE_BUDGET_S = 15.0


class LiveTurn:
    """A turn running in this process: its events so far, for every stream that follows
    it, and what its checkpoints save."""

    def __init__(self, turn: NewTurn) -> None:
        self.turn = turn
        self._sequence = EventSequence()
        self.events: list[ServerSentEvent] = [self._sequence.start(StartData.of(turn))]
        self.parts: list[str] = []
        self.delta_ends: list[int] = []  # where each delta ends in the text
        self.finished = False
        self.settling = False  # the outcome is decided: a cancel comes too late
        self.cancel_requested = False
        self.followed_until = 0.0
        self.checkpoint_lock = asyncio.Lock()
        self.checkpointed_at = time.monotonic()  # the begin counts as one
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def followed(self) -> bool:
        return time.monotonic() < self.followed_until

    def add_delta(self, text: str) -> None:
        self.parts.append(text)
        self.delta_ends.append((self.delta_ends[-1] if self.delta_ends else 0) + len(text))
        self._publish(self._sequence.delta(text))

    def finish(self, terminal: ErrorData | DoneData) -> None:
        if self.finished:
            return
        event = (
            self._sequence.done(terminal)
            if isinstance(terminal, DoneData)
            else self._sequence.error(terminal)
        )
        self.finished = True
        self._publish(event)

    def _publish(self, event: ServerSentEvent) -> None:
        self.events.append(event)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_changed(self, timeout_s: float) -> bool:
        """Until the next event (True), or the timeout (False)."""
        changed = self._changed
        try:
            await asyncio.wait_for(changed.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def wait_finished(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.finished:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await self.wait_changed(left)
        return True


class TurnRunner:
    def __init__(
        self,
        database: Database,
        model: ChatModel,
        budget: HistoryBudget,
        on_settled: Callable[[], None] = lambda: None,
    ) -> None:
        self._database = database
        self._model = model
        self._budget = budget
        self._on_settled = on_settled
        self._live: dict[uuid.UUID, LiveTurn] = {}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> int:
        return len(self._live)

    def start(self, turn: NewTurn) -> LiveTurn:
        """Start driving the model for a begun turn; its start event is ready at once."""
        live = LiveTurn(turn)
        self._live[turn.assistant_message_id] = live
        live.task = asyncio.create_task(self._drive(live), name=f"turn-{turn.turn_id}")
        return live

    def get(self, message_id: uuid.UUID) -> LiveTurn | None:
        """The running turn whose reply is ``message_id``, if it runs in this process."""
        return self._live.get(message_id)

    def cancel(self, message_id: uuid.UUID) -> bool:
        """End a running turn early (its message becomes incomplete, its streams end
        with ``cancelled``); False when it does not run here."""
        live = self._live.get(message_id)
        if live is None or live.settling or live.finished or live.task is None:
            return False
        live.cancel_requested = True
        live.task.cancel()
        return True

    def follow_requested(self, message_id: uuid.UUID) -> None:
        """Another replica streams this turn: save and announce its progress often."""
        live = self._live.get(message_id)
        if live is None or live.finished:
            return
        live.followed_until = time.monotonic() + FOLLOWED_FOR_S
        self._in_background(self._checkpoint(live))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def heartbeat_forever(self) -> None:
        """Checkpoint every turn the model has kept silent for HEARTBEAT_S."""
        while True:
            await asyncio.sleep(HEARTBEAT_S / 2)
            quiet_since = time.monotonic() - HEARTBEAT_S
            for live in list(self._live.values()):
                if live.checkpointed_at < quiet_since and not live.checkpoint_lock.locked():
                    self._in_background(self._checkpoint(live))

    async def _drive(self, live: LiveTurn) -> None:
        turn = live.turn
        outcome: TurnOutcome | None = None
        started = time.perf_counter()
        try:
            history = self._budget.trim(turn.history)
            async with aclosing(self._model.stream(history)) as chunks:
                async for chunk in chunks:
                    if chunk.text:
                        if not live.parts:
                            metrics.FIRST_TOKEN.observe(time.perf_counter() - started)
                        live.add_delta(chunk.text)
                    if chunk.finish_reason is not None:
                        outcome = TurnOutcome(
                            status="complete",
                            content=live.text,
                            delta_ends=list(live.delta_ends),
                            finish_reason=chunk.finish_reason,
                            usage=chunk.usage,
                        )
                    interval = (
                        FOLLOWED_CHECKPOINT_INTERVAL_S if live.followed else CHECKPOINT_INTERVAL_S
                    )
                    if time.monotonic() - live.checkpointed_at >= interval:
                        await self._checkpoint(live)
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
            outcome = self._ended(
                live,
                "failed",
                ErrorData(code=exc.code, message=exc.message, retryable=exc.retryable),
            )
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            # Cancelled by its owner, or cut short by a shutdown past the drain timeout.
            reason = CANCELLED if live.cancel_requested else INCOMPLETE
            outcome = self._ended(live, "incomplete", reason)
            log.info(
                "turn.cut_short",
                reason=reason.code,
                conversation_id=str(turn.conversation_id),
                chars=len(outcome.content),
            )
        except Exception:
            log.exception("turn.failed", conversation_id=str(turn.conversation_id))
            outcome = self._ended(
                live,
                "failed",
                ErrorData(code="internal_error", message="the reply failed", retryable=True),
            )
        live.settling = True
        settle = asyncio.ensure_future(self._settle(live, outcome))
        try:
            while not settle.done():
                try:
                    # Shielded: a shutdown's cancel must not lose the final state, and the
                    # streams end as stored (settling is bounded by SETTLE_BUDGET_S).
                    await asyncio.shield(settle)
                except asyncio.CancelledError:
                    current = asyncio.current_task()
                    if current is not None:
                        current.uncancel()
            live.finish(settle.result())
        finally:
            live.finish(INCOMPLETE)  # only if settling itself failed unexpectedly
            del self._live[turn.assistant_message_id]

    @staticmethod
    def _ended(live: LiveTurn, status: str, error: ErrorData) -> TurnOutcome:
        return TurnOutcome(
            status=status,
            content=live.text,
            delta_ends=list(live.delta_ends),
            error_code=error.code,
            error_message=error.message,
            error_retryable=error.retryable,
        )

    async def _checkpoint(self, live: LiveTurn) -> None:
        # One at a time per turn, so an older snapshot never overwrites a newer one.
        async with live.checkpoint_lock:
            if live.finished or live.settling:
                return
            live.checkpointed_at = time.monotonic()
            try:
                await checkpoint_turn(
                    self._database,
                    live.turn,
                    live.text,
                    list(live.delta_ends),
                    announce=live.followed,
                )
            except Exception as exc:  # a missed checkpoint only costs durability of partial text
                log.warning("turn.checkpoint_failed", error=type(exc).__name__)

    async def _settle(self, live: LiveTurn, outcome: TurnOutcome) -> ErrorData | DoneData:
        """Store the outcome; the terminal event its streams end with."""
        turn = live.turn
        headers: dict[str, str] = {}
        propagate.inject(headers)
        deadline = time.monotonic() + SETTLE_BUDGET_S
        attempt = 0
        while True:
            try:
                stored = await settle_turn(
                    self._database,
                    turn.user_id,
                    turn,
                    outcome,
                    trace_headers=headers,
                    announce=live.followed,
                )
                break
            except Exception as exc:
                attempt += 1
                log.warning(
                    "turn.settle_failed",
                    attempt=attempt,
                    error=type(exc).__name__,
                    conversation_id=str(turn.conversation_id),
                )
                if time.monotonic() >= deadline:
                    # The sweeper settles it later, once the database is back.
                    metrics.TURNS.labels("unsaved").inc()
                    return UNSAVED
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        if not stored:
            stored = await self._stored_as(live, outcome)
            if not stored:
                return await self._settled_elsewhere(live)
        self._on_settled()
        label = "cancelled" if outcome.error_code == CANCELLED.code else outcome.status
        metrics.TURNS.labels(label).inc()
        if outcome.status == "complete":
            return DoneData(
                assistant_message_id=turn.assistant_message_id,
                finish_reason="length" if outcome.finish_reason == "length" else "stop",
                usage=outcome.usage,
            )
        return ErrorData(
            code=outcome.error_code or INCOMPLETE.code,
            message=outcome.error_message or INCOMPLETE.message,
            retryable=bool(outcome.error_retryable),
        )

    async def _stored_as(self, live: LiveTurn, outcome: TurnOutcome) -> bool:
        """Whether the stored turn is this outcome: a settle whose commit went through
        but whose answer was lost (the connection dropped) is retried, and the retry
        finds the turn no longer streaming."""
        turn = live.turn
        try:
            stored = await load_turn(
                self._database, turn.user_id, turn.conversation_id, turn.assistant_message_id
            )
        except Exception:
            return False
        return (
            stored is not None
            and stored.status == outcome.status
            and stored.content == outcome.content
            and stored.error_code == outcome.error_code
        )

    async def _settled_elsewhere(self, live: LiveTurn) -> ErrorData:
        """The turn was settled before its own settle (a cancel that reached the database
        first, the sweeper) or its conversation was deleted: end as stored."""
        turn = live.turn
        try:
            stored = await load_turn(
                self._database, turn.user_id, turn.conversation_id, turn.assistant_message_id
            )
        except Exception:
            stored = None
        if stored is None or not stored.settled or stored.status == "complete":
            metrics.TURNS.labels("ended_elsewhere").inc()
            return ENDED_ELSEWHERE
        metrics.TURNS.labels(
            "cancelled" if stored.error_code == CANCELLED.code else stored.status
        ).inc()
        return ErrorData(
            code=stored.error_code or INCOMPLETE.code,
            message=stored.error_message or INCOMPLETE.message,
            retryable=bool(stored.error_retryable),
        )

    async def drain(self, timeout_s: float) -> None:
        """On shutdown: let running turns finish, then cut the rest short (settled incomplete)."""
        tasks = {live.task for live in self._live.values() if live.task is not None}
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
