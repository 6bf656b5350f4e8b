"""Cross-origin access for browser clients, off unless GLIA_CORS_ORIGINS names origins.

Behind an ingress the web client and both APIs share one origin and need none of this;
under ``make run`` the card query API listens on another port than the page.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from glia_common.settings import CorsSettings

# What a browser client sends and reads beyond the CORS-safelisted headers.
REQUEST_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-None-Match",
    "Last-Event-ID",
    "X-Request-ID",
]
RESPONSE_HEADERS = ["ETag", "Retry-After", "X-Request-ID"]


def install_cors(app: FastAPI, settings: CorsSettings) -> None:
    """Answer preflights and mark responses for the configured origins (outermost layer,
    so error answers carry the headers too)."""
    origins = settings.cors_origin_list
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=REQUEST_HEADERS,
        expose_headers=RESPONSE_HEADERS,
        allow_credentials=False,  # bearer tokens, never cookies
        max_age=600,
    )
