"""Resumable event streams: a chat turn that survives dropped connections, and a live
watch of a conversation's cards.

A turn's events carry ids 0, 1, 2, ... . :class:`TurnStream` remembers the last id it
delivered; when the connection drops (or ends without a terminal event) it reconnects to
``GET /v1/conversations/{cid}/messages/{mid}/events`` with ``Last-Event-ID`` and goes on
from there, waiting between attempts as the server's ``retry:`` hint says, with
exponential backoff, and for a bounded number of attempts. Every event is delivered
at most once, so no text is ever shown twice.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
from httpx_sse import EventSource, SSEError

from glia_cli.api import ApiError, GliaClient

TURN_EVENTS = frozenset({"start", "delta", "done", "error"})
TERMINAL_EVENTS = frozenset({"done", "error"})


@dataclass(frozen=True)
class TurnEvent:
    name: str  # start | delta | done | error
    id: int
    data: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.name in TERMINAL_EVENTS

    def to_json(self) -> dict[str, Any]:
        return {"event": self.name, "id": self.id, "data": self.data}


@dataclass(frozen=True)
class Reconnect:
    """Announced before waiting for a new connection attempt."""

    attempt: int
    max_attempts: int
    delay_s: float
    reason: str


@dataclass(frozen=True)
class ReconnectPolicy:
    max_attempts: int = 8
    # Used for the first attempt when the server sent no ``retry:`` hint.
    initial_delay_s: float = 0.5
    max_delay_s: float = 15.0
    jitter: float = 0.1

    def delay_s(self, attempt: int, server_retry_s: float | None) -> float:
        base = self.initial_delay_s if server_retry_s is None else server_retry_s
        delay = min(self.max_delay_s, base * 2 ** (attempt - 1))
        return float(delay * (1 + self.jitter * random.random()))


class StreamLost(Exception):
    """The stream could not be resumed within the reconnect policy."""


class ProtocolError(Exception):
    """The server sent something that is not Glia's event protocol."""


class _Interrupted(Exception):
    """The server cut this stream short while the turn goes on (e.g. the stream reached
    its maximum lifetime): a retryable ``error`` repeating an id already delivered."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "the connection went silent"
    if isinstance(exc, ApiError):
        return f"the server answered {exc.status}"
    return "the connection dropped"


@dataclass
class TurnStream:
    """One chat turn's events, each delivered once, across reconnections.

    ``send`` starts a turn; ``attach`` follows a turn that is already running (or replays
    a finished one). Both are generators: iterate them to the terminal event.
    """

    client: GliaClient
    conversation_id: str
    policy: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    on_reconnect: Callable[[Reconnect], None] = lambda _r: None
    sleep: Callable[[float], None] = time.sleep

    message_id: str | None = None  # the assistant message, known from ``start``
    last_event_id: int | None = None
    terminal: TurnEvent | None = None
    server_retry_s: float | None = None
    reconnects: int = 0

    def send(
        self, content: str, idempotency_key: str | None = None
    ) -> Generator[TurnEvent, None, None]:
        # The key makes repeating the request safe while ``start`` has not arrived yet:
        # the server replays the recorded turn instead of starting a second one.
        key = idempotency_key or str(uuid.uuid4())
        return self._run(lambda: self.client.post_message(self.conversation_id, content, key))

    def attach(
        self, message_id: str, last_event_id: int | None = None
    ) -> Generator[TurnEvent, None, None]:
        self.message_id = message_id
        self.last_event_id = last_event_id
        return self._run(None)

    def _open(self, first: Callable[[], Any] | None) -> Any:
        if self.message_id is None and first is not None:
            return first()
        assert self.message_id is not None
        return self.client.turn_events(self.conversation_id, self.message_id, self.last_event_id)

    def _run(self, first: Callable[[], Any] | None) -> Generator[TurnEvent, None, None]:
        failures = 0
        while True:
            retry_after_s: float | None = None
            try:
                with self._open(first) as response:
                    for event in self._read(response):
                        failures = 0
                        yield event
                        if event.terminal:
                            return
                reason = "the stream ended before the turn did"
            except (httpx.TransportError, httpx.DecodingError) as exc:
                reason = _describe(exc)
            except _Interrupted as exc:
                reason = str(exc)
            except ApiError as exc:
                starting = self.message_id is None
                # 409 before ``start``: the first request is still running; its outcome
                # is replayed once it ends. A 429 then refuses the new turn: the user
                # decides when to try again.
                if starting and exc.status == 429:
                    raise
                if not (exc.retryable or (starting and exc.status == 409)):
                    raise
                reason = _describe(exc)
                retry_after_s = exc.retry_after_s
            failures += 1
            if failures > self.policy.max_attempts:
                raise StreamLost(
                    f"{reason}; gave up after {self.policy.max_attempts} reconnection attempts"
                )
            delay = max(self.policy.delay_s(failures, self.server_retry_s), retry_after_s or 0.0)
            self.on_reconnect(Reconnect(failures, self.policy.max_attempts, delay, reason))
            self.reconnects += 1
            self.sleep(delay)

    def _read(self, response: httpx.Response) -> Generator[TurnEvent, None, None]:
        try:
            for sse in EventSource(response).iter_sse():
                if sse.retry is not None:
                    self.server_retry_s = sse.retry / 1000
                if sse.event not in TURN_EVENTS:
                    continue
                try:
                    event = TurnEvent(sse.event, int(sse.id), sse.json())
                except ValueError as exc:
                    raise ProtocolError(f"malformed {sse.event!r} event") from exc
                seen = self.last_event_id is not None and event.id <= self.last_event_id
                if seen and event.name == "error" and event.data.get("retryable"):
                    # Not the turn's end: this stream's. The turn goes on; resume it.
                    raise _Interrupted(str(event.data.get("message") or event.data["code"]))
                # Already delivered (a replay overlapping what we have): skip it. A terminal
                # event is always taken: it ends the turn and carries no text.
                if seen and not event.terminal:
                    continue
                if event.name == "start":
                    self.message_id = str(event.data["assistant_message_id"])
                self.last_event_id = max(event.id, self.last_event_id or 0)
                if event.terminal:
                    self.terminal = event
                yield event
        except SSEError as exc:
            raise ProtocolError(str(exc)) from exc


@dataclass(frozen=True)
class CardSnapshot:
    """The conversation's cards and their freshness, read after ``reason`` happened."""

    reason: str  # "subscribed", "reconnected" or "cards.updated"
    cards: list[dict[str, Any]]
    extraction: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {"event": self.reason, "cards": self.cards, "extraction": self.extraction}


