"""Baseline for chat turns: a bare FastAPI SSE relay of the LLM stream, no database.

Same route, same event protocol (start, delta..., done), same SSE machinery
(``fastapi.sse``), the same ``openai`` client built by ``glia_common.llm`` against the
same (fake) LLM, the same JWT check (PyJWT, HS256): only Glia's persistence,
idempotency, outbox, telemetry and middleware are missing.

Run: ``uvicorn bench.baselines.relay:app --port N`` with GLIA_LLM_BASE_URL,
GLIA_LLM_API_KEY and GLIA_JWT_SECRET set.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from glia_common.llm import build_openai_client
from glia_common.settings import AuthSettings, LlmSettings

SYSTEM_PROMPT = "You are Glia, a helpful assistant. Answer clearly and concisely."

auth = AuthSettings()
client = build_openai_client(LlmSettings())
SECRET = auth.jwt_secret.get_secret_value() if auth.jwt_secret else os.urandom(32).hex()

app = FastAPI(title="bench relay baseline")


class MessageIn(BaseModel):
    content: str = Field(min_length=1, max_length=32_000)


def user_of(authorization: Annotated[str, Header()]) -> str:
    scheme, _, token = authorization.partition(" ")
    try:
        claims = jwt.decode(
            token,
            SECRET,
            algorithms=["HS256"],
            audience=auth.jwt_audience,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "invalid token") from exc
    if scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required")
    return str(claims["sub"])


def event(name: str, n: int, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(event=name, id=str(n), raw_data=json.dumps(data, separators=(",", ":")))


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/conversations/{conversation_id}/messages", response_class=EventSourceResponse)
async def post_message(
    conversation_id: uuid.UUID, body: MessageIn, user: Annotated[str, Depends(user_of)]
) -> AsyncIterator[ServerSentEvent]:
    assistant_id = uuid.uuid4()
    yield event(
        "start",
        0,
        {
            "conversation_id": str(conversation_id),
            "user_message_id": str(uuid.uuid4()),
            "assistant_message_id": str(assistant_id),
            "request_id": secrets.token_hex(8),
            "trace_id": secrets.token_hex(16),
        },
    )
    n = 1
    finish = "stop"
    usage: dict[str, Any] | None = None
    stream = await client.chat.completions.create(
        model=os.environ.get("GLIA_CHAT_MODEL", "gpt-4o-mini"),
        messages=[
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": body.content},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    async with stream:
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage.model_dump(exclude_none=True)
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    yield event("delta", n, {"text": choice.delta.content})
                    n += 1
                if choice.finish_reason:
                    finish = choice.finish_reason
    yield event(
        "done",
        n,
        {"assistant_message_id": str(assistant_id), "finish_reason": finish, "usage": usage},
    )
