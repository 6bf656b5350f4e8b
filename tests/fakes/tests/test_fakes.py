"""The fakes are checked with the real clients the services use, so their faults mean
what the service tests assume they mean (e.g. ``reset`` really is an APIConnectionError)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.shared_params import ResponseFormatJSONSchema

from glia_fakes.llm import (
    DEFAULT_CHAT_REPLY,
    DEFAULT_CHUNKS,
    FakeLLM,
    FakeLLMControl,
    build_cards,
)
from glia_fakes.tcp_proxy import FaultProxy

SCHEMA_FORMAT: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {"name": "cards", "schema": {"type": "object"}, "strict": True},
}


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


@pytest.fixture
async def client(llm: FakeLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    c = openai.AsyncOpenAI(base_url=llm.base_url, api_key="x", max_retries=0, timeout=5.0)
    try:
        yield c
    finally:
        await c.close()


async def chat(
    client: openai.AsyncOpenAI, client_timeout: float = 5.0
) -> tuple[list[ChatCompletionChunk], str]:
    """Run one streaming call; returns all chunks and the reassembled text."""
    stream = await client.chat.completions.create(
        model="chat-model",
        messages=[{"role": "user", "content": "hello there"}],
        stream=True,
        stream_options={"include_usage": True},
        timeout=client_timeout,
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


async def extract(client: openai.AsyncOpenAI, text: str = "hi", client_timeout: float = 5.0) -> str:
    """Run one extraction-style (non-streaming) call; returns the message content."""
    completion = await client.chat.completions.create(
        model="extract-model",
        messages=[
            {"role": "system", "content": "Extract cards."},
            {"role": "user", "content": text},
        ],
        response_format=SCHEMA_FORMAT,
        timeout=client_timeout,
    )
    content = completion.choices[0].message.content
    assert content is not None
    return content


# ------------------------------------------------------------------ happy paths


async def test_stream_reassembles_with_usage(client: openai.AsyncOpenAI) -> None:
    chunks, text = await chat(client)
    assert text == DEFAULT_CHAT_REPLY
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == DEFAULT_CHUNKS
    assert content_chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert len({c.id for c in chunks}) == 1 and chunks[0].model == "chat-model"


async def test_stream_without_usage_and_configured_reply(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    llm.configure("chat", chat_reply="Bonjour tout le monde", chunks=4, finish_reason="length")
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True
    )
    chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)  # no usage chunk unless asked for
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Bonjour tout le monde"
    assert sum(1 for c in chunks if c.choices[0].delta.content) == 4
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_extraction_cards_reference_the_uuids_sent(client: openai.AsyncOpenAI) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    text = f"[{a}] user: I moved to Lyon.\n[{b}] assistant: Tofu, the cat.\n[{a}] user: again"
    cards = json.loads(await extract(client, text))["cards"]
    summary, fact = cards
    assert summary == {
        "kind": "summary",
        "title": "Summary",
        "body": text[:200],
        "source_message_ids": [a, b],
    }
    assert fact["kind"] == "fact" and fact["source_message_ids"] == [a]
    assert all(set(card) == {"kind", "title", "body", "source_message_ids"} for card in cards)


def test_build_cards_without_uuids_has_only_a_summary() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 300}]}]}
    assert build_cards(body) == {
        "cards": [
            {"kind": "summary", "title": "Summary", "body": "x" * 200, "source_message_ids": []}
        ]
    }


async def test_extraction_reply_override_and_back(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.configure("extraction", extraction_reply={"cards": []})
    assert json.loads(await extract(client)) == {"cards": []}
    llm.configure("extraction", extraction_reply=None)
    assert json.loads(await extract(client))["cards"][0]["kind"] == "summary"


# ------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("http_401", openai.AuthenticationError),
        ("http_403", openai.PermissionDeniedError),
        ("http_429", openai.RateLimitError),
        ("http_500", openai.InternalServerError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_http_faults(
    llm: FakeLLM,
    client: openai.AsyncOpenAI,
    mode: str,
    error: type[openai.APIStatusError],
    stream: bool,
) -> None:
    llm.configure(mode=mode)  # type: ignore[arg-type]
    with pytest.raises(error) as info:
        await (chat(client) if stream else extract(client))
    assert info.value.status_code == int(mode.removeprefix("http_"))
    assert isinstance(info.value.body, dict) and info.value.body["message"]


async def test_hang_times_out(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.configure(mode="hang")
    with pytest.raises(openai.APITimeoutError):
        await extract(client, client_timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        await chat(client, client_timeout=0.2)


async def test_hang_mid_stream_sends_some_deltas_first(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    llm.configure("chat", mode="hang_mid_stream")
    stream = await client.chat.completions.create(model="m", messages=[], stream=True, timeout=0.3)
    received: list[str] = []
    with pytest.raises(openai.APITimeoutError):
        async for c in stream:
            received.append(c.choices[0].delta.content or "")
    assert received and DEFAULT_CHAT_REPLY.startswith("".join(received))


async def test_hang_with_delay_then_answers(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.configure(mode="hang", delay_s=0.2)
    started = time.monotonic()
    assert json.loads(await extract(client))["cards"]
    assert time.monotonic() - started >= 0.2


async def test_reset_is_a_connection_error(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.configure(mode="reset")
    with pytest.raises(openai.APIConnectionError) as info:
        await extract(client)
    assert not isinstance(info.value, openai.APITimeoutError)

    stream = await client.chat.completions.create(model="m", messages=[], stream=True)
    received = 0
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            received += 1
    assert received > 0  # the stream started, then the connection died


async def test_garbage(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.configure(mode="garbage")
    with pytest.raises(ValueError):  # the SDK surfaces the JSONDecodeError as is
        await extract(client)
    with pytest.raises(ValueError):
        await chat(client)
    async with httpx.AsyncClient() as raw_client:
        raw = await raw_client.post(f"{llm.base_url}/chat/completions", json={"model": "m"})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("application/json")


async def test_bad_content_modes(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.configure("extraction", mode="non_json_content")
    with pytest.raises(json.JSONDecodeError):
        json.loads(await extract(client))
    llm.configure("extraction", mode="schema_invalid")
    assert json.loads(await extract(client)) == {"cards": [{"kind": "banana"}]}


async def test_slow(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.configure(mode="slow", delay_s=0.2, chunk_delay_s=0.01, chunks=5)
    started = time.monotonic()
    _, text = await chat(client)
    assert text == DEFAULT_CHAT_REPLY
    assert time.monotonic() - started >= 0.2 + 5 * 0.01


async def test_count_expiry_and_target_isolation(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.configure("extraction", mode="http_500", count=2)
    _, text = await chat(client)  # other target unaffected, and does not use up the count
    assert text == DEFAULT_CHAT_REPLY
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await extract(client)
    assert json.loads(await extract(client))["cards"]
    assert llm.config()["extraction"]["mode"] == "ok"


async def test_count_with_target_all_is_shared(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.configure(mode="http_429", count=1)
    with pytest.raises(openai.RateLimitError):
        await chat(client)
    assert json.loads(await extract(client))["cards"]
    _, text = await chat(client)
    assert text == DEFAULT_CHAT_REPLY


async def test_request_log_records_failures_too(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    await chat(client)
    llm.configure("extraction", mode="http_401")
    with pytest.raises(openai.AuthenticationError):
        await extract(client, "remember this")
    log = llm.requests()
    assert [(r["kind"], r["model"]) for r in log] == [
        ("chat", "chat-model"),
        ("extraction", "extract-model"),
    ]
    assert log[1]["body"]["response_format"]["type"] == "json_schema"
    assert log[1]["body"]["messages"][-1]["content"] == "remember this"
    assert [r["kind"] for r in llm.requests("chat")] == ["chat"]
    llm.reset()
    assert llm.requests() == []
    assert llm.config()["extraction"]["mode"] == "ok"


async def test_stop_is_prompt_with_hanging_requests() -> None:
    server = FakeLLM()
    await server.start()
    c = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=30)
    server.configure(mode="hang")
    pending = [asyncio.create_task(extract(c)), asyncio.create_task(chat(c))]
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 1.0
    for task in pending:
        with pytest.raises(openai.APIConnectionError):
            await task
    await c.close()


# ------------------------------------------------------------------ HTTP control


async def test_http_control(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    ctl = FakeLLMControl(llm.base_url)
    config = await ctl.aconfigure("chat", mode="http_403", count=1, chat_reply="hey")
    assert config["chat"]["mode"] == "http_403" and config["extraction"]["mode"] == "ok"
    with pytest.raises(openai.PermissionDeniedError):
        await chat(client)
    assert (await chat(client))[1] == "hey"
    assert [r["kind"] for r in await ctl.arequests()] == ["chat", "chat"]
    assert await ctl.arequests("extraction") == []
    await ctl.areset()
    assert llm.requests() == [] and llm.config()["chat"]["chat_reply"] == DEFAULT_CHAT_REPLY

    async with httpx.AsyncClient(base_url=ctl.root) as raw:
        bad = await raw.post("/_fake/config", json={"mode": "banana"})
        assert bad.status_code == 400 and "mode" in bad.json()["error"]["message"]
        assert (await raw.post("/_fake/config", json={"colour": 1})).status_code == 400
        assert (await raw.get("/_fake/health")).json() == {"status": "ok"}
        ok = await raw.post("/_fake/config", json={"extraction_reply": [1, 2]})
        assert ok.json()["extraction"]["extraction_reply"] == [1, 2]
    assert json.loads(await extract(client)) == [1, 2]
    with pytest.raises(ValueError):
        llm.configure(chunks=0)


def test_cli_subprocess_and_sync_control() -> None:
    script = Path(sys.executable).with_name("glia-fake-llm")  # the installed console script
    with subprocess.Popen([str(script), "--port", "0"], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()  # printed (and flushed) once listening
            assert line.startswith("fake-llm listening on http://127.0.0.1:")
            base_url = line.rsplit(" ", 1)[1]
            assert base_url.endswith("/v1")
            ctl = FakeLLMControl(base_url)
            ctl.wait_ready()
            ctl.configure(mode="http_500", count=1)
            with openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=5) as sync:
                with pytest.raises(openai.InternalServerError):
                    sync.chat.completions.create(model="m", messages=[])
                done = sync.chat.completions.create(model="m", messages=[])
            assert done.choices[0].message.content is not None
            assert [r["kind"] for r in ctl.requests()] == ["extraction", "extraction"]
            ctl.reset()
            assert ctl.requests() == []
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=5) == 0


# ------------------------------------------------------------------ FaultProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _roundtrip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 2)
    finally:
        writer.close()


async def _is_dropped(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 2) == b""
    except ConnectionError:
        return True


async def test_fault_proxy_cut_and_restore() -> None:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    try:
        async with FaultProxy("127.0.0.1", echo_port) as proxy:
            assert await _roundtrip(proxy.port, b"ping" * 1000) == b"ping" * 1000

            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"x")
            assert await reader.readexactly(1) == b"x"
            assert proxy.active_connections == 1

            await proxy.cut()
            assert proxy.is_cut and proxy.active_connections == 0
            assert await _is_dropped(reader)  # the open connection is gone
            writer.close()
            # New connections are accepted then closed at once.
            r2, w2 = await asyncio.open_connection("127.0.0.1", proxy.port)
            w2.write(b"y")
            assert await _is_dropped(r2)
            w2.close()

            proxy.restore()
            assert await _roundtrip(proxy.port, b"back") == b"back"
    finally:
        echo.close()
        await echo.wait_closed()


async def test_fault_proxy_stall_holds_bytes_until_restore_and_cut_ends_it() -> None:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    try:
        async with FaultProxy("127.0.0.1", echo_port) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            proxy.stall()
            assert proxy.is_stalled
            writer.write(b"held")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readexactly(4), 0.3)
            assert proxy.active_connections == 1  # hanging, not dropped
            proxy.restore()
            assert await asyncio.wait_for(reader.readexactly(4), 2) == b"held"

            proxy.stall()
            writer.write(b"z")
            await proxy.cut()  # a cut ends a stall at once: stalled pumps are cancelled
            assert await _is_dropped(reader)
            writer.close()
            proxy.restore()
            assert not proxy.is_stalled
            assert await _roundtrip(proxy.port, b"back") == b"back"
    finally:
        echo.close()
        await echo.wait_closed()


async def test_fault_proxy_upstream_down_and_stop() -> None:
    with_nothing = FaultProxy("127.0.0.1", 1)  # nothing listens on port 1
    await with_nothing.start()
    r, w = await asyncio.open_connection("127.0.0.1", with_nothing.port)
    assert await _is_dropped(r)
    w.close()
    await with_nothing.stop()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", with_nothing.port)
