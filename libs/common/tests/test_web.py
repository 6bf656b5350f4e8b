"""Shared HTTP behaviour: problem details and request ids, even for unexpected errors."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

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
