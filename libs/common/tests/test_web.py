"""Shared HTTP behaviour: problem details and request ids, even for unexpected errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from glia_common.web.body_limit import BodyLimitMiddleware
from glia_common.web.problems import install_problem_handlers
from glia_common.web.request_id import RequestIdMiddleware


def app_that_fails() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    app.add_middleware(RequestIdMiddleware)
    return app


async def test_unexpected_error_is_a_500_problem_with_the_request_id() -> None:
    transport = httpx.ASGITransport(app=app_that_fails(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/boom", headers={"X-Request-ID": "trace-me-1"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "trace-me-1"
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "internal_error" and "kaboom" not in r.text


async def test_unknown_route_is_a_404_problem() -> None:
    transport = httpx.ASGITransport(app=app_that_fails())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/nope")
    assert r.status_code == 404 and r.json()["status"] == 404 and r.headers["x-request-id"]


class Body(BaseModel):
    content: str


def app_with_body_limit(max_bytes: int, seen: list[int]) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/echo")
    async def echo(body: Body) -> dict[str, int]:
        seen.append(len(body.content))
        return {"length": len(body.content)}

    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes)
    app.add_middleware(RequestIdMiddleware)
    return app


async def test_bodies_over_the_limit_are_413_problems_and_never_reach_the_route() -> None:
    seen: list[int] = []
    transport = httpx.ASGITransport(app=app_with_body_limit(1000, seen))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        small = await client.post("/echo", json={"content": "a" * 900})
        declared = await client.post("/echo", json={"content": "a" * 5000})

        async def chunks() -> AsyncIterator[bytes]:
            # No Content-Length: counted as it arrives.
            yield b'{"content": "'
            for _ in range(10):
                yield b"a" * 300
            yield b'"}'

        streamed = await client.post(
            "/echo", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert small.status_code == 200 and seen == [900]
    for r in (declared, streamed):
        assert r.status_code == 413
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "body_too_large" and r.headers["x-request-id"]
    assert seen == [900]
