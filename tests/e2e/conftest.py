"""The whole system as real processes: glia-migrate, glia-chat-api, glia-extractor,
glia-card-query, and the fake LLM, against the session's database and virtual host."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from glia_e2e.processes import Process, base_env, free_port
from glia_fakes.llm import FakeLLMControl
from glia_fakes.otlp_sink import OtlpSink


@dataclass
class System:
    chat: Process
    extractor: Process
    cards: Process
    llm: Process
    llm_control: FakeLLMControl
    env: dict[str, str]
    traces: OtlpSink

    def client(self, which: str) -> httpx.AsyncClient:
        base = {"chat": self.chat.url, "cards": self.cards.url}[which]
        return httpx.AsyncClient(base_url=base, timeout=30)


@pytest.fixture(scope="session")
def system(
    infra: Any, jwt_secret: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    logs = tmp_path_factory.mktemp("e2e-logs")
    # Every process exports its spans here, as they would to Jaeger.
    sink = OtlpSink().start()
    llm_port = free_port()
    llm = Process(
        "fake-llm",
        ["glia-fake-llm", "--port", str(llm_port)],
        base_env({}),
        Path(logs / "fake-llm.log"),
        port=llm_port,
    )
    llm.start(wait_path="/_fake/health")
    env = base_env(
        {
            "GLIA_DATABASE_URL": infra.app_url,
            "GLIA_DATABASE_ADMIN_URL": infra.admin_url.rsplit("/", 1)[0] + "/postgres",
            "GLIA_AMQP_URL": infra.amqp_url,
            "GLIA_JWT_SECRET": jwt_secret,
            "GLIA_LLM_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
            "GLIA_LLM_API_KEY": "e2e-key",
            "GLIA_LLM_TIMEOUT_S": "2",
            "GLIA_RECONCILE_INTERVAL_S": "2",
            "GLIA_RECONCILE_GRACE_S": "3",
            "GLIA_OUTBOX_POLL_INTERVAL_S": "0.5",
            **sink.env(),
        }
    )
    migrate = Process("migrate", ["glia-migrate"], env, Path(logs / "migrate.log"))
    migrate.start(wait_path=None)
    assert migrate.popen is not None and migrate.popen.wait(60) == 0, migrate.tail()

    def service(name: str) -> Process:
        port = free_port()
        return Process(
            name,
            [name],
            {**env, "GLIA_HTTP_PORT": str(port)},
            Path(logs / f"{name}.log"),
            port=port,
        )

    chat, extractor, cards = (
        service("glia-chat-api"),
        service("glia-extractor"),
        service("glia-card-query"),
    )
    started: list[Process] = [llm]
    try:
        for p in (chat, extractor, cards):
            p.start()
            started.append(p)
        for p in (chat, extractor, cards):
            p.wait_ready()
        yield System(chat, extractor, cards, llm, FakeLLMControl(llm.url), env, sink)
    finally:
        for p in reversed(started):
            p.stop()
        sink.stop()


@pytest.fixture
def sys_(system: System) -> System:
    """The system with the fake LLM back to its defaults."""
    system.llm_control.reset()
    return system


@pytest.fixture(scope="module")
def spawn(
    system: System, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Process]]:
    """``spawn(command, port=None, **env)``: one more process of a service (another
    replica, or one configured differently) on the system's database, broker and fake
    LLM; ready when returned, stopped at the end of the module."""
    logs = tmp_path_factory.mktemp("e2e-spawned")
    started: list[Process] = []

    def start(command: str, port: int | None = None, **env: str) -> Process:
        port = port or free_port()
        process = Process(
            command,
            [command],
            {**system.env, "GLIA_HTTP_PORT": str(port), **env},
            logs / f"{command}-{port}.log",
            port=port,
        )
        started.append(process)
        process.start()
        process.wait_ready()
        return process

    yield start
    for process in reversed(started):
        process.stop()
