"""The web client (/app) in a real browser: Debian's Chromium, headless, driven by
Playwright. The page is served by a chat API process behind a TCP fault proxy (so a
test can drop its connections), with the card query API on another origin (CORS), as
under ``make run``."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, Request, async_playwright, expect

from glia_e2e.processes import Process, free_port
from glia_fakes.tcp_proxy import FaultProxy

# The first test here also starts two more service processes and the browser.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHROMIUM = Path(os.environ.get("GLIA_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests may run as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(
    os.environ.get("GLIA_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")
)
# A reply long enough to act on while it streams (the spawned chat API allows the
# model 30 s per call, far above these pauses).
SLOW_TURN = {"mode": "slow", "delay_s": 0, "chunk_delay_s": 0.3, "chunks": 30}
LONG = 60_000  # ms: generous waits on a busy two-core machine


@dataclass
class Web:
    url: str  # the page's origin: the proxy in front of the chat API
    proxy: FaultProxy
    chat: Process
    cards: Process


@pytest.fixture(scope="module")
async def web(spawn: Callable[..., Process]) -> AsyncIterator[Web]:
    chat_port = free_port()
    async with FaultProxy("127.0.0.1", chat_port) as proxy:
        origin = f"http://127.0.0.1:{proxy.port}"
        cards = spawn("glia-card-query", GLIA_CORS_ORIGINS=origin)
        chat = spawn(
            "glia-chat-api",
            port=chat_port,
            GLIA_WEB_CARD_QUERY_URL=cards.url,
            GLIA_LLM_TIMEOUT_S="30",
        )
        yield Web(origin, proxy, chat, cards)


@pytest.fixture(scope="module")
def chromium() -> Path:
    # Never a skip: a missing browser fails the run, loudly.
    if not CHROMIUM.exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: the browser tests need Debian's chromium package "
            "(`make browser` installs it), or GLIA_CHROMIUM pointing at one"
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser, sys_: Any) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


async def sign_in(page: Page, web: Web, token: str, user: str) -> None:
    await page.goto(f"{web.url}/app/")
    await page.get_by_label("Development token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_text(f"Signed in as {user}")).to_be_visible()


def last_reply(page: Page) -> Locator:
    return page.locator('#messages li[data-role="assistant"]').last


async def send(page: Page, text: str) -> Locator:
    box = page.get_by_role("textbox", name="Message")
    await box.fill(text)
    await box.press("Enter")  # the keyboard sends
    return last_reply(page)


async def wait_until_streaming_with_text(page: Page) -> str:
    """The reply's text while it is still being written."""
    handle = await page.wait_for_function(
        """() => {
            const reply = [...document.querySelectorAll('#messages li[data-role="assistant"]')].at(-1);
            const text = reply?.querySelector('.text').textContent ?? '';
            return reply?.dataset.status === 'streaming' && reply.dataset.id && text ? text : null;
        }""",
        timeout=LONG,
    )
    text = await handle.json_value()
    assert isinstance(text, str)
    return text


