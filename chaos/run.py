"""``make chaos`` / ``python -m chaos.run [--quick] [--seed N]``: Glia's real processes under
concurrent load and a seeded random schedule of overlapping faults; then a checker for
lost and duplicated effects. Exit code 1 when any invariant fails. See chaos/README.md."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python chaos/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aio_pika
import httpx
import jwt

from chaos import history as hist
from chaos.checker import Report, check
from chaos.cluster import Cluster, Teardown, Timeouts
from chaos.history import History
from chaos.load import Caps, Load
from chaos.nemesis import Nemesis
from chaos.schedule import Fault, Plan, make_schedule
from chaos.snapshot import collect, quiesce

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="chaos.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI: ~1 min of faults, no global ones")
    p.add_argument("--seed", type=int, default=None, help="replay this schedule (default: random)")
    p.add_argument("--users", type=int, default=8, help="concurrent users (default 8)")
    p.add_argument("--sessions", type=int, default=2, help="concurrent clients per user")
    p.add_argument("--duration", type=float, default=None, help="seconds of load and faults")
    p.add_argument("--converge-timeout", type=float, default=None, help="bounded wait (s)")
    p.add_argument("--keep", action="store_true", help="keep the database, vhost and logs")
    p.add_argument("--schedule-only", action="store_true", help="print the schedule and exit")
    args = p.parse_args(argv)
    if args.users < 8:
        p.error("--users: at least 8")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 100_000)
    if args.duration is None:
        args.duration = 60.0 if args.quick else 120.0
    if args.converge_timeout is None:
        args.converge_timeout = 75.0 if args.quick else 120.0
    return args


async def poison(
    history: History, url: str, seed: int, duration_s: float, conversations: dict[str, str]
) -> None:
    """Deliberate poison: malformed requests (dead-lettered, and only they may be), and
    well-formed ones naming another user's conversation (they must write nothing)."""
    rng = random.Random(f"{seed}:poison")
    times = sorted(rng.uniform(2.0, duration_s - 2.0) for _ in range(6))
    began = history.now()
    for n, at in enumerate(times):
        await asyncio.sleep(max(0.0, began + at - history.now()))
        forge = n % 2 == 1 and len(conversations) > 1
        if forge:
            conv, owner = rng.choice(sorted(conversations.items()))
            body = json.dumps(
                {
                    "conversation_id": conv,
                    "user_id": owner + "-intruder",
                    "request_id": f"forged-{seed}-{n}",
                    "requested_at": datetime.now(UTC).isoformat(),
                }
            )
        else:
            body = rng.choice(
                (
                    f'{{"chaos_poison": "{seed}-{n}"}}',
                    f"not json: chaos poison {seed}-{n}",
                    f'{{"conversation_id": "{uuid.uuid4()}", "user_id": "", "poison": {n}}}',
                )
            )
        t0 = history.now()
        op = "forge" if forge else "poison"
        connected = False
        try:
            connection = await aio_pika.connect(url, timeout=5)
            connected = True  # from here on the message may have been routed
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange("glia", ensure=False)
                await exchange.publish(
                    aio_pika.Message(body.encode(), content_type="application/json"),
                    routing_key="extraction.requested",
                    mandatory=True,
                    timeout=5,
                )
            history.record("poisoner", op, t0, "ok", {"body": body})
        except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as exc:
            outcome: hist.Outcome = "unknown" if connected else "error"
            history.record("poisoner", op, t0, outcome, {"body": body}, {"exc": repr(exc)})


def token(secret: str, user: str, ttl_s: int = 3 * 3600) -> str:
    """A development token as CONTRACT §2 has it: HS256, ``sub``, ``aud=glia``, ``exp``."""
    now = int(time.time())
    return jwt.encode(
        {"sub": user, "aud": "glia", "iat": now, "exp": now + ttl_s}, secret, algorithm="HS256"
    )


def detect_caps(url: str) -> Caps:
    r = httpx.get(url + "/openapi.json", timeout=10)
    r.raise_for_status()
    return Caps.detect(r.json())


async def drive(
    args: argparse.Namespace, cluster: Cluster, schedule: list[Fault], run_dir: Path
) -> dict[str, Any]:
    # Inside the loop, SIGTERM takes asyncio's orderly Ctrl-C path (cancel, then unwind).
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, os.kill, os.getpid(), signal.SIGINT
    )
    caps = detect_caps(cluster.url("chat-0"))
    print(f"  chat API offers resume: {caps.resume}, cancel: {caps.cancel}")
    users = [f"user-{n:02d}" for n in range(args.users)]
    tokens = {u: token(cluster.jwt_secret, u) for u in users}
    history = History(run_dir / "history.jsonl")
    assert cluster.llm is not None
    load = Load(
        seed=args.seed,
        history=history,
        chat_urls=[cluster.url("chat-0"), cluster.url("chat-1")],
        cards_url=cluster.url("cards-0"),
        tokens=tokens,
        sessions_per_user=args.sessions,
        caps=caps,
        llm=cluster.llm,
    )
    nemesis = Nemesis(cluster, history, schedule)
    print(f"[{history.now():6.1f}s] load and faults for {args.duration:.0f} s")
    try:
        await asyncio.gather(
            load.run(args.duration, drain_s=20.0),
            nemesis.run(),
            poison(
                history,
                cluster.broker_vhost_url(),
                args.seed,
                args.duration,
                load.registry.conversations,
            ),
        )
    finally:
        await nemesis.heal_everything()
    healed = max(nemesis.last_healed, 0.0)
    not_ready = await cluster.wait_all_ready(60.0)
    print(
        f"[{history.now():6.1f}s] faults healed (last at {healed:.1f} s); "
        f"{len(hist.client_ops(hist.load(history.path)))} operations; waiting to converge"
    )
    converged_at, still = await quiesce(cluster, args.converge_timeout)
    converged_s = None if converged_at is None else converged_at - history.began - healed
    print(f"[{history.now():6.1f}s] " + ("converged" if still == [] else f"NOT converged: {still}"))
    if still:
        print(f"  stacks and metrics of every service: {cluster.diagnose()}")
    snap = await collect(cluster, tokens)
    history.close()
    report = check(hist.load(history.path), snap)
    return {
        "report": report,
        "converged_s": converged_s,
        "pending": still,
        "not_ready": not_ready,
        "faults": nemesis.injected,
        "skipped": nemesis.skipped,
        "caps": caps,
        "history": history.path,
    }


