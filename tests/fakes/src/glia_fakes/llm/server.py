"""The fake server itself (aiohttp, in the current event loop): the OpenAI routes with
their faults, and the ``/_fake/*`` control routes."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import socket
import struct
import time
from dataclasses import replace
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from glia_fakes.llm.faults import (
    GARBAGE_BODY,
    HTTP_ERRORS,
    KINDS,
    MID_STREAM_DELTAS,
    NON_JSON_CONTENT,
    SCHEMA_INVALID_CONTENT,
    UNSET,
    Fault,
    FinishReason,
    Kind,
    Mode,
    TargetName,
    TargetState,
    Unset,
    check_config,
)
from glia_fakes.llm.replies import build_cards, error_body, split_text, usage_of


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
        self._targets: dict[Kind, TargetState] = {}
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
        check_config(given)
        kinds: tuple[Kind, ...] = KINDS if target == "all" else (target,)
        shared = Fault(mode, count) if mode is not None else None
        for kind in kinds:
            state = self._targets[kind]
            if shared is not None:
                state.fault = shared
            elif count is not None:
                state.fault = Fault(state.fault.mode, count)
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
            if not isinstance(extraction_reply, Unset):
                state.extraction_reply = copy.deepcopy(extraction_reply)

    def reset(self) -> None:
        """Everything back to defaults and the request log emptied (between tests)."""
        self._targets = {kind: TargetState() for kind in KINDS}
        self._log = []

    def requests(self, kind: Kind | None = None) -> list[dict[str, Any]]:
        """Completion requests received so far (failed ones too), oldest first.

        Each is ``{"kind": "chat"|"extraction", "model": ..., "body": <request JSON>}``.
        """
        return [copy.deepcopy(r) for r in self._log if kind is None or r["kind"] == kind]

    def config(self) -> dict[str, dict[str, Any]]:
        """Current settings per target, as ``GET /_fake/config`` shows them."""
        return {kind: state.snapshot() for kind, state in self._targets.items()}

    def _take(self, kind: Kind) -> tuple[Mode, TargetState]:
        """The mode for this request (consuming one ``count``) and a settings snapshot."""
        state = self._targets[kind]
        fault = state.fault
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                for other in self._targets.values():
                    if other.fault is fault:
                        other.fault = Fault()
        return fault.mode, replace(state, fault=Fault(fault.mode))

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
            check_config(fields)
            if "extraction_reply" not in fields:
                fields["extraction_reply"] = UNSET
            self.configure(**fields)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            return web.json_response(
                error_body(str(exc), "invalid_request_error", None), status=400
            )
        return web.json_response(self.config())

    async def _post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(self.config())

    async def _get_requests(self, request: web.Request) -> web.Response:
        kind = request.query.get("kind")
        if kind is not None and kind not in KINDS:
            return web.json_response(
                error_body("kind must be chat or extraction", "invalid_request_error", None),
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

    async def _hang(self, request: web.BaseRequest, state: TargetState) -> None:
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
                error_body("the body must be a JSON object", "invalid_request_error", None),
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
        state: TargetState,
    ) -> web.StreamResponse:
        if mode in HTTP_ERRORS:
            status, type_, code, message = HTTP_ERRORS[mode]
            return web.json_response(error_body(message, type_, code), status=status)
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
                    "usage": usage_of(body, content),
                }
            )
        return await self._stream(request, body, mode, state, content, completion_id, model)

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        mode: Mode,
        state: TargetState,
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

        pieces = split_text(content, state.chunks)
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
            events.append(chunk([], usage=usage_of(body, content)))
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
