"""The extractor as a real process under failure: kill -9 mid-run, duplicate deliveries
across two worker processes, operator tooling."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest

from glia_e2e.api import bearer
from glia_e2e.processes import Process, free_port
from glia_e2e.sse import post_message

pytestmark = pytest.mark.e2e


async def runs(admin_db: asyncpg.Connection, cid: str) -> list[asyncpg.Record]:
    return await admin_db.fetch(
        "SELECT status, error, fallback_used FROM extraction_runs WHERE conversation_id = $1 ORDER BY started_at",
        uuid.UUID(cid),
    )


async def wait_until(predicate: Any, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def test_kill_9_while_waiting_on_the_llm_then_restart(
    sys_: Any, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    token = mint(user)
    await sys_.llm_control.aconfigure(target="extraction", mode="slow", delay_s=1.8)
    async with sys_.client("chat") as chat:
        cid = (await chat.post("/v1/conversations", json={}, headers=bearer(token))).json()["id"]
        stream = await post_message(chat, cid, "We decided to hire two engineers.", token)
        assert stream.names()[-1] == "done"

    async def running() -> bool:
        return any(r["status"] == "running" for r in await runs(admin_db, cid))

    await wait_until(running, 15)
    sys_.extractor.kill()  # SIGKILL: no shutdown code, the message is unacked
    await sys_.llm_control.aconfigure(target="extraction", mode="ok")
    sys_.extractor.start()
    sys_.extractor.wait_ready()

    async def succeeded() -> bool:
        return any(r["status"] == "succeeded" for r in await runs(admin_db, cid))

    await wait_until(succeeded, 60)
    final = await runs(admin_db, cid)
    assert [r["status"] for r in final].count("succeeded") == 1
    abandoned = [r for r in final if r["status"] == "failed"]
    assert len(abandoned) == 1 and abandoned[0]["error"].startswith("abandoned")
    async with sys_.client("cards") as cards:
        body = (
            await cards.get("/v1/cards", params={"conversation_id": cid}, headers=bearer(token))
        ).json()
    assert body["extraction"]["state"] == "current"


async def test_twenty_duplicate_deliveries_across_two_workers(
    sys_: Any, infra: Any, mint: Any, user: str, admin_db: asyncpg.Connection, tmp_path: Path
) -> None:
    port = free_port()
    second = Process(
        "glia-extractor-2",
        ["glia-extractor"],
        {**sys_.env, "GLIA_HTTP_PORT": str(port)},
        tmp_path / "extractor-2.log",
        port=port,
    )
    second.start()
    try:
        second.wait_ready()
        token = mint(user)
        async with sys_.client("chat") as chat:
            cid = (await chat.post("/v1/conversations", json={}, headers=bearer(token))).json()[
                "id"
            ]
            await post_message(chat, cid, "Duplicates should cost nothing.", token)

        async def one_succeeded() -> bool:
            return [r["status"] for r in await runs(admin_db, cid)] == ["succeeded"]

        await wait_until(one_succeeded)
        calls_before = len(await sys_.llm_control.arequests("extraction"))
        body = json.dumps(
            {
                "conversation_id": cid,
                "user_id": user,
                "request_id": "dup",
                "requested_at": datetime.now(UTC).isoformat(),
            }
        ).encode()
        connection = await aio_pika.connect(infra.amqp_url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("glia")
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(body, content_type="application/json"),
                        routing_key="extraction.requested",
                    )
                    for _ in range(20)
                )
            )
            # Every copy is consumed (acked as a duplicate) by one of the two workers.

            async def drained() -> bool:
                declared = await channel.declare_queue("glia.extraction", passive=True)
                return declared.declaration_result.message_count == 0

            await wait_until(drained)
        finally:
            await connection.close()
        await asyncio.sleep(0.5)
        assert [r["status"] for r in await runs(admin_db, cid)] == ["succeeded"]
        assert len(await sys_.llm_control.arequests("extraction")) == calls_before
    finally:
        second.stop()


def admin(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "glia-admin"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_glia_admin_runs_and_reextract(
    sys_: Any, mint: Any, user: str, admin_db: asyncpg.Connection
) -> None:
    token = mint(user)
    async with sys_.client("chat") as chat:
        cid = (await chat.post("/v1/conversations", json={}, headers=bearer(token))).json()["id"]
        stream = await post_message(chat, cid, "Operators need to see runs.", token)
    trace_id = stream.first("start").data["trace_id"]

    async def one_run() -> bool:
        return len(await runs(admin_db, cid)) == 1

    await wait_until(one_run)
    out = admin(sys_.env, "runs", "--conversation", cid, "--json")
    assert out.returncode == 0, out.stderr
    [listed] = json.loads(out.stdout)
    assert listed["trace_id"] == trace_id and listed["status"] == "succeeded"
    by_trace = admin(sys_.env, "runs", "--trace-id", trace_id, "--json")
    assert json.loads(by_trace.stdout)[0]["conversation_id"] == cid

    out = admin(sys_.env, "reextract", "--conversation", cid)
    assert out.returncode == 0, out.stderr

    async def two_runs() -> bool:
        return [r["status"] for r in await runs(admin_db, cid)] == ["succeeded", "succeeded"]

    await wait_until(two_runs)
    assert admin(sys_.env, "runs", "--conversation", str(uuid.uuid4())).returncode == 1
