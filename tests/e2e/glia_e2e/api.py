"""Small helpers for tests that call the HTTP APIs."""

from __future__ import annotations

import httpx


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_conversation(client: httpx.AsyncClient, token: str, title: str | None = None) -> str:
    """A new conversation of the token's user; its id."""
    r = await client.post("/v1/conversations", json={"title": title}, headers=bearer(token))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])
