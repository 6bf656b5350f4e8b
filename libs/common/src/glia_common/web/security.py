"""The bearer-token dependency both HTTP services use."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from glia_common.auth import AuthError, Principal, TokenVerifier
from glia_common.web.problems import ProblemError

_bearer = HTTPBearer(auto_error=False, description="A JWT whose `sub` is the user id.")
# Its name in OpenAPI, for a route that authenticates without the dependency.
BEARER_SCHEME = _bearer.scheme_name


def _unauthorized(detail: str) -> ProblemError:
    # The challenge is exactly what the contract fixes; the body says what was wrong.
    return ProblemError(401, detail, code="unauthorized", headers={"WWW-Authenticate": "Bearer"})


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("a bearer token is required")
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        principal = await verifier.verify(credentials.credentials)
    except AuthError as exc:
        raise _unauthorized(str(exc)) from exc
    structlog.contextvars.bind_contextvars(user_id=principal.user_id)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def authenticate(request: Request) -> Principal:
    """The same check outside dependency injection: for answers given before it runs,
    and for a hot route that does without it."""
    return await current_principal(request, await _bearer(request))