class _AfterFirstChunk:
    """A streamed response whose first chunk has been read already (the server's
    ``: subscribed`` comment), handed on unchanged to the SSE parser."""

    def __init__(self, response: httpx.Response) -> None:
        self.headers = response.headers
        self._chunks = response.iter_text()
        self._first = next(self._chunks, "")

    def iter_text(self) -> Iterator[str]:
        if self._first:
            yield self._first
        yield from self._chunks


def read_all_cards(
    client: GliaClient, conversation_id: str | None, kind: str | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every card (following the pages) and the conversation's freshness."""
    cards: list[dict[str, Any]] = []
    cursor = None
    extraction = None
    while True:
        page = client.list_cards(conversation_id, kind, limit=100, cursor=cursor)
        cards.extend(page["items"])
        extraction = page.get("extraction")
        cursor = page.get("next_cursor")
        if not cursor:
            return cards, extraction


def watch_cards(
    client: GliaClient,
    conversation_id: str,
    *,
    kind: str | None = None,
    policy: ReconnectPolicy | None = None,
    on_reconnect: Callable[[Reconnect], None] = lambda _r: None,
    sleep: Callable[[float], None] = time.sleep,
) -> Generator[CardSnapshot, None, None]:
    """The current cards, then the cards again after every change, until the
    conversation is deleted (:class:`ApiError` 404) or reconnecting fails."""
    policy = policy or ReconnectPolicy()
    failures = 0
    server_retry_s: float | None = None
    reason = "subscribed"
    while True:
        retry_after_s: float | None = None
        try:
            with client.card_events(conversation_id) as response:
                # Read the set only once subscribed (the server's first bytes), so no
                # change can fall between the read and the subscription.
                stream = _AfterFirstChunk(response)
                yield CardSnapshot(reason, *read_all_cards(client, conversation_id, kind))
                failures = 0
                events = EventSource(cast(httpx.Response, stream)).iter_sse()
                for sse in events:
                    if sse.retry is not None:
                        server_retry_s = sse.retry / 1000
                    if sse.event == "cards.updated":
                        yield CardSnapshot(
                            sse.event, *read_all_cards(client, conversation_id, kind)
                        )
            why = "the stream ended"  # e.g. at its maximum lifetime (a "reconnect" event)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            why = _describe(exc)
        except ApiError as exc:
            if not exc.retryable:
                raise
            why = _describe(exc)
            retry_after_s = exc.retry_after_s
        reason = "reconnected"
        failures += 1
        if failures > policy.max_attempts:
            raise StreamLost(f"{why}; gave up after {policy.max_attempts} reconnection attempts")
        delay = max(policy.delay_s(failures, server_retry_s), retry_after_s or 0.0)
        on_reconnect(Reconnect(failures, policy.max_attempts, delay, why))
        sleep(delay)
