"""JWT verification -> Principal. One implementation for every HTTP service.

HS256 is accepted only with GLIA_JWT_SECRET; RS256/ES256 only with keys from
GLIA_JWT_JWKS_URL. The algorithm a token claims picks the key source, and the
verification then allows exactly that algorithm, so neither ``alg: none`` nor
HS/RS confusion (an HMAC signed with a public key) can pass.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt import PyJWK, PyJWKSet

from glia_common.settings import AuthSettings

HMAC_ALGORITHMS = frozenset({"HS256"})
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256"})
MAX_SUBJECT_LENGTH = 128
LEEWAY_S = 30


class AuthError(Exception):
    """The request is not authenticated; the message is safe to show the client."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    claims: dict[str, Any]


class JwksCache:
    """Keys from a JWKS URL, fetched lazily, cached, refreshed on an unknown ``kid``
    at most once per ``min_refresh_s`` so bad tokens cannot hammer the provider."""

    def __init__(
        self,
        url: str,
        ttl_s: float,
        min_refresh_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url
        self._transport = transport
        self._ttl_s = ttl_s
        self._min_refresh_s = min_refresh_s
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        async with httpx.AsyncClient(timeout=5.0, transport=self._transport) as client:
            response = await client.get(self._url)
            response.raise_for_status()
            jwk_set = PyJWKSet.from_dict(response.json())
        self._keys = {k.key_id or "": k for k in jwk_set.keys}
        self._fetched_at = time.monotonic()

    async def get(self, kid: str | None) -> PyJWK:
        key_id = kid or ""
        age = time.monotonic() - self._fetched_at
        if age > self._ttl_s or (key_id not in self._keys and age > self._min_refresh_s):
            async with self._lock:
                age = time.monotonic() - self._fetched_at
                if age > self._ttl_s or (key_id not in self._keys and age > self._min_refresh_s):
                    try:
                        await self._refresh()
                    except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                        if not self._keys:
                            raise AuthError("signing keys are unavailable") from exc
        if key_id in self._keys:
            return self._keys[key_id]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise AuthError("unknown signing key")


class TokenVerifier:
    def __init__(
        self, settings: AuthSettings, jwks_transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._jwks = (
            JwksCache(settings.jwt_jwks_url, settings.jwt_jwks_cache_s, transport=jwks_transport)
            if settings.jwt_jwks_url
            else None
        )

    async def verify(self, token: str) -> Principal:
        key, alg = await self._key_for(token)
        required = ["exp", "sub", "aud"] + (["iss"] if self._issuer else [])
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise AuthError("token algorithm not accepted") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("invalid token") from exc
        except jwt.DecodeError as exc:
            raise AuthError("malformed token") from exc
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            raise AuthError("invalid token") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_SUBJECT_LENGTH:
            raise AuthError("invalid subject")
        return Principal(user_id=sub, claims=claims)

    async def _key_for(self, token: str) -> tuple[Any, str]:
        """The key and the one algorithm the token may use. With only a shared secret
        there is nothing to choose, and the token is parsed once, by ``jwt.decode``."""
        if self._jwks is None:
            if not self._secret:
                raise AuthError("token algorithm not accepted")
            return self._secret, "HS256"
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed token") from exc
        alg = header.get("alg")
        if alg in HMAC_ALGORITHMS and self._secret:
            return self._secret, str(alg)
        if alg in ASYMMETRIC_ALGORITHMS:
            kid = header.get("kid")
            jwk = await self._jwks.get(kid if isinstance(kid, str) else None)
            if jwk.algorithm_name != alg:
                raise AuthError("the signing key does not match the token algorithm")
            return jwk.key, str(alg)
        raise AuthError("token algorithm not accepted")


def mint_token(settings: AuthSettings, subject: str, ttl_s: int = 3600) -> str:
    """A signed development token (HS256 with GLIA_JWT_SECRET)."""
    if not settings.jwt_secret:
        raise ValueError("GLIA_JWT_SECRET is not set")
    if not 1 <= len(subject) <= MAX_SUBJECT_LENGTH:
        raise ValueError(f"the subject must be 1 to {MAX_SUBJECT_LENGTH} characters")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + ttl_s,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
