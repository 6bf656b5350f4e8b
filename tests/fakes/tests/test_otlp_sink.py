"""The OTLP sink is checked against the real SDK exporter the services use, so what the
e2e tests see in it is what a collector would have received."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from glia_fakes.otlp_sink import STATUS_ERROR, OtlpSink, Span, chain, children


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as s:
        yield s


def _provider(
    sink: OtlpSink, service: str, compression: Compression | None = None
) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(
        endpoint=sink.endpoint + "/v1/traces", compression=compression, timeout=5
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _emit_pair(provider: TracerProvider) -> tuple[str, str, str]:
    """A SERVER parent with a CLIENT child; returns (trace_id, parent_id, child_id) as hex."""
    tracer = provider.get_tracer("glia.test")
    with (
        tracer.start_as_current_span(
            "POST /chat", kind=SpanKind.SERVER, attributes={"http.method": "POST"}
        ) as parent,
        tracer.start_as_current_span(
            "llm.complete",
            kind=SpanKind.CLIENT,
            attributes={
                "llm.model": "fake",
                "llm.tokens": 42,
                "llm.temperature": 0.5,
                "llm.stream": True,
                "llm.stops": ["\n", "END"],
            },
        ) as child,
    ):
        child.set_status(Status(StatusCode.ERROR, "boom"))
        child.add_event("retry", {"attempt": 2})
    pctx, cctx = parent.get_span_context(), child.get_span_context()
    return (
        format(pctx.trace_id, "032x"),
        format(pctx.span_id, "016x"),
        format(cctx.span_id, "016x"),
    )


@pytest.mark.parametrize("compression", [None, Compression.Gzip], ids=["plain", "gzip"])
def test_receives_parent_child_from_sdk_exporter(
    sink: OtlpSink, compression: Compression | None
) -> None:
    provider = _provider(sink, "chat-api", compression)
    try:
        trace_id, parent_id, child_id = _emit_pair(provider)
        assert provider.force_flush(5000)
    finally:
        provider.shutdown()

    spans = sink.wait_for(lambda s: len(s) >= 2, timeout_s=2)
    assert len(spans) == 2
    assert sink.errors == []
    by_name = {s.name: s for s in spans}
    parent, child = by_name["POST /chat"], by_name["llm.complete"]

    assert parent.trace_id == child.trace_id == trace_id
    assert len(trace_id) == 32 and trace_id == trace_id.lower()
    assert (parent.span_id, child.span_id) == (parent_id, child_id)
    assert len(child.span_id) == 16
    assert parent.parent_span_id is None and parent.is_root
    assert child.parent_span_id == parent_id
    assert (parent.kind, child.kind) == ("SERVER", "CLIENT")
    assert parent.service == child.service == "chat-api"
    assert parent.scope == "glia.test"
    assert parent.attributes == {"http.method": "POST"}
    assert child.attributes == {
        "llm.model": "fake",
        "llm.tokens": 42,
        "llm.temperature": 0.5,
        "llm.stream": True,
        "llm.stops": ["\n", "END"],
    }
    assert child.status_code == STATUS_ERROR and child.status_message == "boom"
    assert [(e.name, e.attributes) for e in child.events] == [("retry", {"attempt": 2})]
    assert 0 < parent.start_ns <= child.start_ns <= child.end_ns <= parent.end_ns

    assert chain(spans, child) == [child, parent]
    assert chain(spans, parent) == [parent]
    assert children(spans, parent) == [child]
    assert sink.spans(trace_id=trace_id) == spans
    assert sink.spans(service="chat-api") == spans
    assert sink.spans(service="extractor") == []
    assert sink.traces() == {trace_id: [parent, child]}


def test_services_and_traces_are_kept_apart(sink: OtlpSink) -> None:
    providers = [_provider(sink, "chat-api"), _provider(sink, "extractor")]
    try:
        ids = [_emit_pair(p) for p in providers]
        for p in providers:
            assert p.force_flush(5000)
    finally:
        for p in providers:
            p.shutdown()
    sink.wait_for(lambda s: len(s) >= 4, timeout_s=2)
    traces = sink.traces()
    assert set(traces) == {ids[0][0], ids[1][0]}
    assert {s.service for s in sink.spans(trace_id=ids[1][0])} == {"extractor"}
    assert len(sink.spans(service="chat-api")) == 2


def test_chain_stops_where_a_parent_is_missing() -> None:
    def span(span_id: str, parent: str | None, trace: str = "a" * 32) -> Span:
        return Span(trace, span_id, parent, span_id, "INTERNAL", "svc", {}, 0, 0, 0)

    root, mid, leaf = span("1" * 16, None), span("2" * 16, "1" * 16), span("3" * 16, "2" * 16)
    other_trace = span("1" * 16, None, trace="b" * 32)
    assert chain([root, mid, leaf], leaf) == [leaf, mid, root]
    assert chain([leaf, mid, other_trace], leaf) == [leaf, mid]  # root not received
    assert chain([leaf, mid, other_trace], leaf)[-1].parent_span_id is not None


def test_clear_and_wait_for_timeout(sink: OtlpSink) -> None:
    provider = _provider(sink, "chat-api")
    try:
        _emit_pair(provider)
        assert provider.force_flush(5000)
    finally:
        provider.shutdown()
    sink.wait_for(lambda s: len(s) == 2, timeout_s=2)
    sink.clear()
    assert sink.spans() == [] and sink.traces() == {}

    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"not met within 0\.2s") as info:
        sink.wait_for(lambda s: any(x.name == "never" for x in s), timeout_s=0.2)
    assert 0.2 <= time.monotonic() - started < 1.5
    assert "received 0 spans" in str(info.value)


def test_timeout_message_dumps_received_spans(sink: OtlpSink) -> None:
    provider = _provider(sink, "chat-api")
    try:
        trace_id, _, _ = _emit_pair(provider)
        assert provider.force_flush(5000)
    finally:
        provider.shutdown()
    with pytest.raises(AssertionError) as info:
        sink.wait_for(lambda s: len(s) > 2, timeout_s=0.3)
    message = str(info.value)
    assert f"trace {trace_id} (2 spans)" in message
    assert "[chat-api] SERVER 'POST /chat'" in message
    assert "\n      [chat-api] CLIENT 'llm.complete'" in message  # indented under its parent
    assert "status=ERROR (boom)" in message


def test_keeps_receiving_while_the_callers_thread_blocks(sink: OtlpSink) -> None:
    """Export from another thread while this one sits in a synchronous wait."""
    provider = _provider(sink, "chat-api")

    def emit() -> None:
        time.sleep(0.1)
        _emit_pair(provider)
        provider.force_flush(5000)

    thread = threading.Thread(target=emit)
    thread.start()
    try:
        spans = sink.wait_for(lambda s: len(s) >= 2, timeout_s=3)
    finally:
        thread.join()
        provider.shutdown()
    assert {s.name for s in spans} == {"POST /chat", "llm.complete"}


def test_raw_requests_protobuf_gzip_json_and_garbage(sink: OtlpSink) -> None:
    request = trace_service_pb2.ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    attr = rs.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", "card-query"
    pb_span = rs.scope_spans.add().spans.add()
    pb_span.trace_id, pb_span.span_id = bytes.fromhex("ab" * 16), bytes.fromhex("cd" * 8)
    pb_span.name, pb_span.kind = "consume", 5
    url = sink.endpoint + "/v1/traces"

    with httpx.Client(timeout=5) as client:
        r = client.post(
            url,
            content=gzip.compress(request.SerializeToString()),
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-protobuf"
        response = trace_service_pb2.ExportTraceServiceResponse()
        response.ParseFromString(r.content)
        assert not response.HasField("partial_success")

        body = {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "12" * 16,
                                    "spanId": "34" * 8,
                                    "parentSpanId": "56" * 8,
                                    "name": "json-span",
                                    "kind": 3,
                                    "attributes": [
                                        {"key": "n", "value": {"intValue": "7"}},
                                        {
                                            "key": "kv",
                                            "value": {
                                                "kvlistValue": {
                                                    "values": [
                                                        {"key": "x", "value": {"doubleValue": 1.5}}
                                                    ]
                                                }
                                            },
                                        },
                                    ],
                                }
                            ]
                        }
                    ],
                }
            ]
        }
        r = client.post(url, content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert r.status_code == 200 and r.json() == {}

        r = client.post(
            url,
            content=b"\xff\xff not protobuf",
            headers={"Content-Type": "application/x-protobuf"},
        )
        assert r.status_code == 400
        assert client.post(sink.endpoint + "/v1/metrics", content=b"").status_code == 200

    consume, json_span = sink.spans()
    assert (consume.trace_id, consume.span_id, consume.parent_span_id) == (
        "ab" * 16,
        "cd" * 8,
        None,
    )
    assert (consume.kind, consume.service, consume.name) == ("CONSUMER", "card-query", "consume")
    assert (json_span.trace_id, json_span.span_id, json_span.parent_span_id) == (
        "12" * 16,
        "34" * 8,
        "56" * 8,
    )
    assert (json_span.kind, json_span.service) == ("CLIENT", "web")
    assert json_span.attributes == {"n": 7, "kv": {"x": 1.5}}
    assert len(sink.errors) == 1 and sink.request_count == 3
    # The orphan is visible in dumps.
    with pytest.raises(AssertionError, match=r"json-span.*\(parent missing\)"):
        sink.wait_for(lambda s: False, timeout_s=0.05)


def test_lifecycle() -> None:
    sink = OtlpSink()
    with pytest.raises(RuntimeError):
        _ = sink.port
    sink.start()
    try:
        assert sink.endpoint == f"http://127.0.0.1:{sink.port}"
        with pytest.raises(RuntimeError, match="already started"):
            sink.start()
        # A second sink on the same port cannot bind, and says so.
        with pytest.raises(RuntimeError, match="failed to start"):
            OtlpSink(port=sink.port).start()
    finally:
        sink.stop()
    sink.stop()  # idempotent
