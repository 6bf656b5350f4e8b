"""A fake OpenAI-compatible chat-completions server with faults switchable at runtime.

It speaks real HTTP over loopback so the services' actual ``openai`` client, its
timeouts, retries and error mapping are what the tests exercise. aiohttp (not ASGI)
is used because some faults live below HTTP: aborting the TCP connection mid-request.

Two targets are configured independently: ``chat`` (streaming requests) and
``extraction`` (non-streaming requests, which carry ``response_format``).
The same state is reachable in-process (:class:`FakeLLM` methods) and over HTTP
(``/_fake/*``, or :class:`FakeLLMControl` when the server runs as a subprocess).

Modes: ``ok``; ``http_401/403/429/500`` (OpenAI-style error body); ``hang`` (no answer
until stop, or until ``delay_s`` when > 0, then the normal answer); ``hang_mid_stream``
(a few deltas first; non-stream: as ``hang``); ``reset`` (TCP RST, no response; streams
after a few deltas); ``garbage`` (200 with a non-JSON body or SSE ``data:`` line);
``non_json_content`` / ``schema_invalid`` (well-formed completion, bad content);
``slow`` (``delay_s`` before the response, ``chunk_delay_s`` between stream chunks).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import itertools
import json
import re
import signal
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from types import TracebackType
from typing import Any, Final, Literal, Self, cast, get_args

import httpx
from aiohttp import web

__all__ = [
    "DEFAULT_CHAT_REPLY",
    "DEFAULT_CHUNKS",
    "MODES",
    "FakeLLM",
    "FakeLLMControl",
    "Kind",
    "Mode",
    "TargetName",
    "build_cards",
    "main",
]

Kind = Literal["chat", "extraction"]
TargetName = Literal["chat", "extraction", "all"]
Mode = Literal[
    "ok",
    "http_401",
    "http_403",
    "http_429",
    "http_500",
    "hang",
    "hang_mid_stream",
    "reset",
    "garbage",
    "non_json_content",
    "schema_invalid",
    "slow",
]
FinishReason = Literal["stop", "length"]

MODES: Final[frozenset[str]] = frozenset(get_args(Mode))
KINDS: Final[tuple[Kind, ...]] = ("chat", "extraction")

DEFAULT_CHAT_REPLY: Final = (
    "This is the fake model's deterministic reply, streamed in small pieces "
    "so that clients can be tested against a real HTTP stream."
)
DEFAULT_CHUNKS: Final = 20
# Deltas sent before a mid-stream fault (hang or reset) strikes.
MID_STREAM_DELTAS: Final = 3
NON_JSON_CONTENT: Final = "Sure! Here are the cards you asked for: a summary and a fact."
SCHEMA_INVALID_CONTENT: Final[dict[str, Any]] = {"cards": [{"kind": "banana"}]}
GARBAGE_BODY: Final = "<html>oops</html>"

_UUID_RE: Final = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
# (type, code, message) of the OpenAI-style error body per HTTP fault.
_HTTP_ERRORS: Final[dict[str, tuple[int, str, str, str]]] = {
    "http_401": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    "http_403": (403, "permission_denied", "unsupported_country", "Permission denied."),
    "http_429": (429, "requests", "rate_limit_exceeded", "Rate limit reached."),
    "http_500": (500, "server_error", "internal_error", "The server had an error."),
}
_CONFIG_FIELDS: Final = frozenset(
    {
        "target",
        "mode",
        "count",
        "delay_s",
        "chunk_delay_s",
        "chat_reply",
        "chunks",
        "finish_reason",
        "extraction_reply",
    }
)


class _Unset:
    """Marks "not given" where ``None`` is itself a meaningful value."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


@dataclass
class _Fault:
    """A mode plus how many more requests it applies to (None: until changed).

    One instance is shared by both targets when set with ``target="all"``, so a
    ``count`` then covers the next N requests of either kind, as documented.
    """

    mode: Mode = "ok"
    remaining: int | None = None


