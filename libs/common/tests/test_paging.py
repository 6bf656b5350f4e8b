"""Keyset cursors are untrusted input: any string decodes to typed fields or is refused
with InvalidCursor, never another error."""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glia_common.db.paging import (
    INT4_MAX,
    InvalidCursor,
    decode_cursor,
    encode_cursor,
    int_field,
    keyset_page,
    timestamp_field,
    uuid_field,
)

FIELDS = {"c": timestamp_field, "v": uuid_field, "p": int_field(INT4_MAX)}


def raw(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_round_trip() -> None:
    key = {"c": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "v": uuid.uuid4(), "p": 7}
    cursor = encode_cursor({"c": key["c"].isoformat(), "v": str(key["v"]), "p": key["p"]})
    assert decode_cursor(cursor, FIELDS) == key


@pytest.mark.parametrize(
    "forged",
    [
        raw({"c": "2026-01-01T00:00:00+00:00", "v": str(uuid.uuid4()), "p": float("inf")}),
        "eyJwIjogSW5maW5pdHl9",  # {"p": Infinity}
        raw({"c": "2026-01-01T00:00:00+00:00", "v": str(uuid.uuid4()), "p": 2**40}),
        raw({"c": "2026-01-01T00:00:00+00:00", "v": str(uuid.uuid4()), "p": True}),
        raw({"c": "2026-01-01T00:00:00+00:00", "v": str(uuid.uuid4()), "p": 1.5}),
        raw({"c": "0001-01-01T00:00:00+14:00", "v": str(uuid.uuid4()), "p": 1}),
        raw({"c": "9999-12-31T23:59:59-14:00", "v": str(uuid.uuid4()), "p": 1}),
        raw({"c": "2026-01-01T00:00:00", "v": str(uuid.uuid4()), "p": 1}),  # no offset
        raw({"c": "infinity", "v": str(uuid.uuid4()), "p": 1}),
        raw({"c": 5, "v": str(uuid.uuid4()), "p": 1}),
        raw({"c": "2026-01-01T00:00:00+00:00", "v": "not-a-uuid", "p": 1}),
        raw({"c": "2026-01-01T00:00:00+00:00", "v": None, "p": 1}),
        raw({"c": "2026-01-01T00:00:00+00:00", "v": str(uuid.uuid4())}),
        raw([1, 2, 3]),
        raw("[" * 5000),
        "!!!",
        "",
    ],
)
def test_forged_cursors_are_invalid(forged: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(forged, FIELDS)


@given(st.text(max_size=300))
def test_any_string_decodes_or_is_invalid(cursor: str) -> None:
    with contextlib.suppress(InvalidCursor):
        decode_cursor(cursor, FIELDS)


@given(
    st.dictionaries(
        st.sampled_from(["c", "v", "p"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=40),
            st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
            st.uuids().map(str),
        ),
    )
)
def test_any_json_key_decodes_to_typed_fields_or_is_invalid(key: dict[str, Any]) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps(key).encode()).decode()
    try:
        decoded = decode_cursor(cursor, FIELDS)
    except InvalidCursor:
        return
    assert isinstance(decoded["c"], datetime) and decoded["c"].tzinfo is not None
    assert isinstance(decoded["v"], uuid.UUID)
    assert type(decoded["p"]) is int and -1 <= decoded["p"] <= INT4_MAX


def test_keyset_page_uses_the_extra_row_only_as_a_signal() -> None:
    page = keyset_page([1, 2, 3], 2, lambda n: {"n": n})
    assert page.items == [1, 2]
    assert decode_cursor(page.next_cursor or "", {"n": int_field(10)}) == {"n": 2}
    assert keyset_page([1, 2], 2, lambda n: {"n": n}).next_cursor is None
