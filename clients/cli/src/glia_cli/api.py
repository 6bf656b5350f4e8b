"""A small synchronous client for Glia's two public APIs (chat and card query)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_CHAT_URL = "http://127.0.0.1:8000"
DEFAULT_CARDS_URL = "http://127.0.0.1:8001"
USER_AGENT = "glia-cli/0.1"


class ApiError(Exception):
    """A non-2xx answer, from its RFC 9457 problem details when the server sent them."""

    def __init__(
        self,
        status: int,
        detail: str,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.code = code
        self.retry_after_s = retry_after_s  # from Retry-After (429, 503)

    @property
    def retryable(self) -> bool:
        """Worth another try later: the server (or a proxy) was momentarily unable."""
        return self.status in (408, 425, 429, 502, 503, 504) or self.status >= 500

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        detail = response.reason_phrase or "request failed"
        code = None
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("title") or detail)
            code = body.get("code")
        retry_after = response.headers.get("retry-after", "")
        return cls(
            response.status_code,
            detail,
            code if isinstance(code, str) else None,
            float(retry_after) if retry_after.isdigit() else None,
        )


def raise_for_problem(response: httpx.Response) -> None:
    if response.is_success:
        return
    response.read()  # a streamed answer's body is not read yet; a read one is kept
    raise ApiError.from_response(response)


@dataclass(frozen=True)
class Timeouts:
    connect_s: float = 10.0
    # A stream that stays silent this long is considered dropped (the server sends
    # heartbeat comments on idle streams, so a healthy one never is).
    read_s: float = 60.0


class GliaClient:
    """Glia's chat API and card query API, with one bearer token.

    Behind an ingress both APIs share one base URL; under ``make run`` the card query
    API listens on its own port.
    """

    def __init__(
        self,
        token: str,
        chat_url: str = DEFAULT_CHAT_URL,
        cards_url: str = DEFAULT_CARDS_URL,
        *,
        timeouts: Timeouts | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        timeouts = timeouts or Timeouts()
        timeout = httpx.Timeout(timeouts.read_s, connect=timeouts.connect_s)
        headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}
        self.chat = httpx.Client(
            base_url=chat_url, headers=headers, timeout=timeout, transport=transport
        )
        self.cards = httpx.Client(
            base_url=cards_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self.chat.close()
        self.cards.close()

    def __enter__(self) -> GliaClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- conversations

    def list_conversations(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self._json(self.chat.get("/v1/conversations", params=params))

    def create_conversation(self, title: str | None = None) -> dict[str, Any]:
        return self._json(self.chat.post("/v1/conversations", json={"title": title}))

    def get_conversation(
        self, conversation_id: str, limit: int = 1000, cursor: str | None = None
    ) -> dict[str, Any]:
        """The conversation with one page of its messages (``next_cursor``: more)."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return self._json(self.chat.get(f"/v1/conversations/{conversation_id}", params=params))

    def read_conversation(self, conversation_id: str) -> dict[str, Any]:
        """The conversation with all of its messages, following the pages."""
        conversation = self.get_conversation(conversation_id)
        while conversation.get("next_cursor"):
            page = self.get_conversation(conversation_id, cursor=conversation["next_cursor"])
            conversation["messages"].extend(page["messages"])
            conversation["next_cursor"] = page.get("next_cursor")
        return conversation

    # -- turns

    @contextmanager
    def post_message(
        self, conversation_id: str, content: str, idempotency_key: str
    ) -> Iterator[httpx.Response]:
        """The turn's event stream (a problem answer raises :class:`ApiError`)."""
        with self.chat.stream(
            "POST",
            f"/v1/conversations/{conversation_id}/messages",
            json={"content": content},
            headers={"Idempotency-Key": idempotency_key, **_SSE_HEADERS},
        ) as response:
            raise_for_problem(response)
            yield response

    @contextmanager
    def turn_events(
        self, conversation_id: str, message_id: str, last_event_id: int | None = None
    ) -> Iterator[httpx.Response]:
        """The events of a turn again, after ``last_event_id`` (all of them when None)."""
        headers = dict(_SSE_HEADERS)
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        with self.chat.stream(
            "GET",
            f"/v1/conversations/{conversation_id}/messages/{message_id}/events",
            headers=headers,
        ) as response:
            raise_for_problem(response)
            yield response

    def cancel_turn(self, conversation_id: str, message_id: str) -> None:
        response = self.chat.post(
            f"/v1/conversations/{conversation_id}/messages/{message_id}/cancel"
        )
        raise_for_problem(response)

    # -- cards

    def list_cards(
        self,
        conversation_id: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        for name, value in (
            ("conversation_id", conversation_id),
            ("kind", kind),
            ("cursor", cursor),
        ):
            if value:
                params[name] = value
        return self._json(self.cards.get("/v1/cards", params=params))

    @contextmanager
    def card_events(self, conversation_id: str) -> Iterator[httpx.Response]:
        """The live ``cards.updated`` events of one conversation."""
        with self.cards.stream(
            "GET",
            "/v1/cards/events",
            params={"conversation_id": conversation_id},
            headers=_SSE_HEADERS,
        ) as response:
            raise_for_problem(response)
            yield response

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        raise_for_problem(response)
        body = response.json()
        if not isinstance(body, dict):
            raise ApiError(response.status_code, "the server answered with unexpected JSON")
        return body


_SSE_HEADERS = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
