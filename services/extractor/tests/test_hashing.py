"""The source hash: a pinned, public format."""

from __future__ import annotations

import hashlib
import json
import unicodedata
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from glia_extractor.extraction.hashing import canonical_source, source_hash
from glia_extractor.extraction.types import SourceMessage

ID1 = uuid.UUID("00000000-0000-0000-0000-000000000001")
ID2 = uuid.UUID("00000000-0000-0000-0000-000000000002")

# Computed once from the documented format and pinned: changing it breaks stored hashes.
PINNED_MESSAGES = (
    SourceMessage(ID1, "user", "hi"),
    SourceMessage(ID2, "assistant", 'Héllo "wörld" \\ 🙂\n\t\u05e9\u05dc\u05d5\u05dd\x00'),
)
PINNED_HASH = "524de64ae0109ae12871e526f9f516f78cb16ea2fc6c65f68f523c89f7318f21"
EMPTY_HASH = "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"  # sha256("[]")


def test_known_vector() -> None:
    assert source_hash(PINNED_MESSAGES) == PINNED_HASH


def test_documented_serialization() -> None:
    assert canonical_source(PINNED_MESSAGES[:1]) == (
        b'[["00000000-0000-0000-0000-000000000001","user","hi"]]'
    )
    assert canonical_source(PINNED_MESSAGES[1:]).decode("utf-8") == (
        '[["00000000-0000-0000-0000-000000000002","assistant",'
        '"Héllo \\"wörld\\" \\\\ 🙂\\n\\t\u05e9\u05dc\u05d5\u05dd\\u0000"]]'
    )


def test_empty_conversation() -> None:
    assert source_hash([]) == EMPTY_HASH == hashlib.sha256(b"[]").hexdigest()


def test_is_lowercase_hex_sha256() -> None:
    digest = source_hash(PINNED_MESSAGES)
    assert len(digest) == 64
    assert digest == digest.lower()
    int(digest, 16)


def test_order_sensitive() -> None:
    assert source_hash(PINNED_MESSAGES) != source_hash(PINNED_MESSAGES[::-1])


def test_content_role_and_id_sensitive() -> None:
    base = source_hash([SourceMessage(ID1, "user", "hi")])
    assert source_hash([SourceMessage(ID1, "user", "hi ")]) != base
    assert source_hash([SourceMessage(ID1, "user", "Hi")]) != base
    assert source_hash([SourceMessage(ID1, "assistant", "hi")]) != base
    assert source_hash([SourceMessage(ID2, "user", "hi")]) != base


def test_message_boundaries_matter() -> None:
    # Moving text across a message boundary changes the hash.
    one = [SourceMessage(ID1, "user", "ab"), SourceMessage(ID1, "user", "c")]
    two = [SourceMessage(ID1, "user", "a"), SourceMessage(ID1, "user", "bc")]
    assert source_hash(one) != source_hash(two)


def test_no_unicode_normalization() -> None:
    composed = unicodedata.normalize("NFC", "café")
    decomposed = unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    assert source_hash([SourceMessage(ID1, "user", composed)]) != source_hash(
        [SourceMessage(ID1, "user", decomposed)]
    )


def test_lone_surrogate_does_not_raise() -> None:
    # Impossible in stored text, but the hash is still defined.
    assert len(source_hash([SourceMessage(ID1, "user", "\ud800")])) == 64


messages_strategy = st.lists(
    st.builds(
        SourceMessage,
        id=st.uuids(),
        role=st.sampled_from(["user", "assistant"]),
        content=st.text(st.characters(exclude_categories=["Cs"])),
    ),
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(messages_strategy)
def test_matches_documented_format(messages: list[SourceMessage]) -> None:
    payload = json.dumps(
        [[str(m.id), m.role, m.content] for m in messages],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    assert source_hash(messages) == hashlib.sha256(payload).hexdigest()
    # Stable: an equal copy (new objects, new strings) hashes the same.
    copy = [SourceMessage(uuid.UUID(str(m.id)), m.role, "".join(m.content)) for m in messages]
    assert source_hash(copy) == source_hash(messages)
    # The serialization round-trips to exactly the messages.
    decoded = json.loads(canonical_source(messages).decode("utf-8"))
    assert decoded == [[str(m.id), m.role, m.content] for m in messages]
