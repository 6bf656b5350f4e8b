"""The web client's files under /app, its config, its security headers, and CORS for a
page on another origin."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx

StartChat = Callable[..., Awaitable[httpx.AsyncClient]]

PAGE_ORIGIN = "http://localhost:8000"


async def test_the_page_and_every_file_it_loads_are_served(start_chat: StartChat) -> None:
    chat = await start_chat()
    assert (await chat.get("/app", follow_redirects=False)).headers["location"].endswith("/app/")
    page = await chat.get("/app/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<label for="token">' in page.text and '<label for="message">' in page.text

    local = re.findall(r'(?:src|href)="([^":#]+)"', page.text)
    assert {"app.js", "style.css"} <= set(local)
    for name in local:
        served = await chat.get(f"/app/{name}")
        assert served.status_code == 200, name
    script = await chat.get("/app/app.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    # Modules import each other by relative path: every import resolves.
    for name in ("app.js", "api.js", "sse.js"):
        source = (await chat.get(f"/app/{name}")).text
        for imported in re.findall(r'from "\./([\w.]+)"', source):
            assert (await chat.get(f"/app/{imported}")).status_code == 200, imported

    assert (await chat.get("/app/missing.js")).status_code == 404
    assert (await chat.get("/app/..%2Fmain.py")).status_code == 404


async def test_config_names_the_card_query_api_and_the_policy_allows_only_it(
    start_chat: StartChat,
) -> None:
    chat = await start_chat(web_card_query_url="http://127.0.0.1:8001/")
    assert (await chat.get("/app/config.json")).json() == {
        "card_query_url": "http://127.0.0.1:8001"
    }
    headers = (await chat.get("/app/")).headers
    policy = headers["content-security-policy"]
    assert "connect-src 'self' http://127.0.0.1:8001;" in policy
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
    assert headers["x-content-type-options"] == "nosniff"

    same_origin = await start_chat()
    assert (await same_origin.get("/app/config.json")).json() == {"card_query_url": ""}
    assert (
        "connect-src 'self';" in (await same_origin.get("/app/")).headers["content-security-policy"]
    )


async def test_cors_is_off_unless_origins_are_configured(start_chat: StartChat) -> None:
    preflight = {
        "Origin": PAGE_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
    }
    closed = await start_chat()
    answer = await closed.options("/v1/conversations", headers=preflight)
    assert "access-control-allow-origin" not in answer.headers

    chat = await start_chat(cors_origins=f"{PAGE_ORIGIN}, http://127.0.0.1:8000")
    answer = await chat.options("/v1/conversations", headers=preflight)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == PAGE_ORIGIN
    allowed = answer.headers["access-control-allow-headers"].lower()
    assert {"authorization", "idempotency-key", "last-event-id"} <= {
        h.strip() for h in allowed.split(",")
    }
    stranger = await chat.options(
        "/v1/conversations", headers={**preflight, "Origin": "http://evil.example"}
    )
    assert "access-control-allow-origin" not in stranger.headers

    # A refusal carries the headers too, so the page can read the problem.
    refused = await chat.get("/v1/conversations", headers={"Origin": PAGE_ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == PAGE_ORIGIN
    assert "x-request-id" in refused.headers["access-control-expose-headers"].lower()
