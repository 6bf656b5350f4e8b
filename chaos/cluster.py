"""The system under test: a private database and virtual host, the fault proxies, the
fake LLM and Glia's real processes (two chat APIs, two extractors, one card query), each
service reaching PostgreSQL and RabbitMQ through links of its own in the proxy process.

Everything started here is registered on a Teardown, undone on exit, on an exception,
on Ctrl-C and on SIGTERM: processes (continued first if paused), the vhost, the database,
and RabbitMQ's app or PostgreSQL if a fault left them down.
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import asyncpg
import httpx

from chaos.schedule import SERVICES
from glia_e2e.processes import Process, base_env, free_port
from glia_fakes import FakeLLMControl

REPO = Path(__file__).resolve().parent.parent
# The PostgreSQL cluster and RabbitMQ node the run uses (and, in the full run, restarts):
# the machine's own by default. CHAOS_PG_PORT / CHAOS_PG_CLUSTER and CHAOS_AMQP_PORT (with
# RABBITMQ_NODENAME for rabbitmqctl) point a run at private ones instead, so that its
# machine-wide faults touch nothing else.
PG_PORT = int(os.environ.get("CHAOS_PG_PORT", "5432"))
PG_CLUSTER = os.environ.get("CHAOS_PG_CLUSTER", "main")
AMQP_PORT = int(os.environ.get("CHAOS_AMQP_PORT", "5672"))
SERVER_ADMIN_URL = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
BROKER = ("127.0.0.1", AMQP_PORT)
POSTGRES = ("127.0.0.1", PG_PORT)
COMMANDS = {"chat": "glia-chat-api", "extractor": "glia-extractor", "cards": "glia-card-query"}


class Teardown:
    """Cleanup callbacks, run last-in first-out exactly once, each one guarded."""

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
                    print(f"  teardown: {name} failed: {exc}")
        finally:
            signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class Timeouts:
    """The product's timeouts under chaos, short so that a run converges in minutes."""

    llm_s: float = 3.0
    turn_stale_s: float = 10.0
    amqp_heartbeat_s: int = 5
    reconcile_interval_s: float = 2.0
    reconcile_grace_s: float = 3.0

    @property
    def extractor_lock_s(self) -> float:
        # glia_extractor.main: twice the run budget, llm_timeout * (retries + 1) + 10.
        return 2 * (self.llm_s + 10)

    def pause_range(self, quick: bool) -> tuple[float, float]:
        """A pause outlives the turn heartbeat, the AMQP heartbeat and (mostly) the lock."""
        low = max(self.turn_stale_s, 2 * self.amqp_heartbeat_s) + 4
        high = self.extractor_lock_s + (4 if quick else 12)
        return (low, high)


