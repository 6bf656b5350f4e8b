"""The web client: a small single-page chat app served as static files under ``/app``.

The files live inside this package so they ship in the chat API's image; no build step.
The page calls the chat API on its own origin and the card query API at
``GLIA_WEB_CARD_QUERY_URL`` (its own origin too when empty: one ingress serves both),
which it learns from ``/app/config.json``. It holds no secret and mints no token: the
user brings one.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from glia_chat_api.settings import ChatApiSettings

PREFIX = "/app"
STATIC_DIR = Path(__file__).parent / "static"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def security_headers(card_query_url: str) -> dict[str, str]:
    """Only this origin's scripts and styles; connections to the two APIs only."""
    connect = " ".join(filter(None, ["'self'", _origin(card_query_url)]))
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src {connect}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # Revalidate each time (ETag): a new release is picked up at the next load.
        "Cache-Control": "no-cache",
    }


class _WebAppFiles(StaticFiles):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(directory=STATIC_DIR, html=True)
        self._headers = headers

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(self._headers)
        return response


def mount_web_app(app: FastAPI, settings: ChatApiSettings) -> None:
    card_query_url = settings.web_card_query_url.rstrip("/")
    headers = security_headers(card_query_url)

    @app.get(f"{PREFIX}/config.json", include_in_schema=False)
    async def web_app_config() -> JSONResponse:
        return JSONResponse({"card_query_url": card_query_url}, headers=headers)

    app.mount(PREFIX, _WebAppFiles(headers), name="web-app")
