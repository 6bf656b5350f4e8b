"""Prometheus metrics of the extraction worker."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RUNS = Counter(
    "glia_extraction_runs_total",
    "Extraction runs by final status and failure class ('none' when the LLM succeeded).",
    ["status", "failure_class"],
)
FALLBACKS = Counter(
    "glia_extraction_fallback_total", "Runs whose cards came from the rule-based extractor."
)
DUPLICATES = Counter(
    "glia_extraction_duplicates_skipped_total",
    "Requests skipped because a succeeded run already had the current source hash.",
)
DEAD_LETTERED = Counter(
    "glia_extraction_dead_lettered_total",
    "Messages sent to the dead-letter queue (malformed, or past the delivery limit).",
    ["reason"],
)
REDELIVERIES = Counter(
    "glia_extraction_requeued_total",
    "Messages returned to the queue for another attempt.",
    ["reason"],
)
LAG = Histogram(
    "glia_extraction_lag_seconds",
    "From the request (turn end) to the commit of the cards.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
LLM_LATENCY = Histogram(
    "glia_extraction_llm_seconds",
    "Duration of extraction LLM calls, by outcome.",
    ["outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60),
)
IN_FLIGHT = Gauge("glia_extraction_in_flight", "Extraction runs being processed now.")
RECONCILED = Counter(
    "glia_extraction_reconciler_requests_total",
    "Extraction requests re-issued by the reconciler for conversations whose requests seem lost.",
)
ANSWERS_TIMED_OUT = Counter(
    "glia_extraction_answers_timed_out_total",
    "Acks or nacks that did not complete in time (the connection was being restored); "
    "the broker redelivers those messages.",
)
