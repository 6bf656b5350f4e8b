"""Test infrastructure shared by every test directory.

Integration and e2e tests run against real PostgreSQL and RabbitMQ:
- GLIA_TEST_DATABASE_URL (an admin URL) and GLIA_TEST_AMQP_URL when set;
- otherwise containers (testcontainers) when a Docker engine answers;
- otherwise the local services at their default addresses.
When none is reachable the run stops with an error: these tests never skip silently.

Each test session gets its own database (migrated with glia-migrate's code) and its
own RabbitMQ virtual host, so parallel runs and a running `make run` never interfere.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

from glia_card_query.settings import CardQuerySettings
from glia_chat_api.settings import ChatApiSettings
from glia_common.auth import mint_token
from glia_common.settings import AuthSettings, MigrateSettings, with_database
from glia_e2e.processes import free_port
from glia_extractor.settings import ExtractorSettings

TEST_JWT_SECRET = "glia-test-secret-" + "x" * 32
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


class Settings(ChatApiSettings, ExtractorSettings, CardQuerySettings, MigrateSettings):
    """Every service's settings in one object, as one environment configures them all:
    what the tests hand to any service's app factory."""


@dataclass(frozen=True)
class Infra:
    admin_url: str  # owner/admin URL of the test database
    app_url: str  # the app role's URL of the test database
    amqp_url: str  # the test virtual host
    database: str


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def _start_containers(request: pytest.FixtureRequest) -> tuple[str, str]:
    from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]
    from testcontainers.rabbitmq import RabbitMqContainer  # type: ignore[import-untyped]

    pg = PostgresContainer(
        "postgres:15", username="postgres", password="postgres", dbname="postgres"
    )
    mq = RabbitMqContainer("rabbitmq:3.13")
    pg.start()
    mq.start()
    request.addfinalizer(pg.stop)
    request.addfinalizer(mq.stop)
    admin = (
        f"postgresql://postgres:postgres@{pg.get_container_host_ip()}:"
        f"{pg.get_exposed_port(5432)}/postgres"
    )
    amqp = f"amqp://guest:guest@{mq.get_container_host_ip()}:{mq.get_exposed_port(5672)}/"
    return admin, amqp


def _check_reachable(admin_url: str, amqp_url: str) -> None:
    problems = []
    for name, url in (("PostgreSQL", admin_url), ("RabbitMQ", amqp_url)):
        parts = urlsplit(url)
        try:
            socket.create_connection((parts.hostname, parts.port or 5432), timeout=3).close()
        except OSError as exc:
            problems.append(f"{name} at {parts.hostname}:{parts.port}: {exc}")
    if problems:
        pytest.exit(
            "integration tests need PostgreSQL and RabbitMQ (set GLIA_TEST_DATABASE_URL and "
            "GLIA_TEST_AMQP_URL, or run a Docker engine): " + "; ".join(problems),
            returncode=3,
        )


