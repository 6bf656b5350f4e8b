"""The SSE encoder: numbering, one JSON data line, exactly one terminal event."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.sse import format_sse_event

from glia_chat_api.turns.sse import DoneData, ErrorData, EventSequence, StartData


def wire(event) -> str:  # type: ignore[no-untyped-def]
    return format_sse_event(
        data_str=event.raw_data, event=event.event, id=event.id, comment=event.comment
    ).decode()


def start_data() -> StartData:
    return StartData(
        conversation_id=uuid.uuid4(),
        user_message_id=uuid.uuid4(),
        assistant_message_id=uuid.uuid4(),
        request_id="req-1",
        trace_id="0" * 31 + "1",
    )


def test_ids_count_from_zero_and_data_is_one_json_line() -> None:
    seq = EventSequence()
    events = [seq.start(start_data()), seq.delta("line one\nline two \u2603"), seq.delta("")]
    events.append(
        seq.done(DoneData(assistant_message_id=uuid.uuid4(), finish_reason="stop", usage=None))
    )
    assert [e.id for e in events] == ["0", "1", "2", "3"]
    assert [e.event for e in events] == ["start", "delta", "delta", "done"]
    text = wire(events[1])
    data_lines = [line for line in text.splitlines() if line.startswith("data:")]
    assert len(data_lines) == 1
    assert json.loads(data_lines[0][len("data: ") :]) == {"text": "line one\nline two \u2603"}
    assert text.endswith("\n\n")


def test_nothing_after_a_terminal_event() -> None:
    seq = EventSequence()
    seq.start(start_data())
    seq.error(ErrorData(code="llm_timeout", message="slow", retryable=True))
    assert seq.finished
    with pytest.raises(RuntimeError):
        seq.delta("late")
    with pytest.raises(RuntimeError):
        seq.done(DoneData(assistant_message_id=uuid.uuid4(), finish_reason="stop", usage=None))


def test_start_comes_first() -> None:
    with pytest.raises(RuntimeError):
        EventSequence().delta("too early")


def test_start_payload_fields() -> None:
    seq = EventSequence()
    data = start_data()
    payload = json.loads(seq.start(data).raw_data or "")
    assert set(payload) == {
        "conversation_id",
        "user_message_id",
        "assistant_message_id",
        "request_id",
        "trace_id",
    }
    assert payload["conversation_id"] == str(data.conversation_id)
