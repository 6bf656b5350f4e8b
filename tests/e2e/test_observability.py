"""What an operator sees: Prometheus metrics that move, JSON logs with correlation ids."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from glia_e2e.api import bearer
from glia_e2e.sse import post_message

pytestmark = pytest.mark.e2e


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):  # raises on malformed text
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    return sum(
        v
        for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == val for k, val in labels.items())
    )


async def turn_and_wait(system: Any, token: str, content: str) -> str:
    async with system.client("chat") as chat, system.client("cards") as cards:
        cid = (await chat.post("/v1/conversations", json={}, headers=bearer(token))).json()["id"]
        stream = await post_message(chat, cid, content, token)
        assert stream.names()[-1] == "done"
        for _ in range(200):
            body = (
                await cards.get("/v1/cards", params={"conversation_id": cid}, headers=bearer(token))
            ).json()
            if body["extraction"]["state"] == "current":
                return str(cid)
            await asyncio.sleep(0.1)
    raise AssertionError("cards never became current")


async def test_metrics_move_after_a_turn_and_a_forced_fallback(
    sys_: Any, mint: Any, user: str
) -> None:
    before = {
        name: await scrape(p.url)
        for name, p in (("chat", sys_.chat), ("ext", sys_.extractor), ("cards", sys_.cards))
    }
    token = mint(user)
    await turn_and_wait(sys_, token, "A normal turn.")
    await sys_.llm_control.aconfigure(target="extraction", mode="http_500", count=1)
    await turn_and_wait(sys_, token, "A turn whose extraction falls back.")
    await asyncio.sleep(6)  # the outbox backlog gauge refreshes every 5 s
    after = {
        name: await scrape(p.url)
        for name, p in (("chat", sys_.chat), ("ext", sys_.extractor), ("cards", sys_.cards))
    }

    def moved(svc: str, name: str, by: float = 1, **labels: str) -> bool:
        return total(after[svc], name, **labels) - total(before[svc], name, **labels) >= by

    assert moved("chat", "glia_chat_turns_total", 2, outcome="complete")
    assert moved(
        "chat",
        "glia_http_requests_total",
        2,
        route="/v1/conversations/{conversation_id}/messages",
        status="200",
    )
    assert moved("chat", "glia_outbox_published_total", 2)
    assert total(after["chat"], "glia_outbox_backlog") == 0
    assert ("glia_chat_active_streams", ()) in after["chat"]
    assert moved("ext", "glia_extraction_runs_total", 1, status="succeeded", failure_class="none")
    assert moved(
        "ext", "glia_extraction_runs_total", 1, status="succeeded", failure_class="provider_error"
    )
    assert moved("ext", "glia_extraction_fallback_total", 1)
    assert moved("ext", "glia_extraction_lag_seconds_count", 2)
    assert moved("cards", "glia_http_requests_total", 2, route="/v1/cards", status="200")


async def test_each_service_logs_json_with_correlation_ids(sys_: Any, mint: Any, user: str) -> None:
    token = mint(user)
    request_id = f"obs-{uuid.uuid4().hex[:12]}"
    async with sys_.client("chat") as chat:
        cid = (await chat.post("/v1/conversations", json={}, headers=bearer(token))).json()["id"]
        async with chat.stream(
            "POST",
            f"/v1/conversations/{cid}/messages",
            json={"content": "secret words that must not be logged"},
            headers={**bearer(token), "X-Request-ID": request_id},
        ) as response:
            assert response.headers["x-request-id"] == request_id
            body = await response.aread()
    trace_id = json.loads(body.decode().split("data: ", 1)[1].split("\n", 1)[0])["trace_id"]
    await turn_and_wait(sys_, token, "and another one")

    def lines(process: Any) -> list[dict[str, Any]]:
        parsed = []
        for raw in process.log_lines():
            if raw.startswith("{"):
                parsed.append(json.loads(raw))  # every structured line is JSON
        return parsed

    for _ in range(50):
        chat_lines = [ln for ln in lines(sys_.chat) if ln.get("request_id") == request_id]
        ext_lines = [ln for ln in lines(sys_.extractor) if ln.get("request_id") == request_id]
        if chat_lines and ext_lines:
            break
        await asyncio.sleep(0.1)
    assert chat_lines and ext_lines
    for line in chat_lines + ext_lines:
        assert line["trace_id"] == trace_id and len(line["span_id"]) == 16
    assert any(ln.get("user_id") == user and ln.get("conversation_id") == cid for ln in chat_lines)
    assert any(ln.get("conversation_id") == cid for ln in ext_lines)
    card_lines = [ln for ln in lines(sys_.cards) if ln.get("event") == "http.request"]
    assert card_lines and all({"request_id", "trace_id", "span_id"} <= set(ln) for ln in card_lines)
    for process in (sys_.chat, sys_.extractor, sys_.cards):
        assert "secret words" not in "\n".join(process.log_lines())


async def test_one_trace_from_chat_request_to_extraction_run(
    sys_: Any, mint: Any, user: str, admin_db: Any
) -> None:
    from glia_fakes.otlp_sink import chain

    token = mint(user)
    cid = await turn_and_wait(sys_, token, "Trace this turn, please.")
    run = await admin_db.fetchrow(
        "SELECT trace_id FROM extraction_runs WHERE conversation_id = $1", uuid.UUID(cid)
    )
    trace_id = run["trace_id"]
    messages = await admin_db.fetch(
        "SELECT request_id, trace_id FROM turns WHERE conversation_id = $1", uuid.UUID(cid)
    )
    assert [m["trace_id"] for m in messages] == [trace_id], "the SSE start event's trace id"

    def complete(spans: list[Any]) -> bool:
        # A span is exported when it ends, and a parent ends after its children: the
        # extractor's consumer span can arrive a batch after the card write inside it.
        names = {(s.service, s.name) for s in spans}
        kinds = {(s.service, s.kind) for s in spans}
        return (
            ("glia-extractor", "extraction write cards") in names
            and ("glia-extractor", "CONSUMER") in kinds
            and ("glia-chat-api", "PRODUCER") in kinds
        )

    spans = sys_.traces.wait_for(complete, timeout_s=20, trace_id=trace_id)
    by_service = {s.service for s in spans}
    assert {"glia-chat-api", "glia-extractor"} <= by_service

    server = next(
        s
        for s in spans
        if s.service == "glia-chat-api" and s.kind == "SERVER" and s.parent_span_id is None
    )
    assert "messages" in server.name
    chat_llm = next(
        s
        for s in spans
        if s.service == "glia-chat-api" and s.kind == "CLIENT" and s.name.startswith("chat ")
    )
    assert (
        chat_llm.attributes["gen_ai.request.model"] and chat_llm.attributes["gen_ai.provider.name"]
    )
    publish = next(s for s in spans if s.service == "glia-chat-api" and s.kind == "PRODUCER")
    consume = next(s for s in spans if s.service == "glia-extractor" and s.kind == "CONSUMER")
    run_span = next(s for s in spans if s.name == "extraction run")
    llm_span = next(
        s for s in spans if s.service == "glia-extractor" and s.name.startswith("chat ")
    )
    write = next(s for s in spans if s.name == "extraction write cards")

    # The parent chain is intact across the queue: write -> run -> consume -> publish -> request.
    ancestry = [s.span_id for s in chain(spans, write)]
    for span in (run_span, consume, publish, server):
        assert span.span_id in ancestry, span.describe()
    assert chain(spans, write)[-1].span_id == server.span_id
    assert run_span.span_id in [s.span_id for s in chain(spans, llm_span)]
    assert llm_span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert llm_span.status_code != 2 and llm_span.attributes["glia.llm.outcome"] == "ok"
    assert chat_llm.attributes["glia.llm.outcome"] == "ok"
    assert llm_span.attributes["gen_ai.usage.input_tokens"] > 0
