"""A real OTLP/HTTP trace receiver for end-to-end tests.

The services run as separate processes with the standard OpenTelemetry SDK exporter
(``opentelemetry-exporter-otlp-proto-http``); point them at :attr:`OtlpSink.endpoint`
with ``OTEL_EXPORTER_OTLP_ENDPOINT`` and ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``
and they POST ``ExportTraceServiceRequest`` bodies to ``/v1/traces``. Protobuf and
OTLP/JSON bodies are accepted, plain or with ``Content-Encoding: gzip`` / ``deflate``.
``/v1/metrics`` and ``/v1/logs`` are acknowledged and discarded, so a service that also
exports those signals does not log export errors.

The aiohttp server runs in a background thread with its own event loop, so it keeps
receiving while the test's loop is blocked by synchronous code (``wait_for``, a
blocking client, ``time.sleep``)::

    with OtlpSink() as sink:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
        ...
        spans = sink.wait_for(lambda s: any(x.name == "POST /chat" for x in s), 10.0)
        assert chain(spans, leaf)[-1].parent_span_id is None
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = [
    "STATUS_ERROR",
    "STATUS_OK",
    "STATUS_UNSET",
    "Event",
    "Link",
    "OtlpSink",
    "Span",
    "chain",
    "children",
    "format_spans",
]

STATUS_UNSET: Final = 0
STATUS_OK: Final = 1
STATUS_ERROR: Final = 2

# OTLP SpanKind enum -> the readable name used in :attr:`Span.kind`.
_KINDS: Final[dict[int, str]] = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}
_STATUSES: Final[dict[int, str]] = {0: "UNSET", 1: "OK", 2: "ERROR"}
_PROTOBUF: Final = "application/x-protobuf"
_JSON: Final = "application/json"
_MAX_BODY: Final = 64 * 1024 * 1024
_DUMP_LIMIT: Final = 200  # spans shown in a timeout message


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Event:
    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Link:
    trace_id: str
    span_id: str
    attributes: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Span:
    """One received span. Ids are lowercase hex; ``kind`` is a readable name.

    ``kind`` is one of ``"INTERNAL"``, ``"SERVER"``, ``"CLIENT"``, ``"PRODUCER"``,
    ``"CONSUMER"`` (``"UNSPECIFIED"`` if the exporter sent 0). ``status_code`` is the
    OTLP code: :data:`STATUS_UNSET` (0), :data:`STATUS_OK` (1), :data:`STATUS_ERROR` (2).
    Hashable: the dict fields are left out of the hash (but not of equality).
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str
    attributes: dict[str, Any] = field(hash=False)
    status_code: int
    start_ns: int
    end_ns: int
    status_message: str = ""
    scope: str = ""
    resource: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)
    events: tuple[Event, ...] = field(default=(), repr=False)
    links: tuple[Link, ...] = field(default=(), repr=False)

    @property
    def is_root(self) -> bool:
        return self.parent_span_id is None

    @property
    def status(self) -> str:
        """``"UNSET"``, ``"OK"`` or ``"ERROR"``."""
        return _STATUSES.get(self.status_code, str(self.status_code))

    def describe(self) -> str:
        """One line for failure messages."""
        status = "" if self.status_code == STATUS_UNSET else f" status={self.status}"
        if self.status_message:
            status += f" ({self.status_message})"
        attrs = f" {self.attributes}" if self.attributes else ""
        return (
            f"[{self.service}] {self.kind} {self.name!r} span={self.span_id} "
            f"parent={self.parent_span_id}{status}{attrs}"
        )


# --------------------------------------------------------------------------- decoding


def _any_value(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, which)


def _attributes(pairs: Iterable[common_pb2.KeyValue]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in pairs}


def _hex(raw: bytes) -> str | None:
    return raw.hex() if raw and any(raw) else None


def _span(span: trace_pb2.Span, resource: dict[str, Any], service: str, scope: str) -> Span:
    return Span(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=_hex(span.parent_span_id),
        name=span.name,
        kind=_KINDS.get(span.kind, str(span.kind)),
        service=service,
        attributes=_attributes(span.attributes),
        status_code=int(span.status.code),
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        status_message=span.status.message,
        scope=scope,
        resource=resource,
        events=tuple(
            Event(e.name, e.time_unix_nano, _attributes(e.attributes)) for e in span.events
        ),
        links=tuple(
            Link(link.trace_id.hex(), link.span_id.hex(), _attributes(link.attributes))
            for link in span.links
        ),
    )


def decode_request(request: trace_service_pb2.ExportTraceServiceRequest) -> list[Span]:
    """Flatten an ``ExportTraceServiceRequest`` into :class:`Span` records."""
    out: list[Span] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            out.extend(_span(s, resource, service, scope) for s in scope_spans.spans)
    return out


