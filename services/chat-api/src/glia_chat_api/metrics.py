"""Prometheus metrics of the chat API (HTTP metrics come from glia_common.web.metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_STREAMS = Gauge(
    "glia_chat_active_streams", "Open turn streams (first requests and resumed ones)."
)
TURNS = Counter(
    "glia_chat_turns_total",
    "Finished turns by outcome (complete, failed, incomplete, cancelled, ended_elsewhere, "
    "unsaved).",
    ["outcome"],
)
RESUMES = Counter(
    "glia_chat_resumes_total",
    "Resumed turn streams, by where they were read from (live: the turn runs in this "
    "process; stored: the database, for settled turns and those of other replicas).",
    ["source"],
)
FIRST_TOKEN = Histogram(
    "glia_chat_first_delta_seconds",
    "From the start event to the first delta sent.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_BACKLOG = Gauge("glia_outbox_backlog", "Outbox rows not yet published.")
OUTBOX_OLDEST_AGE = Gauge(
    "glia_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row."
)
OUTBOX_PUBLISHED = Counter("glia_outbox_published_total", "Outbox rows published to RabbitMQ.")
OUTBOX_FAILURES = Counter(
    "glia_outbox_publish_failures_total", "Failed attempts to publish outbox rows."
)
