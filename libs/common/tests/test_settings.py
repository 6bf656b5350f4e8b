"""Settings come from GLIA_* variables; database URLs are plain postgresql:// URLs."""

from __future__ import annotations

import pytest

from glia_common.settings import (
    AuthSettings,
    LlmSettings,
    MigrateSettings,
    ServiceSettings,
    async_database_url,
    with_database,
)


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GLIA_DATABASE_URL", "GLIA_AMQP_URL", "GLIA_JWT_AUDIENCE", "GLIA_HTTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    m = MigrateSettings(_env_file=None)  # type: ignore[call-arg]
    assert m.database_url == "postgresql://glia_app:glia_app@127.0.0.1:5432/glia"
    assert m.database_admin_url == "postgresql://postgres@127.0.0.1:5432/postgres"
    s = ServiceSettings(_env_file=None)  # type: ignore[call-arg]
    assert s.database_url == m.database_url
    assert s.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert (s.http_host, s.http_port) == ("127.0.0.1", None)
    assert AuthSettings(_env_file=None).jwt_audience == "glia"  # type: ignore[call-arg]
    assert not LlmSettings(_env_file=None).llm_configured  # type: ignore[call-arg]


def test_worker_and_operator_roles_default_to_the_app_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIA_DATABASE_URL", "postgresql://app:pw@db/glia")
    monkeypatch.delenv("GLIA_DATABASE_OPERATOR_URL", raising=False)
    monkeypatch.setenv("GLIA_DATABASE_WORKER_URL", "")
    s = ServiceSettings(_env_file=None)  # type: ignore[call-arg]
    assert s.worker_database_url == s.operator_database_url == "postgresql://app:pw@db/glia"
    monkeypatch.setenv("GLIA_DATABASE_WORKER_URL", "postgresql://worker:pw@db/glia")
    monkeypatch.setenv("GLIA_DATABASE_OPERATOR_URL", "postgresql://operator:pw@db/glia")
    s = ServiceSettings(_env_file=None)  # type: ignore[call-arg]
    assert s.worker_database_url == "postgresql://worker:pw@db/glia"
    assert s.operator_database_url == "postgresql://operator:pw@db/glia"
    # Production wants a password of its own for each role, as for the app role.
    monkeypatch.setenv("GLIA_ENVIRONMENT", "production")
    monkeypatch.setenv("GLIA_DATABASE_WORKER_URL", "postgresql://worker@db/glia")
    with pytest.raises(ValueError, match="GLIA_DATABASE_WORKER_URL"):
        MigrateSettings(_env_file=None)  # type: ignore[call-arg]


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIA_HTTP_PORT", "9123")
    monkeypatch.setenv("GLIA_LLM_API_KEY", "sk-test")
    monkeypatch.setenv("GLIA_LLM_TIMEOUT_S", "2.5")
    s = ServiceSettings(_env_file=None)  # type: ignore[call-arg]
    llm = LlmSettings(_env_file=None)  # type: ignore[call-arg]
    assert s.http_port == 9123 and llm.llm_configured and llm.llm_timeout_s == 2.5


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIA_HTTP_PORT", "not-a-port")
    with pytest.raises(ValueError):
        ServiceSettings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql+asyncpg://u@h/db?ssl=require"),
    ],
)
def test_async_database_url(url: str, expected: str) -> None:
    assert async_database_url(url) == expected


def test_async_database_url_refuses_other_schemes() -> None:
    with pytest.raises(ValueError):
        async_database_url("mysql://u@h/db")


def test_with_database_swaps_only_the_name() -> None:
    assert with_database("postgresql://u:p@h:1/a?x=1", "b") == "postgresql://u:p@h:1/b?x=1"


def test_default_passwords_are_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GLIA_DATABASE_URL", "GLIA_AMQP_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GLIA_ENVIRONMENT", "production")
    with pytest.raises(ValueError, match="GLIA_DATABASE_URL"):
        ServiceSettings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("GLIA_DATABASE_URL", "postgresql://glia_app:s3cret-app@db/glia")
    with pytest.raises(ValueError, match="GLIA_AMQP_URL"):
        ServiceSettings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("GLIA_AMQP_URL", "amqp://glia-chat:s3cret-mq@mq:5672/glia")
    assert ServiceSettings(_env_file=None).environment == "production"  # type: ignore[call-arg]
    # In development the defaults are fine.
    monkeypatch.setenv("GLIA_ENVIRONMENT", "development")
    monkeypatch.delenv("GLIA_AMQP_URL")
    assert ServiceSettings(_env_file=None).amqp_url.startswith("amqp://guest:guest@")  # type: ignore[call-arg]
