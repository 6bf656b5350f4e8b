"""The card routes: pages of cards with their freshness, one card, live updates."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, cast

import asyncpg
from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import to_json

from glia_card_query.cards.events import CardEventHub, TooManySubscriptions
from glia_card_query.cards.schemas import CardKindName, CardOut, CardPage, FreshnessOut
from glia_card_query.cards.store import CardReads, Freshness, StaleCursor, read_transaction
from glia_card_query.settings import CardQuerySettings
from glia_common.db.paging import InvalidCursor
from glia_common.web.limits import rate_limited
from glia_common.web.problems import PROBLEM_RESPONSES, ProblemError, not_found
from glia_common.web.security import BEARER_SCHEME, CurrentPrincipal, authenticate
from glia_common.web.streams import ExpiryReason, end_by, stream_deadline

router = APIRouter(prefix="/v1/cards", tags=["cards"], responses=PROBLEM_RESPONSES)


async def _card_reads(request: Request, principal: CurrentPrincipal) -> AsyncIterator[CardReads]:
    # A read-only transaction as the caller, ended before the response is sent.
    async with read_transaction(request.app.state.database, principal.user_id) as reads:
        yield reads


Reads = Annotated[CardReads, Depends(_card_reads, scope="function")]

NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched the ETag)"}
}


def _freshness_fields(fresh: Freshness) -> dict[str, Any]:
    """FreshnessOut's fields, for the list's body, which is serialized without a model."""
    return {"state": fresh.state, "source_hash": fresh.source_hash, "derived_at": fresh.derived_at}


def _freshness_out(fresh: Freshness) -> FreshnessOut:
    return FreshnessOut(**_freshness_fields(fresh))


def _etag(*parts: object) -> str:
    return '"' + hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32] + '"'


def _page_etag(fresh: Freshness, freshness: dict[str, Any], query: CardListQuery) -> str:
    """A conversation's page's ETag: its card set, its freshness and the page asked for."""
    return _etag(fresh.run_id, to_json(freshness), query.kind, query.limit, query.cursor)


def _matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in candidates or etag in candidates


class CardListQuery(BaseModel):
    """The list's query parameters, validated in one call."""

    conversation_id: uuid.UUID | None = None
    kind: CardKindName | None = None
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = Field(None, max_length=512)


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The OpenAPI query parameters FastAPI would derive from ``model``."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": field}
        for name, field in schema["properties"].items()
    ]


