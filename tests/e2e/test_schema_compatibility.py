"""Expand/contract: during a rolling upgrade the schema runs one migration ahead of (or
behind) some pods. The current code must work against the previous migration head, so
that a release can be rolled out (or back) with old and new pods side by side.

A revision the current code itself needs is listed in REQUIRED_BY_CODE, with the release
note that explains its rollout; the code is then checked against the oldest schema it
supports instead.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from alembic.script import ScriptDirectory

from glia_chat_api.main import create_app as create_chat_app
from glia_common.cli.migrate import alembic_config, migrate
from glia_common.settings import MigrateSettings
from glia_e2e.sse import post_message
from glia_extractor.main import create_app as create_extractor_app

pytestmark = pytest.mark.integration

# Revisions the current code needs, newest first.
REQUIRED_BY_CODE: dict[str, str] = {
    # The chat API stores where each streamed delta ends, so that any replica can resume
    # a stream. The migrations hook runs before new pods start (deploy/README.md), and
    # the column has a default, so release N-1 keeps running on this schema.
    "0004": "turns.delta_ends, written by the chat API",
}


def previous_head() -> str:
    """The oldest schema the current code must run on."""
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/unused"))
    head = script.get_revision(script.get_current_head())
    if head.revision in REQUIRED_BY_CODE:
        return str(head.revision)
    down = head.down_revision
    assert isinstance(down, str)
    return down


async def test_current_code_works_against_the_previous_migration_head(
    infra: Any, settings_factory: Any, serve: Any, mint: Any, user: str, private_amqp_url: str
) -> None:
    parts = urlsplit(infra.admin_url)
    database = f"glia_prev_{secrets.token_hex(4)}"
    admin_base = infra.admin_url.rsplit("/", 1)[0] + "/postgres"
    app_url = f"postgresql://glia_app:glia_app@{parts.hostname}:{parts.port or 5432}/{database}"
    target = previous_head()
    await asyncio.to_thread(
        migrate,
        MigrateSettings(_env_file=None, database_url=app_url, database_admin_url=admin_base),  # type: ignore[call-arg]
        target,
    )
    try:
        settings = settings_factory(
            database_url=app_url, amqp_url=private_amqp_url, reconcile_interval_s=3600
        )
        chat_served = await serve(create_chat_app(settings))
        await serve(create_extractor_app(settings))
        token = mint(user)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=chat_served.base_url, timeout=30) as chat:
            cid = (
                await chat.post("/v1/conversations", json={"title": "old schema"}, headers=headers)
            ).json()["id"]
            stream = await post_message(chat, cid, "Does this work on the previous schema?", token)
            assert stream.names()[-1] == "done"
            listed = (await chat.get("/v1/conversations", headers=headers)).json()["items"]
            assert [c["id"] for c in listed] == [cid]
        conn = await asyncpg.connect(infra.admin_url.rsplit("/", 1)[0] + f"/{database}")
        try:
            assert await conn.fetchval("SELECT version_num FROM alembic_version") == target
            for _ in range(200):
                if await conn.fetchval("SELECT count(*) FROM extraction_state"):
                    break
                await asyncio.sleep(0.1)
            assert await conn.fetchval("SELECT count(*) FROM cards") > 0
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(admin_base)
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