@dataclass
class _TargetState:
    fault: _Fault = field(default_factory=_Fault)
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    chat_reply: str = DEFAULT_CHAT_REPLY
    chunks: int = DEFAULT_CHUNKS
    finish_reason: FinishReason = "stop"
    extraction_reply: Any = None  # None: cards built from the request

    def snapshot(self) -> dict[str, Any]:
        data = asdict(self)
        fault = data.pop("fault")
        return {"mode": fault["mode"], "count": fault["remaining"], **data}


# --------------------------------------------------------------------------- helpers


def _message_text(message: Any) -> str:
    """Text of one chat message; content may be a string or a list of parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _messages(body: dict[str, Any]) -> list[Any]:
    messages = body.get("messages")
    return messages if isinstance(messages, list) else []


def build_cards(body: dict[str, Any]) -> dict[str, Any]:
    """The default extraction answer, derived from the request so tests can predict it.

    A ``summary`` card citing every UUID in the messages (deduplicated, in order),
    plus a ``fact`` card citing the first one when there is any.
    """
    texts = [_message_text(m) for m in _messages(body)]
    ids = list(dict.fromkeys(u.lower() for t in texts for u in _UUID_RE.findall(t)))
    user_texts = [
        _message_text(m)
        for m in _messages(body)
        if isinstance(m, dict) and m.get("role") == "user" and _message_text(m)
    ]
    last = user_texts[-1] if user_texts else next((t for t in reversed(texts) if t), "")
    cards: list[dict[str, Any]] = [
        {"kind": "summary", "title": "Summary", "body": last[:200], "source_message_ids": ids}
    ]
    if ids:
        cards.append(
            {
                "kind": "fact",
                "title": "Fact",
                "body": f"A fact stated in message {ids[0]}.",
                "source_message_ids": [ids[0]],
            }
        )
    return {"cards": cards}


def _split(text: str, parts: int) -> list[str]:
    """``parts`` non-empty pieces that concatenate to ``text`` (fewer if it is short)."""
    n = max(1, min(parts, len(text)))
    bounds = [round(i * len(text) / n) for i in range(n + 1)]
    return [text[bounds[i] : bounds[i + 1]] for i in range(n)]


def _usage(body: dict[str, Any], content: str) -> dict[str, int]:
    """Word counts: deterministic, and close enough to tokens for accounting tests."""
    prompt = sum(len(_message_text(m).split()) for m in _messages(body))
    completion = len(content.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _abort(request: web.BaseRequest) -> None:
    """Drop the TCP connection with a RST and no HTTP response at all."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Aborted(Exception):
    """The connection was dropped on purpose; nothing must be written back."""


def _check_config(fields: dict[str, Any]) -> None:
    """Reject wrong values early, so a typo in a test fails loudly instead of passing."""
    unknown = set(fields) - _CONFIG_FIELDS
    if unknown:
        raise ValueError(f"unknown config fields: {sorted(unknown)}")
    if fields.get("target", "all") not in ("chat", "extraction", "all"):
        raise ValueError(f"target must be chat, extraction or all, not {fields['target']!r}")
    if fields.get("mode") is not None and fields["mode"] not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, not {fields['mode']!r}")
    count = fields.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"count must be a positive integer or null, not {count!r}")
    for name in ("delay_s", "chunk_delay_s"):
        value = fields.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            raise ValueError(f"{name} must be a non-negative number, not {value!r}")
    chunks = fields.get("chunks")
    if chunks is not None and (
        isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1
    ):
        raise ValueError(f"chunks must be a positive integer, not {chunks!r}")
    if fields.get("finish_reason") is not None and fields["finish_reason"] not in get_args(
        FinishReason
    ):
        raise ValueError(f"finish_reason must be stop or length, not {fields['finish_reason']!r}")
    if fields.get("chat_reply") is not None and not isinstance(fields["chat_reply"], str):
        raise ValueError("chat_reply must be a string")


# --------------------------------------------------------------------------- server


