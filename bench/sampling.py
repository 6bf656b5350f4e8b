"""What the bench samples while a window runs (memory, the host's steal time)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self


class PeriodicSampler:
    """Calls ``sample()`` on entering the block, every ``interval_s`` while it runs, and
    once more on leaving it."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        raise NotImplementedError

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.sample()

    async def __aenter__(self) -> Self:
        self.sample()
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()
