"""Annotated dependency aliases for the chat API's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from glia_chat_api.settings import ChatApiSettings
from glia_chat_api.turns.runner import TurnRunner
from glia_chat_api.turns.signals import TurnSignals
from glia_common.db import Database, user_transaction
from glia_common.web.security import CurrentPrincipal


# Coroutines, not plain functions: FastAPI runs a plain-function dependency on a worker
# thread, a thread hop per request for a field read.
async def _settings(request: Request) -> ChatApiSettings:
    settings: ChatApiSettings = request.app.state.settings
    return settings


async def _turn_database(request: Request) -> Database:
    database: Database = request.app.state.turn_database
    return database


async def _sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sm: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sm


async def _runner(request: Request) -> TurnRunner:
    runner: TurnRunner = request.app.state.turn_runner
    return runner


async def _signals(request: Request) -> TurnSignals:
    signals: TurnSignals = request.app.state.turn_signals
    return signals


SettingsDep = Annotated[ChatApiSettings, Depends(_settings)]
TurnDatabaseDep = Annotated[Database, Depends(_turn_database)]
SessionMakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessionmaker)]
RunnerDep = Annotated[TurnRunner, Depends(_runner)]
SignalsDep = Annotated[TurnSignals, Depends(_signals)]


async def _user_session(
    principal: CurrentPrincipal, sessionmaker: SessionMakerDep
) -> AsyncIterator[AsyncSession]:
    # One transaction per request, committed before the response is sent.
    async with user_transaction(sessionmaker, principal.user_id) as session:
        yield session


UserSession = Annotated[AsyncSession, Depends(_user_session, scope="function")]
