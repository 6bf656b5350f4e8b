"""Baseline for card reads: ``GET /v1/cards?conversation_id=`` as a bare Starlette route
on an asyncpg pool.

It does what Glia's route does for that request, and no more: verify the bearer JWT
(HS256, PyJWT, ``exp``/``sub``/``aud`` required - chosen so both sides pay for
authentication), one read-only transaction as the app role with ``glia.user_id`` set
(row-level security on), the conversation's freshness and current run, the same kind
of ETag, ``304`` when ``If-None-Match`` matches (without reading a card), otherwise the
cards in position order (limit 50) serialized as the same JSON shape.

Run: ``uvicorn bench.baselines.cards_route:app --port N`` with GLIA_DATABASE_URL and
GLIA_JWT_SECRET set.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DATABASE_URL = os.environ.get(
    "GLIA_DATABASE_URL", "postgresql://glia_app:glia_app@127.0.0.1:5432/glia"
)
SECRET = os.environ.get("GLIA_JWT_SECRET", "")
AUDIENCE = os.environ.get("GLIA_JWT_AUDIENCE", "glia")
# Glia's engine: pool_size 10 + max_overflow 10.
POOL_MAX = int(os.environ.get("BENCH_POOL_MAX", "20"))
LIMIT = 50

FRESHNESS = """
SELECT c.message_count, c.complete_message_count, s.source_hash, s.source_message_count,
       s.derived_at, s.run_id
  FROM conversations c LEFT JOIN extraction_state s ON s.conversation_id = c.id
 WHERE c.id = $1
"""
CARDS = """
SELECT id, conversation_id, kind, title, body, source_message_ids, origin, created_at
  FROM cards WHERE conversation_id = $1 ORDER BY position LIMIT $2
"""


def problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": detail, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )


def etag_of(*parts: object) -> str:
    return '"' + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32] + '"'


def matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in candidates or etag in candidates


def iso(value: Any) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


async def list_cards(request: Request) -> Response:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return problem(401, "a bearer token is required")
    try:
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.PyJWTError:
        return problem(401, "invalid token")
    try:
        conversation_id = uuid.UUID(request.query_params["conversation_id"])
    except (KeyError, ValueError):
        return problem(422, "conversation_id is required")
    return await answer(request, str(claims["sub"]), conversation_id)


async def answer(request: Request, user_id: str, conversation_id: uuid.UUID) -> Response:
    """The read itself, once the caller is known (shared with ``cards_fastapi``)."""
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute("SELECT set_config('glia.user_id', $1, true)", user_id)
        row = await conn.fetchrow(FRESHNESS, conversation_id)
        if row is None:
            return problem(404, "conversation not found")
        if row["message_count"] == 0:
            freshness = {"state": "none", "source_hash": None, "derived_at": None}
        else:
            current = (
                row["source_hash"] is not None
                and row["source_message_count"] >= row["complete_message_count"]
            )
            freshness = {
                "state": "current" if current else "pending",
                "source_hash": row["source_hash"],
                "derived_at": iso(row["derived_at"]),
            }
        etag = etag_of(row["run_id"], json.dumps(freshness, separators=(",", ":")), None, LIMIT)
        if matches(request, etag):
            return Response(status_code=304, headers={"ETag": etag})
        cards = await conn.fetch(CARDS, conversation_id, LIMIT + 1)
    items = [
        {
            "id": str(c["id"]),
            "conversation_id": str(c["conversation_id"]),
            "kind": c["kind"],
            "title": c["title"],
            "body": c["body"],
            "source_message_ids": [str(m) for m in c["source_message_ids"]],
            "origin": c["origin"],
            "created_at": iso(c["created_at"]),
        }
        for c in cards[:LIMIT]
    ]
    body = {"items": items, "next_cursor": None, "extraction": freshness}
    return Response(
        json.dumps(body, separators=(",", ":")),
        media_type="application/json",
        headers={"ETag": etag, "Cache-Control": "private, no-cache"},
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(DATABASE_URL, min_size=2, max_size=POOL_MAX)
    try:
        yield
    finally:
        await app.state.pool.close()


app = Starlette(
    routes=[Route("/v1/cards", list_cards), Route("/healthz", healthz)], lifespan=lifespan
)
