"""The OpenAI-compatible client both LLM users build, and how its failures are named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
from openai import AsyncOpenAI
from opentelemetry import trace
from opentelemetry.trace import Span
from pydantic import ValidationError

from glia_common.settings import LlmSettings


def build_openai_client(settings: LlmSettings) -> AsyncOpenAI:
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


_tracer = trace.get_tracer("glia.llm")


@contextmanager
def llm_call_span(model: str, provider: str, **attributes: Any) -> Iterator[Span]:
    """A CLIENT span for one LLM call, with the GenAI semantic-convention attributes."""
    with _tracer.start_as_current_span(
        f"chat {model}",
        kind=trace.SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            **attributes,
        },
    ) as span:
        yield span


def record_llm_outcome(
    span: Span, failure_class: str | None, usage: dict[str, Any] | None = None
) -> None:
    """``failure_class`` None is success; usage carries the OpenAI token counts."""
    span.set_attribute("glia.llm.outcome", failure_class or "ok")
    if failure_class is not None:
        span.set_attribute("error.type", failure_class)
        span.set_status(trace.Status(trace.StatusCode.ERROR, failure_class))
    if usage:
        span.set_attribute("gen_ai.usage.input_tokens", int(usage.get("prompt_tokens", 0)))
        span.set_attribute("gen_ai.usage.output_tokens", int(usage.get("completion_tokens", 0)))