class FakeLLM:
    """The fake server, running in the current asyncio loop.

    ``async with FakeLLM() as llm:`` or ``await llm.start()`` / ``await llm.stop()``.
    Point clients at :attr:`base_url`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._targets: dict[Kind, _TargetState] = {}
        self._log: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self.reset()

    # ---- lifecycle

    async def start(self) -> None:
        """Bind and serve; port 0 (the default) picks a free port."""
        if self._runner is not None:
            raise RuntimeError("FakeLLM already started")
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/_fake/health", self._health)
        app.router.add_get("/_fake/config", self._get_config)
        app.router.add_post("/_fake/config", self._post_config)
        app.router.add_post("/_fake/reset", self._post_reset)
        app.router.add_get("/_fake/requests", self._get_requests)
        # handler_cancellation: a client that gives up (timeout) frees its hanging handler.
        # A short shutdown_timeout is only a backstop: stop() wakes every waiting handler.
        runner = web.AppRunner(
            app,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=1.0,
            access_log=None,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        """Stop promptly: hanging and slow requests are woken and their connections dropped."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeLLM not started")
        return self._port

    @property
    def base_url(self) -> str:
        """What to pass as ``AsyncOpenAI(base_url=...)``."""
        return f"http://{self.host}:{self.port}/v1"

    # ---- state (shared by the Python API and the HTTP control)

    def configure(
        self,
        target: TargetName = "all",
        *,
        mode: Mode | None = None,
        count: int | None = None,
        delay_s: float | None = None,
        chunk_delay_s: float | None = None,
        chat_reply: str | None = None,
        chunks: int | None = None,
        finish_reason: FinishReason | None = None,
        extraction_reply: Any = UNSET,
    ) -> None:
        """Change the behaviour of ``target``; fields left out keep their value.

        ``count`` limits the mode set in the same call (or the current one) to the next
        N matching requests, then the target is back to ``ok``; a new ``mode`` without
        ``count`` lasts until changed. ``extraction_reply=None`` restores the default
        cards built from the request.
        """
        given: dict[str, Any] = {
            k: v
            for k, v in {
                "target": target,
                "mode": mode,
                "count": count,
                "delay_s": delay_s,
                "chunk_delay_s": chunk_delay_s,
                "chat_reply": chat_reply,
                "chunks": chunks,
                "finish_reason": finish_reason,
            }.items()
            if v is not None
        }
        _check_config(given)
        kinds: tuple[Kind, ...] = KINDS if target == "all" else (target,)
        shared = _Fault(mode, count) if mode is not None else None
        for kind in kinds:
            state = self._targets[kind]
            if shared is not None:
                state.fault = shared
            elif count is not None:
                state.fault = _Fault(state.fault.mode, count)
            if delay_s is not None:
                state.delay_s = float(delay_s)
            if chunk_delay_s is not None:
                state.chunk_delay_s = float(chunk_delay_s)
            if chat_reply is not None:
                state.chat_reply = chat_reply
            if chunks is not None:
                state.chunks = chunks
            if finish_reason is not None:
                state.finish_reason = finish_reason
            if not isinstance(extraction_reply, _Unset):
                state.extraction_reply = copy.deepcopy(extraction_reply)

    def reset(self) -> None:
        """Everything back to defaults and the request log emptied (between tests)."""
        self._targets = {kind: _TargetState() for kind in KINDS}
        self._log = []

    def requests(self, kind: Kind | None = None) -> list[dict[str, Any]]:
        """Completion requests received so far (failed ones too), oldest first.

        Each is ``{"kind": "chat"|"extraction", "model": ..., "body": <request JSON>}``.
        """
        return [copy.deepcopy(r) for r in self._log if kind is None or r["kind"] == kind]

    def config(self) -> dict[str, dict[str, Any]]:
        """Current settings per target, as ``GET /_fake/config`` shows them."""
        return {kind: state.snapshot() for kind, state in self._targets.items()}

    def _take(self, kind: Kind) -> tuple[Mode, _TargetState]:
        """The mode for this request (consuming one ``count``) and a settings snapshot."""
        state = self._targets[kind]
        fault = state.fault
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                for other in self._targets.values():
                    if other.fault is fault:
                        other.fault = _Fault()
        return fault.mode, replace(state, fault=_Fault(fault.mode))

    # ---- control endpoints

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.config())

    async def _post_config(self, request: web.Request) -> web.Response:
        try:
            fields = await request.json() if request.can_read_body else {}
            if not isinstance(fields, dict):
                raise ValueError("the body must be a JSON object")
            _check_config(fields)
            if "extraction_reply" not in fields:
                fields["extraction_reply"] = UNSET
            self.configure(**fields)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return web.json_response(
                _error_body(str(exc), "invalid_request_error", None), status=400
            )
        return web.json_response(self.config())

    async def _post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(self.config())

    async def _get_requests(self, request: web.Request) -> web.Response:
        kind = request.query.get("kind")
        if kind is not None and kind not in KINDS:
            return web.json_response(
                _error_body("kind must be chat or extraction", "invalid_request_error", None),
                status=400,
            )
        return web.json_response(self.requests(kind))

    # ---- the completions endpoint

    async def _wait(self, seconds: float | None) -> bool:
        """Sleep ``seconds`` (None: forever); False when the server is stopping instead."""
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return True
        return False

    async def _hang(self, request: web.BaseRequest, state: _TargetState) -> None:
        """Wait until stop (or ``delay_s`` when set); on stop, drop the connection."""
        await self._sleep(request, state.delay_s or None)

    async def _sleep(self, request: web.BaseRequest, seconds: float | None) -> None:
        """Sleep, but drop the connection at once if the server stops meanwhile."""
        if not await self._wait(seconds):
            _abort(request)
            raise _Aborted

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._log.append(
                {"kind": "extraction", "model": None, "body": raw.decode(errors="replace")}
            )
            return web.json_response(
                _error_body("the body must be a JSON object", "invalid_request_error", None),
                status=400,
            )
        stream = body.get("stream") is True
        kind: Kind = "chat" if stream else "extraction"
        self._log.append({"kind": kind, "model": body.get("model"), "body": copy.deepcopy(body)})
        mode, state = self._take(kind)
        try:
            return await self._answer(request, body, stream, mode, state)
        except _Aborted:
            # The transport is gone, so nothing of this reaches the client: aiohttp's
            # write fails with a ConnectionError, which it treats as a client disconnect.
            return web.Response(status=500)

    async def _answer(
        self,
        request: web.Request,
        body: dict[str, Any],
        stream: bool,
        mode: Mode,
        state: _TargetState,
    ) -> web.StreamResponse:
        if mode in _HTTP_ERRORS:
            status, type_, code, message = _HTTP_ERRORS[mode]
            return web.json_response(_error_body(message, type_, code), status=status)
        if mode == "hang" or (mode == "hang_mid_stream" and not stream):
            await self._hang(request, state)
        elif mode == "slow":
            await self._sleep(request, state.delay_s)
        elif mode == "reset" and not stream:
            _abort(request)
            raise _Aborted
        if mode == "garbage":
            if not stream:
                return web.Response(text=GARBAGE_BODY, content_type="application/json")
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            resp.force_close()
            await resp.prepare(request)
            await resp.write(f"data: {GARBAGE_BODY}\n\n".encode())
            await resp.write_eof()
            return resp

        content: str
        if mode == "non_json_content":
            content = NON_JSON_CONTENT
        elif mode == "schema_invalid":
            content = json.dumps(SCHEMA_INVALID_CONTENT)
        elif stream:
            content = state.chat_reply
        elif state.extraction_reply is not None:
            content = json.dumps(state.extraction_reply)
        else:
            content = json.dumps(build_cards(body))

        model = body.get("model") or "fake-model"
        completion_id = f"chatcmpl-fake-{next(self._ids)}"
        if not stream:
            return web.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content, "refusal": None},
                            "logprobs": None,
                            "finish_reason": state.finish_reason,
                        }
                    ],
                    "usage": _usage(body, content),
                }
            )
        return await self._stream(request, body, mode, state, content, completion_id, model)

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        mode: Mode,
        state: _TargetState,
        content: str,
        completion_id: str,
        model: str,
    ) -> web.StreamResponse:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
            }
            if include_usage:
                data["usage"] = None
            data.update(extra)
            return data

        pieces = _split(content, state.chunks)
        events: list[dict[str, Any]] = [
            chunk(
                [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": piece}
                        if i == 0
                        else {"content": piece},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
            for i, piece in enumerate(pieces)
        ]
        events.append(
            chunk(
                [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": state.finish_reason}]
            )
        )
        if include_usage:
            events.append(chunk([], usage=_usage(body, content)))
        # The fault strikes after a few deltas but before the last one, when possible.
        strike_at = min(MID_STREAM_DELTAS, max(1, len(pieces) - 1))

        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        try:
            for i, event in enumerate(events):
                if i == strike_at and mode == "reset":
                    _abort(request)
                    raise _Aborted
                if i == strike_at and mode == "hang_mid_stream":
                    await self._hang(request, state)
                if i > 0 and mode == "slow" and state.chunk_delay_s > 0:
                    await self._sleep(request, state.chunk_delay_s)
                await resp.write(f"data: {json.dumps(event)}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away mid-stream; nothing left to do
        return resp


# --------------------------------------------------------------------------- HTTP control


class FakeLLMControl:
    """Drive a FakeLLM over HTTP, e.g. one started as a subprocess with ``glia-fake-llm``.

    ``base_url`` may be the server root or its ``/v1`` URL. Plain methods are
    synchronous; the ``a``-prefixed ones are their async twins (use those when the
    server runs in the same event loop, or the blocking call would deadlock it).
    """

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        root = base_url.rstrip("/")
        self.root = root.removesuffix("/v1")
        self.timeout = timeout

    @staticmethod
    def _config_body(target: TargetName, fields: dict[str, Any]) -> dict[str, Any]:
        body = {"target": target, **fields}
        _check_config(body)
        return body

    @staticmethod
    def _query(kind: Kind | None) -> dict[str, str]:
        return {} if kind is None else {"kind": kind}

    def configure(self, target: TargetName = "all", **fields: Any) -> dict[str, Any]:
        """Same fields as :meth:`FakeLLM.configure`; returns the resulting config."""
        with httpx.Client(base_url=self.root, timeout=self.timeout) as client:
            r = client.post("/_fake/config", json=self._config_body(target, fields))
            r.raise_for_status()
            return cast(dict[str, Any], r.json())

    def reset(self) -> None:
        with httpx.Client(base_url=self.root, timeout=self.timeout) as client:
            client.post("/_fake/reset").raise_for_status()

    def requests(self, kind: Kind | None = None) -> list[dict[str, Any]]:
        with httpx.Client(base_url=self.root, timeout=self.timeout) as client:
            r = client.get("/_fake/requests", params=self._query(kind))
            r.raise_for_status()
            return cast(list[dict[str, Any]], r.json())

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll ``/_fake/health`` until the subprocess answers (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with httpx.Client(base_url=self.root, timeout=1.0) as client:
                    if client.get("/_fake/health").status_code == 200:
                        return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake LLM at {self.root} not ready after {timeout}s")
            time.sleep(0.05)

    async def aconfigure(self, target: TargetName = "all", **fields: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.root, timeout=self.timeout) as client:
            r = await client.post("/_fake/config", json=self._config_body(target, fields))
            r.raise_for_status()
            return cast(dict[str, Any], r.json())

    async def areset(self) -> None:
        async with httpx.AsyncClient(base_url=self.root, timeout=self.timeout) as client:
            (await client.post("/_fake/reset")).raise_for_status()

    async def arequests(self, kind: Kind | None = None) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.root, timeout=self.timeout) as client:
            r = await client.get("/_fake/requests", params=self._query(kind))
            r.raise_for_status()
            return cast(list[dict[str, Any]], r.json())


# --------------------------------------------------------------------------- CLI


async def _serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with FakeLLM(host, port) as llm:
        print(f"fake-llm listening on {llm.base_url}", flush=True)
        await stop.wait()


def main(argv: Iterable[str] | None = None) -> None:
    """``glia-fake-llm [--host 127.0.0.1] [--port 8090]``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="glia-fake-llm", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    args = parser.parse_args(None if argv is None else list(argv))
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
