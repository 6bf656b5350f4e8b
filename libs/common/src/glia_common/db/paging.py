"""Keyset pages with opaque cursors: base64url JSON of the last row's sort key.

A cursor comes from the client, so it is untrusted input: every field is parsed into
the exact type and range its query takes, and anything else is ``InvalidCursor`` (a
422 at the API), never an error inside the driver.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# PostgreSQL integer columns (positions) and bigint ones (sequence numbers).
INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(key: Mapping[str, Any]) -> str:
    raw = json.dumps(key, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, fields: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """The cursor's fields, each parsed by its function in ``fields``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidCursor("malformed cursor") from exc
    if not isinstance(key, dict) or set(key) != set(fields):
        raise InvalidCursor("malformed cursor")
    try:
        return {name: parse(key[name]) for name, parse in fields.items()}
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidCursor("malformed cursor") from exc


def keyset_page(
    rows: Sequence[T], limit: int, cursor_of: Callable[[T], Mapping[str, Any]]
) -> Page[T]:
    """A page from ``limit + 1`` fetched rows: the extra row only says that more follow."""
    if len(rows) <= limit:
        return Page(list(rows), None)
    items = list(rows[:limit])
    return Page(items, encode_cursor(cursor_of(items[-1])))


# Field parsers for decode_cursor.


def int_field(maximum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        # bool is an int in Python, and JSON floats (1e400 is inf) are not positions.
        if type(value) is not int or not -1 <= value <= maximum:
            raise ValueError("not a cursor integer")
        return value

    return parse


def uuid_field(value: Any) -> uuid.UUID:
    if not isinstance(value, str):
        raise TypeError("not a uuid")
    return uuid.UUID(value)


def timestamp_field(value: Any) -> datetime:
    """An aware timestamp that PostgreSQL can compare (no ``infinity``, a real offset)."""
    if not isinstance(value, str) or len(value) > 40:
        raise TypeError("not a timestamp")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("a cursor timestamp carries its offset")
    # In UTC here, as the driver would convert it: an overflow is the cursor's fault.
    return parsed.astimezone(UTC)