async def stored_messages(web: Web, token: str, cid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=web.chat.url, timeout=30) as chat:
        response = await chat.get(
            f"/v1/conversations/{cid}", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


def open_conversation_id(page: Page) -> str:
    assert page.url.split("#c=")[1]
    return page.url.split("#c=")[1]


async def test_chat_streams_the_reply_and_the_cards_appear_live(
    sys_: Any, web: Web, page: Page, mint: Any, user: str, artifacts: Path
) -> None:
    token = mint(user)
    await sign_in(page, web, token, user)
    await expect(page.get_by_role("heading", name="New conversation")).to_be_visible()

    await sys_.llm_control.aconfigure(target="chat", **SLOW_TURN)
    reply = await send(page, "We decided to launch in May. TODO: book the venue.")
    partial = await wait_until_streaming_with_text(page)
    await expect(reply).to_have_attribute("data-status", "complete", timeout=LONG)
    text = await reply.locator(".text").text_content()
    assert text and text.startswith(partial) and len(text) > len(partial), "it streamed in"

    cid = open_conversation_id(page)
    messages = await stored_messages(web, token, cid)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["status"] == "complete" and messages[1]["content"] == text

    # The conversation is listed (and marked as the open one).
    listed = page.locator(f'#conversation-list button[data-id="{cid}"]')
    await expect(listed).to_have_attribute("aria-current", "true")
    await expect(listed).to_contain_text("We decided to launch in May.")

    # The cards arrive by the card events stream, with their freshness.
    cards = page.locator("#card-list li")
    await expect(cards.first).to_be_visible(timeout=LONG)
    await expect(page.locator("#freshness")).to_have_attribute("data-state", "current")
    await expect(page.locator("#freshness")).to_contain_text("Up to date")
    async with httpx.AsyncClient(base_url=web.cards.url, timeout=30) as api:
        page_of_cards = (
            await api.get(
                "/v1/cards",
                params={"conversation_id": cid},
                headers={"Authorization": f"Bearer {token}"},
            )
        ).json()
    await expect(page.locator("#card-list h3")).to_have_text(
        [c["title"] for c in page_of_cards["items"]]
    )

    await page.screenshot(path=str(artifacts / "web-client.png"))


async def test_a_reload_mid_turn_follows_the_turn_to_its_end(
    sys_: Any, web: Web, page: Page, mint: Any, user: str
) -> None:
    token = mint(user)
    await sign_in(page, web, token, user)
    await sys_.llm_control.aconfigure(target="chat", **SLOW_TURN)
    await send(page, "Tell me the whole plan.")
    await wait_until_streaming_with_text(page)
    mid = await last_reply(page).get_attribute("data-id")
    cid = open_conversation_id(page)
    assert (await stored_messages(web, token, cid))[-1]["status"] == "streaming"

    async with page.expect_request(lambda r: r.url.endswith(f"/{mid}/events")) as resumed:
        await page.reload()
    request = await resumed.value
    assert "last-event-id" not in await request.all_headers(), "replayed from the start"

    reply = last_reply(page)
    await expect(reply).to_have_attribute("data-id", mid or "")
    await expect(reply).to_have_attribute("data-status", "complete", timeout=LONG)
    stored = (await stored_messages(web, token, cid))[-1]
    assert stored["id"] == mid and stored["status"] == "complete"
    await expect(reply.locator(".text")).to_have_text(stored["content"])


async def test_a_dropped_stream_is_resumed_in_the_page(
    sys_: Any, web: Web, page: Page, mint: Any, user: str
) -> None:
    token = mint(user)
    await sign_in(page, web, token, user)
    resumes: list[Request] = []
    page.on("request", lambda r: resumes.append(r) if r.url.endswith("/events") else None)
    await sys_.llm_control.aconfigure(target="chat", **SLOW_TURN)
    reply = await send(page, "Tell me the whole plan.")
    await wait_until_streaming_with_text(page)

    await web.proxy.cut()  # the page's connection drops mid-turn...
    web.proxy.restore()  # ...and the network comes back

    await expect(reply).to_have_attribute("data-status", "complete", timeout=LONG)
    cid = open_conversation_id(page)
    stored = (await stored_messages(web, token, cid))[-1]
    await expect(reply.locator(".text")).to_have_text(stored["content"])
    assert resumes, "the page reconnected to the turn's events"
    last_ids = [(await r.all_headers()).get("last-event-id") for r in resumes]
    assert all(i is not None and int(i) > 0 for i in last_ids), last_ids


async def test_stop_cancels_the_reply(
    sys_: Any, web: Web, page: Page, mint: Any, user: str
) -> None:
    token = mint(user)
    await sign_in(page, web, token, user)
    await sys_.llm_control.aconfigure(target="chat", **SLOW_TURN)
    reply = await send(page, "A long answer, please.")
    await wait_until_streaming_with_text(page)
    await page.get_by_role("button", name="Stop reply").click()

    await expect(reply).to_have_attribute("data-status", "incomplete", timeout=LONG)
    await expect(page.get_by_role("status").filter(has_text="Reply stopped.")).to_be_visible()
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()
    cid = open_conversation_id(page)
    stored = (await stored_messages(web, token, cid))[-1]
    assert stored["status"] == "incomplete"
    await expect(reply.locator(".text")).to_have_text(stored["content"])


async def test_the_pages_event_stream_parser_follows_the_spec(web: Web, page: Page) -> None:
    stream = (
        "retry: 1500\n"
        ": ping\r\n\r\n"
        'event: delta\r\ndata: {"text":"a"}\rid: 1\r\n\r\n'
        'event: delta\ndata: {"text":"é€"}\nid: 2\n\n'
        "data: line one\ndata:line two\nunknown: field\n\n"
        'event: delta\ndata: {"text":"cut off"}\nid: 3'  # no blank line: never dispatched
    ).encode()
    # Chunk boundaries inside a CRLF and inside multi-byte characters.
    cuts = [
        stream.index(b"delta\r\n") + len(b"delta\r"),  # between the CR and the LF
        stream.index("é".encode()) + 1,
        stream.index("€".encode()) + 2,
    ]
    bounds = [0, *sorted(cuts), len(stream)]
    chunks = [list(stream[a:b]) for a, b in itertools.pairwise(bounds)]
    await page.goto(f"{web.url}/app/")
    items = await page.evaluate(
        """async (chunks) => {
            const { parseEventStream } = await import("./sse.js");
            const body = new ReadableStream({
                start(controller) {
                    for (const chunk of chunks) controller.enqueue(new Uint8Array(chunk));
                    controller.close();
                },
            });
            const items = [];
            for await (const item of parseEventStream(body)) items.push(item);
            return items;
        }""",
        chunks,
    )
    assert items == [
        {"type": "retry", "ms": 1500},
        {"type": "comment", "text": "ping"},
        {"type": "event", "event": "delta", "data": '{"text":"a"}', "id": "1"},
        {"type": "event", "event": "delta", "data": '{"text":"é€"}', "id": "2"},
        {"type": "event", "event": "message", "data": "line one\nline two", "id": None},
    ]


async def test_a_refused_turn_gives_the_message_back(
    web: Web, page: Page, mint: Any, user: str
) -> None:
    await sign_in(page, web, mint(user), user)
    problem = {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "Too many turns at once.",
        "code": "rate_limited",
    }
    await page.route(
        "**/v1/conversations/*/messages",
        lambda route: route.fulfill(
            status=429,
            headers={"Retry-After": "30", "Content-Type": "application/problem+json"},
            body=json.dumps(problem),
        ),
    )
    await send(page, "Hello?")
    await expect(page.locator("#chat-status")).to_have_text(
        "Too many turns at once. Try again in 30 s."
    )
    await expect(page.get_by_role("textbox", name="Message")).to_have_value("Hello?")
    await expect(page.locator("#messages li")).to_have_count(0)
    await expect(page.get_by_role("button", name="Send")).to_be_enabled()
