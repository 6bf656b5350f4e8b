"""Logging and tracing, configured in one place.

Logs: structlog, JSON unless a terminal is attached (or GLIA_LOG_FORMAT says so);
every line carries the request id, trace and span ids and any bound ids.
Traces: an SDK tracer provider always exists, so every request has a W3C trace id;
spans are exported only when the standard OTEL_* variables ask for it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from glia_common.settings import ServiceSettings

_configured: set[str] = set()
_exporting = False
# Made once: the SDK provider's get_tracer builds a new tracer (and a warnings filter) per
# call, 2% of a card read. Made before the provider is set, it is a proxy that finds the
# provider at its first span.
_tracer = trace.get_tracer("glia")


def _add_trace_ids(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event


class _StderrLogger(structlog.WriteLogger):
    """structlog's direct writer, with the name that ``add_logger_name`` reads."""

    def __init__(self, name: str = "") -> None:
        super().__init__(sys.stderr)
        self.name = name


def configure_logging(settings: ServiceSettings, service_name: str) -> None:
    """Glia's own log lines are rendered by structlog and written straight to stderr
    (no stdlib LogRecord, handler lock or formatter per line: they are on every hot
    path). Libraries' stdlib logging goes through the same processors and renderer."""
    fmt = settings.log_format
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # The console renderer formats exceptions itself; JSON needs them as a string.
    finishing: list[Any] = [structlog.processors.format_exc_info] if use_json else []
    finishing += [lambda _, __, ev: {"service": service_name, **ev}, renderer]
    structlog.configure(
        processors=[*shared, *finishing],
        logger_factory=_StderrLogger,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finishing],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log duplicates what the request logging says, without ids.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # The openai SDK's HTTP client logs every request it sends at INFO: one more line per
    # turn and per extraction, with nothing Glia's own lines and spans do not say.
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _span_exporters() -> list[SpanExporter]:
    names = os.environ.get("OTEL_TRACES_EXPORTER")
    endpoint_set = bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if names is None:
        names = "otlp" if endpoint_set else "none"
    exporters: list[SpanExporter] = []
    for name in (n.strip() for n in names.split(",")):
        if name == "otlp":
            protocol = os.environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            )
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                    OTLPSpanExporter as GrpcExporter,
                )

                exporters.append(GrpcExporter())
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter as HttpExporter,
                )

                exporters.append(HttpExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
    return exporters


def configure_tracing(service_name: str) -> TracerProvider:
    global _exporting
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    exporters = _span_exporters()
    # Nothing exports: record nothing. Dropped spans still carry valid W3C ids, so every
    # request keeps a trace id that propagates, at almost no cost.
    sampler = None if exporters else ALWAYS_OFF
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _exporting = bool(exporters)
    if exporters:
        # Database spans only when someone will see them: they cost on every query.
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    return provider


def configure_telemetry(service_name: str, settings: ServiceSettings) -> None:
    """Logging and tracing for a process; safe to call more than once."""
    configure_logging(settings, service_name)
    if service_name not in _configured and not _configured:
        configure_tracing(service_name)
    _configured.add(service_name)


def spans_exported() -> bool:
    """Whether this process exports spans (so recording them is worth their cost)."""
    return _exporting


@contextmanager
def continued_trace(
    carrier: Mapping[str, Any], name: str, kind: trace.SpanKind
) -> Iterator[trace.Span]:
    """The carrier's W3C trace context (``traceparent``; else a new trace), current for the
    block, as one span - for a process that exports no spans, whose sampler makes this
    a non-recording span: the ids that log lines and records carry, for a few
    microseconds."""
    parent = propagate.extract(carrier) if carrier else otel_context.get_current()
    span = _tracer.start_span(name, context=parent, kind=kind)
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    try:
        yield span
    finally:
        otel_context.detach(token)


def shutdown_telemetry() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(5000)


def get_logger(name: str) -> Any:
    """A lazy logger: configuration is read at its first line, so module-level loggers
    made before configure_telemetry() still follow it."""
    return structlog.get_logger(name)
