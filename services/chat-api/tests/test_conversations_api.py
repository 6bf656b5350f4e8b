"""Conversations over real HTTP and PostgreSQL: CRUD, pagination, errors, isolation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from glia_e2e.sse import post_message

pytestmark = pytest.mark.integration


def auth(mint: Any, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(user)}"}


async def test_create_get_list_delete(chat: httpx.AsyncClient, mint: Any, user: str) -> None:
    h = auth(mint, user)
    r = await chat.post("/v1/conversations", json={"title": "Trip"}, headers=h)
    assert r.status_code == 201
    conv = r.json()
    assert set(conv) == {"id", "title", "created_at", "updated_at"}
    assert conv["title"] == "Trip"

    r = await chat.get(f"/v1/conversations/{conv['id']}", headers=h)
    assert r.status_code == 200
    assert r.json()["messages"] == []

    r = await chat.get("/v1/conversations", headers=h)
    assert [c["id"] for c in r.json()["items"]] == [conv["id"]]

    assert (await chat.delete(f"/v1/conversations/{conv['id']}", headers=h)).status_code == 204
    assert (await chat.get(f"/v1/conversations/{conv['id']}", headers=h)).status_code == 404
    assert (await chat.delete(f"/v1/conversations/{conv['id']}", headers=h)).status_code == 404


async def test_title_may_be_null_or_absent(chat: httpx.AsyncClient, mint: Any, user: str) -> None:
    h = auth(mint, user)
    assert (await chat.post("/v1/conversations", json={"title": None}, headers=h)).json()[
        "title"
    ] is None
    assert (await chat.post("/v1/conversations", json={}, headers=h)).status_code == 201


async def test_pagination_is_most_recent_first_and_complete(
    chat: httpx.AsyncClient, mint: Any, user: str
) -> None:
    h = auth(mint, user)
    ids = [
        (await chat.post("/v1/conversations", json={"title": f"c{i}"}, headers=h)).json()["id"]
        for i in range(5)
    ]
    # A turn makes the oldest conversation the most recently updated.
    stream = await post_message(chat, ids[0], "bump", mint(user))
    assert stream.terminal is not None and stream.terminal.event == "done"
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await chat.get("/v1/conversations", params=params, headers=h)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [ids[0], ids[4], ids[3], ids[2], ids[1]]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v1/conversations", {"title": "x" * 201}),
        ("post", "/v1/conversations", {"title": 5}),
        ("post", "/v1/conversations", {"title": "nul \u0000"}),
        ("post", "/v1/conversations", {"title": "ok", "extra": 1}),
        ("get", "/v1/conversations?limit=0", None),
        ("get", "/v1/conversations?limit=101", None),
        ("get", "/v1/conversations?cursor=not-a-cursor", None),
        ("get", "/v1/conversations/not-a-uuid", None),
        ("delete", "/v1/conversations/123", None),
    ],
)
async def test_bad_input_is_422_problem(
    chat: httpx.AsyncClient, mint: Any, user: str, method: str, path: str, body: Any
) -> None:
    r = await chat.request(method.upper(), path, json=body, headers=auth(mint, user))
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert {"type", "title", "status", "detail", "code"} <= set(problem)
    assert problem["status"] == 422


@pytest.mark.parametrize("token", [None, "not-a-jwt"])
async def test_an_unauthenticated_bad_body_is_401_not_422(
    chat: httpx.AsyncClient, token: str | None
) -> None:
    """The token is checked before the caller learns anything about its body."""
    headers = {"content-type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for path in ("/v1/conversations", f"/v1/conversations/{uuid.uuid4()}/messages"):
        r = await chat.post(path, content=b"{not json", headers=headers)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_malformed_json_body_is_422(chat: httpx.AsyncClient, mint: Any, user: str) -> None:
    r = await chat.post(
        "/v1/conversations",
        content=b"{not json",
        headers={**auth(mint, user), "content-type": "application/json"},
    )
    assert r.status_code == 422


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dXNlcjpwdw=="}],
)
async def test_missing_or_bad_token_is_401(
    chat: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await chat.get("/v1/conversations", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 401


async def test_expired_token_is_401(chat: httpx.AsyncClient, mint: Any, user: str) -> None:
    r = await chat.get("/v1/conversations", headers={"Authorization": f"Bearer {mint(user, -120)}"})
    assert r.status_code == 401


async def test_other_users_conversation_is_404_and_stays_intact(
    chat: httpx.AsyncClient, mint: Any, user: str
) -> None:
    alice, bob = auth(mint, user), auth(mint, user + "-bob")
    conv = (await chat.post("/v1/conversations", json={"title": "private"}, headers=alice)).json()
    cid = conv["id"]
    assert (await chat.get(f"/v1/conversations/{cid}", headers=bob)).status_code == 404
    assert (await chat.delete(f"/v1/conversations/{cid}", headers=bob)).status_code == 404
    stream = await post_message(chat, cid, "hello", mint(user + "-bob"))
    assert stream.status == 404 and stream.events == []
    assert (await chat.get("/v1/conversations", headers=bob)).json()["items"] == []
    mine = (await chat.get(f"/v1/conversations/{cid}", headers=alice)).json()
    assert mine["title"] == "private" and mine["messages"] == []


async def test_missing_conversation_is_404(chat: httpx.AsyncClient, mint: Any, user: str) -> None:
    r = await chat.get(f"/v1/conversations/{uuid.uuid4()}", headers=auth(mint, user))
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


async def test_request_id_is_echoed_when_sane_and_generated_otherwise(
    chat: httpx.AsyncClient,
) -> None:
    r = await chat.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await chat.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"
    assert len(r.headers["x-request-id"]) == 32
    r = await chat.get("/v1/conversations")
    assert r.status_code == 401 and r.headers["x-request-id"]


async def test_health_and_readiness_need_no_token(chat: httpx.AsyncClient) -> None:
    assert (await chat.get("/healthz")).json() == {"status": "ok"}
    for _ in range(100):  # the broker connection is made in the background at start-up
        r = await chat.get("/readyz")
        if r.status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok", "broker": "ok"}
