"""The fixed SSE protocol of a turn: start, delta*, then exactly one of done | error.

Events carry ``id`` 0, 1, 2, ... within the stream and one line of JSON data.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from fastapi.sse import ServerSentEvent
from pydantic import BaseModel

from glia_chat_api.turns.store import RecordedTurn


class _TurnIds(Protocol):
    @property
    def conversation_id(self) -> uuid.UUID: ...
    @property
    def user_message_id(self) -> uuid.UUID: ...
    @property
    def assistant_message_id(self) -> uuid.UUID: ...
    @property
    def request_id(self) -> str: ...
    @property
    def trace_id(self) -> str: ...


EventName = Literal["start", "delta", "done", "error"]


class StartData(BaseModel):
    conversation_id: uuid.UUID
    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID
    request_id: str
    trace_id: str

    @classmethod
    def of(cls, turn: _TurnIds) -> StartData:
        return cls(
            conversation_id=turn.conversation_id,
            user_message_id=turn.user_message_id,
            assistant_message_id=turn.assistant_message_id,
            request_id=turn.request_id,
            trace_id=turn.trace_id,
        )


class DeltaData(BaseModel):
    text: str


class DoneData(BaseModel):
    assistant_message_id: uuid.UUID
    finish_reason: Literal["stop", "length"]
    usage: dict[str, Any] | None

    @classmethod
    def of(cls, turn: RecordedTurn) -> DoneData:
        return cls(
            assistant_message_id=turn.assistant_message_id,
            finish_reason="length" if turn.finish_reason == "length" else "stop",
            usage=turn.usage,
        )


class ErrorData(BaseModel):
    code: str
    message: str
    retryable: bool


class EventSequence:
    """Numbers the events of one stream and refuses anything after a terminal event."""

    def __init__(self) -> None:
        self._next_id = 0
        self.finished = False

    @classmethod
    def at(cls, next_id: int) -> EventSequence:
        """Numbering that continues a stream from ``next_id`` (a resumed stream's end)."""
        sequence = cls()
        sequence._next_id = next_id
        return sequence

    def _event(self, name: EventName, data: BaseModel) -> ServerSentEvent:
        if self.finished:
            raise RuntimeError("the stream already ended")
        if name != "start" and self._next_id == 0:
            raise RuntimeError("the first event must be start")
        event = ServerSentEvent(event=name, id=str(self._next_id), raw_data=data.model_dump_json())
        self._next_id += 1
        if name in ("done", "error"):
            self.finished = True
        return event

    def start(self, data: StartData) -> ServerSentEvent:
        return self._event("start", data)

    def delta(self, text: str) -> ServerSentEvent:
        return self._event("delta", DeltaData(text=text))

    def done(self, data: DoneData) -> ServerSentEvent:
        return self._event("done", data)

    def error(self, data: ErrorData) -> ServerSentEvent:
        return self._event("error", data)


# Terminal errors the chat API itself decides (the model's own failures carry theirs).
INCOMPLETE = ErrorData(code="incomplete", message="the stream was interrupted", retryable=True)
CANCELLED = ErrorData(code="cancelled", message="the turn was cancelled", retryable=False)
UNSAVED = ErrorData(
    code="storage_unavailable", message="the reply could not be saved", retryable=True
)
UNREADABLE = ErrorData(
    code="storage_unavailable",
    message="the reply could not be read; resume it with Last-Event-ID",
    retryable=True,
)
# The conversation was deleted while the turn ran: nothing was stored.
ENDED_ELSEWHERE = ErrorData(
    code="turn_ended",
    message="the turn was ended elsewhere (its conversation was deleted)",
    retryable=False,
)


def split_deltas(content: str, delta_ends: Sequence[int]) -> list[str]:
    """The deltas as they were streamed: ``content`` cut where each one ended. Text past
    the last recorded end (or a turn stored without ends) is one more delta."""
    pieces, start = [], 0
    for end in delta_ends:
        if start < end <= len(content):
            pieces.append(content[start:end])
            start = end
    if start < len(content):
        pieces.append(content[start:])
    return pieces


def stored_events(turn: RecordedTurn) -> list[ServerSentEvent]:
    """A stored turn's stream, with the ids of the original: start, the deltas stored so
    far, and the terminal event once the turn has settled."""
    events = EventSequence()
    out = [events.start(StartData.of(turn))]
    out.extend(events.delta(text) for text in split_deltas(turn.content, turn.delta_ends))
    if turn.status == "complete":
        out.append(events.done(DoneData.of(turn)))
    elif turn.settled:
        out.append(
            events.error(
                ErrorData(
                    code=turn.error_code or INCOMPLETE.code,
                    message=turn.error_message or INCOMPLETE.message,
                    retryable=turn.error_retryable
                    if turn.error_retryable is not None
                    else INCOMPLETE.retryable,
                )
            )
        )
    return out
