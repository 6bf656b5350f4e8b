"""Auth settings that cannot work stop the chat API at start-up."""

from __future__ import annotations

import pytest

from glia_chat_api.main import create_app
from glia_chat_api.settings import ChatApiSettings
from glia_common.auth import AuthConfigError

# Production also requires passwords of their own.
PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql://glia_app:own-password@127.0.0.1:5432/glia",
    "amqp_url": "amqp://glia:own-password@127.0.0.1:5672/",
}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({**PRODUCTION, "jwt_secret": "too-short"}, "32 bytes"),
        ({**PRODUCTION, "jwt_jwks_url": "http://idp.example/jwks"}, "https"),
        ({"jwt_jwks_url": "https://idp.example/jwks"}, "GLIA_JWT_ISSUER"),
    ],
)
async def test_lifespan_refuses_unusable_auth_settings(
    overrides: dict[str, str], reason: str
) -> None:
    app = create_app(ChatApiSettings(_env_file=None, **overrides))  # type: ignore[arg-type]
    with pytest.raises(AuthConfigError, match=reason):
        async with app.router.lifespan_context(app):
            pass
