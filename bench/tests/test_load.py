"""The load generator's loops and its own pauses."""

from __future__ import annotations

import asyncio
import gc
import itertools
from time import perf_counter

from bench.load import GeneratorGc, TurnSample, closed_loop


def test_desynced_clients_are_spread_over_one_request_time() -> None:
    """Clients started at once, served alike, stay in step; desync spreads them out."""
    service_s, clients = 0.2, 4

    def second_sends(desync: bool) -> list[float]:
        sends: dict[int, float] = {}

        async def request(c: int, n: int) -> TurnSample:
            sample = TurnSample(sent=perf_counter())
            if n == 1:
                sends[c] = sample.sent
            await asyncio.sleep(service_s)
            sample.end, sample.terminal = perf_counter(), "done"
            return sample

        asyncio.run(
            closed_loop(
                clients, 0.0, 2.5 * service_s, request, ok=lambda s: s.ok, kind=str, desync=desync
            )
        )
        return sorted(sends.values())

    in_step, spread = second_sends(False), second_sends(True)
    assert in_step[-1] - in_step[0] < service_s / 8
    gaps = [b - a for a, b in itertools.pairwise(spread)]
    # c / clients of the first answer's time apart: 50 ms here
    assert all(service_s / clients / 2 < g < service_s / clients * 2 for g in gaps), gaps


def test_the_generators_collections_are_counted_and_its_old_objects_left_out() -> None:
    kept = [[i] for i in range(50_000)]
    try:
        with GeneratorGc() as watch:
            assert gc.get_freeze_count() >= len(kept)  # what existed is no longer scanned
            gc.collect()
            gc.collect()
            inside = len(watch.pauses_s)
        gc.collect()  # after the window: not counted
        stats = watch.stats()
        assert stats["collections"] == inside >= 2
        assert stats["total_ms"] > 0 and stats["max_ms"] <= stats["total_ms"]
    finally:
        gc.unfreeze()


def test_what_survives_an_older_generations_collection_is_frozen_too() -> None:
    gc.unfreeze()
    try:
        with GeneratorGc():
            frozen = gc.get_freeze_count()
            made = [[i] for i in range(20_000)]  # the window's samples: kept, tracked
            gc.collect(1)
            assert gc.get_freeze_count() >= frozen + len(made)  # not scanned again
            young = [[i] for i in range(100)]
            gc.collect(0)  # the youngest generation's collections freeze nothing
            assert gc.get_freeze_count() < frozen + len(made) + len(young)
    finally:
        gc.unfreeze()
