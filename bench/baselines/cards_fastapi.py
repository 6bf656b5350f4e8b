"""Reference for card reads: the bare route of ``cards_route`` on bare FastAPI.

The same work (``cards_route.answer``: its queries, ETag, JSON and pool), but routed
the FastAPI way Glia's card query is: the bearer token through an ``HTTPBearer``
security dependency and a verifying dependency, and ``conversation_id`` as a typed
query parameter - with no middleware, no telemetry and no logging. Its throughput is
the most a FastAPI service can do with this query on this machine: the share of the
bare route it reaches is what the framework alone costs.

Run: ``uvicorn bench.baselines.cards_fastapi:app --port N`` with GLIA_DATABASE_URL and
GLIA_JWT_SECRET set.
"""

from __future__ import annotations

import uuid
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response

from bench.baselines.cards_route import AUDIENCE, SECRET, answer, lifespan

bearer = HTTPBearer(auto_error=False)


async def user_id(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    if credentials is None:
        raise HTTPException(401, "a bearer token is required")
    try:
        claims = jwt.decode(
            credentials.credentials,
            SECRET,
            algorithms=["HS256"],
            audience=AUDIENCE,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "invalid token") from exc
    return str(claims["sub"])


app = FastAPI(lifespan=lifespan, telemetry={"tracing": False, "metrics": False, "logs": False})


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/cards")
async def list_cards(
    request: Request, user: Annotated[str, Depends(user_id)], conversation_id: uuid.UUID
) -> Response:
    return await answer(request, user, conversation_id)
