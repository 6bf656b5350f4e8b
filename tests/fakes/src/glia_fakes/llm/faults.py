"""The fake's switchable state: fault modes, per-target settings, and the checks that
make a mistyped test configuration fail loudly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal, get_args

Kind = Literal["chat", "extraction"]
TargetName = Literal["chat", "extraction", "all"]
Mode = Literal[
    "ok",
    "http_401",
    "http_403",
    "http_429",
    "http_500",
    "hang",
    "hang_mid_stream",
    "reset",
    "garbage",
    "non_json_content",
    "schema_invalid",
    "slow",
]
FinishReason = Literal["stop", "length"]

MODES: Final[frozenset[str]] = frozenset(get_args(Mode))
KINDS: Final[tuple[Kind, ...]] = ("chat", "extraction")

DEFAULT_CHAT_REPLY: Final = (
    "This is the fake model's deterministic reply, streamed in small pieces "
    "so that clients can be tested against a real HTTP stream."
)
DEFAULT_CHUNKS: Final = 20
# Deltas sent before a mid-stream fault (hang or reset) strikes.
MID_STREAM_DELTAS: Final = 3
NON_JSON_CONTENT: Final = "Sure! Here are the cards you asked for: a summary and a fact."
SCHEMA_INVALID_CONTENT: Final[dict[str, Any]] = {"cards": [{"kind": "banana"}]}
GARBAGE_BODY: Final = "<html>oops</html>"

# (type, code, message) of the OpenAI-style error body per HTTP fault.
HTTP_ERRORS: Final[dict[str, tuple[int, str, str, str]]] = {
    "http_401": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    "http_403": (403, "permission_denied", "unsupported_country", "Permission denied."),
    "http_429": (429, "requests", "rate_limit_exceeded", "Rate limit reached."),
    "http_500": (500, "server_error", "internal_error", "The server had an error."),
}
CONFIG_FIELDS: Final = frozenset(
    {
        "target",
        "mode",
        "count",
        "delay_s",
        "chunk_delay_s",
        "chat_reply",
        "chunks",
        "finish_reason",
        "extraction_reply",
    }
)


class Unset:
    """Marks "not given" where ``None`` is itself a meaningful value."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()


@dataclass
class Fault:
    """A mode plus how many more requests it applies to (None: until changed).

    One instance is shared by both targets when set with ``target="all"``, so a
    ``count`` then covers the next N requests of either kind, as documented.
    """

    mode: Mode = "ok"
    remaining: int | None = None


@dataclass
class TargetState:
    fault: Fault = field(default_factory=Fault)
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    chat_reply: str = DEFAULT_CHAT_REPLY
    chunks: int = DEFAULT_CHUNKS
    finish_reason: FinishReason = "stop"
    extraction_reply: Any = None  # None: cards built from the request

    def snapshot(self) -> dict[str, Any]:
        data = asdict(self)
        fault = data.pop("fault")
        return {"mode": fault["mode"], "count": fault["remaining"], **data}


def check_config(fields: dict[str, Any]) -> None:
    """Reject wrong values early, so a typo in a test fails loudly instead of passing."""
    unknown = set(fields) - CONFIG_FIELDS
    if unknown:
        raise ValueError(f"unknown config fields: {sorted(unknown)}")
    if fields.get("target", "all") not in ("chat", "extraction", "all"):
        raise ValueError(f"target must be chat, extraction or all, not {fields['target']!r}")
    if fields.get("mode") is not None and fields["mode"] not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, not {fields['mode']!r}")
    count = fields.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ValueError(f"count must be a positive integer or null, not {count!r}")
    for name in ("delay_s", "chunk_delay_s"):
        value = fields.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            raise ValueError(f"{name} must be a non-negative number, not {value!r}")
    chunks = fields.get("chunks")
    if chunks is not None and (
        isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1
    ):
        raise ValueError(f"chunks must be a positive integer, not {chunks!r}")
    if fields.get("finish_reason") is not None and fields["finish_reason"] not in get_args(
        FinishReason
    ):
        raise ValueError(f"finish_reason must be stop or length, not {fields['finish_reason']!r}")
    if fields.get("chat_reply") is not None and not isinstance(fields["chat_reply"], str):
        raise ValueError("chat_reply must be a string")
