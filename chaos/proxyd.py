"""The fault proxies, in a process of their own so that forwarding every PostgreSQL and
RabbitMQ byte never waits on the load generator's event loop.

``python -m chaos.proxyd --control-port P --link NAME=LISTEN_PORT:HOST:PORT ...`` serves
one FaultProxy per link and a small control API:
``POST /links/{pattern}/{cut|stall|restore}`` (pattern: a name, or ``*`` and prefixes
such as ``pg:*``), ``GET /links`` and ``GET /health``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import signal

from aiohttp import web

from glia_fakes.tcp_proxy import FaultProxy


async def serve(control_port: int, links: dict[str, tuple[int, str, int]]) -> None:
    proxies = {
        name: FaultProxy(host, port, port=listen) for name, (listen, host, port) in links.items()
    }
    for proxy in proxies.values():
        await proxy.start()

    async def act(request: web.Request) -> web.Response:
        pattern, action = request.match_info["pattern"], request.match_info["action"]
        chosen = [p for n, p in proxies.items() if fnmatch.fnmatchcase(n, pattern)]
        if not chosen or action not in ("cut", "stall", "restore"):
            return web.json_response({"error": "no such link or action"}, status=404)
        for proxy in chosen:
            if action == "cut":
                await proxy.cut()
            elif action == "stall":
                proxy.stall()
            else:
                proxy.restore()
        return web.json_response({"links": len(chosen)})

    async def state(request: web.Request) -> web.Response:
        return web.json_response(
            {
                n: {"cut": p.is_cut, "stalled": p.is_stalled, "open": p.active_connections}
                for n, p in proxies.items()
            }
        )

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/links/{pattern}/{action}", act)
    app.router.add_get("/links", state)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", control_port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"chaos proxies: {len(proxies)} links, control on {control_port}", flush=True)
    await stop.wait()
    await runner.cleanup()
    for proxy in proxies.values():
        await proxy.stop()


def parse_link(text: str) -> tuple[str, tuple[int, str, int]]:
    name, _, spec = text.partition("=")
    listen, host, port = spec.split(":")
    return name, (int(listen), host, int(port))


def main() -> None:
    parser = argparse.ArgumentParser(prog="chaos.proxyd", description=__doc__.splitlines()[0])
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--link", action="append", default=[], type=parse_link)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(serve(args.control_port, dict(args.link)))


if __name__ == "__main__":
    main()