_ID_KEYS: Final = frozenset(
    {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
)


def _json_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON carries ids as hex, protobuf's JSON mapping expects base64 bytes."""
    if isinstance(node, list):
        return [_json_ids_to_base64(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _ID_KEYS and isinstance(value, str):
            out[key] = base64.b64encode(bytes.fromhex(value)).decode() if value else ""
        else:
            out[key] = _json_ids_to_base64(value)
    return out


def _parse(body: bytes, content_type: str) -> trace_service_pb2.ExportTraceServiceRequest:
    message = trace_service_pb2.ExportTraceServiceRequest()
    if content_type == _JSON:
        json_format.ParseDict(
            _json_ids_to_base64(json.loads(body)), message, ignore_unknown_fields=True
        )
    else:
        message.ParseFromString(body)
    return message


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        # zlib-wrapped per the HTTP spec; some senders send raw deflate.
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


# --------------------------------------------------------------------------- helpers


def chain(spans: Iterable[Span], span: Span) -> list[Span]:
    """``span`` followed by its ancestors within the same trace, ending at the root.

    Stops early where a parent is missing from ``spans``: the chain is intact
    iff ``chain(spans, span)[-1].parent_span_id is None``.
    """
    by_id = {s.span_id: s for s in spans if s.trace_id == span.trace_id}
    out = [span]
    seen = {span.span_id}
    current = span
    while current.parent_span_id is not None:
        parent = by_id.get(current.parent_span_id)
        if parent is None or parent.span_id in seen:
            break
        out.append(parent)
        seen.add(parent.span_id)
        current = parent
    return out


def children(spans: Iterable[Span], span: Span) -> list[Span]:
    """The direct children of ``span`` within its trace, by start time."""
    found = [s for s in spans if s.trace_id == span.trace_id and s.parent_span_id == span.span_id]
    return sorted(found, key=lambda s: s.start_ns)


def _group(spans: Iterable[Span]) -> dict[str, list[Span]]:
    traces: dict[str, list[Span]] = {}
    for s in spans:
        traces.setdefault(s.trace_id, []).append(s)
    for members in traces.values():
        members.sort(key=lambda s: s.start_ns)
    return traces


def _trace_lines(members: list[Span]) -> list[str]:
    """One trace as a tree (depth-first, siblings by start time), one line per span."""
    ids = {s.span_id for s in members}
    kids: dict[str | None, list[Span]] = {}
    for s in members:
        # Orphans (parent not received) are shown at top level, marked.
        parent = s.parent_span_id if s.parent_span_id in ids else None
        kids.setdefault(parent, []).append(s)
    lines: list[str] = []
    visited: set[str] = set()
    stack = [(s, 0) for s in reversed(kids.get(None, []))]
    while stack:
        s, depth = stack.pop()
        if s.span_id in visited:
            continue
        visited.add(s.span_id)
        mark = " (parent missing)" if depth == 0 and s.parent_span_id is not None else ""
        lines.append("    " + "  " * depth + s.describe() + mark)
        stack.extend((c, depth + 1) for c in reversed(kids.get(s.span_id, [])))
    # Only spans caught in a parent cycle are left.
    lines.extend(
        "    " + s.describe() + " (parent cycle)" for s in members if s.span_id not in visited
    )
    return lines


def format_spans(spans: Iterable[Span], limit: int = _DUMP_LIMIT) -> str:
    """A readable dump: one block per trace, children indented under their parents."""
    spans = list(spans)
    if not spans:
        return "  (no spans)"
    lines: list[str] = []
    shown = 0
    for trace_id, members in _group(spans).items():
        if shown >= limit:
            break
        lines.append(f"  trace {trace_id} ({len(members)} spans)")
        span_lines = _trace_lines(members)[: limit - shown]
        lines.extend(span_lines)
        shown += len(span_lines)
    if shown < len(spans):
        lines.append(f"  ... ({len(spans) - shown} more spans not shown)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- server


class OtlpSink:
    """An OTLP/HTTP receiver on 127.0.0.1, served from its own thread and event loop.

    ``with OtlpSink() as sink:`` or ``sink.start()`` / ``sink.stop()``. All query
    methods are thread-safe and may be called from any thread or event loop (they
    never block on the server's loop, except :meth:`wait_for`, which only sleeps).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._cond = threading.Condition()
        self._spans: list[Span] = []
        self._errors: list[str] = []
        self._requests = 0

    # ---- lifecycle

    def start(self, timeout_s: float = 10.0) -> Self:
        """Bind (port 0, the default, picks a free port) and serve in a background thread."""
        if self._thread is not None:
            raise RuntimeError("OtlpSink already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._run, args=(ready, failure), name="otlp-sink", daemon=True
        )
        thread.start()
        if not ready.wait(timeout_s):
            raise RuntimeError(f"OtlpSink did not start within {timeout_s}s")
        if failure:
            thread.join(timeout_s)
            raise RuntimeError("OtlpSink failed to start") from failure[0]
        self._thread = thread
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout_s)
        if thread.is_alive():
            raise RuntimeError(f"OtlpSink thread did not stop within {timeout_s}s")
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready, failure))
        except BaseException as exc:  # reported to start() if it happened before ready
            if not ready.is_set():
                failure.append(exc)
        finally:
            ready.set()
            self._loop = None
            loop.close()

    async def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_post("/v1/traces", self._traces)
        app.router.add_post("/v1/metrics", self._discard)
        app.router.add_post("/v1/logs", self._discard)
        # auto_decompress off: Content-Encoding is honoured by _decompress below.
        runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=1.0,
            access_log=None,
            auto_decompress=False,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._requested_port)
            await site.start()
            self._port = int(runner.addresses[0][1])
            ready.set()
            await self._stopping.wait()
        except BaseException as exc:
            if not ready.is_set():
                failure.append(exc)
                ready.set()
            raise
        finally:
            await runner.cleanup()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("OtlpSink not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """What to set as ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the SDK appends ``/v1/traces``)."""
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for a service process exporting here (traces only, no batching lag)."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }

    # ---- handlers (run on the sink's loop)

    async def _read(self, request: web.Request) -> tuple[bytes, str]:
        body = _decompress(await request.read(), request.headers.get("Content-Encoding", ""))
        return body, request.content_type

    @staticmethod
    def _ok(content_type: str) -> web.Response:
        # An empty Export*ServiceResponse: zero bytes in protobuf, ``{}`` in JSON.
        if content_type == _JSON:
            return web.Response(body=b"{}", content_type=_JSON)
        return web.Response(
            body=trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
            content_type=_PROTOBUF,
        )

    async def _traces(self, request: web.Request) -> web.Response:
        try:
            body, content_type = await self._read(request)
            spans = decode_request(_parse(body, content_type))
        except Exception as exc:
            error = f"{request.path}: {type(exc).__name__}: {exc}"
            with self._cond:
                self._requests += 1
                self._errors.append(error)
                self._cond.notify_all()
            return web.Response(status=400, text=error)
        with self._cond:
            self._requests += 1
            self._spans.extend(spans)
            self._cond.notify_all()
        return self._ok(content_type)

    async def _discard(self, request: web.Request) -> web.Response:
        await request.read()
        return self._ok(request.content_type)

    # ---- queries (thread-safe)

    def spans(self, trace_id: str | None = None, service: str | None = None) -> list[Span]:
        """Received spans in arrival order, optionally filtered."""
        with self._cond:
            spans = list(self._spans)
        return [
            s
            for s in spans
            if (trace_id is None or s.trace_id == trace_id.lower())
            and (service is None or s.service == service)
        ]

    def traces(self) -> dict[str, list[Span]]:
        """Spans grouped by trace id (first-seen order), each sorted by start time."""
        return _group(self.spans())

    @property
    def errors(self) -> list[str]:
        """Requests that could not be decoded (they were answered 400)."""
        with self._cond:
            return list(self._errors)

    @property
    def request_count(self) -> int:
        """Trace export requests received, decodable or not."""
        with self._cond:
            return self._requests

    def clear(self) -> None:
        with self._cond:
            self._spans.clear()
            self._errors.clear()

    def wait_for(
        self,
        predicate: Callable[[list[Span]], bool],
        timeout_s: float = 10.0,
        *,
        trace_id: str | None = None,
        service: str | None = None,
        poll_s: float = 0.05,
    ) -> list[Span]:
        """Block until ``predicate(spans)`` is true; return those spans.

        ``spans`` is what :meth:`spans` returns with the same filters. Re-checked on each
        arrival and at least every ``poll_s``. On timeout raises ``AssertionError`` with a
        dump of everything received.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans(trace_id=trace_id, service=service)
            if predicate(spans):
                return spans
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with self._cond:
                self._cond.wait(min(poll_s, remaining))
        raise AssertionError(self._timeout_message(predicate, timeout_s, trace_id, service))

    def _timeout_message(
        self,
        predicate: Callable[[list[Span]], bool],
        timeout_s: float,
        trace_id: str | None,
        service: str | None,
    ) -> str:
        everything = self.spans()
        filters: Mapping[str, str | None] = {"trace_id": trace_id, "service": service}
        where = ", ".join(f"{k}={v}" for k, v in filters.items() if v is not None)
        what = getattr(predicate, "__qualname__", repr(predicate))
        lines = [
            f"OtlpSink: condition {what} not met within {timeout_s}s"
            + (f" (filtered by {where})" if where else ""),
            f"received {len(everything)} spans in {self.request_count} export requests:",
            format_spans(everything),
        ]
        errors = self.errors
        if errors:
            lines.append("undecodable requests:")
            lines.extend(f"  {e}" for e in errors)
        return "\n".join(lines)
