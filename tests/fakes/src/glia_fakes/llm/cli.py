"""``glia-fake-llm``: the fake as a process of its own."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Iterable

from glia_fakes.llm.server import FakeLLM


async def _serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with FakeLLM(host, port) as llm:
        print(f"fake-llm listening on {llm.base_url}", flush=True)
        await stop.wait()


def main(argv: Iterable[str] | None = None) -> None:
    """``glia-fake-llm [--host 127.0.0.1] [--port 8090]``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="glia-fake-llm", description="A fake OpenAI-compatible server with switchable faults."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    args = parser.parse_args(None if argv is None else list(argv))
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
