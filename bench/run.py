"""``make bench`` / ``python -m bench.run [--quick]``: Glia's real processes under load,
each figure next to a bare baseline measured in the same run. See bench/README.md."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from bench import cards, chat, decoupling, extraction, memory, scaleout, soak
from bench.context import Ctx, Knobs
from bench.cpu import background_cores
from bench.infra import (
    DEFAULT_ADMIN_URL,
    DEFAULT_AMQP_URL,
    REPO,
    Infra,
    Processes,
    Teardown,
    create_infra,
    free_port,
    service_env,
)
from bench.load import new_session
from bench.profile import Profiler, find_py_spy
from bench.report import code_fingerprint, evaluate, machine, table
from glia_e2e.processes import Process

PHASES = ("chat", "extraction", "cards", "decoupling")
QUIET_CORES = 0.3  # busy cores below which the machine counts as idle before a run
FOREIGN_CORES = 0.5  # other work inside a window above which its phase is repeated


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short runs (< 2 min in all)")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    p.add_argument(
        "--conversations", type=int, default=None, help="extraction burst (2000; quick: 200)"
    )
    p.add_argument(
        "--loop-concurrency", type=int, default=4, help="workers of the asyncpg loop baseline"
    )
    p.add_argument(
        "--only", default=",".join(PHASES), help="comma-separated subset of " + ",".join(PHASES)
    )
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample each measured process with py-spy (figures then perturbed; see README)",
    )
    p.add_argument("--py-spy", default=None, help="py-spy executable (default: PATH, /tmp/pyspy)")
    p.add_argument(
        "--retries",
        type=int,
        default=None,
        help="repeat a phase whose windows saw other work (> 0.5 cores) up to N times "
        "(default 1; quick: 0)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for the machine to be idle (< 0.3 busy cores)",
    )
    p.add_argument(
        "--soak",
        type=float,
        default=None,
        metavar="S",
        help="instead of the four parts: all three services at half of the machine for S seconds, "
        "memory sampled every 10 s, latencies per minute (not in CI)",
    )
    p.add_argument(
        "--scale-out",
        action="store_true",
        help="instead of the four parts: chat and extraction with 2 processes next to 1",
    )
    p.add_argument(
        "--tails",
        type=int,
        default=None,
        metavar="N",
        help="instead of the four parts: the card-read p99 at 1/2 and 1/4 of Glia's maximum, "
        "Glia and the bare route in turns, N rounds (after the extraction part)",
    )
    p.add_argument("--admin-url", default=os.environ.get("BENCH_ADMIN_URL", DEFAULT_ADMIN_URL))
    p.add_argument("--amqp-url", default=os.environ.get("BENCH_AMQP_URL", DEFAULT_AMQP_URL))
    args = p.parse_args(argv)
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.only) - set(PHASES)
    if unknown:
        p.error(f"unknown phases: {sorted(unknown)}")
    if "cards" in args.only and "extraction" not in args.only:
        p.error("cards reads the conversations extracted by the extraction phase")
    if not 1 <= args.clients <= 1024:
        p.error("--clients must be 1..1024")
    if sum((args.soak is not None, args.scale_out, args.tails is not None)) > 1:
        p.error("--soak, --scale-out and --tails are separate runs")
    if args.tails is not None and not 1 <= args.tails <= 20:
        p.error("--tails must be 1..20")
    if args.soak is not None and not 30 <= args.soak <= 24 * 3600:
        p.error("--soak must be 30..86400 seconds")
    if args.scale_out and args.quick and args.conversations is None:
        args.conversations = 1000  # a burst of 200 is over in under a second: all noise
    if args.retries is None:
        args.retries = 0 if args.quick else 1
    args.retries = max(0, min(args.retries, 3))
    return args


BEGAN = time.perf_counter()


def elapsed() -> str:
    return f"{time.perf_counter() - BEGAN:5.0f} s"


async def wait_quiet(max_s: float) -> float:
    """Wait (at most ``max_s``) until the machine is idle; the busy cores last seen."""
    busy = await asyncio.to_thread(background_cores, 2.0)
    deadline = time.monotonic() + max_s
    while busy >= QUIET_CORES and time.monotonic() < deadline:
        busy = await asyncio.to_thread(background_cores, 5.0)
    return busy


async def phase(
    ctx: Ctx, name: str, run: Callable[[], Awaitable[dict[str, Any]]], retries: int
) -> dict[str, Any]:
    """Run a phase; repeat it (up to ``retries`` times) when other work on the machine
    took more than FOREIGN_CORES during one of its windows."""
    result: dict[str, Any] = {}
    for attempt in range(retries + 1):
        start = len(ctx.windows)
        result = await run()
        windows = ctx.windows[start:]
        label, worst = max(
            ((lbl, c.get("not the bench", 0.0)) for lbl, c in windows),
            key=lambda kv: kv[1],
            default=("-", 0.0),
        )
        if worst <= FOREIGN_CORES or attempt == retries:
            return result
        ctx.details.setdefault("repeated_phases", []).append(
            {
                "phase": name,
                "attempt": attempt + 1,
                "window": label,
                "foreign_cores": worst,
                "discarded": result,
            }
        )
        print(
            f"    other work took {worst} cores during '{label}': "
            f"waiting for a quiet machine, then repeating {name}"
        )
        await wait_quiet(180.0)
    return result


async def bench(args: argparse.Namespace, infra: Infra, procs: Processes, run_dir: Path) -> Ctx:
    # Inside the loop, SIGTERM takes asyncio's orderly Ctrl-C path (cancel, then unwind).
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, os.kill, os.getpid(), signal.SIGINT
    )
    knobs = Knobs.make(args.quick, args.clients, args.conversations, args.loop_concurrency)
    jwt_secret = secrets.token_urlsafe(32)

    default_run = args.soak is None and not args.scale_out and args.tails is None
    fake_port, chat_port, relay_port = free_port(), free_port(), free_port()
    fake = procs.make(
        "fake-llm",
        ["glia-fake-llm", "--port", str(fake_port)],
        service_env(infra, jwt_secret),
        fake_port,
        wait_path="/_fake/health",
    )
    llm_env = {"GLIA_LLM_BASE_URL": f"http://127.0.0.1:{fake_port}/v1", "GLIA_LLM_API_KEY": "bench"}
    glia_chat = procs.make(
        "glia-chat-api",
        ["glia-chat-api"],
        service_env(infra, jwt_secret, GLIA_HTTP_PORT=str(chat_port), **llm_env),
        chat_port,
        wait_path="/readyz",
    )
    relay = procs.make(
        "relay",
        [
            "uvicorn",
            "bench.baselines.relay:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(relay_port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        service_env(infra, jwt_secret, **llm_env),
        relay_port,
    )
    await asyncio.to_thread(
        procs.start, *((fake, glia_chat, relay) if default_run else (fake, glia_chat))
    )

    admin = await asyncpg.connect(infra.admin_url)
    app_pool = await asyncpg.create_pool(infra.app_url, min_size=1, max_size=4)
    session = new_session()
    ctx = Ctx(infra, procs, knobs, jwt_secret, run_dir, fake, session, admin, app_pool)
    if args.profile:
        py_spy = find_py_spy(args.py_spy)
        if py_spy is None:
            raise SystemExit("--profile needs py-spy: pip install --target /tmp/pyspy py-spy")
        ctx.profiler = Profiler(py_spy, run_dir / "profiles")
    pg_version = await admin.fetchval("SHOW server_version")
    ctx.memory_idle(glia_chat.name, relay.name)
    try:
        if args.soak is not None:
            print(f"[{elapsed()}] soak: the three services, half the machine, {args.soak:.0f} s")
            ctx.results["soak"] = await soak.run(ctx, glia_chat.url, args.soak)
        elif args.scale_out:
            print(f"[{elapsed()}] scale-out: chat and extraction, 2 processes next to 1")
            ctx.results["scale_out"] = await phase(
                ctx, "scale-out", lambda: scaleout.run(ctx, glia_chat), args.retries
            )
        elif args.tails is not None:
            print(f"[{elapsed()}] extraction (the conversations to read), then card-read tails")
            ctx.results["extraction"] = await extraction.run(ctx)
            ctx.results["tails"] = await cards.tails(ctx, args.tails)
        else:
            await parts(args, ctx, glia_chat, relay)
    finally:
        await session.close()
        await app_pool.close()
        await admin.close()
    ctx.results["machine"] = machine(pg_version)
    return ctx


async def parts(args: argparse.Namespace, ctx: Ctx, glia_chat: Process, relay: Process) -> None:
    """The default run: the four parts (those of ``--only``), then the memory figures."""
    rate = 20.0
    if "chat" in args.only:
        print(f"[{elapsed()}] chat turns (glia-chat-api vs bare relay)")
        ctx.results["chat"] = await phase(
            ctx, "chat", lambda: chat.run(ctx, glia_chat.url, relay.url), args.retries
        )
        rate = ctx.results["chat"]["half_load_rate"]["value"]
    if "extraction" in args.only:
        print(f"[{elapsed()}] extraction (glia-extractor, rules vs asyncpg loop)")
        await ctx.wait_outbox_drained()
        ctx.results["extraction"] = await phase(
            ctx, "extraction", lambda: extraction.run(ctx), args.retries
        )
    if "cards" in args.only:
        print(f"[{elapsed()}] card reads (glia-card-query vs bare route)")
        ctx.results["cards"] = await phase(ctx, "cards", lambda: cards.run(ctx), args.retries)
    if "decoupling" in args.only:
        print(f"[{elapsed()}] decoupling (extraction LLM at once vs after 10 s)")
        ctx.results["decoupling"] = await phase(
            ctx,
            "decoupling",
            # A quarter of the chat maximum (half of half load): see decoupling.py.
            lambda: decoupling.run(ctx, glia_chat.url, rate / 2),
            args.retries,
        )
    ctx.results["memory"] = memory.figures(ctx.details.get("memory", {}))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    teardown = Teardown()
    atexit.register(teardown.run)
    # SIGTERM behaves as Ctrl-C: unwind, then tear everything down.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    run_dir = Path(tempfile.mkdtemp(prefix="glia-bench-"))
    old_cwd = os.getcwd()
    # The services read a .env from their working directory: give them an empty one.
    os.chdir(run_dir)
    ok = False
    ctx: Ctx | None = None
    background = 0.0
    code_at_start = code_fingerprint()
    try:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        background = background_cores()
        deadline = time.monotonic() + args.wait_quiet
        while background >= QUIET_CORES and time.monotonic() < deadline:
            print(f"  the machine is busy ({background} cores): waiting for it to be quiet")
            background = background_cores(5.0)
        if background >= QUIET_CORES:
            print(
                f"  WARNING: {background} cores busy before the bench started: figures will "
                "be lower and noisier than on a quiet machine"
            )
        print(f"bench ({'quick' if args.quick else 'full'}): fresh database and vhost ...")
        infra = create_infra(teardown, args.admin_url, args.amqp_url)
        print(f"  database {infra.database}, vhost {infra.vhost}, logs in {run_dir}")
        procs = Processes(teardown, run_dir / "logs")
        ctx = asyncio.run(bench(args, infra, procs, run_dir))
        ok = True
    except KeyboardInterrupt:
        print("\ninterrupted: tearing down", file=sys.stderr)
        return 130
    finally:
        print(f"[{elapsed()}] tearing down ...")
        teardown.run()
        os.chdir(old_cwd)
        if ok and not args.keep_logs and not args.profile:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            print(f"logs kept in {run_dir}")
    assert ctx is not None
    wall = time.perf_counter() - began
    results: dict[str, Any] = {
        k: ctx.results[k]
        for k in (
            "chat",
            "extraction",
            "cards",
            "decoupling",
            "memory",
            "scale_out",
            "soak",
            "tails",
        )
        if k in ctx.results
    }
    results["machine"] = ctx.results["machine"]
    code_at_end = code_fingerprint()
    results["machine"]["code"] = code_at_start
    changed = code_at_end.split("tree:")[-1] != code_at_start.split("tree:")[-1]
    if changed:
        results["machine"]["code_changed_during_run"] = code_at_end
    targets = evaluate(results)
    results["targets"] = targets
    foreign = {
        label: cores.get("not the bench", 0.0)
        for label, cores in ctx.details.get("cpu_cores", {}).items()  # the kept attempts
    }
    busiest = max(foreign.items(), key=lambda kv: kv[1], default=("-", 0.0))
    stolen_label, stolen = max(
        ctx.details.get("host_steal", {}).items(),
        key=lambda kv: kv[1]["max_per_s_ms"],
        default=("-", {"max_per_s_ms": 0.0, "max_at_s": None}),
    )
    results["run"] = {
        "mode": "quick" if args.quick else "full",
        "kind": (
            "soak"
            if args.soak is not None
            else "scale-out"
            if args.scale_out
            else "tails"
            if args.tails is not None
            else "default"
        ),
        "background_cores_before": background,
        "max_foreign_cores": {"window": busiest[0], "cores": busiest[1]},
        # The worst second the hypervisor took CPU time away (details.host_steal).
        "max_host_steal_per_s_ms": {"window": stolen_label, **stolen},
        "repeated_phases": [
            {k: v for k, v in r.items() if k != "discarded"}
            for r in ctx.details.get("repeated_phases", [])
        ],
        "profiled": bool(args.profile),
        "clients": args.clients,
        "knobs": ctx.knobs.__dict__,
        "wall_s": round(wall, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results["details"] = ctx.details
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    text = table(results, targets)
    if text:
        print(text)
    if "soak" in results:
        print(soak.table(results["soak"]))
    if "scale_out" in results:
        print("\n" + scaleout.notes(ctx.details.get("scale_out", {})))
    if "tails" in results:
        print("\n" + cards.tails_table(results["tails"]))
    print(f"\nwall time {wall:.0f} s; code {code_at_start}; results in {args.out}")
    if busiest[1] > FOREIGN_CORES:
        print(
            f"WARNING: up to {busiest[1]} cores were used by other work during the run "
            f"({busiest[0]}): see details.cpu_cores; repeat on a quiet machine"
        )
    if stolen["max_per_s_ms"]:
        print(
            f"NOTE: the host stole up to {stolen['max_per_s_ms']} ms of CPU time in one "
            f"second ({stolen_label}, {stolen['max_at_s']} s in): see details.host_steal"
        )
    if changed:
        print(
            f"WARNING: the product code changed during the run ({code_at_start} -> "
            f"{code_at_end}): processes started later ran newer code"
        )
    if args.profile:
        print("NOTE: profiled run (py-spy sampling): figures are not reference figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
