"""Bounds on Server-Sent Event streams: every stream ends by its token's expiry or a
maximum lifetime, whichever comes first, with a last event that tells the client to
reconnect (with a fresh token). A stream cannot outlive the credential that opened it,
and a client cannot hold a connection forever."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

from fastapi.sse import ServerSentEvent

from glia_common.auth import Principal

ExpiryReason = Literal["token_expired", "max_lifetime"]


def stream_deadline(principal: Principal, max_lifetime_s: float) -> tuple[float, ExpiryReason]:
    """When (on the monotonic clock) a stream opened by ``principal`` must end, and why."""
    now = time.monotonic()
    deadline, reason = now + max_lifetime_s, "max_lifetime"
    exp = principal.claims.get("exp")
    if isinstance(exp, int | float):
        token_left = float(exp) - time.time()
        if now + token_left < deadline:
            deadline, reason = now + max(token_left, 0.0), "token_expired"
    return deadline, reason  # type: ignore[return-value]


async def end_by(
    events: AsyncIterator[ServerSentEvent],
    deadline: float,
    expired: Callable[[], ServerSentEvent],
) -> AsyncIterator[ServerSentEvent]:
    """``events`` until they end or the deadline passes; then ``expired()``, last."""
    iterator = aiter(events)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                yield expired()
                return
            try:
                async with asyncio.timeout(remaining):
                    event = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield expired()
                return
            yield event
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