def _list_query(request: Request) -> CardListQuery:
    try:
        return CardListQuery.model_validate(dict(request.query_params))
    except ValidationError as exc:
        errors = [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


# What the page's items carry only to make the next cursor.
_CURSOR_COLUMNS = {"items": {"__all__": {"position", "run_id"}}}


class HandledRoute(APIRoute):
    """A route whose endpoint takes the request and returns the response itself, served
    without FastAPI's request handler - dependency solving, parameter and response
    validation, which it does not use: 6% of a card read (bench/README.md). It is
    documented like any other route, from the arguments it was declared with."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return cast(Callable[[Request], Coroutine[Any, Any, Response]], self.endpoint)


async def list_cards(request: Request) -> Response:
    # Card query's hot route, so it does by hand what dependency injection and response
    # validation would do: together they cost a fifth of the request (bench/README.md).
    # The same checks in the same order - the caller (401), then the query (422) - and
    # the parameters are documented below from the same model.
    principal = await authenticate(request)
    query = _list_query(request)
    freshness = None
    etag = None
    try:
        async with read_transaction(request.app.state.database, principal.user_id) as reads:
            if query.conversation_id is not None and "if-none-match" in request.headers:
                fresh = await reads.freshness(query.conversation_id)
                if fresh is None:
                    raise not_found("conversation")
                freshness = _freshness_fields(fresh)
                # The card set and its freshness fully determine the page: answer 304
                # without reading a single card.
                etag = _page_etag(fresh, freshness, query)
                if _matches(request, etag):
                    return Response(status_code=304, headers={"ETag": etag})
                page = await reads.page_for_conversation(
                    query.conversation_id, fresh.run_id, query.kind, query.limit, query.cursor
                )
            elif query.conversation_id is not None:
                # Nothing to match: the freshness and the page in one round trip.
                found = await reads.freshness_and_page(
                    query.conversation_id, query.kind, query.limit, query.cursor
                )
                if found is None:
                    raise not_found("conversation")
                fresh, page = found
                freshness = _freshness_fields(fresh)
                etag = _page_etag(fresh, freshness, query)
            else:
                page = await reads.page_for_user(query.kind, query.limit, query.cursor)
    except InvalidCursor as exc:
        raise ProblemError(422, str(exc), code="invalid_cursor") from exc
    except StaleCursor as exc:
        raise ProblemError(
            409,
            "the conversation's cards were replaced since this cursor was issued; "
            "start again from the first page",
            code="cursor_stale",
        ) from exc
    # The rows come typed from PostgreSQL (and its constraints hold their values), so they
    # are serialized as they are, in CardPage's shape, without validating them again.
    body = to_json(
        {"items": page.items, "next_cursor": page.next_cursor, "extraction": freshness},
        exclude=_CURSOR_COLUMNS,
    )
    if etag is None:
        etag = _etag(body)
        if _matches(request, etag):
            return Response(status_code=304, headers={"ETag": etag})
    return Response(
        body,
        media_type="application/json",
        headers={"ETag": etag, "Cache-Control": "private, no-cache"},
    )


router.add_api_route(
    "",
    list_cards,
    methods=["GET"],
    response_model=CardPage,
    responses=NOT_MODIFIED,
    openapi_extra={
        "parameters": _query_parameters(CardListQuery),
        "security": [{BEARER_SCHEME: []}],
    },
    route_class_override=HandledRoute,
)


class CardsUpdated(BaseModel):
    conversation_id: uuid.UUID
    extraction: FreshnessOut


class StreamExpired(BaseModel):
    reason: ExpiryReason


async def read_freshness(
    database: asyncpg.Pool, user_id: str, conversation_id: uuid.UUID
) -> FreshnessOut | None:
    """The conversation's freshness as its owner sees it; None when it is not visible."""
    async with read_transaction(database, user_id) as reads:
        fresh = await reads.freshness(conversation_id)
    return None if fresh is None else _freshness_out(fresh)


async def _subscription(
    request: Request, principal: CurrentPrincipal, conversation_id: uuid.UUID
) -> AsyncIterator[tuple[uuid.UUID, asyncio.Queue[object]]]:
    """Checked and taken before the stream starts, so a foreign or missing conversation is
    a plain 404 and one subscription too many a plain 429; held until the stream ends."""
    settings: CardQuerySettings = request.app.state.settings
    hub: CardEventHub = request.app.state.card_events
    if await read_freshness(request.app.state.database, principal.user_id, conversation_id) is None:
        raise not_found("conversation")
    try:
        with hub.subscribe(principal.user_id, conversation_id) as updates:
            yield conversation_id, updates
    except TooManySubscriptions as exc:
        raise rate_limited(
            "card_subscriptions",
            settings.sse_retry_ms / 1000,
            f"at most {settings.card_subscriptions_per_user} card event streams at once",
        ) from exc


@router.get(
    "/events",
    response_class=EventSourceResponse,
    summary="Live updates: a `cards.updated` event whenever the conversation's cards are replaced",
    responses={
        429: PROBLEM_RESPONSES[422] | {"description": "Too many card event streams at once"}
    },
)
async def card_events(
    request: Request,
    principal: CurrentPrincipal,
    subscription: Annotated[tuple[uuid.UUID, asyncio.Queue[object]], Depends(_subscription)],
) -> AsyncIterator[ServerSentEvent]:
    settings: CardQuerySettings = request.app.state.settings
    deadline, reason = stream_deadline(principal, settings.sse_max_lifetime_s)

    def expired() -> ServerSentEvent:
        # Not resumable: the client reconnects (with a fresh token) and reads the cards.
        return ServerSentEvent(
            event="reconnect", raw_data=StreamExpired(reason=reason).model_dump_json()
        )

    async for event in end_by(_updates(*subscription, settings), deadline, expired):
        yield event


async def _updates(
    conversation_id: uuid.UUID, updates: asyncio.Queue[object], settings: CardQuerySettings
) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(comment="subscribed", retry=settings.sse_retry_ms)
    next_id = 0
    while True:
        try:
            freshness = await asyncio.wait_for(updates.get(), settings.sse_heartbeat_s)
        except TimeoutError:
            yield ServerSentEvent(comment="ping")
            continue
        if not isinstance(freshness, FreshnessOut):  # GONE: the conversation was deleted
            return
        yield ServerSentEvent(
            event="cards.updated",
            id=str(next_id),
            raw_data=CardsUpdated(
                conversation_id=conversation_id, extraction=freshness
            ).model_dump_json(),
        )
        next_id += 1


@router.get("/{card_id}", response_model=CardOut, responses=NOT_MODIFIED)
async def get_card(card_id: uuid.UUID, request: Request, reads: Reads) -> CardOut | Response:
    card = await reads.get(card_id)
    if card is None:
        raise not_found("card")
    # A card never changes: a replacement creates new cards.
    etag = f'"{card_id.hex}"'
    if _matches(request, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(
        CardOut.model_validate(card).model_dump_json(),
        media_type="application/json",
        headers={"ETag": etag, "Cache-Control": "private, no-cache"},
    )
