"""The source hash: a fingerprint of exactly the messages an extraction ran on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from glia_extractor.extraction.types import SourceMessage


def canonical_source(messages: Sequence[SourceMessage]) -> bytes:
    """The canonical serialization `source_hash` digests (see its docstring)."""
    payload = [[str(m.id), m.role, m.content] for m in messages]
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    # "surrogatepass" only matters for lone surrogates, which valid Unicode text (and so
    # anything PostgreSQL can store) never contains: for every real input this is plain
    # UTF-8, and for the impossible ones the hash is still defined instead of raising.
    return text.encode("utf-8", errors="surrogatepass")


def source_hash(messages: Sequence[SourceMessage]) -> str:
    """SHA-256 (lowercase hex, 64 characters) of the canonical serialization of `messages`.

    This is a public contract: operators may recompute it outside Glia. The format is:

    1. Build a JSON array with one element per message, in the given (conversation) order.
       Each element is the 3-element array ``[id, role, content]`` where ``id`` is the
       message UUID in its canonical lowercase hyphenated form
       (``"0f8fad5b-d9cb-469f-a165-70867728950e"``), ``role`` is ``"user"`` or
       ``"assistant"`` and ``content`` is the message text exactly as stored.
    2. Serialize it compactly as Python's
       ``json.dumps(payload, ensure_ascii=False, separators=(",", ":"))`` does: no
       whitespace anywhere; non-ASCII characters are written literally (not ``\\uXXXX``);
       inside strings ``"`` and ``\\`` are backslash-escaped, the control characters
       U+0008, U+0009, U+000A, U+000C, U+000D are written ``\\b \\t \\n \\f \\r`` and the
       other characters below U+0020 as ``\\u00xx`` (lowercase hex); everything else,
       including U+007F, U+2028 and U+2029, is written literally.
    3. Encode the result as UTF-8 and take the SHA-256 of those bytes.

    An empty conversation serializes to ``[]``. Example: one user message with id
    ``00000000-0000-0000-0000-000000000001`` and content ``hi`` serializes to
    ``[["00000000-0000-0000-0000-000000000001","user","hi"]]``.

    The hash depends on the order, ids, roles and exact contents of the messages (no
    Unicode normalization, no trimming), and on nothing else.
    """
    return hashlib.sha256(canonical_source(messages)).hexdigest()
