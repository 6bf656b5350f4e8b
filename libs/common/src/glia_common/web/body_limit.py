"""Request bodies over the configured size are refused with 413 before they are read.

A declared Content-Length over the limit is answered at once, without reading a byte
(and before authentication). A body without one (chunked), or one that lies about its
size, is counted as it arrives; the read that passes the limit raises ``BodyTooLarge``,
an HTTP 413 error that the framework answers as a problem, so nothing beyond the limit
is ever buffered.

(Starlette's own RequestBodyLimitMiddleware signals through exceptions that the other
middlewares here would see as errors, and answers in plain text, not a problem.)
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from glia_common.web.problems import problem_response


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes} bytes")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
                break

        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counted_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = BodyTooLarge(self.max_bytes)
        response = problem_response(error.status_code, error.detail)
        await response(scope, receive, send)
