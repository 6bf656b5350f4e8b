"""Scale-out (``--scale-out``): what a second process of a service adds.

Each Glia service is CPU-bound in its one Python process (see the README's cores
table), so more throughput means more processes. Measured here, one after the other:

- chat: part 1's closed loop against one glia-chat-api, then against two (a second
  process on its own port; client ``c`` talks to port ``c mod 2``, as a round-robin
  load balancer would spread connections);
- extraction: part 2's burst with one glia-extractor, then with two consuming the same
  queue (each after an unmeasured warm-up burst, so no process is measured cold).

Figures: value = 2 processes, baseline = 1, ratio = 2p/1p; each window's cores in the
``details.cpu_cores`` style, and the machine's busy cores. On a machine whose cores are
shared with the load generator, PostgreSQL, RabbitMQ and the fake LLM, a second process
only turns the cores the first one left idle into work: a ratio near 1 with the machine
busy says the machine is the limit, not the service.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from bench.chat import DESYNC_WARMUP_S, make_pool, turn_request
from bench.context import Amqp, ConvPool, Ctx
from bench.extraction import glia_burst, start_extractor
from bench.infra import free_port, stop
from bench.load import TurnSample, closed_loop
from bench.seed import insert_finished_conversations, spread, users
from bench.stats import figure
from glia_e2e.processes import Process

MACHINE_BOUND = 0.9  # busy share of all cores from which the machine is the limit
WARM_BURST = 64  # conversations extracted (unmeasured) before each measured burst


def usage(cores: dict[str, float], prefix: str, cpus: int) -> dict[str, Any]:
    """A window's cores: the service's processes (names starting with ``prefix``), the
    whole machine, and whether the machine was the limit (busy >= 90% of its cores)."""
    service = round(sum(v for k, v in cores.items() if k.startswith(prefix)), 2)
    machine = cores.get("machine (all)", 0.0)
    return {
        "service_cores": service,
        "machine_cores": machine,
        "cpus": cpus,
        "machine_bound": machine >= MACHINE_BOUND * cpus,
    }


async def chat_window(ctx: Ctx, urls: list[str], pool: ConvPool) -> dict[str, Any]:
    k = ctx.knobs
    requests = [turn_request(ctx, u, pool) for u in urls]

    async def request(client: int, n: int) -> TurnSample:
        return await requests[client % len(requests)](client, n)

    label = f"scale-out chat {len(urls)}p"
    await ctx.wait_outbox_drained()
    async with ctx.cpu(label):
        result = await closed_loop(
            k.clients,
            max(k.warmup_s, DESYNC_WARMUP_S),
            k.chat_s,
            request,
            ok=lambda s: s.ok and s.deltas == 20,
            kind=lambda s: s.terminal or "unknown",
            desync=True,
        )
    use = usage(ctx.details["cpu_cores"][label], "glia-chat-api", os.cpu_count() or 1)
    print(
        f"    chat, {len(urls)} process(es): {result.rate:8.1f} turns/s ({result.errors} "
        f"errors); chat-api {use['service_cores']} cores, machine {use['machine_cores']}"
    )
    return {
        "processes": len(urls),
        "turns_per_s": round(result.rate, 2),
        "errors": result.errors,
        "error_kinds": result.error_kinds,
        **use,
    }


async def burst_window(ctx: Ctx, processes: int, tag: str) -> dict[str, Any]:
    n = ctx.knobs.conversations
    user_ids = users("scale", 64)
    warm, convs = spread(WARM_BURST, user_ids), spread(n, user_ids)
    await insert_finished_conversations(ctx.app_pool, warm + convs)
    label = f"scale-out extraction {processes}p"
    async with Amqp(ctx.infra.amqp_url) as amqp:
        await glia_burst(ctx, amqp, warm)
        async with ctx.cpu(label):
            result = await glia_burst(ctx, amqp, convs)
    use = usage(ctx.details["cpu_cores"][label], "glia-extractor", os.cpu_count() or 1)
    print(
        f"    extraction, {processes} process(es), burst of {n} ({tag}): "
        f"{result['runs_per_s']} runs/s; extractors {use['service_cores']} cores, "
        f"machine {use['machine_cores']}"
    )
    return {"processes": processes, **result, **use}


async def run(ctx: Ctx, chat1: Process) -> dict[str, Any]:
    k = ctx.knobs
    pool = await make_pool(ctx, 2000 if k.quick else 12000)
    one = await chat_window(ctx, [chat1.url], pool)
    port = free_port()
    # The same environment as the first (the same database, broker and LLM), its own port.
    env = {**chat1.env, "GLIA_HTTP_PORT": str(port)}
    chat2 = ctx.procs.make("glia-chat-api-2", ["glia-chat-api"], env, port, wait_path="/readyz")
    await asyncio.to_thread(ctx.procs.start, chat2)
    two = await chat_window(ctx, [chat1.url, chat2.url], pool)
    await ctx.wait_outbox_drained()
    await asyncio.to_thread(stop, chat2)

    # The turns' extraction requests are not what the bursts measure.
    async with Amqp(ctx.infra.amqp_url) as amqp:
        await amqp.purge()
    ex1 = await start_extractor(ctx, "glia-extractor-rules", GLIA_LLM_API_KEY="")
    b1 = await burst_window(ctx, 1, "one consumer")
    ex2 = await start_extractor(ctx, "glia-extractor-rules-2", consumers=2, GLIA_LLM_API_KEY="")
    b2 = await burst_window(ctx, 2, "two consumers, one queue")
    for p in (ex1, ex2):
        await asyncio.to_thread(stop, p)

    ctx.details["scale_out"] = {
        "chat": {"1p": one, "2p": two},
        "extraction": {"1p": b1, "2p": b2},
    }
    return {
        "turns_per_s": figure(two["turns_per_s"], one["turns_per_s"], "turns/s"),
        "chat_service_cores": figure(two["service_cores"], one["service_cores"], "cores"),
        "chat_machine_cores": figure(two["machine_cores"], one["machine_cores"], "cores"),
        "runs_per_s": figure(b2["runs_per_s"], b1["runs_per_s"], "runs/s"),
        "extraction_service_cores": figure(b2["service_cores"], b1["service_cores"], "cores"),
        "extraction_machine_cores": figure(b2["machine_cores"], b1["machine_cores"], "cores"),
    }


def notes(details: dict[str, Any]) -> str:
    """One line per window: where the machine was the limit."""
    lines = []
    for part, unit in (("chat", "turns_per_s"), ("extraction", "runs_per_s")):
        for key, w in details.get(part, {}).items():
            bound = "the machine is the limit" if w["machine_bound"] else "cores left idle"
            lines.append(
                f"{part} {key}: {w[unit]} {unit.replace('_per_s', '/s')}, service "
                f"{w['service_cores']} cores, machine {w['machine_cores']} of {w['cpus']} "
                f"busy: {bound}"
            )
    return "\n".join(lines)
