"""``python -m bench.inprocess``: CPU per card read, with no HTTP server and no load
generator - the ASGI app called directly, on a real PostgreSQL.

The closed-loop windows of ``make bench`` move by up to a third between runs on a shared
host, because the host's speed drifts between the windows being compared. This probe
takes the drift out of a single comparison: it calls one app in-process from a few
concurrent tasks and reports the CPU time of its own process per request (the app, its
middlewares and the driver; uvicorn's HTTP parsing, which every app pays alike, is not
in it), the minimum over repetitions. Use it to see what a change to the card route
costs or saves before a full run; ``--app route`` measures the bare Starlette baseline
(bench/baselines/cards_route.py) the same way.

Run: ``python -m bench.inprocess [--app glia|route] [--requests N] [--reps R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench.infra import DEFAULT_ADMIN_URL, DEFAULT_AMQP_URL, Infra, Teardown, create_infra
from glia_common.auth import mint_token
from glia_common.settings import AuthSettings

Asgi = Callable[..., Coroutine[Any, Any, None]]
KINDS = ["summary", "fact", "fact", "task", "decision", "question"] * 2  # 12 cards


async def seed(infra: Infra, user: str) -> uuid.UUID:
    """One conversation with the cards a finished extraction leaves."""
    from glia_e2e.seeding import seed_conversation
    from glia_extractor.extraction.store import ExtractionStore
    from glia_extractor.extraction.types import CardDraft

    cid, _ = await seed_conversation(
        infra.app_url, user, ["We decided to ship on Friday.", "Who writes the notes?"]
    )
    conn = await asyncpg.connect(infra.app_url)
    try:
        store = ExtractionStore(conn)
        async with store.transaction_as(user):
            complete = await conn.fetchval(
                "SELECT complete_message_count FROM conversations WHERE id = $1", cid
            )
            await store.replace(
                conversation_id=cid,
                user_id=user,
                source_hash="inprocess",
                run_id=uuid.uuid4(),
                origin="fallback",
                cards=[
                    CardDraft(k, f"{k} {i}", f"body of card {i} " * 5, ())
                    for i, k in enumerate(KINDS)
                ],
                source_message_count=complete,
                run={
                    "latency_ms": 0,
                    "fallback_used": True,
                    "failure_class": "not_configured",
                    "error": None,
                },
            )
    finally:
        await conn.close()
    return cast(uuid.UUID, cid)


def load_app(which: str) -> Asgi:
    if which == "route":
        from bench.baselines.cards_route import app as route

        return cast(Asgi, route)
    from glia_card_query.main import create_app

    return cast(Asgi, create_app())


class Lifespan:
    """Runs the app's lifespan around the measurement, as uvicorn would."""

    def __init__(self, app: Asgi) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self.task = asyncio.create_task(self.app(scope, self.inbox.get, self.outbox.put))
        await self.inbox.put({"type": "lifespan.startup"})
        answer = await self.outbox.get()
        if answer["type"] != "lifespan.startup.complete":
            raise SystemExit(f"the app did not start: {answer}")

    async def __aexit__(self, *exc: object) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        assert self.task is not None
        await self.task


def http_scope(query: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/cards",
        "raw_path": b"/v1/cards",
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8001),
        "state": {},
    }


async def no_body() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def measure(
    app: Asgi, query: bytes, headers: list[tuple[bytes, bytes]], args: Any
) -> dict[str, Any]:
    """Minimum CPU microseconds per request over ``args.reps`` repetitions."""

    async def request() -> int:
        status = 0

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(http_scope(query, headers), no_body, send)
        return status

    async def worker(count: int, statuses: set[int]) -> None:
        for _ in range(count):
            statuses.add(await request())

    statuses: set[int] = set()
    await worker(args.warmup, statuses)
    per_task = args.requests // args.concurrency
    samples = []
    for _ in range(args.reps):
        cpu0 = time.process_time()
        await asyncio.gather(*(worker(per_task, statuses) for _ in range(args.concurrency)))
        samples.append((time.process_time() - cpu0) / (per_task * args.concurrency) * 1e6)
    return {
        "cpu_us_min": round(min(samples), 1),
        "cpu_us_all": [round(s) for s in samples],
        "statuses": sorted(statuses),
    }


async def run(args: argparse.Namespace, infra: Infra, secret: str) -> dict[str, Any]:
    user = f"inprocess-{uuid.uuid4().hex[:8]}"
    cid = await seed(infra, user)
    token = mint_token(AuthSettings(_env_file=None, jwt_secret=secret), user, 3600)
    app = load_app(args.app)
    query = f"conversation_id={cid}".encode()
    auth = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]
    results: dict[str, Any] = {}
    async with Lifespan(app):
        first: dict[str, Any] = {}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                first.update({k.decode(): v.decode() for k, v in message["headers"]})

        await app(http_scope(query, auth), no_body, capture)
        etag = first["etag"].encode()
        results["200"] = await measure(app, query, auth, args)
        results["304"] = await measure(app, query, [*auth, (b"if-none-match", etag)], args)
    for status, figure in results.items():
        if figure["statuses"] != [int(status)]:
            raise SystemExit(f"expected only {status}, got {figure['statuses']}")
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.inprocess", description=__doc__.splitlines()[0])
    p.add_argument("--app", choices=("glia", "route"), default="glia")
    p.add_argument("--requests", type=int, default=600, help="per repetition (default 600)")
    p.add_argument("--reps", type=int, default=15, help="repetitions; the minimum is reported")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", DEFAULT_ADMIN_URL))
    p.add_argument("--amqp-url", default=os.environ.get("BENCH_AMQP_URL", DEFAULT_AMQP_URL))
    args = p.parse_args(argv)
    teardown = Teardown()
    try:
        infra = create_infra(teardown, args.admin_url, args.amqp_url)
        secret = secrets.token_urlsafe(32)
        os.environ.update(
            GLIA_DATABASE_URL=infra.app_url,
            GLIA_AMQP_URL=infra.amqp_url,
            GLIA_JWT_SECRET=secret,
            GLIA_LOG_FORMAT="json",
            GLIA_STALL_LOG_MS="0",
        )
        # The access log is part of what a request costs: it is written, to nowhere.
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
        import uvloop

        results = uvloop.run(run(args, infra, secret))
        sys.stderr = sys.__stderr__
        for status, figure in results.items():
            print(f"{args.app} {status}: {figure['cpu_us_min']} us CPU per request "
                  f"(min of {args.reps}; all: {figure['cpu_us_all']})")  # fmt: skip
    finally:
        sys.stderr = sys.__stderr__
        teardown.run()


if __name__ == "__main__":
    main()
