"""The extractor's settings: the common parts plus the worker's own."""

from __future__ import annotations

from pydantic import Field

from glia_common.settings import LlmSettings, ServiceSettings


class ExtractorSettings(ServiceSettings, LlmSettings):
    extraction_model: str = "gpt-4o-mini"
    # Cards are extracted from a conversation's latest messages (plus, for the LLM, the
    # summary card of what came before), so a run's cost stops growing with it.
    extraction_window_messages: int = Field(default=40, ge=2, le=1000)
    # Messages one worker process works on at once.
    extractor_prefetch: int = Field(default=16, ge=1, le=1000)
    reconcile_interval_s: float = Field(default=30.0, gt=0)
    # A conversation must be quiet this long before the reconciler re-requests extraction.
    reconcile_grace_s: float = Field(default=30.0, gt=0)
