"""One extraction run, from request to committed cards.

Serialized per conversation by a session-level advisory lock held for the whole run
(not a transaction: none is open while the LLM is awaited). It is taken by the first
statements of the claim's transaction, in the same round trip as BEGIN, and outlives
that transaction. If the worker dies, the connection drops and PostgreSQL releases the
lock; the redelivered message then finds the dead run still 'running' and closes it as
abandoned.

Runs take their connections from a plain asyncpg pool: every statement here is on the
driver, so an engine checkout (and its rollback on return) would be pure cost.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, cast

import asyncpg
from opentelemetry import trace

from glia_common.db import CONNECTION_ERRORS, begin_as, begin_transaction, open_transaction
from glia_common.messaging import ExtractionRequested
from glia_common.telemetry import get_logger
from glia_extractor import metrics
from glia_extractor.extraction.hashing import source_hash
from glia_extractor.extraction.llm import ExtractionFailed, LlmExtractor
from glia_extractor.extraction.rules import extract_cards
from glia_extractor.extraction.store import ExtractionStore
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
    messages: list[SourceMessage]  # every complete message: what source_hash digests
    source_hash: str
    window: list[SourceMessage]  # the latest ones: what the cards are extracted from
    earlier_summary: str | None  # the current summary card, when the window leaves some out


class ExtractionService:
    def __init__(
        self,
        database: asyncpg.Pool,
        llm: LlmExtractor | None,
        *,
        lock_timeout_s: float,
        window_messages: int = 40,
    ) -> None:
        self._database = database
        self._llm = llm
        self._lock_timeout_s = lock_timeout_s
        self._window_messages = window_messages

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
            async with self._database.acquire() as conn:
                outcome = await self._run_on(conn, job)
            span.set_attribute("glia.extraction.outcome", outcome.value)
            return outcome

    async def _run_on(self, conn: asyncpg.Connection, job: ExtractionJob) -> Outcome:
        conversation_id = job.request.conversation_id
        store = ExtractionStore(conn)
        # The lock's wait is bounded by the server (lock_timeout); the claim's own
        # statements run with the default again.
        timeout_ms = int(self._lock_timeout_s * 1000)
        lock = (
            f"SET LOCAL lock_timeout = {timeout_ms};"
            f" SELECT pg_advisory_lock(hashtextextended('{_lock_key(conversation_id)}', 0));"
            " SET LOCAL lock_timeout TO DEFAULT; "
        )
        try:
            # One round trip; the key is a UUID and the timeout an integer, safe to inline.
            # The client-side timeout only bounds a dead server.
            await begin_transaction(
                conn,
                begin_as(job.request.user_id, first=lock),
                command_timeout_s=self._lock_timeout_s + 10,
            )
        except asyncpg.LockNotAvailableError:
            return Outcome.BUSY
        except CONNECTION_ERRORS:
            # The server went away, and with it every pooled connection: the pool
            # replaces them all, so the retry does not meet them one by one.
            conn.terminate()
            await self._database.expire_connections()
            raise
        except BaseException:
            # Whether the lock was taken is unknown: a closed connection holds none.
            conn.terminate()
            raise
        # The session holds the conversation's lock from here until it is released.
        try:
            async with open_transaction(conn):
                claim = await self._claim(store, job)
            if not isinstance(claim, _Claim):
                return claim
            return await self._extract(store, job, claim)
        finally:
            if not await self._unlock(conn, conversation_id):
                # Never pool a connection that may still hold the lock (or that died).
                conn.terminate()

    async def _unlock(self, conn: asyncpg.Connection, conversation_id: uuid.UUID) -> bool:
        try:
            if conn.is_in_transaction():
                await conn.execute("ROLLBACK")
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtextextended($1, 0))", _lock_key(conversation_id)
            )
        except Exception:
            return False
        return True

    async def _extract(self, store: ExtractionStore, job: ExtractionJob, claim: _Claim) -> Outcome:
        request = job.request
        started = time.perf_counter()
        failure_class: str | None = None
        error: str | None = None
        drafts: list[CardDraft]
        origin = "llm"
        if self._llm is None:
            failure_class = "not_configured"
        else:
            try:
                result = await self._llm.extract(claim.window, claim.earlier_summary)
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
            # The rules see the window alone: a pure function of the messages.
            drafts = extract_cards(claim.window)
            origin = "fallback"
        latency_ms = int((time.perf_counter() - started) * 1000)
        run = {
            "latency_ms": latency_ms,
            "fallback_used": origin == "fallback",
            "failure_class": failure_class,
            "error": error,
        }

        with tracer.start_as_current_span(
            "extraction write cards",
            attributes={"glia.cards": len(drafts), "glia.cards.origin": origin},
        ):
            try:
                outcome = await self._write(store, job, claim, drafts, origin, run)
            except Exception as exc:
                await self._record_failure(store, request.user_id, claim.run_id, exc)
                raise
        if outcome is not Outcome.SUCCEEDED:
            return outcome
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

    async def _claim(self, store: ExtractionStore, job: ExtractionJob) -> _Claim | Outcome:
        """Read the source, skip what is already done, and open a 'running' run (in the
        transaction that took the lock, as the request's user)."""
        request = job.request
        rows = await store.complete_messages(request.conversation_id)
        if not rows:
            exists = await store.guard(request.conversation_id)
            return Outcome.NO_MESSAGES if exists.exists else Outcome.NO_CONVERSATION
        messages = [SourceMessage(id=r[0], role=cast(Role, r[1]), content=r[2]) for r in rows]
        digest = source_hash(messages)
        window = messages[-self._window_messages :]
        earlier_summary = None
        if len(window) < len(messages):
            earlier_summary = await store.summary(request.conversation_id)
        run_id = uuid.uuid4()
        claim = await store.claim(
            conversation_id=request.conversation_id,
            source_hash=digest,
            run_id=run_id,
            user_id=request.user_id,
            provider=self.provider,
            model=self.model,
            request_id=request.request_id,
            trace_id=job.trace_id,
            replay=job.replay,
        )
        if claim.abandoned:
            metrics.RUNS.labels("failed", "none").inc(claim.abandoned)
            log.warning("extraction.abandoned_runs_closed", count=claim.abandoned)
        if not claim.opened:
            return Outcome.DUPLICATE
        return _Claim(run_id, messages, digest, window, earlier_summary)

    async def _write(
        self,
        store: ExtractionStore,
        job: ExtractionJob,
        claim: _Claim,
        drafts: list[CardDraft],
        origin: str,
        run: dict[str, Any],
    ) -> Outcome:
        """Replace the cards and finish the run, in one transaction."""
        request = job.request
        async with store.transaction_as(request.user_id):
            guard = await store.guard(request.conversation_id)
            if not guard.exists:
                return Outcome.NO_CONVERSATION  # deleted during the run; its runs went with it
            if guard.derived_count is not None and guard.derived_count > len(claim.messages):
                # Never replace cards derived from a newer source with older ones.
                await store.finish(
                    claim.run_id,
                    status="succeeded",
                    card_count=0,
                    **{**run, "error": "superseded: cards from a newer source were kept"},
                )
                return Outcome.SUPERSEDED
            await store.replace(
                conversation_id=request.conversation_id,
                user_id=request.user_id,
                source_hash=claim.source_hash,
                run_id=claim.run_id,
                origin=origin,
                cards=drafts,
                source_message_count=len(claim.messages),
                run=run,
            )
        return Outcome.SUCCEEDED

    async def _record_failure(
        self, store: ExtractionStore, user_id: str, run_id: uuid.UUID, exc: BaseException
    ) -> None:
        """Best effort: end the run 'failed' when the database lets us."""
        try:
            async with store.transaction_as(user_id):
                await store.finish(
                    run_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:500]
                )
            metrics.RUNS.labels("failed", "none").inc()
        except Exception:
            log.warning("extraction.failure_not_recorded", run_id=str(run_id))


def _lock_key(conversation_id: uuid.UUID) -> str:
    return f"glia.extraction:{conversation_id}"
