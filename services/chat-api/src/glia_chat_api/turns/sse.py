"""The fixed SSE protocol of a turn: start, delta*, then exactly one of done | error.

Events carry ``id`` 0, 1, 2, ... within the stream and one line of JSON data.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi.sse import ServerSentEvent
from pydantic import BaseModel

EventName = Literal["start", "delta", "done", "error"]


class StartData(BaseModel):
    conversation_id: uuid.UUID
    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID
    request_id: str
    trace_id: str


class DeltaData(BaseModel):
    text: str


class DoneData(BaseModel):
    assistant_message_id: uuid.UUID
    finish_reason: Literal["stop", "length"]
    usage: dict[str, Any] | None


class ErrorData(BaseModel):
    code: str
    message: str
    retryable: bool


class EventSequence:
    """Numbers the events of one stream and refuses anything after a terminal event."""

    def __init__(self) -> None:
        self._next_id = 0
        self.finished = False

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
