"""Event-loop stalls, logged with what held the loop.

A service's event loop serves every request of its process: a callback that runs long
(a blocking call, a big serialization, a garbage-collector pass) delays them all. The
monitor's loop task wakes every ``interval``; a watchdog thread notices when the task is
late past the threshold and, while the stall lasts, samples the loop thread's stack.
When the loop comes back, one ``loop.stalled`` line gives the stall's length, the time
the collector ran during it, and the stack the watchdog saw (the culprit's frames).
Off with ``GLIA_STALL_LOG_MS=0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
import time
import traceback
from typing import Any

from glia_common.telemetry import get_logger

log = get_logger("glia.stalls")

STACK_FRAMES = 12


class StallMonitor:
    def __init__(self, threshold_ms: float) -> None:
        self._threshold_s = threshold_ms / 1000
        # Wake often enough to see a stall of the threshold, but not for nothing: each
        # wake of the watchdog asks the loop thread for the GIL.
        self._interval_s = max(0.01, self._threshold_s / 2)
        self._expected_at = 0.0  # when the loop task should wake next
        self._stack: list[str] | None = None
        self._gc_started = 0.0
        self._gc_s = 0.0  # collector time since the loop task last woke
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._loop_thread = 0

    def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._expected_at = time.monotonic() + self._interval_s
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._beat(), name="stall-monitor")
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._thread is not None:
            self._thread.join(timeout=1)

    def _on_gc(self, phase: str, _: dict[str, Any]) -> None:
        if threading.get_ident() != self._loop_thread:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self._gc_s += time.perf_counter() - self._gc_started

    async def _beat(self) -> None:
        while True:
            self._gc_s = 0.0
            self._stack = None
            self._expected_at = time.monotonic() + self._interval_s
            await asyncio.sleep(self._interval_s)
            late_s = time.monotonic() - self._expected_at
            if late_s >= self._threshold_s:
                log.warning(
                    "loop.stalled",
                    stalled_ms=round(late_s * 1000, 1),
                    gc_ms=round(self._gc_s * 1000, 1),
                    stack=self._stack or "not sampled (the stall ended before the watchdog woke)",
                )

    def _watch(self) -> None:
        while not self._stop.wait(self._interval_s):
            late_s = time.monotonic() - self._expected_at
            if late_s >= self._threshold_s / 2 and self._stack is None:
                frame = sys._current_frames().get(self._loop_thread)
                if frame is not None:
                    # The innermost frames (the code that runs, not the server around
                    # it), without reading source lines: the watchdog holds the GIL.
                    innermost = traceback.StackSummary.extract(
                        traceback.walk_stack(frame), limit=STACK_FRAMES, lookup_lines=False
                    )
                    self._stack = [
                        f"{f.filename}:{f.lineno} in {f.name}" for f in reversed(innermost)
                    ]
