from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import insert, select, text

from glia_common.contracts.extraction import EXTRACTION_ROUTING_KEY, ExtractionRequested
from glia_common.models import Turn
from glia_common.repositories.base import Repository

# The end of a turn in one statement: the message's final state, the turn's outcome, the
# conversation's update time and the extraction request, all only if the message was
# still streaming (the sweeper may have settled it already).
SETTLE = text("""
WITH settled AS (
    UPDATE messages SET content = :content, status = :status, updated_at = clock_timestamp()
     WHERE id = :message_id AND status = 'streaming'
    RETURNING id
), turn AS (
    UPDATE turns
       SET finish_reason = :finish_reason, usage = CAST(:usage AS jsonb),
           error_code = :error_code, error_message = :error_message,
           error_retryable = :error_retryable, finished_at = clock_timestamp()
     WHERE id = :turn_id AND EXISTS (SELECT 1 FROM settled)
), conversation AS (
    UPDATE conversations SET updated_at = clock_timestamp()
     WHERE id = :conversation_id AND EXISTS (SELECT 1 FROM settled)
)
INSERT INTO outbox (user_id, conversation_id, routing_key, payload, headers)
SELECT :user_id, :conversation_id, :routing_key, CAST(:payload AS jsonb),
       CAST(:headers AS jsonb)
  FROM settled
RETURNING id
""")


class TurnRepository(Repository):
    async def by_idempotency_key(self, key: str) -> Turn | None:
        # user_id is implied by row-level security; the unique index is (user_id, key).
        stmt = select(Turn).where(Turn.idempotency_key == key)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def add(self, **values: Any) -> uuid.UUID:
        turn_id = uuid.uuid4()
        await self.session.execute(insert(Turn).values(id=turn_id, **values))
        return turn_id

    async def abandon_stale(self, stale_after_s: float) -> int:
        """Cross-user (SECURITY DEFINER): settle turns whose stream stopped checkpointing."""
        result = await self.session.execute(
            text("SELECT glia_abandon_stale_turns(make_interval(secs => :s), :rk)").bindparams(
                s=stale_after_s, rk=EXTRACTION_ROUTING_KEY
            )
        )
        return int(result.scalar_one())

    async def settle(
        self,
        *,
        turn_id: uuid.UUID,
        message_id: uuid.UUID,
        conversation_id: uuid.UUID,
        user_id: str,
        content: str,
        status: str,
        finish_reason: str | None,
        usage: dict[str, Any] | None,
        error_code: str | None,
        error_message: str | None,
        error_retryable: bool | None,
        request_id: str,
        trace_headers: dict[str, str],
    ) -> bool:
        """End the turn and request extraction; False when it was already settled."""
        payload = ExtractionRequested.now(conversation_id, user_id, request_id)
        result = await self.session.execute(
            SETTLE,
            {
                "content": content,
                "status": status,
                "message_id": message_id,
                "finish_reason": finish_reason,
                "usage": json.dumps(usage) if usage is not None else None,
                "error_code": error_code,
                "error_message": error_message,
                "error_retryable": error_retryable,
                "turn_id": turn_id,
                "conversation_id": conversation_id,
                "user_id": user_id,
                "routing_key": EXTRACTION_ROUTING_KEY,
                "payload": payload.model_dump_json(),
                "headers": json.dumps(trace_headers),
            },
        )
        return result.first() is not None
