"""The consumer of glia.extraction, and its acknowledgement policy.

- Success, duplicate, or a conversation that no longer exists: ack, after the commit.
- Malformed message: reject at once (dead-lettered to glia.extraction.dlq), with a log line.
- Database or broker trouble: retried here with backoff, holding the message, so a
  short outage does not burn deliveries; past that, requeued.
- Anything else (a bug, poison data): requeued; the quorum queue's delivery limit
  dead-letters it after DELIVERY_LIMIT attempts, and the queue keeps flowing.
LLM failures never get here: they end in the rule-based fallback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from faststream import AckPolicy
from faststream.message import StreamMessage
from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from faststream.rabbit.schemas import Channel
from opentelemetry import trace
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from glia_common.db import CONNECTION_ERRORS
from glia_common.messaging import (
    DELIVERY_LIMIT,
    EXCHANGE,
    EXTRACTION_QUEUE,
    OPERATOR_EXCHANGE_NAME,
    ExtractionRequested,
)
from glia_common.telemetry import continued_trace, get_logger
from glia_extractor import metrics
from glia_extractor.extraction.service import ExtractionJob, ExtractionService, Outcome

log = get_logger(__name__)

# How long one delivery keeps retrying through database trouble before requeueing.
TRANSIENT_RETRY_BUDGET_S = 60.0
# How long an ack (or nack) may take. On a channel being restored after a lost
# connection it can wait for the broker indefinitely, and the consumer's next messages
# wait behind it: past this, give up on it; the broker redelivers what the old channel
# held.
ANSWER_TIMEOUT_S = 10.0


def is_transient(exc: BaseException) -> bool:
    """Database or broker trouble, worth trying again (on another connection)."""
    if isinstance(exc, CONNECTION_ERRORS):
        return True
    if isinstance(exc, OperationalError | InterfaceError | ConnectionError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


@contextmanager
def delivery_trace(headers: dict[str, Any]) -> Iterator[str]:
    """The delivery's trace context, current for its processing; yields its trace id.

    With spans exported, FastStream's telemetry middleware has already made a consumer
    span current, a child of the message's ``traceparent``. Otherwise the same context
    is made here (``continued_trace``), so that the run, its record and its log lines
    carry the trace of the chat request that asked for it."""
    current = trace.get_current_span()
    if current.get_span_context().is_valid:
        yield format(current.get_span_context().trace_id, "032x")
        return
    with continued_trace(headers, "glia.extraction process", trace.SpanKind.CONSUMER) as span:
        yield format(span.get_span_context().trace_id, "032x")


def delivery_count(headers: dict[str, Any]) -> int:
    value = headers.get("x-delivery-count", 0)
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 0


async def raw_body(message: StreamMessage[Any]) -> bytes:
    """Leave decoding to the handler, so a body that is not JSON reaches it (and is
    dead-lettered there) instead of failing inside the framework, unacked. A coroutine,
    because FastStream runs a plain function on a worker thread."""
    return message.body


def register(broker: RabbitBroker, service: ExtractionService, *, prefetch: int) -> None:
    """The handler takes the raw body and reads its message from the broker's context,
    so it needs no dependency injection: build the broker with ``apply_types=False``,
    because injecting the message costs a task group and a worker-thread hop per
    delivery."""

    @broker.subscriber(
        EXTRACTION_QUEUE,
        EXCHANGE,
        ack_policy=AckPolicy.MANUAL,
        decoder=raw_body,
        channel=Channel(prefetch_count=prefetch),
        title="glia.extraction",
        description="Extraction requests written by chat turns (through the outbox).",
    )
    async def on_extraction_requested(body: bytes) -> None:
        msg: RabbitMessage = broker.context.get_local("message")
        headers = dict(msg.headers or {})
        try:
            request = ExtractionRequested.model_validate_json(body)
        except ValidationError as exc:
            log.error(
                "extraction.malformed_message", error=str(exc)[:300], message_id=msg.message_id
            )
            metrics.DEAD_LETTERED.labels("malformed").inc()
            await _answer(msg.reject(requeue=False))
            return
        # Only the operator exchange carries replays; a header anyone could set does not.
        replay = getattr(msg.raw_message, "exchange", None) == OPERATOR_EXCHANGE_NAME
        with (
            delivery_trace(headers) as trace_id,
            structlog.contextvars.bound_contextvars(
                conversation_id=str(request.conversation_id),
                user_id=request.user_id,
                request_id=request.request_id,
            ),
        ):
            job = ExtractionJob(request=request, trace_id=trace_id, replay=replay)
            await _process(msg, service, job, headers)


async def _process(
    msg: RabbitMessage, service: ExtractionService, job: ExtractionJob, headers: dict[str, Any]
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TRANSIENT_RETRY_BUDGET_S
    attempt = 0
    metrics.IN_FLIGHT.inc()
    try:
        while True:
            try:
                outcome = await service.run(job)
                break
            except Exception as exc:
                if is_transient(exc) and loop.time() < deadline:
                    attempt += 1
                    log.warning(
                        "extraction.transient_error", error=type(exc).__name__, attempt=attempt
                    )
                    await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
                    continue
                reason = "transient" if is_transient(exc) else "error"
                log.exception("extraction.failed", reason=reason)
                await _requeue(msg, headers, reason)
                return
    finally:
        metrics.IN_FLIGHT.dec()

    if outcome is Outcome.BUSY:
        await _requeue(msg, headers, "busy")
        return
    if outcome is Outcome.DUPLICATE:
        metrics.DUPLICATES.inc()
        log.info("extraction.duplicate_skipped")
    elif outcome in (Outcome.NO_CONVERSATION, Outcome.NO_MESSAGES, Outcome.SUPERSEDED):
        log.info("extraction.nothing_to_do", outcome=outcome.value)
    await _answer(msg.ack())


async def _requeue(msg: RabbitMessage, headers: dict[str, Any], reason: str) -> None:
    """Back to the queue for another attempt, said in a log line: every requeue costs one
    of the message's deliveries (the quorum queue's delivery limit), so each is
    accounted for, with the request's ids bound to the line."""
    deliveries = delivery_count(headers) + 1
    last = deliveries >= DELIVERY_LIMIT
    log.warning(
        "extraction.requeued",
        reason=reason,
        deliveries=deliveries,
        dead_lettered=last,
        message_id=msg.message_id,
    )
    if last:
        metrics.DEAD_LETTERED.labels("delivery_limit").inc()
    metrics.REDELIVERIES.labels(reason).inc()
    await _answer(msg.nack(requeue=True))


async def _answer(answer: Awaitable[None]) -> None:
    """Send an ack, nack or reject, bounded by ANSWER_TIMEOUT_S."""
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            await answer
    except TimeoutError:
        metrics.ANSWERS_TIMED_OUT.inc()
        log.warning("extraction.answer_timed_out", timeout_s=ANSWER_TIMEOUT_S)
