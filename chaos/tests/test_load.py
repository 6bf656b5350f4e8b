"""The client's view of the SSE protocol and of what the server offers."""

from __future__ import annotations

from chaos.load import Caps, _Attempt, _check_event

from glia_e2e.sse import Event


def ev(name: str, event_id: int, data: object = None) -> Event:
    return Event(name, str(event_id), {} if data is None else data)


def read(events: list[Event], op: str = "send", first: int = 0) -> _Attempt:
    res = _Attempt()
    for n, e in enumerate(events):
        _check_event(res, e, first + n, op)
        if e.event == "start":
            res.start = e.data  # type: ignore[assignment]
        if e.event in ("done", "error"):
            res.terminal = e.event
    return res


def test_a_well_formed_stream_passes() -> None:
    start = {"assistant_message_id": "a"}
    res = read([ev("start", 0, start), ev("delta", 1, {"text": "x"}), ev("done", 2, start)])
    assert res.protocol == [] and res.ids == [0, 1, 2]


def test_ids_must_follow_on_and_start_come_first() -> None:
    assert read([ev("delta", 0, {"text": "x"})]).protocol == ["first event 'delta', not start"]
    res = read([ev("start", 0), ev("delta", 2, {"text": "x"})])
    assert res.protocol == ["id '2' where 1 was due"]


def test_a_resume_continues_after_last_event_id() -> None:
    assert read([ev("delta", 4, {"text": "x"}), ev("done", 5)], "resume", first=4).protocol == []
    # A terminal error may come back at or below Last-Event-ID: text past it not kept.
    res = read([ev("error", 1, {"code": "incomplete"})], "resume", first=4)
    assert res.protocol == [] and res.below == 2
    res = read([ev("delta", 1, {"text": "x"})], "resume", first=4)
    assert res.protocol == ["id '1' where 4 was due"]


def test_nothing_after_the_terminal_event_and_done_names_the_reply() -> None:
    res = read([ev("start", 0, {"assistant_message_id": "a"}), ev("done", 1), ev("delta", 2)])
    assert "delta after the terminal event" in res.protocol
    res = read(
        [
            ev("start", 0, {"assistant_message_id": "a"}),
            ev("done", 1, {"assistant_message_id": "b"}),
        ]
    )
    assert res.protocol == ["done names another assistant message than start"]


def test_the_newer_turn_routes_are_found_in_the_openapi_document() -> None:
    old = {"paths": {"/v1/conversations/{conversation_id}/messages": {}}}
    new = {
        "paths": {
            **old["paths"],
            "/v1/conversations/{conversation_id}/messages/{message_id}/events": {},
            "/v1/conversations/{conversation_id}/messages/{message_id}/cancel": {},
        }
    }
    assert Caps.detect(old) == Caps(resume=False, cancel=False)
    assert Caps.detect(new) == Caps(resume=True, cancel=True)
