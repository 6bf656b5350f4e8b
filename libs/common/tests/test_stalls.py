"""A stalled event loop is logged with its length and the code that held it."""

from __future__ import annotations

import asyncio
import gc
import time

from structlog.testing import capture_logs

from glia_common.stalls import StallMonitor


def hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # what a blocking call in a coroutine does to every request


async def test_a_stall_is_logged_with_the_stack_that_held_the_loop() -> None:
    monitor = StallMonitor(threshold_ms=100)
    with capture_logs() as logs:
        monitor.start()
        await asyncio.sleep(0.1)
        hold_the_loop(0.4)
        await asyncio.sleep(0.1)
        await monitor.stop()
    stalls = [e for e in logs if e["event"] == "loop.stalled"]
    assert len(stalls) == 1
    assert 300 <= stalls[0]["stalled_ms"] < 1000
    assert any("hold_the_loop" in frame for frame in stalls[0]["stack"])


async def test_collector_time_during_a_stall_is_named() -> None:
    monitor = StallMonitor(threshold_ms=50)
    garbage = [[i] for i in range(300_000)]
    with capture_logs() as logs:
        monitor.start()
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        while time.perf_counter() - started < 0.1:
            gc.collect()
        await asyncio.sleep(0.05)
        await monitor.stop()
    del garbage
    stalls = [e for e in logs if e["event"] == "loop.stalled"]
    assert stalls and stalls[0]["gc_ms"] >= 50


async def test_a_busy_but_responsive_loop_logs_nothing() -> None:
    monitor = StallMonitor(threshold_ms=100)
    with capture_logs() as logs:
        monitor.start()
        for _ in range(20):
            hold_the_loop(0.01)
            await asyncio.sleep(0.01)
        await monitor.stop()
    assert [e for e in logs if e["event"] == "loop.stalled"] == []
