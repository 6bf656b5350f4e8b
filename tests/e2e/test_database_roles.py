"""Black-box: the real processes with one database role per kind of work, and their
refusal to run as a role that row-level security does not hold."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from glia_e2e.api import bearer
from glia_e2e.processes import BIN, Process, base_env, free_port
from glia_e2e.seeding import seed_conversation
from glia_e2e.sse import post_message

pytestmark = pytest.mark.e2e


async def wait_current(cards: httpx.AsyncClient, cid: uuid.UUID, token: str) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        r = await cards.get(
            "/v1/cards", params={"conversation_id": str(cid)}, headers=bearer(token)
        )
        assert r.status_code == 200, r.text
        if r.json()["extraction"]["state"] == "current":
            return
        assert asyncio.get_running_loop().time() < deadline, r.json()["extraction"]
        await asyncio.sleep(0.2)


@pytest.fixture
def separate_roles(infra: Any, jwt_secret: str, private_amqp_url: str) -> Iterator[dict[str, str]]:
    """The environment of a deployment with an app, a worker and an operator role, on a
    database of its own (dropped afterwards, with the roles)."""
    server = infra.admin_url.rsplit("/", 1)[0] + "/postgres"
    tag = secrets.token_hex(3)
    database, prefix = f"glia_e2e_roles_{tag}", f"glia_e2e{tag}_"
    parts = urlsplit(server)
    base = f"{parts.hostname}:{parts.port or 5432}/{database}"
    env = base_env(
        {
            "GLIA_DATABASE_ADMIN_URL": server,
            "GLIA_DATABASE_URL": f"postgresql://{prefix}app:app-pw@{base}",
            "GLIA_DATABASE_WORKER_URL": f"postgresql://{prefix}worker:worker-pw@{base}",
            "GLIA_DATABASE_OPERATOR_URL": f"postgresql://{prefix}operator:op-pw@{base}",
            "GLIA_AMQP_URL": private_amqp_url,
            "GLIA_JWT_SECRET": jwt_secret,
            "GLIA_OUTBOX_POLL_INTERVAL_S": "0.2",
            "GLIA_TURN_STALE_AFTER_S": "10",
            "GLIA_RECONCILE_INTERVAL_S": "1",
            "GLIA_RECONCILE_GRACE_S": "1",
        }
    )
    try:
        yield env | {"ADMIN_DB_URL": server.rsplit("/", 1)[0] + f"/{database}"}
    finally:

        async def drop() -> None:
            admin = await asyncpg.connect(server)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                for r in await admin.fetch(
                    "SELECT rolname FROM pg_roles WHERE rolname LIKE $1", prefix + "%"
                ):
                    await admin.execute(f'DROP ROLE "{r["rolname"]}"')
            finally:
                await admin.close()

        asyncio.run(drop())


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


async def test_services_work_with_separate_app_worker_and_operator_roles(
    separate_roles: dict[str, str], mint: Any, user: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in separate_roles.items() if k != "ADMIN_DB_URL"}
    for _ in range(2):  # idempotent with several roles, through the command itself
        done = await asyncio.to_thread(run, ["glia-migrate"], env)
        assert done.returncode == 0, done.stderr
    app_url = env["GLIA_DATABASE_URL"]

    async def admin(query: str, *args: Any) -> Any:  # a connection per query: they are few
        conn = await asyncpg.connect(separate_roles["ADMIN_DB_URL"])
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    # The app role cannot do the background work: the worker role must be doing it.
    app_role = urlsplit(app_url).username
    assert not await admin(
        "SELECT has_function_privilege($1, 'glia_outbox_claim(integer)', 'EXECUTE')", app_role
    )
    # Work for the sweeper (a turn whose process died) and for the reconciler (a
    # conversation whose extraction request was lost), made before the services start.
    stale, _ = await seed_conversation(
        app_url, user, ["a question", ("assistant", "half an", "streaming")]
    )
    await admin(
        "UPDATE messages SET updated_at = now() - interval '1 hour' WHERE conversation_id = $1",
        stale,
    )
    lost, _ = await seed_conversation(app_url, user, ["lost", "request"])
    await admin(
        "UPDATE conversations SET updated_at = now() - interval '1 hour' WHERE id = $1", lost
    )

    processes = [
        Process(name, [name], {**env, "GLIA_HTTP_PORT": str(port)}, tmp_path / name, port=port)
        for name, port in (
            ("glia-chat-api", free_port()),
            ("glia-extractor", free_port()),
            ("glia-card-query", free_port()),
        )
    ]
    try:
        # Generous start-up time: the machine may be busy with other test runs.
        await asyncio.gather(*(asyncio.to_thread(p.start, timeout_s=90) for p in processes))
        await asyncio.gather(*(asyncio.to_thread(p.wait_ready, 90) for p in processes))
        chat, _, cards = processes
        token = mint(user)
        async with (
            httpx.AsyncClient(base_url=chat.url, timeout=30) as chat_client,
            httpx.AsyncClient(base_url=cards.url, timeout=30) as cards_client,
        ):
            cid = (
                await chat_client.post("/v1/conversations", json={}, headers=bearer(token))
            ).json()["id"]
            stream = await post_message(chat_client, cid, "We decided: ship it.", token)
            assert stream.names()[-1] == "done"
            # Published by the relay, settled by the sweeper, re-requested by the
            # reconciler - all as the worker role - then extracted as the app role.
            for conversation in (uuid.UUID(cid), stale, lost):
                await wait_current(cards_client, conversation, token)
        status = await admin("SELECT status FROM messages WHERE content = 'half an'")
        assert status == "incomplete"
    finally:
        for p in reversed(processes):
            p.stop()

    # glia-admin looks runs up as the operator role.
    done = await asyncio.to_thread(
        run, ["glia-admin", "runs", "--conversation", cid, "--json"], env
    )
    assert done.returncode == 0, done.stderr
    assert [r["conversation_id"] for r in json.loads(done.stdout)] == [cid]


REFUSALS = [
    (["glia-chat-api"], "GLIA_DATABASE_URL"),
    (["glia-chat-api"], "GLIA_DATABASE_WORKER_URL"),
    (["glia-extractor"], "GLIA_DATABASE_WORKER_URL"),
    (["glia-card-query"], "GLIA_DATABASE_URL"),
    (["glia-admin", "runs", "--conversation", str(uuid.uuid4())], "GLIA_DATABASE_OPERATOR_URL"),
]


async def test_processes_refuse_to_run_as_the_owner(infra: Any) -> None:
    """Connected as the schema's owner (here a superuser), row-level security would not
    keep users apart: every process stops at start-up, saying why."""

    def start(command: list[str], setting: str) -> subprocess.CompletedProcess[str]:
        env = {
            "GLIA_DATABASE_URL": infra.app_url,
            setting: infra.admin_url,
            "GLIA_AMQP_URL": infra.amqp_url,
            "GLIA_HTTP_PORT": str(free_port()),
        }
        return run(command, base_env(env))

    results = await asyncio.gather(*(asyncio.to_thread(start, *r) for r in REFUSALS))
    owner = urlsplit(infra.admin_url).username or "postgres"
    for (command, setting), done in zip(REFUSALS, results, strict=True):
        output = done.stdout + done.stderr
        assert done.returncode != 0, (command, setting)
        assert f"refuses to run as database role '{owner}' ({setting})" in output, output
        assert "is a superuser" in output
