"""The settings every service shares, read from GLIA_* environment variables.

Each service composes its own settings class from these parts (``ChatApiSettings``,
``ExtractorSettings``, ``CardQuerySettings`` in the services), so a service's settings
name only what it uses; a variable means the same in every service and Helm chart.
"""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class GliaSettings(BaseSettings):
    """The common root: GLIA_ prefix, an optional .env file, unknown variables ignored
    (one environment serves all three services)."""

    model_config = SettingsConfigDict(
        env_prefix="GLIA_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # "production" turns configuration that is only fit for a laptop (a short token
    # secret, a plain-http JWKS URL, the well-known default passwords) into a start-up
    # error.
    environment: Literal["development", "production"] = "development"

    def _refuse_in_production(self, url: str, known: set[str], what: str) -> None:
        password = urlsplit(url).password
        if self.environment == "production" and (password is None or password in known):
            raise ValueError(
                f"{what}: a password of its own is required with GLIA_ENVIRONMENT=production "
                "(the default ones are for development only)"
            )


class DatabaseSettings(GliaSettings):
    database_url: str = "postgresql://glia_app:glia_app@127.0.0.1:5432/glia"
    # Sized for bursts of concurrent turns: a pool that overflows churns connections.
    database_pool_size: int = Field(default=20, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)

    # Optional separate roles for cross-user work (deploy/README.md "Database roles"):
    # background workers (outbox relay, stale-turn sweeper, reconciler) and glia-admin.
    # Unset, they use GLIA_DATABASE_URL, whose role then gets what they need as well.
    database_worker_url: str | None = None
    database_operator_url: str | None = None

    @property
    def worker_database_url(self) -> str:
        return self.database_worker_url or self.database_url

    @property
    def operator_database_url(self) -> str:
        return self.database_operator_url or self.database_url

    @model_validator(mode="after")
    def _own_database_password(self) -> Self:
        self._refuse_in_production(self.database_url, {"glia_app"}, "GLIA_DATABASE_URL")
        return self

    @model_validator(mode="after")
    def _own_role_passwords(self) -> Self:
        for url, variable in (
            (self.database_worker_url, "GLIA_DATABASE_WORKER_URL"),
            (self.database_operator_url, "GLIA_DATABASE_OPERATOR_URL"),
        ):
            if url:
                self._refuse_in_production(url, {"glia_app"}, variable)
        return self


class ServiceSettings(DatabaseSettings):
    """What every long-running service process needs."""

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    http_host: str = "127.0.0.1"

    @model_validator(mode="after")
    def _own_broker_password(self) -> Self:
        self._refuse_in_production(self.amqp_url, {"guest"}, "GLIA_AMQP_URL")
        return self

    # None means "the service's own default port" (8000, 8001, 8002).
    http_port: int | None = Field(default=None, ge=1, le=65535)
    # Larger request bodies are refused (413) before they are read. The default fits
    # the longest valid message (32,000 characters) in any JSON encoding: 12 bytes per
    # character when escaped as a surrogate pair, plus room for the envelope.
    http_max_body_bytes: int = Field(default=32_000 * 12 + 4096, ge=1024)
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    # An event loop held this long or longer is logged with what held it (0: off).
    stall_log_ms: float = Field(default=250.0, ge=0)


class AuthSettings(GliaSettings):
    """Bearer-token verification (the HTTP APIs) and minting (glia-token)."""

    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = None
    jwt_audience: str = "glia"
    jwt_issuer: str | None = None
    jwt_jwks_cache_s: float = Field(default=300.0, gt=0)
    # While the identity provider is unreachable, the last good key set serves this long
    # past jwt_jwks_cache_s; a kid not in the set refetches at most once per min_refresh.
    jwt_jwks_stale_s: float = Field(default=3600.0, ge=0)
    jwt_jwks_min_refresh_s: float = Field(default=10.0, gt=0)
    # A token may live at most this long (exp - iat, or exp - now without iat).
    jwt_max_lifetime_s: int = Field(default=86_400, gt=0)


class LlmSettings(GliaSettings):
    """An OpenAI-compatible endpoint (chat replies, extraction)."""

    llm_base_url: str = "https://api.openai.com/v1"
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(default=30.0, gt=0)
    # One call per chat turn or extraction run unless an operator asks for retries: a
    # failure is answered at once (chat error, or the rule-based fallback).
    llm_max_retries: int = Field(default=0, ge=0, le=3)

    @property
    def llm_configured(self) -> bool:
        return self.llm_api_key is not None and bool(self.llm_api_key.get_secret_value())


class StreamSettings(GliaSettings):
    """Server-Sent Event streams (turns, card events)."""

    # Idle streams get a comment this often, so proxies and ingresses keep them open.
    sse_heartbeat_s: float = Field(default=10.0, gt=0, le=300)
    # The reconnection delay EventSource clients are told (the SSE ``retry:`` field).
    sse_retry_ms: int = Field(default=2000, ge=0, le=600_000)
    # A stream ends by this age, or its token's expiry if sooner, telling the client to
    # reconnect.
    sse_max_lifetime_s: float = Field(default=3600.0, gt=0)


class CorsSettings(GliaSettings):
    """Browser clients on another origin (the HTTP APIs)."""

    # Origins allowed to call the API cross-origin, comma-separated (e.g. the web
    # client's, when card query listens on a port of its own). Empty: none.
    cors_origins: str = ""

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]


class MigrateSettings(DatabaseSettings):
    """glia-migrate: the owner's connection, and the app role's URL it provisions."""

    database_admin_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"


def driver_database_url(url: str) -> str:
    """The URL asyncpg itself takes (``postgresql://``, whatever the driver suffix)."""
    return urlsplit(url)._replace(scheme="postgresql").geturl()


def async_database_url(url: str) -> str:
    """The SQLAlchemy asyncpg URL for a plain ``postgresql://`` URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {parts.scheme}://...")
    # libpq's sslmode is spelled ssl for asyncpg under SQLAlchemy.
    query = "&".join(
        "ssl=" + pair.split("=", 1)[1] if pair.startswith("sslmode=") else pair
        for pair in parts.query.split("&")
        if pair
    )
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg", query=query))


def with_database(url: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))
