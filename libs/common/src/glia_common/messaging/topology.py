"""RabbitMQ topology and the broker factory, shared by the publisher and the consumer.

Both sides declare the same topology from here, so messages published before any
extractor has started are queued, not dropped, and the arguments always agree.
"""

from __future__ import annotations

from typing import Any

from faststream.rabbit import ExchangeType, QueueType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from faststream.rabbit.schemas import Channel

from glia_common.messaging.contracts import EXTRACTION_ROUTING_KEY
from glia_common.settings import ServiceSettings
from glia_common.telemetry import spans_exported

EXCHANGE_NAME = "glia"
# Operator replays (glia-admin) arrive through an exchange of their own: only they may
# re-run an extraction whose source already succeeded, and RabbitMQ permissions decide
# who may publish here (not the chat API's user). See deploy/README.md.
OPERATOR_EXCHANGE_NAME = "glia.operator"
REPLAY_ROUTING_KEY = "extraction.replay"
EXTRACTION_QUEUE_NAME = "glia.extraction"
DEAD_LETTER_QUEUE_NAME = "glia.extraction.dlq"
# Deliveries of one message before it is dead-lettered.
DELIVERY_LIMIT = 5

EXCHANGE = RabbitExchange(EXCHANGE_NAME, type=ExchangeType.TOPIC, durable=True)
OPERATOR_EXCHANGE = RabbitExchange(OPERATOR_EXCHANGE_NAME, type=ExchangeType.TOPIC, durable=True)

DEAD_LETTER_QUEUE = RabbitQueue(
    DEAD_LETTER_QUEUE_NAME,
    durable=True,
    queue_type=QueueType.QUORUM,
)

EXTRACTION_QUEUE = RabbitQueue(
    EXTRACTION_QUEUE_NAME,
    durable=True,
    queue_type=QueueType.QUORUM,
    routing_key=EXTRACTION_ROUTING_KEY,
    arguments={
        "x-delivery-limit": DELIVERY_LIMIT,
        # The default exchange routes by queue name straight to the DLQ.
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": DEAD_LETTER_QUEUE_NAME,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    },
)


def build_broker(settings: ServiceSettings, **kwargs: Any) -> RabbitBroker:
    """A broker whose publishes wait for confirms and fail when unroutable.

    With spans exported, FastStream's telemetry middleware records a span per publish
    and per delivery. Without, it would build spans that nobody records on every
    message, so it is left out: publishers then pass the W3C trace headers themselves
    and consumers continue the trace they carry (``telemetry.continued_trace``)."""
    return RabbitBroker(
        settings.amqp_url,
        middlewares=[RabbitTelemetryMiddleware()] if spans_exported() else [],
        default_channel=Channel(publisher_confirms=True, on_return_raises=True),
        **kwargs,
    )


async def declare_topology(broker: RabbitBroker, *, operator: bool = False) -> None:
    """The exchange, the queue and the dead-letter queue; with ``operator``, also the
    replay exchange and its binding (the extractor and glia-admin declare it)."""
    exchange = await broker.declare_exchange(EXCHANGE)
    await broker.declare_queue(DEAD_LETTER_QUEUE)
    queue = await broker.declare_queue(EXTRACTION_QUEUE)
    await queue.bind(exchange, routing_key=EXTRACTION_ROUTING_KEY)
    if operator:
        replays = await broker.declare_exchange(OPERATOR_EXCHANGE)
        await queue.bind(replays, routing_key=REPLAY_ROUTING_KEY)
