"""The load: users chatting concurrently for the whole run, as real clients would.

Each user runs a few sessions (concurrent tasks) over their own conversations, choosing
at random (from the seed) to chat, retry a dropped turn with the same Idempotency-Key,
replay a finished one, delete a conversation, read cards, list, and probe other users'
resources (which must be 404). Every request is one history operation.

A turn is driven to an outcome like a careful client: after a dropped stream it resumes
(``GET .../events`` with ``Last-Event-ID``) when the server offers it, else repeats the
POST with the same key; 409 (still running) and 429 (``Retry-After``) are waited out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from chaos.history import History, Outcome
from glia_e2e.sse import Event, iter_events
from glia_fakes import FakeLLMControl

PHRASES = (
    "We decided to launch in May.",
    "TODO: book the venue for the offsite.",
    "What is the budget for the next quarter?",
    "Anna will own the migration plan.",
    "The vendor contract renews in March; we agreed to renegotiate.",
    "Should we hire two more engineers?",
    "Remember that the demo is on Friday at 10.",
    "Décision : on garde PostgreSQL. ✓",
)
REPLIES = (
    "Understood, noted.",
    "Here is a longer answer that goes on for a while so that the stream has many "
    "pieces, and a reconnecting client has something left to resume.",
    "Ja, das ist notiert. 🚀",
    "Short.",
)
# How long a client keeps driving one turn (retries, resumes) before giving up on it.
TURN_BUDGET_S = 75.0
READ_TIMEOUT_S = 20.0


def digest(text: str) -> str:
    """A short content fingerprint: the history records it instead of whole texts."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Caps:
    """What the chat API offers (from its OpenAPI document): the newer turn routes."""

    resume: bool
    cancel: bool

    @classmethod
    def detect(cls, openapi: dict[str, Any]) -> Caps:
        paths = [str(p) for p in openapi.get("paths", {})]
        return cls(
            resume=any(p.startswith("/v1/conversations/") and p.endswith("/events") for p in paths),
            cancel=any(p.startswith("/v1/conversations/") and p.endswith("/cancel") for p in paths),
        )


@dataclass
class Registry:
    """What every client knows about everyone's resources (targets for probes)."""

    conversations: dict[str, str] = field(default_factory=dict)  # id -> owner
    cards: dict[str, str] = field(default_factory=dict)  # id -> owner
    replies: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (conv, owner)

    def other(self, rng: random.Random, user: str, table: dict[str, str]) -> str | None:
        # Sorted so a seed picks the same position; the contents depend on timing anyway.
        keys = [k for k, owner in table.items() if owner != user]
        return rng.choice(sorted(keys)[-200:]) if keys else None


