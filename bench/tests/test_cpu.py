"""What the bench reads of the machine's CPUs: the host's steal, second by second."""

from __future__ import annotations

import asyncio

from bench.cpu import TICK, StealTimeline


def test_steal_timeline_finds_the_worst_second_and_when_it_began() -> None:
    timeline = StealTimeline()
    # (seconds, stolen ticks so far): 3 ticks early on, then 40 within 0.8 s from 2.0 s.
    timeline.samples = [(0.0, 100), (0.5, 103), (1.0, 103), (2.0, 103), (2.8, 143), (4.0, 144)]
    stats = timeline.stats()
    tick_ms = 1000 / TICK
    assert stats["stolen_ms"] == round(44 * tick_ms, 1)
    assert stats["max_per_s_ms"] == round(40 * tick_ms, 1)
    assert stats["max_at_s"] == 2.0


def test_steal_timeline_samples_while_the_block_runs() -> None:
    async def run() -> StealTimeline:
        async with StealTimeline(interval_s=0.01) as timeline:
            await asyncio.sleep(0.1)
        return timeline

    timeline = asyncio.run(run())
    assert len(timeline.samples) >= 5
    stats = timeline.stats()
    assert stats["stolen_ms"] >= 0 and stats["max_per_s_ms"] <= stats["stolen_ms"]
