"""Parse a text/event-stream strictly enough to check Glia's SSE protocol."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    event: str | None
    id: str | None
    data: Any
    raw_data_lines: list[str] = field(default_factory=list)


@dataclass
class Stream:
    status: int
    headers: httpx.Headers
    events: list[Event]
    comments: list[str]
    body: str = ""

    def names(self) -> list[str | None]:
        return [e.event for e in self.events]

    def text(self) -> str:
        return "".join(e.data["text"] for e in self.events if e.event == "delta")

    def first(self, name: str) -> Event:
        return next(e for e in self.events if e.event == name)

    @property
    def terminal(self) -> Event | None:
        return (
            self.events[-1] if self.events and self.events[-1].event in ("done", "error") else None
        )


def parse_block(block: list[str], comments: list[str]) -> Event | None:
    name = event_id = None
    data_lines: list[str] = []
    for line in block:
        if line.startswith(":"):
            comments.append(line[1:].strip())
            continue
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "event":
            name = value
        elif key == "id":
            event_id = value
        elif key == "data":
            data_lines.append(value)
    if name is None and event_id is None and not data_lines:
        return None
    data = json.loads("\n".join(data_lines)) if data_lines else None
    return Event(name, event_id, data, data_lines)


async def iter_events(
    response: httpx.Response, comments: list[str] | None = None
) -> AsyncIterator[Event]:
    """The events of a stream; comment lines (heartbeats) go to ``comments`` if given."""
    comments = comments if comments is not None else []
    block: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            event = parse_block(block, comments)
            block = []
            if event is not None:
                yield event
        else:
            block.append(line)
    if block:
        event = parse_block(block, comments)
        if event is not None:
            yield event


async def read_stream(response: httpx.Response) -> Stream:
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        comments: list[str] = []
        events = [e async for e in iter_events(response, comments)]
        return Stream(response.status_code, response.headers, events, comments)
    body = (await response.aread()).decode()
    return Stream(response.status_code, response.headers, [], [], body)


async def post_message(
    client: httpx.AsyncClient,
    conversation_id: str,
    content: str,
    token: str,
    idempotency_key: str | None = None,
) -> Stream:
    headers = {"Authorization": f"Bearer {token}"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    async with client.stream(
        "POST",
        f"/v1/conversations/{conversation_id}/messages",
        json={"content": content},
        headers=headers,
    ) as response:
        return await read_stream(response)


async def resume(
    client: httpx.AsyncClient,
    conversation_id: str,
    message_id: str,
    token: str,
    last_event_id: str | None = None,
    *,
    as_query: bool = False,
) -> Stream:
    """GET the reply's events again, after ``last_event_id`` when given (as the
    Last-Event-ID header, or the ``last_event_id`` query parameter)."""
    headers = {"Authorization": f"Bearer {token}"}
    params = {}
    if last_event_id is not None:
        if as_query:
            params["last_event_id"] = last_event_id
        else:
            headers["Last-Event-ID"] = last_event_id
    async with client.stream(
        "GET",
        f"/v1/conversations/{conversation_id}/messages/{message_id}/events",
        headers=headers,
        params=params,
    ) as response:
        return await read_stream(response)
