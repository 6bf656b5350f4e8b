"""Card query's settings: the common parts (database, broker, tokens); nothing of its own."""

from __future__ import annotations

from pydantic import Field

from glia_common.settings import AuthSettings, CorsSettings, ServiceSettings, StreamSettings


class CardQuerySettings(ServiceSettings, AuthSettings, StreamSettings, CorsSettings):
    # Open card event streams per user, in each process.
    card_subscriptions_per_user: int = Field(default=5, ge=1)
