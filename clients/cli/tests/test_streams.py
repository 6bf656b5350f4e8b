"""The resumable readers against scripted HTTP answers (no server): what they send on
reconnection, how long they wait, when they give up, and that nothing is shown twice."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from glia_cli.api import ApiError, GliaClient
from glia_cli.streams import (
    ReconnectPolicy,
    StreamLost,
    TurnStream,
    watch_cards,
)

CID = "11111111-1111-1111-1111-111111111111"
MID = "22222222-2222-2222-2222-222222222222"
EVENTS_PATH = f"/v1/conversations/{CID}/messages/{MID}/events"


def sse(name: str, event_id: int, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\nid: {event_id}\n\n".encode()


def turn_events(text_pieces: list[str]) -> list[bytes]:
    """A whole turn's events: start, one delta per piece, done."""
    start = {
        "conversation_id": CID,
        "user_message_id": "33333333-3333-3333-3333-333333333333",
        "assistant_message_id": MID,
        "request_id": "r",
        "trace_id": "0" * 32,
    }
    events = [sse("start", 0, start)]
    events += [sse("delta", i + 1, {"text": t}) for i, t in enumerate(text_pieces)]
    done = {"assistant_message_id": MID, "finish_reason": "stop", "usage": None}
    events.append(sse("done", len(text_pieces) + 1, done))
    return events


class Chunks(httpx.SyncByteStream):
    """A response body sent chunk by chunk that may break off (a dropped connection)."""

    def __init__(self, chunks: list[bytes], drop: bool = False) -> None:
        self.chunks = chunks
        self.drop = drop

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.drop:
            raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


def stream_response(chunks: list[bytes], drop: bool = False) -> httpx.Response:
    return httpx.Response(
        200, headers={"content-type": "text/event-stream"}, stream=Chunks(chunks, drop)
    )


