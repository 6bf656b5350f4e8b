"""Security, from the outside, as an attacker would try it against the real processes:
forged cursors, oversized bodies, hostile tokens, forged queue messages, and one user
flooding turns and subscriptions while another keeps working."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import httpx
import jwt
import pytest

from glia_e2e.api import bearer, new_conversation
from glia_e2e.sse import post_message

pytestmark = pytest.mark.e2e


def forged(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


FORGED_CURSORS = [
    "eyJwIjogSW5maW5pdHl9",  # {"p": Infinity}
    forged({"p": 1e400, "r": str(uuid.uuid4())}),
    forged({"p": 2**63, "r": str(uuid.uuid4())}),
    forged({"p": True, "r": str(uuid.uuid4())}),
    forged({"c": "0001-01-01T00:00:00+14:00", "v": str(uuid.uuid4()), "p": 1}),
    forged({"c": "infinity", "v": str(uuid.uuid4()), "p": 1}),
    forged({"c": "2026-01-01T00:00:00+00:00", "v": "x" * 40, "p": -5}),
    forged({"u": "9999-12-31T23:59:59.999999-23:59", "i": str(uuid.uuid4())}),
    forged({"u": "2026-01-01T00:00:00", "i": str(uuid.uuid4())}),
    forged({"s": 2**70}),
    forged({"s": "1"}),
    forged([["nested"]]),
    "%%%",
    "A" * 500,
]


async def test_forged_cursors_are_422_on_every_paginated_route(
    system: Any, mint: Any, user: str
) -> None:
    token = mint(user)
    async with (
        httpx.AsyncClient(base_url=system.chat.url, timeout=30) as chat,
        httpx.AsyncClient(base_url=system.cards.url, timeout=30) as cards,
    ):
        cid = await new_conversation(chat, token)
        routes = [
            (chat, "/v1/conversations", {}),
            (chat, f"/v1/conversations/{cid}", {}),
            (cards, "/v1/cards", {}),
            (cards, "/v1/cards", {"conversation_id": cid}),
        ]
        for client, path, params in routes:
            for cursor in FORGED_CURSORS:
                r = await client.get(
                    path, params={**params, "cursor": cursor}, headers=bearer(token)
                )
                # A conversation without cards has no card set to page: 409 is its answer
                # to a well-formed cursor; anything else malformed is 422. Never a 5xx.
                assert r.status_code in (422, 409), (path, cursor, r.status_code, r.text)
                assert r.headers["content-type"].startswith("application/problem+json")


async def test_oversized_bodies_are_413_on_every_service(system: Any, mint: Any, user: str) -> None:
    token = mint(user)
    huge = {"content": "x" * 2_000_000}
    async with httpx.AsyncClient(timeout=30) as client:
        cid = (
            await client.post(f"{system.chat.url}/v1/conversations", json={}, headers=bearer(token))
        ).json()["id"]
        targets = [
            f"{system.chat.url}/v1/conversations/{cid}/messages",
            f"{system.chat.url}/v1/conversations",
            f"{system.cards.url}/v1/cards",
            f"{system.extractor.url}/healthz",
        ]
        for url in targets:
            r = await client.post(url, json=huge, headers=bearer(token))
            assert r.status_code == 413, url
            assert r.json()["code"] == "body_too_large"
        # Without a Content-Length the body is counted as it arrives.

        async def chunks() -> Any:
            yield b'{"content": "'
            for _ in range(100):
                yield b"y" * 10_000
            yield b'"}'

        r = await client.post(
            f"{system.chat.url}/v1/conversations/{cid}/messages",
            content=chunks(),
            headers={**bearer(token), "Content-Type": "application/json"},
        )
        assert r.status_code == 413
        # Nothing was stored.
        detail = (
            await client.get(f"{system.chat.url}/v1/conversations/{cid}", headers=bearer(token))
        ).json()
        assert detail["messages"] == []


async def test_hostile_tokens_are_401(system: Any, jwt_secret: str) -> None:
    now = int(time.time())
    claims = {"aud": "glia", "iat": now, "exp": now + 600}
    unsigned = (
        base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        + "."
        + forged({**claims, "sub": "mallory"})
        + "."
    )
    tokens = {
        "alg none": unsigned,
        "NUL in sub": jwt.encode({**claims, "sub": "mal\x00lory"}, jwt_secret, algorithm="HS256"),
        "newline in sub": jwt.encode({**claims, "sub": "mal\nlory"}, jwt_secret, algorithm="HS256"),
        "DEL in sub": jwt.encode({**claims, "sub": "mal\x7flory"}, jwt_secret, algorithm="HS256"),
        "long sub": jwt.encode({**claims, "sub": "m" * 129}, jwt_secret, algorithm="HS256"),
    }
    async with httpx.AsyncClient(timeout=30) as client:
        for name, token in tokens.items():
            for url in (f"{system.chat.url}/v1/conversations", f"{system.cards.url}/v1/cards"):
                r = await client.get(url, headers=bearer(token))
                assert r.status_code == 401, (name, url, r.text)
                assert r.headers["www-authenticate"] == "Bearer"


async def test_a_stream_ends_when_its_token_expires(sys_: Any, mint: Any, user: str) -> None:
    sys_.llm_control.configure(target="chat", mode="slow", chunk_delay_s=0.3)
    short = mint(user, 2)
    async with httpx.AsyncClient(base_url=sys_.chat.url, timeout=30) as chat:
        cid = await new_conversation(chat, short)
        stream = await post_message(chat, cid, "tell me everything", short)
    assert stream.names()[0] == "start"
    assert stream.terminal is not None and stream.terminal.data["code"] == "stream_expired"


async def publish(amqp_url: str, body: dict[str, Any], headers: dict[str, Any]) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("glia")
        await exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(), headers=headers, content_type="application/json"
            ),
            routing_key="extraction.requested",
        )
    finally:
        await connection.close()


async def wait_for(condition: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_forged_queue_messages_do_no_work(
    system: Any, sys_: Any, infra: Any, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    """A message naming another user than the conversation's owner does nothing, and a
    replay header from outside the operator exchange is ignored."""
    token = mint(user)
    async with httpx.AsyncClient(base_url=system.chat.url, timeout=30) as chat:
        cid = await new_conversation(chat, token)
        assert (await post_message(chat, cid, "We decided to ship.", token)).names()[-1] == "done"

    async def runs() -> list[asyncpg.Record]:
        return await admin_db.fetch(
            "SELECT status, user_id FROM extraction_runs WHERE conversation_id = $1",
            uuid.UUID(cid),
        )

    async def one_run() -> bool:
        return [r["status"] for r in await runs()] == ["succeeded"]

    await wait_for(one_run)
    llm_calls = len(await sys_.llm_control.arequests("extraction"))
    request = {
        "conversation_id": cid,
        "request_id": "forged",
        "requested_at": datetime.now(UTC).isoformat(),
    }
    await publish(infra.amqp_url, {**request, "user_id": "mallory"}, {})
    await publish(infra.amqp_url, {**request, "user_id": user}, {"x-glia-replay": "1"})

    async def drained() -> bool:
        connection = await aio_pika.connect(infra.amqp_url)
        try:
            channel = await connection.channel()
            declared = await channel.declare_queue("glia.extraction", passive=True)
            return declared.declaration_result.message_count == 0
        finally:
            await connection.close()

    await wait_for(drained)
    await asyncio.sleep(1.0)
    assert [(r["status"], r["user_id"]) for r in await runs()] == [("succeeded", user)]
    assert len(await sys_.llm_control.arequests("extraction")) == llm_calls
    assert not await admin_db.fetchval(
        "SELECT count(*) FROM extraction_runs WHERE user_id = 'mallory'"
    )


async def test_one_user_flooding_turns_and_streams_does_not_hold_back_another(
    system: Any, sys_: Any, mint: Any, user: str
) -> None:
    # Replies take a second or so: the flood's turns overlap.
    sys_.llm_control.configure(target="chat", mode="slow", chunk_delay_s=0.05)
    flooder, other = mint(user), mint(user + "-other")
    async with (
        httpx.AsyncClient(base_url=system.chat.url, timeout=60) as chat,
        httpx.AsyncClient(base_url=system.cards.url, timeout=60) as cards,
    ):
        cids = [await new_conversation(chat, flooder) for _ in range(4)]
        flood = await asyncio.gather(
            *(post_message(chat, cids[i % 4], f"flood {i}", flooder) for i in range(12))
        )
        statuses = [s.status for s in flood]
        assert statuses.count(429) >= 1 and statuses.count(200) >= 1
        refused = next(s for s in flood if s.status == 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert json.loads(refused.body)["code"] == "rate_limited"
        # Every stream that was accepted was answered in full.
        assert all(s.names()[-1] == "done" for s in flood if s.status == 200)

        other_cid = await new_conversation(chat, other)
        assert (await post_message(chat, other_cid, "hello", other)).names()[-1] == "done"

        async with AsyncExitStack() as stack:
            opened = []
            for _ in range(8):
                r = await stack.enter_async_context(
                    cards.stream(
                        "GET",
                        "/v1/cards/events",
                        params={"conversation_id": cids[0]},
                        headers=bearer(flooder),
                    )
                )
                opened.append(r.status_code)
                if r.status_code == 429:
                    await r.aread()
            assert opened.count(200) >= 1 and opened.count(429) >= 1
            async with cards.stream(
                "GET",
                "/v1/cards/events",
                params={"conversation_id": other_cid},
                headers=bearer(other),
            ) as theirs:
                assert theirs.status_code == 200
                assert theirs.headers["content-type"].startswith("text/event-stream")


async def test_in_jwks_mode_only_the_identity_providers_tokens_pass(
    infra: Any, jwt_secret: str, tmp_path: Any
) -> None:
    """A card query process verifying tokens against a JWKS served over HTTP, with an HS256
    secret still configured (a leftover): HS256 tokens, a wrong issuer, alg none and a
    foreign key are all refused; the provider's token passes."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography.hazmat.primitives.asymmetric import rsa

    from glia_e2e.processes import Process, base_env, free_port

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = json.dumps({"keys": [{**public, "kid": "idp-1", "alg": "RS256", "use": "sig"}]})

    class Jwks(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks.encode())

        def log_message(self, *args: Any) -> None:
            pass

    idp = ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=idp.serve_forever, daemon=True).start()
    port = free_port()
    cards = Process(
        "glia-card-query-jwks",
        ["glia-card-query"],
        base_env(
            {
                "GLIA_DATABASE_URL": infra.app_url,
                "GLIA_AMQP_URL": infra.amqp_url,
                "GLIA_HTTP_PORT": str(port),
                "GLIA_JWT_JWKS_URL": f"http://127.0.0.1:{idp.server_port}/jwks",
                "GLIA_JWT_ISSUER": "https://idp.example",
                "GLIA_JWT_SECRET": jwt_secret,
            }
        ),
        tmp_path / "cards-jwks.log",
        port=port,
    )
    cards.start()
    try:
        now = int(time.time())
        claims = {"sub": "alice", "aud": "glia", "iat": now, "exp": now + 600}
        issued = {**claims, "iss": "https://idp.example"}
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        refused = {
            "HS256 with the leftover secret": jwt.encode(issued, jwt_secret, algorithm="HS256"),
            "wrong issuer": jwt.encode(
                {**claims, "iss": "https://evil.example"}, key, "RS256", headers={"kid": "idp-1"}
            ),
            "no issuer": jwt.encode(claims, key, "RS256", headers={"kid": "idp-1"}),
            "another key": jwt.encode(issued, other_key, "RS256", headers={"kid": "idp-1"}),
            "alg none": base64.urlsafe_b64encode(b'{"alg":"none","kid":"idp-1"}')
            .rstrip(b"=")
            .decode()
            + "."
            + forged(issued)
            + ".",
        }
        async with httpx.AsyncClient(base_url=cards.url, timeout=30) as client:
            for name, token in refused.items():
                r = await client.get("/v1/cards", headers=bearer(token))
                assert r.status_code == 401, name
                assert r.headers["www-authenticate"] == "Bearer"
            good = jwt.encode(issued, key, "RS256", headers={"kid": "idp-1"})
            assert (await client.get("/v1/cards", headers=bearer(good))).status_code == 200
    finally:
        cards.stop()
        idp.shutdown()
