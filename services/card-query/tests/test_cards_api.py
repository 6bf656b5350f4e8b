"""The card query API over real HTTP: freshness, pages, filters, ETags, isolation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from glia_e2e.sse import iter_events

pytestmark = pytest.mark.integration


CARD_FIELDS = {
    "id",
    "conversation_id",
    "kind",
    "title",
    "body",
    "source_message_ids",
    "origin",
    "created_at",
}


def h(mint: Any, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(user)}"}


async def test_freshness_none_pending_current(
    cards_api: httpx.AsyncClient,
    mint: Any,
    user: str,
    conversation: Any,
    derive: Any,
    settings: Any,
) -> None:
    empty = await conversation(user, messages=0)
    body = (
        await cards_api.get(
            "/v1/cards", params={"conversation_id": str(empty)}, headers=h(mint, user)
        )
    ).json()
    assert body == {
        "items": [],
        "next_cursor": None,
        "extraction": {"state": "none", "source_hash": None, "derived_at": None},
    }

    cid = await conversation(user, messages=2)
    body = (
        await cards_api.get(
            "/v1/cards", params={"conversation_id": str(cid)}, headers=h(mint, user)
        )
    ).json()
    assert body["extraction"]["state"] == "pending"

    await derive(user, cid, ["summary", "fact"])
    body = (
        await cards_api.get(
            "/v1/cards", params={"conversation_id": str(cid)}, headers=h(mint, user)
        )
    ).json()
    assert body["extraction"]["state"] == "current"
    assert (
        body["extraction"]["source_hash"].startswith("hash-") and body["extraction"]["derived_at"]
    )
    assert [c["kind"] for c in body["items"]] == ["summary", "fact"]

    # A newer committed message makes it pending again.
    from glia_e2e.seeding import seed_conversation

    await seed_conversation(settings.database_url, user, ["more"], conversation_id=cid)
    body = (
        await cards_api.get(
            "/v1/cards", params={"conversation_id": str(cid)}, headers=h(mint, user)
        )
    ).json()
    assert body["extraction"]["state"] == "pending"


async def test_card_shape_and_single_card(
    cards_api: httpx.AsyncClient, mint: Any, user: str, conversation: Any, derive: Any
) -> None:
    cid = await conversation(user)
    await derive(user, cid, ["summary"])
    [card] = (
        await cards_api.get(
            "/v1/cards", params={"conversation_id": str(cid)}, headers=h(mint, user)
        )
    ).json()["items"]
    assert set(card) == CARD_FIELDS
    r = await cards_api.get(f"/v1/cards/{card['id']}", headers=h(mint, user))
    assert r.status_code == 200 and r.json() == card
    etag = r.headers["etag"]
    r = await cards_api.get(
        f"/v1/cards/{card['id']}", headers={**h(mint, user), "If-None-Match": etag}
    )
    assert r.status_code == 304 and r.content == b""


async def test_conversation_pages_and_kind_filter(
    cards_api: httpx.AsyncClient, mint: Any, user: str, conversation: Any, derive: Any
) -> None:
    cid = await conversation(user)
    kinds = ["summary", "fact", "task", "task", "decision", "question", "task"]
    await derive(user, cid, kinds)
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"conversation_id": str(cid), "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await cards_api.get("/v1/cards", params=params, headers=h(mint, user))).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [c["kind"] for c in seen] == kinds
    assert len({c["id"] for c in seen}) == len(kinds)
    tasks = (
        await cards_api.get(
            "/v1/cards", params={"conversation_id": str(cid), "kind": "task"}, headers=h(mint, user)
        )
    ).json()
    assert [c["kind"] for c in tasks["items"]] == ["task", "task", "task"]


async def test_a_cursor_from_a_replaced_set_is_409(
    cards_api: httpx.AsyncClient, mint: Any, user: str, conversation: Any, derive: Any
) -> None:
    cid = await conversation(user)
    await derive(user, cid, ["summary", "fact", "task"])
    page = (
        await cards_api.get(
            "/v1/cards", params={"conversation_id": str(cid), "limit": 1}, headers=h(mint, user)
        )
    ).json()
    await derive(user, cid, ["summary", "fact", "task"])
    r = await cards_api.get(
        "/v1/cards",
        params={"conversation_id": str(cid), "limit": 1, "cursor": page["next_cursor"]},
        headers=h(mint, user),
    )
    assert r.status_code == 409 and r.json()["code"] == "cursor_stale"


async def test_all_cards_of_a_user_page_without_gaps(
    cards_api: httpx.AsyncClient, mint: Any, user: str, conversation: Any, derive: Any
) -> None:
    ids = set()
    for _ in range(3):
        cid = await conversation(user)
        await derive(user, cid, ["summary", "fact"])
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = (await cards_api.get("/v1/cards", params=params, headers=h(mint, user))).json()
        assert page["extraction"] is None
        # The columns that make the cursor stay out of the items.
        assert all(set(c) == CARD_FIELDS for c in page["items"])
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    ids = set(seen)
    assert len(seen) == len(ids) == 6
    facts = (
        await cards_api.get("/v1/cards", params={"kind": "fact"}, headers=h(mint, user))
    ).json()["items"]
    assert len(facts) == 3


async def test_etag_304_until_the_cards_change(
    cards_api: httpx.AsyncClient, mint: Any, user: str, conversation: Any, derive: Any
) -> None:
    cid = await conversation(user)
    await derive(user, cid, ["summary"])
    params = {"conversation_id": str(cid)}
    first = await cards_api.get("/v1/cards", params=params, headers=h(mint, user))
    etag = first.headers["etag"]
    again = await cards_api.get(
        "/v1/cards", params=params, headers={**h(mint, user), "If-None-Match": etag}
    )
    assert again.status_code == 304 and again.headers["etag"] == etag
    await derive(user, cid, ["summary", "task"])
    changed = await cards_api.get(
        "/v1/cards", params=params, headers={**h(mint, user), "If-None-Match": etag}
    )
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    listing = await cards_api.get("/v1/cards", headers=h(mint, user))
    assert (
        await cards_api.get(
            "/v1/cards", headers={**h(mint, user), "If-None-Match": listing.headers["etag"]}
        )
    ).status_code == 304


@pytest.mark.parametrize(
    ("params", "code", "loc"),
    [
        ({"limit": 0}, "validation_error", ["query", "limit"]),
        ({"limit": 101}, "validation_error", ["query", "limit"]),
        ({"limit": "many"}, "validation_error", ["query", "limit"]),
        ({"kind": "banana"}, "validation_error", ["query", "kind"]),
        ({"conversation_id": "nope"}, "validation_error", ["query", "conversation_id"]),
        ({"cursor": "x" * 513}, "validation_error", ["query", "cursor"]),
        ({"cursor": "%%%"}, "invalid_cursor", None),
    ],
)
async def test_bad_queries_are_422(
    cards_api: httpx.AsyncClient,
    mint: Any,
    user: str,
    params: dict[str, Any],
    code: str,
    loc: list[str] | None,
) -> None:
    r = await cards_api.get("/v1/cards", params=params, headers=h(mint, user))
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == code
    if loc is not None:
        assert [e["loc"] for e in problem["errors"]] == [loc]
        assert problem["detail"].startswith(".".join(loc) + ": ")
    # The caller is checked before the query: without a token, the same request is a 401.
    anonymous = await cards_api.get("/v1/cards", params=params)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == "Bearer"


async def test_other_users_see_nothing(
    cards_api: httpx.AsyncClient, mint: Any, user: str, conversation: Any, derive: Any
) -> None:
    cid = await conversation(user)
    await derive(user, cid, ["summary", "fact"])
    card_id = (
        await cards_api.get(
            "/v1/cards", params={"conversation_id": str(cid)}, headers=h(mint, user)
        )
    ).json()["items"][0]["id"]
    bob = user + "-bob"
    assert (
        await cards_api.get("/v1/cards", params={"conversation_id": str(cid)}, headers=h(mint, bob))
    ).status_code == 404
    assert (await cards_api.get(f"/v1/cards/{card_id}", headers=h(mint, bob))).status_code == 404
    assert (await cards_api.get("/v1/cards", headers=h(mint, bob))).json()["items"] == []
    assert (
        await cards_api.get(
            "/v1/cards/events", params={"conversation_id": str(cid)}, headers=h(mint, bob)
        )
    ).status_code == 404
    assert (
        await cards_api.get(f"/v1/cards/{uuid.uuid4()}", headers=h(mint, user))
    ).status_code == 404


async def next_event(response: httpx.Response, timeout_s: float) -> Any:
    events = iter_events(response)
    return await asyncio.wait_for(events.__anext__(), timeout_s)


async def test_live_events_reach_the_owner_only(
    cards_api: httpx.AsyncClient, mint: Any, user: str, conversation: Any, derive: Any
) -> None:
    cid = await conversation(user)
    bob = user + "-bob"
    bob_cid = await conversation(bob)
    async with (
        cards_api.stream(
            "GET", "/v1/cards/events", params={"conversation_id": str(cid)}, headers=h(mint, user)
        ) as mine,
        cards_api.stream(
            "GET",
            "/v1/cards/events",
            params={"conversation_id": str(bob_cid)},
            headers=h(mint, bob),
        ) as theirs,
    ):
        assert mine.status_code == 200 and theirs.status_code == 200
        assert mine.headers["content-type"].startswith("text/event-stream")
        await asyncio.sleep(0.3)
        await derive(user, cid, ["summary", "task"])
        event = await next_event(mine, 10)
        assert event.event == "cards.updated" and event.id == "0"
        assert event.data["conversation_id"] == str(cid)
        assert event.data["extraction"]["state"] == "current"
        with pytest.raises(TimeoutError):
            await next_event(theirs, 1.5)


async def test_reads_recover_after_the_database_connection_is_lost(
    serve: Any, settings_factory: Any, infra: Any, mint: Any, user: str, conversation: Any
) -> None:
    """Without pool pre-ping, connections that died with the server are replaced when a
    read begins, so the first read after an outage already succeeds."""
    from urllib.parse import urlsplit

    from glia_card_query.main import create_app
    from glia_fakes.tcp_proxy import FaultProxy

    parts = urlsplit(infra.app_url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    try:
        served = await serve(
            create_app(settings_factory(database_url=proxy.url_for(infra.app_url)))
        )
        cid = await conversation(user)
        async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as client:
            params = {"conversation_id": str(cid)}
            for _ in range(3):  # warm the pool
                assert (
                    await client.get("/v1/cards", params=params, headers=h(mint, user))
                ).status_code == 200
            await proxy.cut()
            proxy.restore()
            r = await client.get("/v1/cards", params=params, headers=h(mint, user))
            assert r.status_code == 200, r.text
    finally:
        await proxy.stop()
