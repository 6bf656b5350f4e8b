"""One extraction run, from request to committed cards.

Serialized per conversation by a session-level advisory lock held for the whole run
(not a transaction: none is open while the LLM is awaited). If the worker dies, the
connection drops and PostgreSQL releases the lock; the redelivered message then finds
the dead run still 'running' and closes it as abandoned.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, cast

from opentelemetry import trace
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from glia_common.contracts import ExtractionRequested
from glia_common.db.scope import set_user_scope
from glia_common.models import ExtractionRun, Message
from glia_common.repositories import CardRepository, ConversationRepository, NewCard, RunRepository
from glia_common.telemetry import get_logger
from glia_extractor import metrics
from glia_extractor.extraction.hashing import source_hash
from glia_extractor.extraction.llm import ExtractionFailed, LlmExtractor
from glia_extractor.extraction.rules import extract_cards
from glia_extractor.extraction.types import CardDraft, SourceMessage

log = get_logger(__name__)
tracer = trace.get_tracer("glia.extractor")

Role = Literal["user", "assistant"]
RULES_PROVIDER = "rules"
RULES_MODEL = "glia-rules-v1"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    DUPLICATE = "duplicate"  # a succeeded run already has this source
    NO_CONVERSATION = "no_conversation"  # deleted, or not this user's
    NO_MESSAGES = "no_messages"
    BUSY = "busy"  # the conversation's lock could not be had in time
    SUPERSEDED = "superseded"  # newer cards already exist; they were kept


@dataclass(frozen=True, slots=True)
class ExtractionJob:
    request: ExtractionRequested
    trace_id: str | None = None
    replay: bool = False


@dataclass(frozen=True, slots=True)
class _Claim:
    run_id: uuid.UUID
    messages: list[SourceMessage]
    source_hash: str


class ExtractionService:
    def __init__(
        self,
        engine: AsyncEngine,
        llm: LlmExtractor | None,
        *,
        lock_timeout_s: float,
    ) -> None:
        self._engine = engine
        self._llm = llm
        self._lock_timeout_s = lock_timeout_s

    @property
    def provider(self) -> str:
        return self._llm.provider if self._llm else RULES_PROVIDER

    @property
    def model(self) -> str:
        return self._llm.model if self._llm else RULES_MODEL

    async def run(self, job: ExtractionJob) -> Outcome:
        conversation_id = job.request.conversation_id
        with tracer.start_as_current_span(
            "extraction run",
            attributes={
                "glia.conversation_id": str(conversation_id),
                "glia.request_id": job.request.request_id,
                "glia.replay": job.replay,
            },
        ) as span:
            async with self._engine.connect() as conn:
                if not await self._lock(conn, conversation_id):
                    outcome = Outcome.BUSY
                else:
                    try:
                        outcome = await self._run_locked(conn, job)
                    finally:
                        await self._unlock(conn, conversation_id)
            span.set_attribute("glia.extraction.outcome", outcome.value)
            return outcome

    async def _lock(self, conn: AsyncConnection, conversation_id: uuid.UUID) -> bool:
        try:
            async with conn.begin():
                await conn.execute(
                    text("SELECT set_config('lock_timeout', :t, true)"),
                    {"t": f"{int(self._lock_timeout_s * 1000)}ms"},
                )
                await conn.execute(
                    text("SELECT pg_advisory_lock(hashtextextended(:k, 0))"),
                    {"k": f"glia.extraction:{conversation_id}"},
                )
        except Exception as exc:
            if "lock timeout" in str(exc):
                return False
            raise
        return True

    async def _unlock(self, conn: AsyncConnection, conversation_id: uuid.UUID) -> None:
        try:
            if conn.in_transaction():
                await conn.rollback()
            async with conn.begin():
                await conn.execute(
                    text("SELECT pg_advisory_unlock(hashtextextended(:k, 0))"),
                    {"k": f"glia.extraction:{conversation_id}"},
                )
        except Exception:
            # Never return a connection that may still hold the lock to the pool.
            await conn.invalidate()

    async def _run_locked(self, conn: AsyncConnection, job: ExtractionJob) -> Outcome:
        request = job.request
        claim = await self._claim(conn, job)
        if not isinstance(claim, _Claim):
            return claim

        started = time.perf_counter()
        failure_class: str | None = None
        error: str | None = None
        drafts: list[CardDraft]
        origin = "llm"
        if self._llm is None:
            failure_class = "not_configured"
        else:
            try:
                result = await self._llm.extract(claim.messages)
                drafts = result.cards
                metrics.LLM_LATENCY.labels("ok").observe(time.perf_counter() - started)
            except ExtractionFailed as exc:
                failure_class, error = exc.failure_class, exc.detail
                metrics.LLM_LATENCY.labels(exc.failure_class).observe(time.perf_counter() - started)
                log.warning(
                    "extraction.llm_failed",
                    failure_class=exc.failure_class,
                    detail=exc.detail[:200],
                )
        if failure_class is not None:
            drafts = extract_cards(claim.messages)
            origin = "fallback"
        latency_ms = int((time.perf_counter() - started) * 1000)

        with tracer.start_as_current_span(
            "extraction write cards",
            attributes={"glia.cards": len(drafts), "glia.cards.origin": origin},
        ):
            try:
                async with (
                    AsyncSession(bind=conn, expire_on_commit=False) as session,
                    session.begin(),
                ):
                    await set_user_scope(session, request.user_id)
                    if (
                        await ConversationRepository.from_session(session).get(
                            request.conversation_id
                        )
                        is None
                    ):
                        return (
                            Outcome.NO_CONVERSATION
                        )  # deleted during the run; its runs went with it
                    cards = CardRepository.from_session(session)
                    state = await cards.state(request.conversation_id, for_update=True)
                    if state is not None and state.source_message_count > len(claim.messages):
                        # Never replace cards derived from a newer source with older ones.
                        await RunRepository.from_session(session).finish(
                            claim.run_id,
                            status="succeeded",
                            latency_ms=latency_ms,
                            fallback_used=origin == "fallback",
                            failure_class=failure_class,
                            error="superseded: cards from a newer source were kept",
                            card_count=0,
                        )
                        return Outcome.SUPERSEDED
                    await cards.replace(
                        conversation_id=request.conversation_id,
                        user_id=request.user_id,
                        run_id=claim.run_id,
                        source_hash=claim.source_hash,
                        source_message_count=len(claim.messages),
                        cards=[
                            NewCard(d.kind, d.title, d.body, origin, d.source_message_ids)
                            for d in drafts
                        ],
                    )
                    await RunRepository.from_session(session).finish(
                        claim.run_id,
                        status="succeeded",
                        latency_ms=latency_ms,
                        fallback_used=origin == "fallback",
                        failure_class=failure_class,
                        error=error,
                        card_count=len(drafts),
                    )
            except Exception as exc:
                await self._record_failure(conn, request.user_id, claim.run_id, exc)
                raise
        metrics.RUNS.labels("succeeded", failure_class or "none").inc()
        if origin == "fallback":
            metrics.FALLBACKS.inc()
        metrics.LAG.observe(max(0.0, (datetime.now(UTC) - request.requested_at).total_seconds()))
        log.info(
            "extraction.succeeded",
            cards=len(drafts),
            origin=origin,
            failure_class=failure_class,
            latency_ms=latency_ms,
            source_hash=claim.source_hash,
        )
        return Outcome.SUCCEEDED

    async def _claim(self, conn: AsyncConnection, job: ExtractionJob) -> _Claim | Outcome:
        """Read the source, skip what is already done, and open a 'running' run."""
        request = job.request
        async with AsyncSession(bind=conn, expire_on_commit=False) as session, session.begin():
            await set_user_scope(session, request.user_id)
            if (
                await ConversationRepository.from_session(session).get(request.conversation_id)
                is None
            ):
                return Outcome.NO_CONVERSATION
            rows = (
                await session.execute(
                    select(Message.id, Message.role, Message.content)
                    .where(
                        Message.conversation_id == request.conversation_id,
                        Message.status == "complete",
                    )
                    .order_by(Message.seq)
                )
            ).all()
            if not rows:
                return Outcome.NO_MESSAGES
            messages = [SourceMessage(id=r[0], role=cast(Role, r[1]), content=r[2]) for r in rows]
            digest = source_hash(messages)
            runs = RunRepository.from_session(session)
            if not job.replay and await runs.succeeded_for(request.conversation_id, digest):
                return Outcome.DUPLICATE
            abandoned = await runs.abandon_running(request.conversation_id)
            if abandoned:
                metrics.RUNS.labels("failed", "none").inc(abandoned)
                log.warning("extraction.abandoned_runs_closed", count=abandoned)
            run = await runs.start(
                ExtractionRun(
                    id=uuid.uuid4(),
                    conversation_id=request.conversation_id,
                    user_id=request.user_id,
                    status="running",
                    source_hash=digest,
                    provider=self.provider,
                    model=self.model,
                    attempt=await runs.count_for(request.conversation_id, digest) + 1,
                    request_id=request.request_id,
                    trace_id=job.trace_id,
                    replay=job.replay,
                )
            )
            return _Claim(run.id, messages, digest)

    async def _record_failure(
        self, conn: AsyncConnection, user_id: str, run_id: uuid.UUID, exc: BaseException
    ) -> None:
        """Best effort: end the run 'failed' when the database lets us."""
        try:
            if conn.in_transaction():
                await conn.rollback()
            async with AsyncSession(bind=conn) as session, session.begin():
                await set_user_scope(session, user_id)
                await RunRepository.from_session(session).finish(
                    run_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:500]
                )
            metrics.RUNS.labels("failed", "none").inc()
        except Exception:
            log.warning("extraction.failure_not_recorded", run_id=str(run_id))
        if isinstance(exc, IntegrityError):
            log.error("extraction.integrity_error", detail=str(exc)[:300])


async def sleep_backoff(attempt: int, cap_s: float = 10.0) -> None:
    await asyncio.sleep(min(cap_s, 0.25 * 2**attempt))
