"""The ``glia`` command-line client against the real processes: login, chat (one message,
lines on stdin, Ctrl-C), a connection dropped mid-turn, conversations and cards."""

from __future__ import annotations

import asyncio
import json
import signal
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from glia_e2e.cli import Cli, read_json_line
from glia_e2e.processes import Process
from glia_fakes.tcp_proxy import FaultProxy

pytestmark = pytest.mark.e2e

SLOW_TURN = {"mode": "slow", "delay_s": 0, "chunk_delay_s": 0.4, "chunks": 30}


@pytest.fixture
def cli(sys_: Any, mint: Any, user: str, tmp_path: Path) -> Cli:
    return Cli(sys_.chat.url, sys_.cards.url, tmp_path / "glia-config", token=mint(user))


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def check_turn(events: list[dict[str, Any]], stored: dict[str, Any]) -> str:
    """Every event once and in order, one terminal event last; returns the text."""
    assert [e["id"] for e in events] == list(range(len(events)))
    assert events[0]["event"] == "start"
    assert [e["event"] for e in events[1:-1]] == ["delta"] * (len(events) - 2)
    assert events[-1]["event"] in ("done", "error")
    text = "".join(e["data"]["text"] for e in events if e["event"] == "delta")
    assert stored["content"] == text
    return text


def chat_once(cli: Cli, message: str, *args: str) -> list[dict[str, Any]]:
    """``glia chat -m MESSAGE --json``: the turn's events."""
    done = cli.run("chat", "-m", message, "--json", *args)
    assert done.returncode == 0, done.stderr
    return ndjson(done.stdout)


def stored_reply(cli: Cli, cid: str, mid: str) -> dict[str, Any]:
    conversation = cli.json("show", cid)
    return next(m for m in conversation["messages"] if m["id"] == mid)


def test_login_stores_the_token_for_its_owner_only(
    sys_: Any, mint: Any, user: str, tmp_path: Path
) -> None:
    cli = Cli(sys_.chat.url, sys_.cards.url, tmp_path / "cfg")  # no GLIA_TOKEN
    refused = cli.run("conversations")
    assert refused.returncode != 0 and "glia login" in refused.stderr

    bad = cli.run("login", input="not-a-token\n")
    assert bad.returncode == 1 and "refused" in bad.stderr
    assert not (tmp_path / "cfg" / "config.json").exists()

    token = mint(user)
    done = cli.run("login", input=token + "\n")
    assert done.returncode == 0, done.stderr
    assert f"logged in as {user}" in done.stderr
    config = tmp_path / "cfg" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["token"] == token

    listed = cli.run("conversations", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"items": [], "next_cursor": None}

    assert cli.run("logout").returncode == 0
    assert json.loads(config.read_text())["token"] is None
    assert cli.run("conversations").returncode != 0


def test_one_message_streams_the_turn_as_json(cli: Cli) -> None:
    events = chat_once(cli, "We decided to launch in May. TODO: book the venue.")
    assert events[-1]["event"] == "done"
    start = events[0]["data"]
    stored = stored_reply(cli, start["conversation_id"], start["assistant_message_id"])
    assert stored["status"] == "complete"
    assert check_turn(events, stored)

    listed = cli.json("conversations")
    (conversation,) = listed["items"]
    assert conversation["id"] == start["conversation_id"]
    assert conversation["title"] == "We decided to launch in May. TODO: book the venue."


def test_interactive_chat_sends_each_line_and_shows_the_replies(cli: Cli) -> None:
    cid = chat_once(cli, "Hello there.")[0]["data"]["conversation_id"]

    done = cli.run("chat", "--conversation", cid, input="What is the budget?\n\nAnd the venue?\n")
    assert done.returncode == 0, done.stderr
    conversation = cli.json("show", cid)
    contents = [m["content"] for m in conversation["messages"]]
    assert contents[2] == "What is the budget?" and contents[4] == "And the venue?"
    assert len(contents) == 6, "the blank line sent nothing"
    for reply in (contents[3], contents[5]):
        assert reply and reply in done.stdout
    # The fake model gives every turn the same reply: shown once as history (the first
    # turn), then once per line sent. Never twice for one turn.
    assert contents[1] == contents[3] == contents[5]
    assert done.stdout.count(contents[5]) == 3


