"""Auth settings that cannot work stop card query at start-up, with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from glia_card_query.main import create_app
from glia_card_query.settings import CardQuerySettings
from glia_common.auth import AuthConfigError


async def test_lifespan_refuses_jwks_without_an_issuer() -> None:
    settings = CardQuerySettings(_env_file=None, jwt_jwks_url="https://idp.example/jwks")  # type: ignore[call-arg]
    app = create_app(settings)
    with pytest.raises(AuthConfigError, match="GLIA_JWT_ISSUER"):
        async with app.router.lifespan_context(app):
            pass


def test_the_process_exits_with_the_reason(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "GLIA_ENVIRONMENT": "production",
        "GLIA_DATABASE_URL": "postgresql://glia_app:own-password@127.0.0.1:5432/glia",
        "GLIA_AMQP_URL": "amqp://glia:own-password@127.0.0.1:5672/",
        "GLIA_JWT_SECRET": "too-short",
        "GLIA_HTTP_PORT": "1",  # never reached: the lifespan fails first
        "GLIA_LOG_FORMAT": "console",
    }
    done = subprocess.run(
        [sys.executable, "-m", "glia_card_query.main"],
        env=env,
        cwd=tmp_path,  # no .env
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "GLIA_JWT_SECRET must be at least 32 bytes" in output, output