def _create_vhost(amqp_url: str, vhost: str) -> str | None:
    """A private virtual host through rabbitmqctl, when the broker is local; else None."""
    if shutil.which("rabbitmqctl") is None or urlsplit(amqp_url).hostname not in (
        "127.0.0.1",
        "localhost",
    ):
        return None
    user = urlsplit(amqp_url).username or "guest"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, user, ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    parts = urlsplit(amqp_url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


@pytest.fixture(scope="session")
def infra(request: pytest.FixtureRequest) -> Iterator[Infra]:
    admin_url = os.environ.get("GLIA_TEST_DATABASE_URL")
    amqp_url = os.environ.get("GLIA_TEST_AMQP_URL")
    if not (admin_url and amqp_url) and _docker_available():
        admin_url, amqp_url = _start_containers(request)
    admin_url = admin_url or DEFAULT_ADMIN_URL
    amqp_url = amqp_url or DEFAULT_AMQP_URL
    _check_reachable(admin_url, amqp_url)

    from glia_common.cli.migrate import migrate

    database = f"glia_test_{secrets.token_hex(4)}"
    app_parts = urlsplit(admin_url)
    host = app_parts.hostname
    port = app_parts.port or 5432
    app_url = f"postgresql://glia_app:glia_app@{host}:{port}/{database}"
    migrate(
        MigrateSettings(_env_file=None, database_url=app_url, database_admin_url=admin_url)  # type: ignore[call-arg]
    )

    vhost = f"glia-test-{secrets.token_hex(4)}"
    vhost_url = _create_vhost(amqp_url, vhost)
    try:
        yield Infra(
            admin_url=with_database(admin_url, database),
            app_url=app_url,
            amqp_url=vhost_url or amqp_url,
            database=database,
        )
    finally:
        if vhost_url:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)

        async def drop() -> None:
            conn = await asyncpg.connect(admin_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(drop())


def make_settings(infra: Infra, **overrides: object) -> Settings:
    """Settings for a service under test; nothing is read from the developer's env."""
    values: dict[str, object] = {
        "database_url": infra.app_url,
        "database_admin_url": infra.admin_url,
        "amqp_url": infra.amqp_url,
        "jwt_secret": TEST_JWT_SECRET,
        "log_format": "json",
        "outbox_poll_interval_s": 0.2,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(infra: Infra) -> Settings:
    return make_settings(infra)


def token_for(user_id: str, ttl_s: int = 3600) -> str:
    return mint_token(
        AuthSettings(_env_file=None, jwt_secret=TEST_JWT_SECRET),  # type: ignore[call-arg]
        user_id,
        ttl_s,
    )


@pytest.fixture
def user() -> str:
    """A fresh user per test: row-level security keeps tests apart."""
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def admin_db(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    """The owner's connection, for assertions that look behind the API."""
    conn = await asyncpg.connect(infra.admin_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def settings_factory(infra: Infra):  # type: ignore[no-untyped-def]
    """``settings_factory(**overrides)``: Settings for a service under test."""
    return lambda **overrides: make_settings(infra, **overrides)


@pytest.fixture(scope="session")
def mint():  # type: ignore[no-untyped-def]
    """``mint(user_id, ttl_s=3600)``: a valid token for the test services."""
    return token_for


@pytest.fixture(scope="session")
def jwt_secret() -> str:
    return TEST_JWT_SECRET


class ServedApp:
    """An ASGI app served by uvicorn over real HTTP inside the test's event loop."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve())
        for _ in range(500):
            if self.server.started:
                return
            if self._task.done():
                self._task.result()
                raise RuntimeError("server exited during start-up")
            await asyncio.sleep(0.01)
        raise TimeoutError("server did not start")

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)


@pytest.fixture
async def serve() -> AsyncIterator[object]:
    """``await serve(app)`` -> ServedApp; stopped after the test."""
    served: list[ServedApp] = []

    async def start(app: object) -> ServedApp:
        s = ServedApp(app)
        await s.start()
        served.append(s)
        return s

    yield start
    for s in reversed(served):
        await s.stop()


@pytest.fixture(scope="session")
async def fake_llm() -> AsyncIterator[Any]:
    """The fake OpenAI-compatible server, in this test process."""
    from glia_fakes.llm import FakeLLM

    server = FakeLLM()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def llm(fake_llm: Any) -> Any:
    """The fake LLM with its faults cleared for this test."""
    fake_llm.reset()
    return fake_llm


@pytest.fixture
def private_amqp_url(infra: Infra) -> Iterator[str]:
    """A RabbitMQ virtual host of this test's own, for processes that must not share a
    queue with the session's running services."""
    vhost = f"glia-test-{secrets.token_hex(4)}"
    url = _create_vhost(infra.amqp_url, vhost)
    if url is None:
        pytest.fail("a private virtual host needs rabbitmqctl on a local broker")
    try:
        yield url
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