def fmt_int(n: int) -> str:
    return f"{n:,}"


def save_results(
    args: argparse.Namespace,
    out: dict[str, Any],
    ok: bool,
    converged_s: float | None,
    wall_s: float,
) -> Path:
    """The history and the figures of the latest run, kept past the run directory."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    mode = "quick" if args.quick else "full"
    kept = RESULTS / f"latest-{mode}-history.jsonl"
    shutil.copyfile(out["history"], kept)
    report: Report = out["report"]
    summary = {
        "seed": args.seed,
        "mode": mode,
        "ok": ok,
        "operations": report.operations,
        "faults": out["faults"],
        "faults_skipped": out["skipped"],
        "lost": report.lost,
        "duplicated": report.duplicated,
        "converged_s": None if converged_s is None else round(max(converged_s, 0.0), 1),
        "wall_s": round(wall_s, 1),
        "caps": {"resume": out["caps"].resume, "cancel": out["caps"].cancel},
        "notes": report.notes,
        "verdicts": [
            {"name": v.name, "ok": v.ok, "figure": v.figure, "evidence": v.evidence}
            for v in report.verdicts
        ],
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    (RESULTS / f"latest-{mode}.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (RESULTS / "runs.jsonl").open("a") as f:
        f.write(json.dumps({k: v for k, v in summary.items() if k != "verdicts"}) + "\n")
    return kept


def summarize(args: argparse.Namespace, out: dict[str, Any], wall_s: float) -> bool:
    report: Report = out["report"]
    converged_s = out["converged_s"]
    print()
    for v in report.verdicts:
        print(f"  {'PASS' if v.ok else 'FAIL'}  {v.name}: {v.figure}")
        for line in v.evidence:
            print(f"          {line}")
    for note in report.notes[:10]:
        print(f"  NOTE  {note}")
    conv_ok = converged_s is not None and not out["not_ready"]
    converge_text = f"{max(converged_s, 0.0):.1f} s" if converged_s is not None else "never"
    print(
        f"  {'PASS' if conv_ok else 'FAIL'}  quiesced after the last fault: {converge_text} "
        f"(bound {args.converge_timeout:.0f} s)"
        + (f"; pending {out['pending']}" if out["pending"] else "")
        + (f"; not ready {out['not_ready']}" if out["not_ready"] else "")
    )
    ok = report.ok and conv_ok
    kept = save_results(args, out, ok, converged_s, wall_s)
    print(f"\n  history: {kept}  wall time {wall_s:.0f} s")
    print(
        f"chaos seed {args.seed}: {fmt_int(report.operations)} operations, "
        f"{out['faults']} faults, lost {report.lost}, duplicated {report.duplicated}, "
        f"converged in {converge_text}" + ("" if ok else " - FAILED")
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    timeouts = Timeouts()
    plan = Plan.for_run(args.quick, args.duration, timeouts.pause_range(args.quick))
    schedule = make_schedule(args.seed, plan)
    mode = "quick" if args.quick else "full"
    again = f"make chaos SEED={args.seed}" + (" QUICK=1" if args.quick else "")
    print(f"chaos ({mode}) seed {args.seed}: {len(schedule)} faults planned ({again} replays it)")
    for f in schedule:
        print("  " + f.describe())
    if args.schedule_only:
        return 0
    began = time.monotonic()
    teardown = Teardown()
    atexit.register(teardown.run)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_dir = Path(tempfile.mkdtemp(prefix=f"glia-chaos-{args.seed}-"))
    old_cwd = os.getcwd()
    os.chdir(run_dir)  # the services read a .env from their working directory
    cluster = Cluster(teardown, run_dir, timeouts)
    cluster.keep = args.keep
    ok = False
    try:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        cluster.create_backends()
        print(f"  database {cluster.database}, vhost {cluster.vhost}, logs in {run_dir}")
        cluster.start()
        (run_dir / "schedule.json").write_text(
            json.dumps([f.to_json() for f in schedule], indent=1)
        )
        out = asyncio.run(drive(args, cluster, schedule, run_dir))
        ok = summarize(args, out, time.monotonic() - began)
    except KeyboardInterrupt:
        print("\ninterrupted: tearing down", file=sys.stderr)
        return 130
    finally:
        teardown.run()
        os.chdir(old_cwd)
        if ok and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"run directory kept: {run_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
