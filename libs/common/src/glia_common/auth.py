"""JWT verification -> Principal. One implementation for every HTTP service.

Two exclusive modes, chosen by the settings at start-up:
- GLIA_JWT_JWKS_URL set: only RS256/ES256 tokens signed by a key of that JWKS and
  naming GLIA_JWT_ISSUER (required then) pass. A GLIA_JWT_SECRET left in the
  environment is ignored, so it cannot bypass the identity provider.
- otherwise: only HS256 tokens signed with GLIA_JWT_SECRET.
Verification allows exactly one algorithm, so neither ``alg: none`` nor HS/RS
confusion (an HMAC keyed with a public key) can pass. Settings that cannot work
raise ``AuthConfigError`` from the constructor, which stops a service at start-up.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
from jwt import PyJWK, PyJWKSet

from glia_common.settings import AuthSettings
from glia_common.telemetry import get_logger

ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "ES256"})
MAX_SUBJECT_LENGTH = 128
LEEWAY_S = 30
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
JWKS_FETCH_TIMEOUT_S = 2.5
# A verified token is trusted again, without checking its signature, for at most this
# long and never past its expiry: a client's next requests then skip the verification.
VERIFIED_TTL_S = 60.0
VERIFIED_MAX_ENTRIES = 4096
JWKS_BACKOFF_S = (1.0, 60.0)  # first retry after a failed fetch, and the cap of doubling
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# C0 controls, DEL, C1 controls, and lone surrogates (which no database text can hold).
_BAD_SUBJECT_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

log = get_logger(__name__)


class AuthError(Exception):
    """The request is not authenticated; the message is safe to show the client."""


class AuthConfigError(ValueError):
    """The auth settings cannot work (or are unsafe): a start-up error."""


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    claims: dict[str, Any]


def valid_subject(sub: object) -> bool:
    """A user id: 1 to 128 characters, none of them a control character."""
    return (
        isinstance(sub, str)
        and 1 <= len(sub) <= MAX_SUBJECT_LENGTH
        and not _BAD_SUBJECT_CHARS.search(sub)
    )


class JwksCache:
    """Keys from a JWKS URL, fetched lazily and cached ``ttl_s``.

    Written by hand because PyJWKClient blocks (urllib) and forgets failures. Here:
    - one fetch at a time; callers that hold a usable key never wait for it;
    - a failed fetch keeps the last good set for ``stale_s`` more, and the next attempt
      backs off (doubling, capped), so an outage costs one timeout per backoff period
      instead of one per request;
    - a ``kid`` not in the set refetches at most once per ``min_refresh_s``, so tokens
      with made-up kids cannot hammer the provider; between refetches they fail fast.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        stale_s: float,
        min_refresh_s: float,
        timeout_s: float = JWKS_FETCH_TIMEOUT_S,
        backoff_s: tuple[float, float] = JWKS_BACKOFF_S,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._ttl_s = ttl_s
        self._usable_s = ttl_s + stale_s
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._backoff_s = backoff_s
        self._transport = transport
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = float("-inf")  # of the last good set (monotonic)
        self._next_fetch_at = float("-inf")  # rate limit after a success, backoff after a failure
        self._failures = 0
        self._fetch: asyncio.Task[None] | None = None

    async def get(self, kid: str | None) -> PyJWK:
        now = self._clock()
        key = self._lookup(kid)
        wanted = key is None or now - self._fetched_at > self._ttl_s
        if wanted and self._fetch is None and now >= self._next_fetch_at:
            self._fetch = asyncio.create_task(self._refresh(), name="jwks-refresh")
        if key is None and self._fetch is not None:
            # Nothing usable: wait for the fetch in flight (bounded by its timeout). It is
            # shielded so a caller that goes away does not cancel it for the others.
            await asyncio.shield(self._fetch)
            key = self._lookup(kid)
        if key is not None:
            return key
        if not self._usable():
            raise AuthError("signing keys are unavailable")
        raise AuthError("unknown signing key")

    def _usable(self) -> bool:
        """The last good set is fresh, or stale for less than ``stale_s``."""
        return self._clock() - self._fetched_at <= self._usable_s

    def _lookup(self, kid: str | None) -> PyJWK | None:
        if not self._usable():
            return None
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid or "")

    async def _refresh(self) -> None:
        try:
            # The client's timeout is per phase; asyncio.timeout bounds the whole fetch.
            async with (
                asyncio.timeout(self._timeout_s),
                httpx.AsyncClient(timeout=self._timeout_s, transport=self._transport) as client,
            ):
                response = await client.get(self._url)
                response.raise_for_status()
                jwk_set = PyJWKSet.from_dict(response.json())
        except Exception as exc:  # whatever went wrong, the provider is unusable for now
            self._failures += 1
            first, cap = self._backoff_s
            delay = min(cap, first * 2 ** min(self._failures - 1, 16))
            self._next_fetch_at = self._clock() + delay
            log.warning(
                "auth.jwks_fetch_failed",
                error=f"{type(exc).__name__}: {exc}"[:300],
                failures=self._failures,
                retry_in_s=delay,
                keys_usable=self._usable(),
            )
        else:
            self._keys = {k.key_id or "": k for k in jwk_set.keys}
            self._fetched_at = self._clock()
            self._next_fetch_at = self._fetched_at + self._min_refresh_s
            if self._failures:
                log.info("auth.jwks_fetch_recovered", failures=self._failures)
            self._failures = 0
        finally:
            self._fetch = None


