"""/healthz (liveness) and /readyz (dependencies reachable), no token needed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

Check = Callable[[], Awaitable[bool]]


def health_router(checks: Callable[[], Mapping[str, Check]], timeout_s: float = 2.0) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: database and broker reachable")
    async def readyz() -> JSONResponse:
        named = dict(checks())

        async def run(check: Check) -> bool:
            try:
                return await asyncio.wait_for(check(), timeout_s)
            except Exception:
                return False

        results = await asyncio.gather(*(run(c) for c in named.values()))
        status = {
            name: "ok" if ok else "unavailable" for name, ok in zip(named, results, strict=True)
        }
        ready = all(results)
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": status},
            status_code=200 if ready else 503,
        )

    return router
