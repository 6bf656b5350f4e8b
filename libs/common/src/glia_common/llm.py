"""The OpenAI-compatible client both LLM users build, and how its failures are named."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import openai
from openai import AsyncOpenAI
from pydantic import ValidationError

from glia_common.settings import Settings


def build_openai_client(settings: Settings) -> AsyncOpenAI:
    """Few SDK retries (GLIA_LLM_MAX_RETRIES) so one job cannot multiply into many calls."""
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else ""
    return AsyncOpenAI(
        api_key=api_key,
        base_url=settings.llm_base_url,
        timeout=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
    )


def provider_name(base_url: str) -> str:
    """A short provider label for run records and spans: the endpoint's host."""
    host = urlsplit(base_url).hostname or "unknown"
    return "openai" if host == "api.openai.com" else host


def classify_llm_error(exc: BaseException) -> str:
    """Map an exception from an LLM call to a contract ``failure_class``."""
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth"
    if isinstance(exc, openai.RateLimitError):
        return "quota"
    if isinstance(exc, openai.APITimeoutError | TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError | ConnectionError):
        return "network"
    if isinstance(
        exc,
        json.JSONDecodeError
        | ValidationError
        | openai.APIResponseValidationError
        | openai.LengthFinishReasonError
        | openai.ContentFilterFinishReasonError,
    ):
        return "schema"
    return "provider_error"
