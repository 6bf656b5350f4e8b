"""``python -m bench.turnlock``: what the user's turn lock costs at a turn's begin, taken
in its own round trip (as before) or in the transaction's first (``lock_user_turns``).

The part of a turn's begin that the two differ in - BEGIN with the user scope, the lock,
the usage read, COMMIT - run back to back on a real PostgreSQL, the two ways alternating
in rounds; wall time and this process's CPU per begin, the minimum and the median of the
rounds. One round trip on loopback is below what a full ``make bench`` run resolves.
"""

from __future__ import annotations

import os
import time

import asyncpg

from bench.infra import DEFAULT_ADMIN_URL, DEFAULT_AMQP_URL, Teardown, create_infra
from glia_chat_api.turns.store import TurnStore, lock_user_turns
from glia_common.db import user_connection

USER = "turnlock-probe"
ROUNDS, PER_ROUND, WARMUP = 12, 400, 200


async def measure(url: str) -> dict[str, list[tuple[float, float]]]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)

    async def begin(first_round_trip: bool) -> None:
        first = lock_user_turns(USER) if first_round_trip else ""
        async with user_connection(pool, USER, first=first) as conn:
            store = TurnStore(conn)
            if not first_round_trip:
                await store.lock_turns(USER)
            await store.usage(USER, 60.0)

    rounds: dict[str, list[tuple[float, float]]] = {"own round trip": [], "first round trip": []}
    try:
        for _ in range(WARMUP):
            await begin(False)
            await begin(True)
        for r in range(ROUNDS):
            for way in (False, True) if r % 2 == 0 else (True, False):
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(PER_ROUND):
                    await begin(way)
                rounds["first round trip" if way else "own round trip"].append(
                    (
                        (time.perf_counter() - wall) / PER_ROUND * 1e6,
                        (time.process_time() - cpu) / PER_ROUND * 1e6,
                    )
                )
    finally:
        await pool.close()
    return rounds


def main() -> None:
    import uvloop

    teardown = Teardown()
    try:
        infra = create_infra(
            teardown,
            os.environ.get("BENCH_ADMIN_URL", DEFAULT_ADMIN_URL),
            os.environ.get("BENCH_AMQP_URL", DEFAULT_AMQP_URL),
        )
        for way, figures in uvloop.run(measure(infra.app_url)).items():
            wall = sorted(w for w, _ in figures)
            cpu = sorted(c for _, c in figures)
            print(
                f"lock in its {way}: wall {wall[0]:.0f} / {wall[len(wall) // 2]:.0f} us, "
                f"CPU {cpu[0]:.0f} / {cpu[len(cpu) // 2]:.0f} us per begin (min / median)"
            )
    finally:
        teardown.run()


if __name__ == "__main__":
    main()
