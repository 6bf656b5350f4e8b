"""X-Request-ID on every response: the caller's when sane, else a new one.

A pure ASGI middleware (no BaseHTTPMiddleware), so streamed responses pass through
untouched. The id is bound to the log context for the whole request.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glia_common.telemetry import get_logger
from glia_common.web.problems import internal_error_response

log = get_logger("glia.http")

REQUEST_ID_HEADER = "x-request-id"
_SANE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}$")

request_id_var: ContextVar[str | None] = ContextVar("glia_request_id", default=None)


def current_request_id() -> str:
    return request_id_var.get() or "-"


def sanitize_request_id(value: str | None) -> str:
    if value and _SANE.match(value):
        return value
    # 32 random hex digits, as a UUID's hex, without building a UUID on every request.
    return secrets.token_hex(16)


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent: str | None = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                sent = value.decode("latin-1")
                break
        request_id = sanitize_request_id(sent)
        token = request_id_var.set(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", ()) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Answer unexpected errors here, inside the request's context, so even a 500
            # is a problem detail that carries the request id.
            log.exception("http.unhandled_error")
            if started:
                raise
            response = internal_error_response()
            await response(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            request_id_var.reset(token)
