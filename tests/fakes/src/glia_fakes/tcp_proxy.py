"""A TCP forwarder that can be cut and restored, to stage broker or database outages.

Services under test connect to the proxy instead of RabbitMQ/PostgreSQL; ``cut()``
then looks to them like the server vanished (open connections drop, new ones are
closed at once) while the real server and its state stay untouched. ``stall()``
instead holds every byte in both directions, connections open, until ``restore()``:
a network that hangs rather than fails.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

__all__ = ["FaultProxy"]

_BUFFER = 64 * 1024


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream twin."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port`` until told otherwise."""

    def __init__(
        self, target_host: str, target_port: int, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._cut = False
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FaultProxy not started")
        return self._port

    def url_for(self, url: str) -> str:
        """``url`` (credentials and all) pointed at this proxy instead of its own host."""
        parts = urlsplit(url)
        auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{auth}{self.host}:{self.port}"))

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def is_stalled(self) -> bool:
        return not self._flowing.is_set()

    @property
    def active_connections(self) -> int:
        """Connections currently forwarded (lets tests see that clients reconnected)."""
        return len(self._links)

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FaultProxy already started")
        self._server = await asyncio.start_server(self._accept, self.host, self._requested_port)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Close the listener and every connection; waits for the forwarding tasks."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await self._drop_all()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def cut(self) -> None:
        """Outage: drop every open connection; accept new ones only to close them."""
        self._cut = True
        await self._drop_all()

    def stall(self) -> None:
        """Hang: nothing is forwarded either way (new connections are accepted and held
        too) until ``restore()``; what was held is then delivered."""
        self._flowing.clear()

    def restore(self) -> None:
        """End the outage or the stall: connections are forwarded again."""
        self._cut = False
        self._flowing.set()

    async def _drop_all(self) -> None:
        links = list(self._links)
        for link in links:
            link.abort()
            for pump in link.pumps:  # a stalled pump waits on no socket
                pump.cancel()
        await asyncio.gather(*(p for link in links for p in link.pumps), return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()  # upstream down: the client sees the same
            return
        if self._cut:  # cut() ran while we were connecting upstream
            writer.transport.abort()
            up_writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        link.pumps = [
            asyncio.create_task(self._pump(reader, up_writer, link, self._flowing)),
            asyncio.create_task(self._pump(up_reader, writer, link, self._flowing)),
        ]
        self._links.add(link)
        try:
            await asyncio.gather(*link.pumps, return_exceptions=True)
        finally:
            self._links.discard(link)
            link.abort()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        flowing: asyncio.Event,
    ) -> None:
        """Copy one direction; a clean EOF is passed on, an error tears down both sides."""
        try:
            while data := await reader.read(_BUFFER):
                await flowing.wait()
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
        except (ConnectionError, OSError):
            link.abort()
        except asyncio.CancelledError:
            link.abort()
            raise
