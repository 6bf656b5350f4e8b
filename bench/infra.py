"""The bench's own database and RabbitMQ virtual host, and the processes it starts.

Everything created here is registered on a :class:`Teardown`, which undoes it in reverse
order on normal exit, on an exception, on Ctrl-C (SIGINT) and on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx

from glia_common.settings import MigrateSettings, with_database
from glia_e2e.processes import Process, base_env, free_port

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class Teardown:
    """Cleanup callbacks, run last-in first-out exactly once; each one guarded."""

    def __init__(self) -> None:
        self._callbacks: list[tuple[str, Callable[[], object]]] = []
        self._done = False

    def add(self, name: str, callback: Callable[[], object]) -> None:
        self._callbacks.append((name, callback))

    def run(self) -> None:
        if self._done:
            return
        self._done = True
        # A second Ctrl-C must not abort the cleanup half-way.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self._callbacks:
                name, callback = self._callbacks.pop()
                try:
                    callback()
                except Exception as exc:
                    print(f"  teardown: {name} failed: {exc}", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class Infra:
    server_admin_url: str  # the admin URL given (its own database, e.g. postgres)
    admin_url: str  # the admin URL of the bench database
    app_url: str  # the app role's URL of the bench database
    amqp_url: str  # the bench's virtual host
    database: str
    vhost: str | None


def _check_local(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOCAL_HOSTS:
        raise SystemExit(f"the bench only talks to 127.0.0.1; refusing {host!r}")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


def create_infra(teardown: Teardown, admin_url: str, amqp_url: str) -> Infra:
    """A fresh database (migrated by glia-migrate's code) and a fresh virtual host."""
    from glia_common.cli.migrate import migrate

    _check_local(admin_url)
    _check_local(amqp_url)
    tag = secrets.token_hex(4)
    database = f"glia_bench_{tag}"
    parts = urlsplit(admin_url)
    app_url = f"postgresql://glia_app:glia_app@{parts.hostname}:{parts.port or 5432}/{database}"

    def drop_database() -> None:
        async def drop() -> None:
            conn = await asyncpg.connect(admin_url, timeout=10)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(drop())
        print(f"  dropped database {database}")

    teardown.add("drop database", drop_database)
    migrate(MigrateSettings(_env_file=None, database_url=app_url, database_admin_url=admin_url))

    vhost: str | None = None
    vhost_url = amqp_url
    if shutil.which("rabbitmqctl") is None:
        raise SystemExit("rabbitmqctl is needed to create the bench's own virtual host")
    vhost = f"glia-bench-{tag}"
    user = urlsplit(amqp_url).username or "guest"

    def delete_vhost() -> None:
        _rabbitmqctl("delete_vhost", vhost)
        print(f"  deleted vhost {vhost}")

    _rabbitmqctl("add_vhost", vhost)
    teardown.add("delete vhost", delete_vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    amqp_parts = urlsplit(amqp_url)
    vhost_url = urlunsplit(amqp_parts._replace(path="/" + quote(vhost, safe="")))
    return Infra(
        server_admin_url=admin_url,
        admin_url=with_database(admin_url, database),
        app_url=app_url,
        amqp_url=vhost_url,
        database=database,
        vhost=vhost,
    )


class Processes:
    """Starts processes (in parallel where asked) and stops them on teardown."""

    def __init__(self, teardown: Teardown, log_dir: Path) -> None:
        self.teardown = teardown
        self.log_dir = log_dir

        self._wait_paths: dict[str, str] = {}
        self.started: dict[str, Process] = {}
        log_dir.mkdir(parents=True, exist_ok=True)

    def make(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        port: int | None,
        wait_path: str = "/healthz",
    ) -> Process:
        self._wait_paths[name] = wait_path
        return Process(name, args, env, self.log_dir / f"{name}.log", port=port)

    def start(self, *procs: Process, timeout_s: float = 60.0) -> None:
        """Spawn them all, then wait for each to answer its wait path with 200."""
        for p in procs:
            p.start(wait_path=None)
            self.started[p.name] = p
            self.teardown.add(f"stop {p.name}", functools.partial(stop, p))
        deadline = time.monotonic() + timeout_s
        for p in procs:
            if p.port is None:
                continue
            path = self._wait_paths.get(p.name, "/healthz")
            while True:
                if p.popen is not None and p.popen.poll() is not None:
                    raise RuntimeError(f"{p.name} exited at start-up:\n{p.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(p.url + path, timeout=1.0).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{p.name} did not become ready:\n{p.tail()}")
                time.sleep(0.1)


def pids(procs: Processes) -> dict[str, int]:
    """The running processes the bench started, by name."""
    return {
        name: p.popen.pid
        for name, p in procs.started.items()
        if p.popen is not None and p.popen.poll() is None
    }


def stop(p: Process, timeout_s: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``: the bench does not test graceful shutdown."""
    if p.popen is None or p.popen.poll() is not None:
        return
    p.popen.send_signal(signal.SIGTERM)
    try:
        p.popen.wait(timeout_s)
    except subprocess.TimeoutExpired:
        p.popen.kill()
        p.popen.wait(10)


def service_env(infra: Infra, jwt_secret: str, **extra: str) -> dict[str, str]:
    """The environment of a Glia service (or baseline) under the bench; nothing inherited
    from the developer's GLIA_*/OTEL_* variables."""
    env: dict[str, str] = base_env(
        {
            "GLIA_DATABASE_URL": infra.app_url,
            "GLIA_DATABASE_ADMIN_URL": infra.server_admin_url,
            "GLIA_AMQP_URL": infra.amqp_url,
            "GLIA_JWT_SECRET": jwt_secret,
            # The bench measures capacity, not abuse limits: they are still checked on
            # every turn (their cost is in the figures), but never reached.
            "GLIA_TURNS_CONCURRENT_PER_USER": "100000",
            "GLIA_TURNS_PER_MINUTE_PER_USER": "100000000",
            # Stalls that could move a p99 are logged with their cause (--keep-logs); not
            # lower: under saturation the loop is that late from its queue alone.
            "GLIA_STALL_LOG_MS": "50",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            **extra,
        }
    )
    return env


__all__ = [
    "DEFAULT_ADMIN_URL",
    "DEFAULT_AMQP_URL",
    "REPO",
    "Infra",
    "Processes",
    "Teardown",
    "create_infra",
    "free_port",
    "service_env",
    "stop",
]