def problem(status: int, code: str) -> httpx.Response:
    return httpx.Response(
        status,
        headers={"content-type": "application/problem+json"},
        json={"type": "about:blank", "title": "x", "status": status, "detail": code, "code": code},
    )


Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """Answers requests in order from a script and records them."""

    def __init__(self, *answers: httpx.Response | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.answers.pop(0)
        return answer(request) if callable(answer) else answer


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused")


def client_for(server: Server) -> GliaClient:
    return GliaClient("token", "http://chat", "http://cards", transport=httpx.MockTransport(server))


def text_of(events: list[Any]) -> str:
    return "".join(e.data["text"] for e in events if e.name == "delta")


def no_sleep(sleeps: list[float]) -> Callable[[float], None]:
    return sleeps.append


def test_a_dropped_turn_resumes_after_the_last_event_and_shows_nothing_twice() -> None:
    events = turn_events(["The ", "launch ", "is ", "in ", "May."])
    server = Server(
        stream_response(events[:3], drop=True),  # start, "The ", "launch ", then the drop
        # The server answers from an earlier id than asked (an overlap): skipped.
        stream_response(events[2:]),
    )
    sleeps: list[float] = []
    turn = TurnStream(client_for(server), CID, sleep=no_sleep(sleeps))
    got = list(turn.send("When is the launch?", idempotency_key="k1"))

    assert text_of(got) == "The launch is in May."
    assert [e.id for e in got] == list(range(7))
    assert got[-1].name == "done" and turn.terminal == got[-1]
    post, resume = server.requests
    assert post.method == "POST" and post.headers["Idempotency-Key"] == "k1"
    assert resume.method == "GET" and resume.url.path == EVENTS_PATH
    assert resume.headers["Last-Event-ID"] == "2"
    assert len(sleeps) == 1 and turn.reconnects == 1


def test_the_servers_retry_hint_sets_the_wait_and_backoff_doubles_it() -> None:
    events = turn_events(["a", "b"])
    server = Server(
        stream_response([b"retry: 3000\n\n", *events[:2]], drop=True),
        refuse,
        stream_response(events[2:]),
    )
    sleeps: list[float] = []
    policy = ReconnectPolicy(jitter=0.0)
    turn = TurnStream(client_for(server), CID, policy=policy, sleep=no_sleep(sleeps))
    got = list(turn.send("hi"))
    assert text_of(got) == "ab"
    assert sleeps == [3.0, 6.0]


def test_reconnecting_is_bounded() -> None:
    events = turn_events(["a"])
    server = Server(stream_response(events[:1], drop=True), *[refuse] * 10)
    sleeps: list[float] = []
    policy = ReconnectPolicy(max_attempts=4, initial_delay_s=1.0, max_delay_s=5.0, jitter=0.0)
    turn = TurnStream(client_for(server), CID, policy=policy, sleep=no_sleep(sleeps))
    seen = []
    with pytest.raises(StreamLost, match="4 reconnection attempts"):
        for event in turn.send("hi"):
            seen.append(event)
    assert [e.name for e in seen] == ["start"]
    assert sleeps == [1.0, 2.0, 4.0, 5.0]
    assert len(server.requests) == 1 + 4


def test_a_stream_that_ends_without_a_terminal_event_is_resumed() -> None:
    events = turn_events(["x", "y"])
    server = Server(stream_response(events[:2]), stream_response(events[2:]))
    turn = TurnStream(client_for(server), CID, sleep=no_sleep([]))
    assert text_of(list(turn.send("hi"))) == "xy"
    assert server.requests[1].headers["Last-Event-ID"] == "1"


def test_a_drop_before_start_repeats_the_request_with_the_same_key() -> None:
    events = turn_events(["ok"])
    server = Server(
        stream_response([], drop=True),
        problem(409, "request_in_progress"),  # the first request is still running
        stream_response(events),  # its recorded outcome, replayed
    )
    turn = TurnStream(client_for(server), CID, sleep=no_sleep([]))
    assert text_of(list(turn.send("hi", idempotency_key="same"))) == "ok"
    assert [r.method for r in server.requests] == ["POST", "POST", "POST"]
    assert {r.headers["Idempotency-Key"] for r in server.requests} == {"same"}


def test_a_turn_that_is_not_there_is_not_retried() -> None:
    server = Server(problem(404, "not_found"))
    turn = TurnStream(client_for(server), CID, sleep=no_sleep([]))
    with pytest.raises(ApiError) as caught:
        list(turn.attach(MID, last_event_id=3))
    assert caught.value.status == 404 and len(server.requests) == 1


def test_a_terminal_event_is_taken_even_when_its_id_is_not_new() -> None:
    # Attaching after an id beyond the end: the server sends just the terminal event.
    done = sse("done", 4, {"assistant_message_id": MID, "finish_reason": "stop", "usage": None})
    server = Server(stream_response([done]))
    turn = TurnStream(client_for(server), CID, sleep=no_sleep([]))
    got = list(turn.attach(MID, last_event_id=99))
    assert [e.name for e in got] == ["done"]
    assert server.requests[0].headers["Last-Event-ID"] == "99"


def test_server_errors_are_retried_but_an_expired_token_is_not() -> None:
    events = turn_events(["a"])
    server = Server(
        stream_response(events[:1], drop=True),
        problem(503, "unavailable"),
        problem(401, "unauthorized"),
    )
    turn = TurnStream(client_for(server), CID, sleep=no_sleep([]))
    with pytest.raises(ApiError) as caught:
        list(turn.send("hi"))
    assert caught.value.status == 401 and len(server.requests) == 3


def card_page(titles: list[str], state: str) -> httpx.Response:
    items = [{"id": t, "kind": "fact", "title": t, "body": t} for t in titles]
    extraction = {"state": state, "source_hash": None, "derived_at": None}
    return httpx.Response(200, json={"items": items, "next_cursor": None, "extraction": extraction})


def test_watching_cards_reads_them_once_subscribed_and_after_every_update() -> None:
    subscribed = b": subscribed\n\n"
    update = b'event: cards.updated\ndata: {"conversation_id": "c", "extraction": {}}\nid: 0\n\n'
    server = Server(
        stream_response([subscribed, update], drop=True),
        card_page([], "pending"),
        card_page(["A"], "current"),
        stream_response([subscribed]),  # reconnected; then the conversation is deleted
        card_page(["A"], "current"),
        problem(404, "not_found"),
    )
    sleeps: list[float] = []
    snapshots = []
    with pytest.raises(ApiError) as caught:
        for snapshot in watch_cards(client_for(server), CID, sleep=no_sleep(sleeps)):
            snapshots.append(snapshot)
    assert caught.value.status == 404
    assert [(s.reason, [c["title"] for c in s.cards]) for s in snapshots] == [
        ("subscribed", []),
        ("cards.updated", ["A"]),
        ("reconnected", ["A"]),
    ]
    assert [r.url.path for r in server.requests] == [
        "/v1/cards/events",
        "/v1/cards",
        "/v1/cards",
        "/v1/cards/events",
        "/v1/cards",
        "/v1/cards/events",
    ]
    assert len(sleeps) == 2


def test_a_refused_new_turn_is_not_retried_but_a_busy_server_is_waited_for() -> None:
    limited = problem(429, "rate_limited")
    limited.headers["Retry-After"] = "7"
    server = Server(limited)
    turn = TurnStream(client_for(server), CID, sleep=no_sleep([]))
    with pytest.raises(ApiError) as caught:
        list(turn.send("hi"))
    assert caught.value.status == 429 and caught.value.retry_after_s == 7.0
    assert len(server.requests) == 1

    events = turn_events(["a", "b"])
    busy = problem(503, "unavailable")
    busy.headers["Retry-After"] = "9"
    server = Server(stream_response(events[:2], drop=True), busy, stream_response(events[2:]))
    sleeps: list[float] = []
    turn = TurnStream(
        client_for(server), CID, policy=ReconnectPolicy(jitter=0.0), sleep=no_sleep(sleeps)
    )
    assert text_of(list(turn.send("hi"))) == "ab"
    assert sleeps == [0.5, 9.0]


def test_a_stream_cut_short_by_the_server_is_resumed_not_shown_as_the_end() -> None:
    events = turn_events(["one ", "two"])
    # The stream reached its maximum lifetime: a retryable error repeating the last id.
    expired = sse(
        "error",
        1,
        {"code": "stream_expired", "message": "the stream ended", "retryable": True},
    )
    server = Server(stream_response([*events[:2], expired]), stream_response(events[2:]))
    sleeps: list[float] = []
    turn = TurnStream(client_for(server), CID, sleep=no_sleep(sleeps))
    got = list(turn.send("hi"))
    assert [e.name for e in got] == ["start", "delta", "delta", "done"]
    assert text_of(got) == "one two"
    assert server.requests[1].headers["Last-Event-ID"] == "1" and len(sleeps) == 1

    # A retryable error with a new id is the turn's own end: shown, not resumed.
    failed = sse("error", 2, {"code": "provider_error", "message": "x", "retryable": True})
    server = Server(stream_response([*events[:2], failed]))
    got = list(TurnStream(client_for(server), CID, sleep=no_sleep([])).send("hi"))
    assert got[-1].name == "error" and got[-1].data["code"] == "provider_error"
    assert len(server.requests) == 1