async def test_a_dropped_connection_mid_turn_is_resumed_without_repeating_text(
    sys_: Any, cli: Cli
) -> None:
    await sys_.llm_control.aconfigure(target="chat", **SLOW_TURN)
    async with FaultProxy("127.0.0.1", sys_.chat.port) as proxy:
        through_proxy = replace(cli, chat_url=f"http://127.0.0.1:{proxy.port}")
        process = await through_proxy.start("chat", "-m", "Tell me the whole plan.", "--json")
        events = [await read_json_line(process)]
        while sum(e["event"] == "delta" for e in events) < 3:
            events.append(await read_json_line(process))
        await proxy.cut()  # the connection drops mid-turn...
        proxy.restore()  # ...and the network comes back
        while events[-1]["event"] not in ("done", "error"):
            events.append(await read_json_line(process))
        assert await asyncio.wait_for(process.wait(), 60) == 0
        stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert "reconnecting" in stderr
    assert events[-1]["event"] == "done"
    start = events[0]["data"]
    stored = stored_reply(cli, start["conversation_id"], start["assistant_message_id"])
    assert stored["status"] == "complete"
    check_turn(events, stored)


async def test_ctrl_c_cancels_the_turn_through_the_api(sys_: Any, cli: Cli) -> None:
    await sys_.llm_control.aconfigure(target="chat", **SLOW_TURN)
    process = await cli.start("chat", "-m", "A long answer, please.", "--json")
    events = [await read_json_line(process)]
    while events[-1]["event"] != "delta":
        events.append(await read_json_line(process))
    process.send_signal(signal.SIGINT)
    while events[-1]["event"] not in ("done", "error"):
        events.append(await read_json_line(process))
    assert await asyncio.wait_for(process.wait(), 60) == 130
    assert events[-1]["event"] == "error" and events[-1]["data"]["code"] == "cancelled"
    start = events[0]["data"]
    stored = stored_reply(cli, start["conversation_id"], start["assistant_message_id"])
    assert stored["status"] == "incomplete"
    check_turn(events, stored)


async def wait_for_cards(cli: Cli, cid: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        body: dict[str, Any] = cli.json("cards", "--conversation", cid)
        if body["extraction"]["state"] == "current":
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"cards stayed {body['extraction']}")
        await asyncio.sleep(0.3)


async def test_cards_and_their_live_updates(sys_: Any, cli: Cli) -> None:
    cid = chat_once(cli, "Hi")[0]["data"]["conversation_id"]
    await wait_for_cards(cli, cid)
    shown = cli.run("cards", "-c", cid)
    assert shown.returncode == 0 and "current" in shown.stdout

    watch = await cli.start("cards", "--conversation", cid, "--watch", "--json")
    try:
        first = await read_json_line(watch)
        assert first["event"] == "subscribed"
        assert first["extraction"]["state"] == "current"
        before = {c["id"] for c in first["cards"]}

        chat_once(cli, "We decided to hire two engineers. TODO: post the job.", "-c", cid)
        update = await read_json_line(watch)
        assert update["event"] == "cards.updated"
        assert update["extraction"]["state"] == "current"
        assert update["cards"] and {c["id"] for c in update["cards"]} != before
        assert all(c["conversation_id"] == cid for c in update["cards"])
        assert update["cards"] == cli.json("cards", "-c", cid)["items"]
    finally:
        watch.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(watch.wait(), 30) == 0


@pytest.mark.timeout(300)  # starts one more chat API process
async def test_a_stream_ended_by_its_maximum_lifetime_is_resumed(
    sys_: Any, cli: Cli, spawn: Callable[..., Process]
) -> None:
    short_lived = spawn("glia-chat-api", GLIA_SSE_MAX_LIFETIME_S="2")
    await sys_.llm_control.aconfigure(target="chat", **SLOW_TURN)  # about 12 s
    done = replace(cli, chat_url=short_lived.url).run(
        "chat", "-m", "Tell me the whole plan.", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert "reconnecting" in done.stderr and "resume it with Last-Event-ID" in done.stderr
    events = ndjson(done.stdout)
    assert events[-1]["event"] == "done"
    assert not any(e["data"].get("code") == "stream_expired" for e in events)
    start = events[0]["data"]
    stored = stored_reply(cli, start["conversation_id"], start["assistant_message_id"])
    check_turn(events, stored)
