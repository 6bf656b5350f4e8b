"""The conversation resource: create, list, read (with its messages), delete."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from glia_chat_api.conversations.schemas import (
    ConversationCreate,
    ConversationDetail,
    ConversationOut,
    ConversationPage,
    MessageOut,
)
from glia_chat_api.conversations.store import ConversationStore
from glia_chat_api.deps import UserSession
from glia_common.db.paging import InvalidCursor
from glia_common.web.problems import PROBLEM_RESPONSES, ProblemError, not_found
from glia_common.web.security import CurrentPrincipal

router = APIRouter(prefix="/v1/conversations", tags=["conversations"], responses=PROBLEM_RESPONSES)

Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the page before")]


def _invalid_cursor(exc: InvalidCursor) -> ProblemError:
    return ProblemError(422, str(exc), code="invalid_cursor")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ConversationOut)
async def create_conversation(
    body: ConversationCreate, principal: CurrentPrincipal, session: UserSession
) -> ConversationOut:
    conversation = await ConversationStore(session).create(principal.user_id, body.title)
    return ConversationOut.model_validate(conversation)


@router.get("", response_model=ConversationPage)
async def list_conversations(
    session: UserSession,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Cursor = None,
) -> ConversationPage:
    try:
        page = await ConversationStore(session).list_recent(limit, cursor)
    except InvalidCursor as exc:
        raise _invalid_cursor(exc) from exc
    return ConversationPage(
        items=[ConversationOut.model_validate(c) for c in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/{conversation_id}", response_model=ConversationDetail)
async def get_conversation(
    conversation_id: uuid.UUID,
    session: UserSession,
    limit: Annotated[int, Query(ge=1, le=1000, description="messages per page")] = 200,
    cursor: Cursor = None,
) -> ConversationDetail:
    store = ConversationStore(session)
    conversation = await store.get(conversation_id)
    if conversation is None:
        raise not_found("conversation")
    try:
        page = await store.messages(conversation_id, limit, cursor)
    except InvalidCursor as exc:
        raise _invalid_cursor(exc) from exc
    return ConversationDetail(
        **ConversationOut.model_validate(conversation).model_dump(),
        messages=[MessageOut.model_validate(m) for m in page.items],
        next_cursor=page.next_cursor,
    )


@router.delete("/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_conversation(conversation_id: uuid.UUID, session: UserSession) -> Response:
    if not await ConversationStore(session).delete(conversation_id):
        raise not_found("conversation")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
