"""Card query's settings: the common parts (database, broker, tokens); nothing of its own."""

from __future__ import annotations

from glia_common.settings import AuthSettings, ServiceSettings


class CardQuerySettings(ServiceSettings, AuthSettings):
    pass