class TokenVerifier:
    """Bearer token -> Principal, or AuthError (a 401). The constructor raises
    AuthConfigError for settings that cannot work: a JWKS URL without an issuer, or not
    https (http://localhost is allowed in development); and with
    GLIA_ENVIRONMENT=production, a secret under 32 bytes or no key source at all. A short
    secret in development only logs a warning: tests and quick starts may use one."""

    def __init__(
        self, settings: AuthSettings, jwks_transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        production = settings.environment == "production"
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer or None
        self._max_lifetime_s = settings.jwt_max_lifetime_s
        self._secret: str | None = None
        self._jwks: JwksCache | None = None
        self._verified: dict[str, tuple[Principal, float]] = {}
        if settings.jwt_jwks_url:
            _check_jwks_url(settings.jwt_jwks_url, production)
            if not self._issuer:
                raise AuthConfigError(
                    "GLIA_JWT_ISSUER is required when GLIA_JWT_JWKS_URL is set "
                    "(tokens must name the identity provider that issued them)"
                )
            if secret:
                log.warning(
                    "auth.secret_ignored",
                    reason="GLIA_JWT_JWKS_URL is set: HS256 tokens are refused",
                )
            self._jwks = JwksCache(
                settings.jwt_jwks_url,
                ttl_s=settings.jwt_jwks_cache_s,
                stale_s=settings.jwt_jwks_stale_s,
                min_refresh_s=settings.jwt_jwks_min_refresh_s,
                transport=jwks_transport,
            )
        elif secret:
            if len(secret.encode()) < MIN_SECRET_BYTES:
                if production:
                    raise AuthConfigError(
                        f"GLIA_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes "
                        "when GLIA_ENVIRONMENT=production"
                    )
                log.warning("auth.short_secret", min_bytes=MIN_SECRET_BYTES)
            self._secret = secret
        elif production:
            raise AuthConfigError(
                "no token can be verified: set GLIA_JWT_JWKS_URL and GLIA_JWT_ISSUER"
            )

    async def verify(self, token: str) -> Principal:
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None:
            principal, trusted_until = cached
            if now < trusted_until:
                return principal
            del self._verified[token]
        principal = await self._verify(token)
        if len(self._verified) >= VERIFIED_MAX_ENTRIES:
            del self._verified[next(iter(self._verified))]  # the oldest entry
        exp = int(principal.claims["exp"]) + LEEWAY_S
        self._verified[token] = (principal, min(now + VERIFIED_TTL_S, exp))
        return principal

    async def _verify(self, token: str) -> Principal:
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
        # jwt.decode has checked that exp (and iat, when present) are integers.
        start = int(claims.get("iat", time.time()))
        if int(claims["exp"]) - start > self._max_lifetime_s + LEEWAY_S:
            raise AuthError("token lifetime too long")
        sub = claims["sub"]
        if not valid_subject(sub):
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
        if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:
            raise AuthError("token algorithm not accepted")
        kid = header.get("kid")
        jwk = await self._jwks.get(kid if isinstance(kid, str) else None)
        if jwk.algorithm_name != alg:
            raise AuthError("the signing key does not match the token algorithm")
        return jwk.key, alg


def _check_jwks_url(url: str, production: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOCAL_HOSTS and not production:
        return
    raise AuthConfigError(
        "GLIA_JWT_JWKS_URL must be an https:// URL"
        + ("" if production else " (or http://localhost in development)")
        + f", not {parts.scheme or 'no'} scheme on host {parts.hostname or '(none)'}"
    )


def mint_token(settings: AuthSettings, subject: str, ttl_s: int = 3600) -> str:
    """A signed development token (HS256 with GLIA_JWT_SECRET). Short secrets are fine
    here: the services refuse them only when GLIA_ENVIRONMENT=production."""
    if not settings.jwt_secret:
        raise ValueError("GLIA_JWT_SECRET is not set")
    if not valid_subject(subject):
        raise ValueError(
            f"the subject must be 1 to {MAX_SUBJECT_LENGTH} characters, with no control characters"
        )
    if ttl_s > settings.jwt_max_lifetime_s:  # a negative ttl (an expired token) is fine
        raise ValueError(
            f"the lifetime must be at most {settings.jwt_max_lifetime_s} seconds "
            "(GLIA_JWT_MAX_LIFETIME_S)"
        )
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