@dataclass
class _Attempt:
    """One request of a turn, as its stream went."""

    status: int = 0
    start: dict[str, Any] | None = None
    ids: list[int] = field(default_factory=list)
    text: str = ""
    terminal: str | None = None
    error: dict[str, Any] | None = None
    done_mid: str | None = None
    dropped: str | None = None
    protocol: list[str] = field(default_factory=list)
    problem: str | None = None
    retry_after: float | None = None
    below: int | None = None  # a terminal error this many ids below the last event seen

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.start is not None:
            out["start"] = {
                k: self.start.get(k)
                for k in ("conversation_id", "user_message_id", "assistant_message_id")
            }
        if self.ids:
            out["ids"] = [self.ids[0], self.ids[-1], len(self.ids)]
        out["text"] = self.text
        out["terminal"] = self.terminal
        for name in ("error", "done_mid", "dropped", "problem", "below"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.protocol:
            out["protocol"] = self.protocol
        return out


class Session:
    """One concurrent client of one user."""

    def __init__(self, load: Load, user: str, index: int, token: str) -> None:
        self.load = load
        self.user = user
        self.proc = f"{user}-{index}"
        self.rng = random.Random(f"{load.seed}:{self.proc}")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.turns = 0
        self.down: dict[str, float] = {}  # replica url -> avoid until (monotonic)
        self.cancels: set[asyncio.Task[None]] = set()
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=3.0),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4),
        )

    # ------------------------------------------------------------------ helpers

    @property
    def history(self) -> History:
        return self.load.history

    @property
    def mine(self) -> list[str]:
        return self.load.live.setdefault(self.user, [])

    def chat_url(self) -> str:
        """A replica at random, as a load balancer would; not one just found down."""
        urls = [u for u in self.load.chat_urls if self.down.get(u, 0.0) < time.monotonic()]
        return self.rng.choice(urls or self.load.chat_urls)

    def mark_down(self, url: str) -> None:
        if url in self.load.chat_urls:
            self.down[url] = time.monotonic() + 2.0

    def record(
        self, op: str, t0: float, outcome: Outcome, args: dict[str, Any], result: dict[str, Any]
    ) -> None:
        self.history.record(self.proc, op, t0, outcome, args, result)

    async def request(
        self, op: str, method: str, url: str, args: dict[str, Any], **kw: Any
    ) -> httpx.Response | None:
        """A plain request, recorded; None when no answer came."""
        t0 = self.history.now()
        try:
            r = await self.http.request(method, url, headers=self.headers, **kw)
        except httpx.ConnectError as exc:
            self.mark_down(url.split("/v1/")[0])
            self.record(op, t0, "error", args, {"exc": type(exc).__name__})
            return None
        except httpx.HTTPError as exc:
            self.record(op, t0, "unknown", args, {"exc": type(exc).__name__})
            return None
        result = _summarize(op, r)
        outcome: Outcome = "ok" if r.status_code < 400 else "error"
        if r.status_code >= 500:
            outcome = "unknown"  # it may have been done before the failure
        self.record(op, t0, outcome, args, result)
        return r

    async def pause(self, r: httpx.Response | None = None) -> None:
        if r is not None and r.status_code == 429:
            await asyncio.sleep(min(_retry_after(r.headers) or 1.0, 10.0))
        else:
            await asyncio.sleep(self.rng.uniform(0.05, 0.4))

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        stop = self.load.stop
        try:
            while not stop.is_set():
                await self.step()
                await self.pause()
        finally:
            await self.http.aclose()

    async def step(self) -> None:
        mine = self.mine
        if len(mine) < 2 or (len(mine) < 5 and self.rng.random() < 0.05):
            await self.create()
            return
        op = self.rng.choices(
            ("turn", "cards", "get", "list", "list_cards", "delete", "probe"),
            (40, 14, 12, 5, 4, 1 if len(mine) > 2 else 0, 6),
        )[0]
        conv = self.rng.choice(mine)
        if op == "turn":
            await self.turn(conv)
        elif op == "cards":
            r = await self.request(
                "read_cards",
                "GET",
                self.load.cards_url + "/v1/cards",
                {"conv": conv},
                params={"conversation_id": conv, "limit": 100},
            )
            if r is not None and r.status_code == 200:
                for item in r.json().get("items", []):
                    self.load.registry.cards.setdefault(item["id"], self.user)
            await self.pause(r)
        elif op == "get":
            r = await self.request(
                "get_conv",
                "GET",
                f"{self.chat_url()}/v1/conversations/{conv}",
                {"conv": conv},
                params={"limit": 1000},  # the whole conversation, where messages are paged
            )
            await self.pause(r)
        elif op == "list":
            r = await self.request(
                "list_convs",
                "GET",
                f"{self.chat_url()}/v1/conversations",
                {},
                params={"limit": 100},
            )
            await self.pause(r)
        elif op == "list_cards":
            r = await self.request(
                "list_cards",
                "GET",
                self.load.cards_url + "/v1/cards",
                {},
                params={"limit": 100},
            )
            await self.pause(r)
        elif op == "delete":
            if conv in mine:
                mine.remove(conv)  # whatever the answer, this client stops using it
            r = await self.request(
                "delete", "DELETE", f"{self.chat_url()}/v1/conversations/{conv}", {"conv": conv}
            )
            await self.pause(r)
        else:
            await self.probe()

    async def create(self) -> None:
        r = await self.request(
            "create",
            "POST",
            f"{self.chat_url()}/v1/conversations",
            {},
            json={"title": f"{self.user} #{self.rng.randrange(10**6)}"},
        )
        if r is not None and r.status_code == 201:
            cid = r.json()["id"]
            self.mine.append(cid)
            self.load.registry.conversations[cid] = self.user
        await self.pause(r)

    async def probe(self) -> None:
        """Another user's resource, by id: always 404, never a change."""
        reg = self.load.registry
        card = reg.other(self.rng, self.user, reg.cards)
        conv = reg.other(self.rng, self.user, reg.conversations)
        reply = reg.other(self.rng, self.user, {m: o for m, (_, o) in reg.replies.items()})
        choice = self.rng.choice(("get", "cards", "card", "post", "delete", "events", "cancel"))
        if choice == "card" and card is not None:
            args = {"what": "card", "id": card, "owner": reg.cards[card]}
            await self.request("probe", "GET", f"{self.load.cards_url}/v1/cards/{card}", args)
            return
        if choice in ("events", "cancel") and reply is not None:
            rconv, owner = reg.replies[reply]
            args = {"what": choice, "id": reply, "conv": rconv, "owner": owner}
            url = f"{self.chat_url()}/v1/conversations/{rconv}/messages/{reply}/{choice}"
            if choice == "cancel":
                await self.request("probe", "POST", url, args)
            else:  # a stream when it leaks: read only its head
                await self.request("probe", "GET", url, args, params={"last_event_id": 0})
            return
        if conv is None:
            return
        args = {"what": choice, "id": conv, "owner": reg.conversations[conv]}
        url = f"{self.chat_url()}/v1/conversations/{conv}"
        if choice == "cards":
            await self.request(
                "probe",
                "GET",
                self.load.cards_url + "/v1/cards",
                args,
                params={"conversation_id": conv},
            )
        elif choice == "post":
            key = f"probe-{self.proc}-{self.rng.getrandbits(40):010x}"
            args["key"] = key
            await self.request(
                "probe",
                "POST",
                url + "/messages",
                args,
                json={"content": f"intruder {key}"},
                headers={**self.headers, "Idempotency-Key": key},
            )
        elif choice == "delete":
            await self.request("probe", "DELETE", url, args)
        else:
            await self.request("probe", "GET", url, args)

    # ------------------------------------------------------------------ turns

    async def turn(self, conv: str) -> None:
        """One message, driven to an outcome: retried, resumed, replayed as planned."""
        self.turns += 1
        key = f"{self.proc}-{self.turns}-{self.rng.getrandbits(32):08x}"
        content = f"{self.rng.choice(PHRASES)} [{key}]"
        drop_after = self.rng.randint(1, 12) if self.rng.random() < 0.2 else None
        replay = self.rng.random() < 0.15
        cancel = self.load.caps.cancel and self.rng.random() < 0.05
        started = time.monotonic()
        start: dict[str, Any] | None = None
        text = ""  # of the current stream, up to last_id
        last_id: int | None = None
        attempt = 0
        while True:
            attempt += 1
            resuming = (
                self.load.caps.resume and start is not None and last_id is not None and not replay
            )
            args: dict[str, Any] = {
                "conv": conv,
                "key": key,
                "attempt": attempt,
            }
            if resuming:
                assert start is not None
                args |= {
                    "mid": start["assistant_message_id"],
                    "last_event_id": last_id,
                    "base_text": text,
                }
                op = "resume"
            else:
                args |= {"content": content}
                op = "send"
            res = await self.stream(op, conv, args, drop_after, cancel)
            drop_after = None
            cancel = False
            if res.start is not None:
                start = res.start
            if res.status == 200 and res.ids:
                if resuming:
                    text += res.text
                else:
                    text = res.text
                last_id = res.ids[-1]
            if res.terminal is not None:
                if replay:  # repeat the finished request: it must replay the same outcome
                    replay = False
                    last_id = None
                    await self.pause()
                    continue
                return
            if res.status in (404, 422) or res.status == 401:
                return
            if time.monotonic() - started > TURN_BUDGET_S or self.load.stop.is_set():
                return
            if res.status in (409, 429):
                await asyncio.sleep(min(res.retry_after or self.rng.uniform(0.3, 1.0), 10.0))
            else:
                await asyncio.sleep(self.rng.uniform(0.2, 1.0))

    async def stream(
        self,
        op: str,
        conv: str,
        args: dict[str, Any],
        drop_after: int | None,
        cancel: bool,
    ) -> _Attempt:
        t0 = self.history.now()
        base = self.chat_url()
        args["via"] = self.load.chat_urls.index(base)
        res = _Attempt()
        headers = dict(self.headers)
        if op == "send":
            headers["Idempotency-Key"] = args["key"]
            request = self.http.stream(
                "POST",
                f"{base}/v1/conversations/{conv}/messages",
                json={"content": args["content"]},
                headers=headers,
            )
            expect = 0
        else:
            headers["Last-Event-ID"] = str(args["last_event_id"])
            request = self.http.stream(
                "GET",
                f"{base}/v1/conversations/{conv}/messages/{args['mid']}/events",
                headers=headers,
            )
            expect = int(args["last_event_id"]) + 1
        outcome: Outcome = "unknown"
        try:
            async with request as r:
                res.status = r.status_code
                if r.status_code != 200:
                    body = await r.aread()
                    res.problem = _problem_code(body)
                    res.retry_after = _retry_after(r.headers)
                    outcome = "unknown" if r.status_code >= 500 else "error"
                else:
                    outcome = await self._read(r, res, expect, op, drop_after, cancel, conv)
        except httpx.ConnectError as exc:
            self.mark_down(base)
            res.dropped = type(exc).__name__
            outcome = "error"  # never reached the server
        except (httpx.HTTPError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            res.dropped = type(exc).__name__
            outcome = "unknown"
        self.record(op, t0, outcome, args, res.result())
        return res

    async def _read(
        self,
        r: httpx.Response,
        res: _Attempt,
        expect: int,
        op: str,
        drop_after: int | None,
        cancel: bool,
        conv: str,
    ) -> Outcome:
        events: AsyncIterator[Event] = iter_events(r)
        async for ev in events:
            _check_event(res, ev, expect, op)
            expect += 1
            if ev.event == "start":
                res.start = ev.data
                if isinstance(ev.data, dict):
                    self.load.registry.replies[str(ev.data["assistant_message_id"])] = (
                        conv,
                        self.user,
                    )
                if cancel and isinstance(ev.data, dict):
                    task = asyncio.create_task(
                        self.cancel(conv, str(ev.data["assistant_message_id"]))
                    )
                    self.cancels.add(task)
                    task.add_done_callback(self.cancels.discard)
            elif ev.event == "delta":
                res.text += str(ev.data.get("text", "")) if isinstance(ev.data, dict) else ""
            elif ev.event in ("done", "error"):
                res.terminal = ev.event
                if ev.event == "done" and isinstance(ev.data, dict):
                    res.done_mid = str(ev.data.get("assistant_message_id"))
                elif isinstance(ev.data, dict):
                    res.error = {"code": ev.data.get("code"), "retryable": ev.data.get("retryable")}
            if drop_after is not None and len(res.ids) >= drop_after and res.terminal is None:
                res.dropped = "client"  # hang up on purpose, mid-stream
                return "unknown"
        if res.terminal == "done":
            return "ok"
        if res.terminal == "error":
            return "error"
        # A process that dies breaks the chunked body (a transport error above); a clean
        # end without a terminal event is the server's own doing.
        res.dropped = "ended_without_terminal"
        res.protocol.append("the stream ended cleanly without a terminal event")
        return "unknown"

    async def cancel(self, conv: str, mid: str) -> None:
        await asyncio.sleep(self.rng.uniform(0.0, 0.3))
        await self.request(
            "cancel",
            "POST",
            f"{self.chat_url()}/v1/conversations/{conv}/messages/{mid}/cancel",
            {"conv": conv, "mid": mid},
        )


def _check_event(res: _Attempt, ev: Event, expect: int, op: str) -> None:
    """The fixed SSE protocol, as far as one stream shows it."""
    try:
        event_id = int(ev.id) if ev.id is not None else None
    except ValueError:
        event_id = None
    if event_id is not None and event_id < expect and ev.event == "error":
        # By design a terminal error may repeat or lower the id: the stream was interrupted,
        # or the turn was stored with fewer events than the client had seen (the text past
        # that id was not kept). Counted, not a violation.
        res.below = expect - 1 - event_id
    elif event_id != expect:
        res.protocol.append(f"id {ev.id!r} where {expect} was due")
    if event_id is not None:
        res.ids.append(event_id)
    if res.terminal is not None:
        res.protocol.append(f"{ev.event} after the terminal event")
    if op == "send" and not res.ids[:-1] and ev.event != "start":
        res.protocol.append(f"first event {ev.event!r}, not start")
    if ev.event == "start" and res.ids[:-1]:
        res.protocol.append("start not first")
    if ev.event not in ("start", "delta", "done", "error"):
        res.protocol.append(f"unknown event {ev.event!r}")
    if not isinstance(ev.data, dict):
        res.protocol.append(f"{ev.event} data is not an object")
    elif (
        ev.event == "done"
        and res.start is not None
        and str(ev.data.get("assistant_message_id")) != str(res.start["assistant_message_id"])
    ):
        res.protocol.append("done names another assistant message than start")


def _retry_after(headers: httpx.Headers) -> float | None:
    try:
        return float(headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _problem_code(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return str(data.get("code")) if isinstance(data, dict) else None


def _summarize(op: str, r: httpx.Response) -> dict[str, Any]:
    """What the checker needs of an answer: ids and owners, not whole bodies."""
    out: dict[str, Any] = {"status": r.status_code}
    if r.status_code >= 400:
        out["problem"] = _problem_code(r.content)
        return out
    if r.status_code == 204 or not r.content:
        return out
    try:
        data = r.json()
    except ValueError:
        out["bad_json"] = True
        return out
    if op == "create":
        out["id"] = data.get("id")
    elif op == "get_conv":
        out["id"] = data.get("id")
        out["messages"] = [
            [m["id"], m["role"], m["status"], digest(m["content"])]
            for m in data.get("messages", [])
        ]
        if data.get("next_cursor"):
            out["partial"] = True  # more pages: absence proves nothing
    elif op == "list_convs":
        out["ids"] = [c["id"] for c in data.get("items", [])]
    elif op in ("read_cards", "list_cards"):
        out["cards"] = [[c["id"], c["conversation_id"]] for c in data.get("items", [])]
        fresh = data.get("extraction")
        if fresh:
            out["fresh"] = [fresh.get("state"), fresh.get("source_hash")]
    elif op == "probe":
        out["body_keys"] = sorted(data)[:10] if isinstance(data, dict) else []
    return out


class Load:
    """Every user's sessions, the chat reply that changes as the run goes, and the
    registry of who owns what."""

    def __init__(
        self,
        *,
        seed: int,
        history: History,
        chat_urls: list[str],
        cards_url: str,
        tokens: dict[str, str],
        sessions_per_user: int,
        caps: Caps,
        llm: FakeLLMControl,
    ) -> None:
        self.seed = seed
        self.history = history
        self.chat_urls = chat_urls
        self.cards_url = cards_url
        self.caps = caps
        self.llm = llm
        self.stop = asyncio.Event()
        self.live: dict[str, list[str]] = {}
        self.registry = Registry()
        self.sessions = [
            Session(self, user, i, token)
            for user, token in tokens.items()
            for i in range(sessions_per_user)
        ]

    async def run(self, duration_s: float, drain_s: float) -> None:
        """Run for ``duration_s``, then give open operations ``drain_s`` to finish."""
        tasks = [asyncio.create_task(s.run(), name=s.proc) for s in self.sessions]
        rotate = asyncio.create_task(self._rotate_replies())
        await asyncio.sleep(duration_s)
        self.stop.set()
        rotate.cancel()
        _, pending = await asyncio.wait(tasks, timeout=drain_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, rotate, return_exceptions=True)

    async def _rotate_replies(self) -> None:
        """A different reply every moment, so that texts tell turns apart."""
        rng = random.Random(f"{self.seed}:replies")
        n = 0
        while True:
            n += 1
            reply = f"Reply {n}. {rng.choice(REPLIES)}"
            with contextlib.suppress(httpx.HTTPError):
                await self.llm.aconfigure("chat", chat_reply=reply, chunks=rng.randint(5, 25))
            await asyncio.sleep(1.0)
