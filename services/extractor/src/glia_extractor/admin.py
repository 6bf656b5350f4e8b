"""glia-admin: operator CLI for extraction.

  glia-admin runs (--conversation ID | --request-id RID | --trace-id TID) [--json]
  glia-admin reextract (--conversation ID | --user SUB | --all)
  glia-admin dlq list [--limit N] [--json]
  glia-admin dlq replay [--limit N]

It connects as the operator role (GLIA_DATABASE_OPERATOR_URL; unset, the app role of
GLIA_DATABASE_URL) and reaches other users' rows only through the schema's narrow lookup
functions, then reads runs under each owner's scope. It refuses to run as a role that
row-level security does not hold (a superuser, BYPASSRLS, a table owner).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
from sqlalchemy import func, select, text

from glia_common.db import (
    UnsafeDatabaseRole,
    create_engine,
    create_sessionmaker,
    refuse_privileged_roles,
    system_transaction,
    user_transaction,
)
from glia_common.messaging import (
    DEAD_LETTER_QUEUE_NAME,
    EXCHANGE_NAME,
    EXTRACTION_ROUTING_KEY,
    build_broker,
    declare_topology,
)
from glia_extractor.extraction.runs import RunRecords
from glia_extractor.reconciler import request_extraction
from glia_extractor.settings import ExtractorSettings

RUN_COLUMNS = (
    "started_at",
    "status",
    "provider",
    "model",
    "latency_ms",
    "fallback_used",
    "failure_class",
    "attempt",
    "card_count",
    "request_id",
    "trace_id",
    "source_hash",
)
# Headers RabbitMQ adds on dead-lettering; a replay starts the message afresh.
_DEATH_HEADERS = (
    "x-death",
    "x-delivery-count",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
)


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


async def _owners(
    settings: ExtractorSettings, args: argparse.Namespace
) -> list[tuple[uuid.UUID, str]]:
    engine = create_engine(settings, url=settings.operator_database_url, pool_size=1)
    try:
        sm = create_sessionmaker(engine)
        async with system_transaction(sm) as session:
            if getattr(args, "conversation", None):
                cid = uuid.UUID(args.conversation)
                owner = (await session.execute(select(func.glia_conversation_owner(cid)))).scalar()
                return [(cid, owner)] if owner else []
            if getattr(args, "request_id", None) or getattr(args, "trace_id", None):
                rows = await session.execute(
                    text("SELECT conversation_id, user_id FROM glia_conversations_of_runs(:r, :t)"),
                    {"r": args.request_id, "t": args.trace_id},
                )
                return [(r[0], r[1]) for r in rows]
            rows = await session.execute(
                text("SELECT conversation_id, user_id FROM glia_conversations_for_reextract(:u)"),
                {"u": getattr(args, "user", None)},
            )
            return [(r[0], r[1]) for r in rows]
    finally:
        await engine.dispose()


async def cmd_runs(settings: ExtractorSettings, args: argparse.Namespace) -> int:
    owners = await _owners(settings, args)
    if not owners:
        print("no matching conversation", file=sys.stderr)
        return 1
    engine = create_engine(settings, url=settings.operator_database_url, pool_size=1)
    out: list[dict[str, Any]] = []
    try:
        sm = create_sessionmaker(engine)
        for cid, user_id in owners:
            async with user_transaction(sm, user_id, read_only=True) as session:
                for run in await RunRecords(session).for_conversation(cid):
                    if args.request_id and run.request_id != args.request_id:
                        continue
                    if args.trace_id and run.trace_id != args.trace_id:
                        continue
                    row = {c: getattr(run, c) for c in RUN_COLUMNS}
                    row |= {
                        "run_id": run.id,
                        "conversation_id": cid,
                        "user_id": user_id,
                        "error": run.error,
                        "finished_at": run.finished_at,
                    }
                    out.append(row)
    finally:
        await engine.dispose()
    if args.json:
        print(json.dumps(out, default=str, indent=2))
    else:
        print(_table(out, RUN_COLUMNS))
        print("\nPaste a trace_id into Jaeger's search to see the whole request.")
    return 0


async def cmd_reextract(settings: ExtractorSettings, args: argparse.Namespace) -> int:
    owners = await _owners(settings, args)
    broker = build_broker(settings, logger=None)
    await broker.connect()
    try:
        await declare_topology(broker, operator=True)
        for cid, user_id in owners:
            await request_extraction(
                broker, cid, user_id, f"admin-{uuid.uuid4().hex[:12]}", replay=True
            )
    finally:
        await broker.stop()
    print(f"requested extraction of {len(owners)} conversation(s)")
    return 0


async def cmd_dlq(settings: ExtractorSettings, args: argparse.Namespace) -> int:
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.get_queue(DEAD_LETTER_QUEUE_NAME, ensure=True)
        exchange = await channel.get_exchange(EXCHANGE_NAME, ensure=True)
        listed: list[dict[str, Any]] = []
        replayed = 0
        for _ in range(args.limit):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            headers = dict(message.headers or {})
            death = headers.get("x-death")
            first = death[0] if isinstance(death, list) and death else None
            entry = {
                "message_id": message.message_id,
                "reason": first.get("reason") if isinstance(first, dict) else None,
                "deliveries": headers.get("x-delivery-count"),
                "body": message.body.decode("utf-8", "replace")[:500],
            }
            if args.action == "replay":
                fresh = {k: v for k, v in headers.items() if k not in _DEATH_HEADERS}
                await exchange.publish(
                    aio_pika.Message(
                        message.body,
                        headers=fresh,
                        content_type=message.content_type or "application/json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=message.message_id,
                        correlation_id=message.correlation_id,
                    ),
                    routing_key=EXTRACTION_ROUTING_KEY,
                    mandatory=True,
                )
                await message.ack()
                replayed += 1
            listed.append(entry)
        # Listing only peeks: closing the channel returns unacked messages to the DLQ.
        await channel.close()
    finally:
        await connection.close()
    if args.action == "replay":
        print(f"replayed {replayed} message(s) to {EXCHANGE_NAME}/{EXTRACTION_ROUTING_KEY}")
    elif args.json:
        print(json.dumps(listed, default=str, indent=2))
    else:
        print(
            _table(listed, ("message_id", "reason", "deliveries", "body"))
            if listed
            else "the DLQ is empty"
        )
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glia-admin", description="Operate Glia's extraction.")
    sub = p.add_subparsers(dest="command", required=True)

    runs = sub.add_parser("runs", help="list extraction runs")
    which = runs.add_mutually_exclusive_group(required=True)
    which.add_argument("--conversation", help="conversation id")
    which.add_argument("--request-id", help="request id of the chat request (X-Request-ID)")
    which.add_argument("--trace-id", help="W3C trace id (32 hex digits)")
    runs.add_argument("--json", action="store_true")

    re = sub.add_parser("reextract", help="extract again, even if the cards are current")
    target = re.add_mutually_exclusive_group(required=True)
    target.add_argument("--conversation")
    target.add_argument("--user")
    target.add_argument("--all", action="store_true")

    dlq = sub.add_parser("dlq", help="inspect or replay the dead-letter queue")
    dlq.add_argument("action", choices=["list", "replay"])
    dlq.add_argument("--limit", type=int, default=100)
    dlq.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    for name in ("conversation",):
        value = getattr(args, name, None)
        if value:
            try:
                uuid.UUID(value)
            except ValueError:
                parser().error(f"--{name} must be a UUID")
    settings = ExtractorSettings()
    command = {"runs": cmd_runs, "reextract": cmd_reextract, "dlq": cmd_dlq}[args.command]
    if args.command != "dlq":  # the DLQ commands touch no database
        url = settings.operator_database_url
        setting = (
            "GLIA_DATABASE_OPERATOR_URL" if settings.database_operator_url else "GLIA_DATABASE_URL"
        )
        try:
            asyncio.run(refuse_privileged_roles("glia-admin", {setting: url}, wait_s=0))
        except UnsafeDatabaseRole as exc:
            print(f"glia-admin: {exc}", file=sys.stderr)
            raise SystemExit(2) from exc
    raise SystemExit(asyncio.run(command(settings, args)))


if __name__ == "__main__":
    main()
