from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from glia_chat_api.api.schemas import (
    ConversationCreate,
    ConversationDetail,
    ConversationOut,
    ConversationPage,
    MessageOut,
)
from glia_chat_api.deps import UserSession
from glia_common.repositories import ConversationRepository, MessageRepository
from glia_common.repositories.cursor import InvalidCursor
from glia_common.web.problems import PROBLEM_RESPONSES, ProblemError, not_found
from glia_common.web.security import CurrentPrincipal

router = APIRouter(prefix="/v1/conversations", tags=["conversations"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ConversationOut)
async def create_conversation(
    body: ConversationCreate, principal: CurrentPrincipal, session: UserSession
) -> ConversationOut:
    conversation = await ConversationRepository.from_session(session).create(
        principal.user_id, body.title
    )
    return ConversationOut.model_validate(conversation)


@router.get("", response_model=ConversationPage)
async def list_conversations(
    session: UserSession,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ConversationPage:
    try:
        page = await ConversationRepository.from_session(session).list_recent(limit, cursor)
    except InvalidCursor as exc:
        raise ProblemError(422, str(exc), code="invalid_cursor") from exc
    return ConversationPage(
        items=[ConversationOut.model_validate(c) for c in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/{conversation_id}", response_model=ConversationDetail)
async def get_conversation(conversation_id: uuid.UUID, session: UserSession) -> ConversationDetail:
    conversation = await ConversationRepository.from_session(session).get(conversation_id)
    if conversation is None:
        raise not_found("conversation")
    messages = await MessageRepository.from_session(session).for_conversation(conversation_id)
    return ConversationDetail(
        **ConversationOut.model_validate(conversation).model_dump(),
        messages=[MessageOut.model_validate(m) for m in messages],
    )


@router.delete("/{conversation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_conversation(conversation_id: uuid.UUID, session: UserSession) -> Response:
    # Messages, turns, cards, runs and pending outbox rows go with it (ON DELETE CASCADE).
    if not await ConversationRepository.from_session(session).delete(conversation_id):
        raise not_found("conversation")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
