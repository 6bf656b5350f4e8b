"""A fake OpenAI-compatible chat-completions server with faults switchable at runtime.

It speaks real HTTP over loopback so the services' actual ``openai`` client, its
timeouts, retries and error mapping are what the tests exercise. aiohttp (not ASGI)
is used because some faults live below HTTP: aborting the TCP connection mid-request.

Two targets are configured independently: ``chat`` (streaming requests) and
``extraction`` (non-streaming requests, which carry ``response_format``).
The same state is reachable in-process (:class:`FakeLLM` methods) and over HTTP
(``/_fake/*``, or :class:`FakeLLMControl` when the server runs as a subprocess).

Modes: ``ok``; ``http_401/403/429/500`` (OpenAI-style error body); ``hang`` (no answer
until stop, or until ``delay_s`` when > 0, then the normal answer); ``hang_mid_stream``
(a few deltas first; non-stream: as ``hang``); ``reset`` (TCP RST, no response; streams
after a few deltas); ``garbage`` (200 with a non-JSON body or SSE ``data:`` line);
``non_json_content`` / ``schema_invalid`` (well-formed completion, bad content);
``slow`` (``delay_s`` before the response, ``chunk_delay_s`` between stream chunks).
"""

from glia_fakes.llm.control import FakeLLMControl
from glia_fakes.llm.faults import (
    DEFAULT_CHAT_REPLY,
    DEFAULT_CHUNKS,
    MODES,
    Kind,
    Mode,
    TargetName,
)
from glia_fakes.llm.replies import build_cards
from glia_fakes.llm.server import FakeLLM

__all__ = [
    "DEFAULT_CHAT_REPLY",
    "DEFAULT_CHUNKS",
    "MODES",
    "FakeLLM",
    "FakeLLMControl",
    "Kind",
    "Mode",
    "TargetName",
    "build_cards",
]
