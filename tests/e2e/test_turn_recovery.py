"""A turn whose chat API process dies (kill -9) is settled incomplete by another replica,
with the text it had saved, and its stream resumes there to that end."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from glia_e2e.processes import Process, free_port
from glia_e2e.sse import iter_events, resume

pytestmark = pytest.mark.e2e


async def test_a_turn_of_a_killed_replica_is_settled_incomplete(
    sys_: Any, mint: Any, user: str, admin_db: asyncpg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    doomed = Process(
        "glia-chat-api-2",
        ["glia-chat-api"],
        {**sys_.env, "GLIA_HTTP_PORT": str(port)},
        tmp_path / "chat-api-2.log",
        port=port,
    )
    doomed.start()
    try:
        doomed.wait_ready()
        # A reply that takes half a minute (each gap under the LLM timeout): the process
        # dies in the middle of it.
        sys_.llm_control.configure(target="chat", mode="slow", chunk_delay_s=1.5)
        token = mint(user)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=doomed.url, timeout=60) as client:
            cid = (await client.post("/v1/conversations", json={}, headers=headers)).json()["id"]
            seen = []
            async with client.stream(
                "POST", f"/v1/conversations/{cid}/messages", json={"content": "go"}, headers=headers
            ) as response:
                async for event in iter_events(response):
                    seen.append(event)
                    if event.event == "delta" and len(seen) == 3:
                        break
        mid = seen[0].data["assistant_message_id"]
        await asyncio.sleep(2.0)  # a checkpoint after the second delta
        doomed.kill()
        started = time.monotonic()

        async def status() -> str:
            return str(
                await admin_db.fetchval("SELECT status FROM messages WHERE id = $1", uuid.UUID(mid))
            )

        while await status() == "streaming":
            assert time.monotonic() - started < 90, "the dead replica's turn was never settled"
            await asyncio.sleep(1.0)
        assert await status() == "incomplete"
        async with sys_.client("chat") as chat:
            rest = await resume(chat, cid, mid, token, seen[-1].id)
        assert rest.names()[-1] == "error"
        assert rest.events[-1].data["code"] == "incomplete"
        stored = await admin_db.fetchval(
            "SELECT content FROM messages WHERE id = $1", uuid.UUID(mid)
        )
        assert stored.startswith("".join(e.data["text"] for e in seen[1:2]))
    finally:
        doomed.stop()
