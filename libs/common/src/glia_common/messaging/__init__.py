"""How the services meet outside the database tables: RabbitMQ topology, the queue's
message contract and the card-change notification channel."""

from glia_common.messaging.contracts import (
    CARDS_CHANNEL,
    EXTRACTION_ROUTING_KEY,
    ExtractionRequested,
    card_change_payload,
    parse_card_change,
)
from glia_common.messaging.topology import (
    DEAD_LETTER_QUEUE_NAME,
    DELIVERY_LIMIT,
    EXCHANGE,
    EXCHANGE_NAME,
    EXTRACTION_QUEUE,
    EXTRACTION_QUEUE_NAME,
    OPERATOR_EXCHANGE,
    OPERATOR_EXCHANGE_NAME,
    REPLAY_ROUTING_KEY,
    build_broker,
    declare_topology,
)

__all__ = [
    "CARDS_CHANNEL",
    "DEAD_LETTER_QUEUE_NAME",
    "DELIVERY_LIMIT",
    "EXCHANGE",
    "EXCHANGE_NAME",
    "EXTRACTION_QUEUE",
    "EXTRACTION_QUEUE_NAME",
    "EXTRACTION_ROUTING_KEY",
    "OPERATOR_EXCHANGE",
    "OPERATOR_EXCHANGE_NAME",
    "REPLAY_ROUTING_KEY",
    "ExtractionRequested",
    "build_broker",
    "card_change_payload",
    "declare_topology",
    "parse_card_change",
]