def rabbitmqctl(*args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def pg_cluster() -> str:
    return sorted(os.listdir("/etc/postgresql"))[0]


def pg_ctl(action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", pg_cluster(), PG_CLUSTER, action],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def pg_ready() -> bool:
    return (
        subprocess.run(
            ["pg_isready", "-q", "-h", POSTGRES[0], "-p", str(POSTGRES[1])], check=False
        ).returncode
        == 0
    )


class Cluster:
    def __init__(self, teardown: Teardown, run_dir: Path, timeouts: Timeouts) -> None:
        self.teardown = teardown
        self.run_dir = run_dir
        self.log_dir = run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.timeouts = timeouts
        tag = secrets.token_hex(4)
        self.database = f"glia_chaos_{tag}"
        self.vhost = f"glia-chaos-{tag}"
        self.admin_url = f"postgresql://postgres@127.0.0.1:{PG_PORT}/{self.database}"
        self.amqp_url = f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}/{quote(self.vhost, safe='')}"
        self.jwt_secret = secrets.token_urlsafe(32)
        self.services: dict[str, Process] = {}
        self.proxy_url = ""
        self.llm_url = ""
        self.llm: FakeLLMControl | None = None
        self.links: list[str] = []
        self.mq_stopped = False
        self.keep = False

    # ------------------------------------------------------------------ set-up

    def create_backends(self) -> None:
        """The private database (by glia-migrate) and virtual host."""

        def drop_database() -> None:
            if self.keep:
                print(f"  kept database {self.database}")
                return

            async def drop() -> None:
                conn = await asyncpg.connect(SERVER_ADMIN_URL, timeout=10)
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
                finally:
                    await conn.close()

            asyncio.run(drop())

        self.teardown.add("drop database", drop_database)
        env = base_env(
            {
                "GLIA_DATABASE_URL": (
                    f"postgresql://glia_app:glia_app@127.0.0.1:{PG_PORT}/{self.database}"
                ),
                "GLIA_DATABASE_ADMIN_URL": SERVER_ADMIN_URL,
            }
        )
        migrate = Process("migrate", ["glia-migrate"], env, self.log_dir / "migrate.log")
        migrate.start(wait_path=None)
        assert migrate.popen is not None
        if migrate.popen.wait(120) != 0:
            raise RuntimeError(f"glia-migrate failed:\n{migrate.tail()}")

        def delete_vhost() -> None:
            if not self.keep:
                rabbitmqctl("delete_vhost", self.vhost)

        if rabbitmqctl("add_vhost", self.vhost).returncode != 0:
            raise RuntimeError("rabbitmqctl add_vhost failed: is RabbitMQ running?")
        self.teardown.add("delete vhost", delete_vhost)
        rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        # If a fault left RabbitMQ's app or PostgreSQL down, bring them back for everyone.
        self.teardown.add("RabbitMQ app", self._ensure_broker)
        self.teardown.add("PostgreSQL", self._ensure_postgres)

    def _ensure_broker(self) -> None:
        if self.mq_stopped:
            rabbitmqctl("start_app")
            self.mq_stopped = False

    @staticmethod
    def _ensure_postgres() -> None:
        if not pg_ready():
            pg_ctl("start")

    def start(self) -> None:
        """Proxies, the fake LLM, then every service; returns when all are ready."""
        ports = {name: free_port() for name in SERVICES}
        pg_ports = {name: free_port() for name in SERVICES}
        mq_ports = {name: free_port() for name in SERVICES}
        control = free_port()
        self.links = [f"pg:{n}" for n in SERVICES] + [f"mq:{n}" for n in SERVICES]
        link_args: list[str] = []
        for n in SERVICES:
            link_args += ["--link", f"pg:{n}={pg_ports[n]}:{POSTGRES[0]}:{POSTGRES[1]}"]
            link_args += ["--link", f"mq:{n}={mq_ports[n]}:{BROKER[0]}:{BROKER[1]}"]
        env = base_env({"PYTHONPATH": str(REPO)})
        proxy = Process(
            "proxies",
            ["python", "-m", "chaos.proxyd", "--control-port", str(control), *link_args],
            env,
            self.log_dir / "proxies.log",
            port=control,
        )
        self._start(proxy, "/health")
        self.proxy_url = proxy.url

        llm_port = free_port()
        llm = Process(
            "fake-llm",
            ["glia-fake-llm", "--port", str(llm_port)],
            base_env({}),
            self.log_dir / "fake-llm.log",
            port=llm_port,
        )
        self._start(llm, "/_fake/health")
        self.llm_url = llm.url
        self.llm = FakeLLMControl(llm.url)

        t = self.timeouts
        for name in SERVICES:
            kind = name.split("-")[0]
            service_env = base_env(
                {
                    "GLIA_DATABASE_URL": (
                        f"postgresql://glia_app:glia_app@127.0.0.1:{pg_ports[name]}/{self.database}"
                    ),
                    "GLIA_DATABASE_ADMIN_URL": SERVER_ADMIN_URL,
                    # A short AMQP heartbeat: a paused or stalled peer is noticed in seconds.
                    "GLIA_AMQP_URL": (
                        f"amqp://guest:guest@127.0.0.1:{mq_ports[name]}/"
                        f"{quote(self.vhost, safe='')}?heartbeat={t.amqp_heartbeat_s}"
                    ),
                    "GLIA_HTTP_PORT": str(ports[name]),
                    "GLIA_JWT_SECRET": self.jwt_secret,
                    "GLIA_LLM_BASE_URL": f"{llm.url}/v1",
                    "GLIA_LLM_API_KEY": "chaos",
                    "GLIA_LLM_TIMEOUT_S": str(t.llm_s),
                    "GLIA_TURN_STALE_AFTER_S": str(t.turn_stale_s),
                    "GLIA_RECONCILE_INTERVAL_S": str(t.reconcile_interval_s),
                    "GLIA_RECONCILE_GRACE_S": str(t.reconcile_grace_s),
                    "GLIA_OUTBOX_POLL_INTERVAL_S": "0.5",
                    # Modest pools: seven processes share two cores and one PostgreSQL.
                    "GLIA_DATABASE_POOL_SIZE": "4",
                    "GLIA_DATABASE_MAX_OVERFLOW": "4",
                    "GLIA_EXTRACTOR_PREFETCH": "4",
                    "OTEL_SERVICE_NAME": f"glia-{name}",
                }
            )
            self.services[name] = Process(
                name,
                [COMMANDS[kind]],
                service_env,
                self.log_dir / f"{name}.log",
                port=ports[name],
            )
        for p in self.services.values():
            p.start(wait_path=None)
            self.teardown.add(f"stop {p.name}", functools.partial(_stop, p))
        for p in self.services.values():
            p.wait_ready(timeout_s=300)  # a busy machine: imports alone take seconds of CPU

    def _start(self, p: Process, path: str) -> None:
        self.teardown.add(f"stop {p.name}", functools.partial(_stop, p))
        p.start(wait_path=path, timeout_s=180)

    # ------------------------------------------------------------------ during the run

    def url(self, name: str) -> str:
        return str(self.services[name].url)

    def pid(self, name: str) -> int | None:
        popen = self.services[name].popen
        if popen is None or popen.poll() is not None:
            return None
        return int(popen.pid)

    async def restart(self, name: str, ready_timeout_s: float = 180.0) -> bool:
        """Start a dead service again; True once it answers /healthz."""
        p = self.services[name]
        if self.pid(name) is None:
            p.start(wait_path=None)
        deadline = time.monotonic() + ready_timeout_s
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.pid(name) is None:
                    p.start(wait_path=None)  # it died at start-up (e.g. no database yet)
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(p.url + "/healthz")).status_code == 200:
                        return True
                await asyncio.sleep(0.3)
        return False

    async def proxy(self, link: str, action: str) -> None:
        async with httpx.AsyncClient(base_url=self.proxy_url, timeout=10.0) as client:
            (await client.post(f"/links/{quote(link, safe='')}/{action}")).raise_for_status()

    async def wait_all_ready(self, timeout_s: float) -> list[str]:
        """Services not ready (/readyz) within the time."""
        deadline = time.monotonic() + timeout_s
        waiting = set(self.services)
        async with httpx.AsyncClient(timeout=2.0) as client:
            while waiting and time.monotonic() < deadline:
                for name in sorted(waiting):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(self.url(name) + "/readyz")).status_code == 200:
                            waiting.discard(name)
                await asyncio.sleep(0.3)
        return sorted(waiting)

    def queue_depths(self) -> dict[str, tuple[int, int]]:
        """Ready and unacknowledged messages per queue of the vhost."""
        out = rabbitmqctl(
            "list_queues", "-p", self.vhost, "name", "messages_ready", "messages_unacknowledged"
        )
        depths: dict[str, tuple[int, int]] = {}
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                depths[parts[0]] = (int(parts[1]), int(parts[2]))
        return depths

    def diagnose(self) -> Path:
        """Stacks (py-spy, when installed) and metrics of every service, for a run that
        did not converge: what each process is waiting on."""
        out = self.log_dir / "diagnosis.txt"
        # `pip install --target /tmp/pyspy py-spy` puts it there, outside any venv.
        py_spy = shutil.which("py-spy") or (
            "/tmp/pyspy/bin/py-spy" if os.path.exists("/tmp/pyspy/bin/py-spy") else None
        )
        with out.open("w") as f:
            for name, p in self.services.items():
                f.write(f"===== {name} pid {self.pid(name)}\n")
                with contextlib.suppress(httpx.HTTPError):
                    metrics = httpx.get(p.url + "/metrics", timeout=5).text
                    f.write(
                        "".join(m + "\n" for m in metrics.splitlines() if m.startswith("glia_"))
                    )
                pid = self.pid(name)
                if py_spy and pid:
                    dump = subprocess.run(
                        [py_spy, "dump", "--pid", str(pid), "--locals"],
                        capture_output=True,
                        text=True,
                        timeout=60,
                        check=False,
                    )
                    f.write(dump.stdout + dump.stderr)
        return out

    def broker_vhost_url(self) -> str:
        host, port = BROKER
        parts = urlsplit(self.amqp_url)
        return parts._replace(netloc=f"guest:guest@{host}:{port}").geturl()


def _stop(p: Process) -> None:
    """Continue it if paused, SIGTERM, then SIGKILL: teardown does not test shutdown."""
    if p.popen is None or p.popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(p.popen.pid, signal.SIGCONT)
    p.popen.send_signal(signal.SIGTERM)
    try:
        p.popen.wait(15)
    except subprocess.TimeoutExpired:
        p.popen.kill()
        p.popen.wait(10)
