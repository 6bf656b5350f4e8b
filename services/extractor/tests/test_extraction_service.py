"""Extraction runs against real PostgreSQL and the fake LLM: idempotency, serialization,
fallback, abandoned runs, atomic replacement and ordering."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import asyncpg
import pytest

from glia_extractor.extraction.hashing import source_hash
from glia_extractor.extraction.service import Outcome
from glia_extractor.extraction.types import SourceMessage

pytestmark = pytest.mark.integration


async def runs_of(admin_db: asyncpg.Connection, cid: uuid.UUID) -> list[asyncpg.Record]:
    return await admin_db.fetch(
        "SELECT * FROM extraction_runs WHERE conversation_id = $1 ORDER BY started_at", cid
    )


async def test_llm_cards_and_run_record(
    make_service: Any, seed: Any, make_job: Any, user: str, admin_db: asyncpg.Connection, llm: Any
) -> None:
    cid = await seed(user, ["We decided to use PostgreSQL.", "Great choice."])
    assert await make_service().run(make_job(cid, user)) is Outcome.SUCCEEDED
    [run] = await runs_of(admin_db, cid)
    rows = await admin_db.fetch(
        "SELECT id, conversation_id, role, content FROM messages WHERE conversation_id = $1 ORDER BY seq",
        cid,
    )
    expected_hash = source_hash([SourceMessage(r["id"], r["role"], r["content"]) for r in rows])
    assert dict(run) | {
        "id": None,
        "started_at": None,
        "finished_at": None,
        "latency_ms": None,
    } == dict(run) | {
        "id": None,
        "started_at": None,
        "finished_at": None,
        "latency_ms": None,
        "status": "succeeded",
        "source_hash": expected_hash,
        "provider": "fake",
        "model": "test-model",
        "fallback_used": False,
        "failure_class": None,
        "attempt": 1,
        "request_id": "req-test",
        "trace_id": "ab" * 16,
    }
    assert run["finished_at"] >= run["started_at"] and run["latency_ms"] >= 0
    cards = await admin_db.fetch(
        "SELECT * FROM cards WHERE conversation_id = $1 ORDER BY position", cid
    )
    assert run["card_count"] == len(cards) > 0
    assert {c["origin"] for c in cards} == {"llm"}
    assert {c["source_hash"] for c in cards} == {expected_hash}
    state = await admin_db.fetchrow(
        "SELECT * FROM extraction_state WHERE conversation_id = $1", cid
    )
    assert state["source_hash"] == expected_hash and state["source_message_count"] == 2


async def test_without_a_key_the_rules_run_as_not_configured(
    make_service: Any, seed: Any, make_job: Any, user: str, admin_db: asyncpg.Connection, llm: Any
) -> None:
    cid = await seed(user, ["TODO: write the migration", "ok"])
    assert await make_service(with_llm=False).run(make_job(cid, user)) is Outcome.SUCCEEDED
    [run] = await runs_of(admin_db, cid)
    assert (run["fallback_used"], run["failure_class"], run["provider"]) == (
        True,
        "not_configured",
        "rules",
    )
    kinds = [
        r["kind"]
        for r in await admin_db.fetch("SELECT kind FROM cards WHERE conversation_id = $1", cid)
    ]
    assert "summary" in kinds and "task" in kinds
    assert llm.requests() == []


async def test_same_source_twice_is_skipped_without_an_llm_call(
    make_service: Any, seed: Any, make_job: Any, user: str, admin_db: asyncpg.Connection, llm: Any
) -> None:
    cid = await seed(user, ["hello", "hi"])
    service = make_service()
    assert await service.run(make_job(cid, user)) is Outcome.SUCCEEDED
    assert await service.run(make_job(cid, user)) is Outcome.DUPLICATE
    assert len(llm.requests("extraction")) == 1
    assert len(await runs_of(admin_db, cid)) == 1


async def test_twenty_concurrent_duplicates_over_two_pools_do_the_work_once(
    make_service: Any,
    seed: Any,
    make_job: Any,
    user: str,
    admin_db: asyncpg.Connection,
    llm: Any,
    settings: Any,
) -> None:
    from glia_common.db import create_driver_pool

    other_pool = await create_driver_pool(settings, size=4)  # a second "process"
    try:
        llm.configure(target="extraction", mode="slow", delay_s=0.3)
        cid = await seed(user, ["the same conversation", "for everyone"])
        services = [make_service(), make_service(engine=other_pool)]
        outcomes = await asyncio.gather(
            *(services[i % 2].run(make_job(cid, user)) for i in range(20))
        )
        assert outcomes.count(Outcome.SUCCEEDED) == 1
        assert outcomes.count(Outcome.DUPLICATE) == 19
        assert len(llm.requests("extraction")) == 1
        runs = await runs_of(admin_db, cid)
        assert [r["status"] for r in runs] == ["succeeded"]
    finally:
        await other_pool.close()


async def test_new_messages_replace_the_cards_atomically(
    make_service: Any, seed: Any, make_job: Any, user: str, admin_db: asyncpg.Connection, llm: Any
) -> None:
    cid = await seed(user, ["first", "reply"])
    service = make_service()
    await service.run(make_job(cid, user))
    old_ids = {
        r["id"]
        for r in await admin_db.fetch("SELECT id FROM cards WHERE conversation_id = $1", cid)
    }
    await seed(user, ["second question?", "answer"], conversation_id=cid)
    assert await service.run(make_job(cid, user)) is Outcome.SUCCEEDED
    cards = await admin_db.fetch("SELECT id, run_id FROM cards WHERE conversation_id = $1", cid)
    assert old_ids.isdisjoint({c["id"] for c in cards})
    assert len({c["run_id"] for c in cards}) == 1
    state = await admin_db.fetchrow(
        "SELECT source_message_count FROM extraction_state WHERE conversation_id = $1", cid
    )
    assert state["source_message_count"] == 4


async def test_an_older_run_finishing_last_keeps_the_newer_cards(
    make_service: Any, seed: Any, make_job: Any, user: str, admin_db: asyncpg.Connection, llm: Any
) -> None:
    """Run A (two messages) is slow; a newer turn arrives and run B is requested. B waits
    for A, then derives from four messages. Whatever the finishing order, the cards end
    derived from the newest source, and a stale writer cannot go backwards."""
    cid = await seed(user, ["one", "two"])
    llm.configure(target="extraction", mode="slow", delay_s=1.0, count=1)
    service = make_service()
    first = asyncio.create_task(service.run(make_job(cid, user)))
    await asyncio.sleep(0.3)
    await seed(user, ["three", "four"], conversation_id=cid)
    second = asyncio.create_task(service.run(make_job(cid, user)))
    assert {await first, await second} == {Outcome.SUCCEEDED}
    state = await admin_db.fetchrow(
        "SELECT * FROM extraction_state WHERE conversation_id = $1", cid
    )
    assert state["source_message_count"] == 4

    # A writer holding an older snapshot is refused by the guard in the final transaction.
    await admin_db.execute(
        "UPDATE extraction_state SET source_message_count = 99 WHERE conversation_id = $1", cid
    )
    await seed(user, ["five"], conversation_id=cid)
    assert await service.run(make_job(cid, user)) is Outcome.SUPERSEDED
    after = await admin_db.fetchrow(
        "SELECT * FROM extraction_state WHERE conversation_id = $1", cid
    )
    assert after["run_id"] == state["run_id"]


async def test_an_abandoned_run_is_closed_and_the_work_redone(
    make_service: Any, seed: Any, make_job: Any, user: str, admin_db: asyncpg.Connection, llm: Any
) -> None:
    cid = await seed(user, ["hi", "there"])
    await admin_db.execute(
        "INSERT INTO extraction_runs (id, conversation_id, user_id, status, source_hash) "
        "VALUES ($1, $2, $3, 'running', 'x')",
        uuid.uuid4(),
        cid,
        user,
    )
    assert await make_service().run(make_job(cid, user)) is Outcome.SUCCEEDED
    statuses = sorted((r["status"], r["error"] or "") for r in await runs_of(admin_db, cid))
    assert statuses[0][0] == "failed" and statuses[0][1].startswith("abandoned")
    assert statuses[1][0] == "succeeded"


async def test_a_replay_runs_again_and_is_marked(
    make_service: Any, seed: Any, make_job: Any, user: str, admin_db: asyncpg.Connection, llm: Any
) -> None:
    cid = await seed(user, ["hi", "there"])
    service = make_service()
    await service.run(make_job(cid, user))
    assert await service.run(make_job(cid, user, replay=True)) is Outcome.SUCCEEDED
    runs = await runs_of(admin_db, cid)
    assert [(r["status"], r["replay"], r["attempt"]) for r in runs] == [
        ("succeeded", False, 1),
        ("succeeded", True, 2),
    ]


async def test_requests_for_missing_or_foreign_conversations_do_nothing(
    make_service: Any, seed: Any, make_job: Any, user: str, admin_db: asyncpg.Connection, llm: Any
) -> None:
    service = make_service()
    assert await service.run(make_job(uuid.uuid4(), user)) is Outcome.NO_CONVERSATION
    cid = await seed(user, ["mine"])
    # The same conversation id, claimed by another user: row-level security hides it.
    assert await service.run(make_job(cid, user + "-intruder")) is Outcome.NO_CONVERSATION
    assert await runs_of(admin_db, cid) == []
    assert llm.requests() == []


@pytest.mark.parametrize(
    ("mode", "failure_class"),
    [
        ("http_401", "auth"),
        ("http_429", "quota"),
        ("hang", "timeout"),
        ("schema_invalid", "schema"),
    ],
)
async def test_llm_failures_fall_back(
    make_service: Any,
    seed: Any,
    make_job: Any,
    user: str,
    admin_db: asyncpg.Connection,
    llm: Any,
    mode: str,
    failure_class: str,
) -> None:
    llm.configure(target="extraction", mode=mode)
    cid = await seed(user, ["We decided to ship. What about docs?", "Agreed."])
    assert await make_service(timeout_s=1.0).run(make_job(cid, user)) is Outcome.SUCCEEDED
    [run] = await runs_of(admin_db, cid)
    assert (run["status"], run["fallback_used"], run["failure_class"]) == (
        "succeeded",
        True,
        failure_class,
    )
    assert run["error"]
    origins = {
        r["origin"]
        for r in await admin_db.fetch("SELECT origin FROM cards WHERE conversation_id = $1", cid)
    }
    assert origins == {"fallback"}


async def test_cards_citing_unknown_messages_are_a_schema_failure(
    make_service: Any, seed: Any, make_job: Any, user: str, admin_db: asyncpg.Connection, llm: Any
) -> None:
    llm.configure(
        target="extraction",
        extraction_reply={
            "cards": [
                {
                    "kind": "fact",
                    "title": "x",
                    "body": "y",
                    "source_message_ids": [str(uuid.uuid4())],
                }
            ]
        },
    )
    cid = await seed(user, ["hello"])
    await make_service().run(make_job(cid, user))
    [run] = await runs_of(admin_db, cid)
    assert run["failure_class"] == "schema" and run["fallback_used"] is True


async def test_a_long_conversation_is_read_through_a_window(
    make_service: Any, seed: Any, make_job: Any, user: str, admin_db: asyncpg.Connection, llm: Any
) -> None:
    """Cards come from the latest messages (and, for the LLM, the summary of the earlier
    ones), so a run's cost stops growing with the conversation; the source hash still
    covers every message."""
    texts = [f"TODO: task number {i}." if i % 2 == 0 else f"Noted {i}." for i in range(12)]
    cid = await seed(user, texts[:6])
    assert await make_service(window=4).run(make_job(cid, user)) is Outcome.SUCCEEDED
    await seed(user, texts[6:], conversation_id=cid)
    assert await make_service(window=4).run(make_job(cid, user)) is Outcome.SUCCEEDED

    rows = await admin_db.fetch(
        "SELECT id, role, content FROM messages WHERE conversation_id = $1 ORDER BY seq", cid
    )
    window_ids = {str(r["id"]) for r in rows[-4:]}
    prompt = llm.requests("extraction")[-1]["body"]["messages"][-1]["content"]
    assert "Summary of the earlier conversation" in prompt
    shown = set(re.findall(r"^\[([0-9a-f-]{36})\] (?:user|assistant):", prompt, re.MULTILINE))
    assert shown == window_ids, "only the window's messages are sent"
    [state] = await admin_db.fetch(
        "SELECT source_hash, source_message_count FROM extraction_state WHERE conversation_id = $1",
        cid,
    )
    all_messages = [SourceMessage(r["id"], r["role"], r["content"]) for r in rows]
    assert state["source_hash"] == source_hash(all_messages)
    assert state["source_message_count"] == 12

    # The rules, too, read only the window.
    llm.configure(target="extraction", mode="http_500")
    await seed(user, ["TODO: one more.", "ok"], conversation_id=cid)
    assert await make_service(window=4).run(make_job(cid, user)) is Outcome.SUCCEEDED
    rows = await admin_db.fetch(
        "SELECT id FROM messages WHERE conversation_id = $1 ORDER BY seq", cid
    )
    sources = await admin_db.fetch(
        "SELECT unnest(source_message_ids) AS id FROM cards WHERE conversation_id = $1", cid
    )
    assert {s["id"] for s in sources} <= {r["id"] for r in rows[-4:]}


async def test_connections_killed_by_the_server_are_transient_and_replaced(
    make_service: Any, seed: Any, make_job: Any, user: str, admin_db: asyncpg.Connection, infra: Any
) -> None:
    """After a database restart every pooled connection is dead, and the pool (which does
    not ping) hands them out: the failure is transient, and the dead connection is not
    pooled again, so the retry succeeds."""
    from glia_extractor.handlers.extraction import is_transient

    service = make_service(with_llm=False)
    cid = await seed(user, ["first", "run"])
    assert await service.run(make_job(cid, user)) is Outcome.SUCCEEDED
    await admin_db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE usename = 'glia_app' AND datname = $1 AND pid <> pg_backend_pid()",
        infra.database,
    )
    other = await seed(user, ["after the", "restart"])
    outcome = None
    for _ in range(5):
        try:
            outcome = await service.run(make_job(other, user))
            break
        except Exception as exc:
            assert is_transient(exc), repr(exc)
    assert outcome is Outcome.SUCCEEDED
