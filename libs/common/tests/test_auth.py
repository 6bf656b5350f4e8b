"""Every way a bearer token can be wrong is a 401-worthy AuthError; the right ones pass.
Settings that cannot work are a start-up error; an unreachable JWKS is never a 500."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from structlog.testing import capture_logs

from glia_common.auth import AuthConfigError, AuthError, JwksCache, TokenVerifier, mint_token
from glia_common.cli.token import main as glia_token
from glia_common.settings import AuthSettings
from glia_common.web.problems import install_problem_handlers
from glia_common.web.security import CurrentPrincipal

SECRET = "unit-test-secret-" + "s" * 32
JWKS_URL = "https://idp.example/.well-known/jwks.json"
ISSUER = "https://idp.example/"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(public_key: Any, kid: str, alg: str) -> dict[str, Any]:
    algo = RSAAlgorithm if alg == "RS256" else ECAlgorithm
    jwk = json.loads(algo.to_jwk(public_key))
    jwk.update(kid=kid, alg=alg, use="sig")
    return jwk


JWKS = {
    "keys": [
        _jwk(RSA_KEY.public_key(), "rsa-1", "RS256"),
        _jwk(EC_KEY.public_key(), "ec-1", "ES256"),
    ]
}


def _jwks_transport(calls: list[int] | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if calls is not None:
            calls.append(1)
        assert str(request.url) == JWKS_URL
        return httpx.Response(200, json=JWKS)

    return httpx.MockTransport(handler)


def settings(**kw: Any) -> AuthSettings:
    return AuthSettings(_env_file=None, **kw)  # type: ignore[call-arg]


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "aud": "glia", "iat": now, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs_verifier() -> TokenVerifier:
    return TokenVerifier(settings(jwt_secret=SECRET))


def jwks_verifier(
    calls: list[int] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **kw: Any,
) -> TokenVerifier:
    return TokenVerifier(
        settings(jwt_jwks_url=JWKS_URL, jwt_issuer=ISSUER, **kw),
        jwks_transport=transport or _jwks_transport(calls),
    )


def rs_token(key: Any = RSA_KEY, alg: str = "RS256", kid: str | None = "rsa-1", **kw: Any) -> str:
    """A token as the identity provider signs it (issuer included unless iss=None)."""
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims(**({"iss": ISSUER} | kw)), key, algorithm=alg, headers=headers)


async def test_valid_hs256_token() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    principal = await hs_verifier().verify(token)
    assert principal.user_id == "alice"


async def test_minted_development_token_verifies() -> None:
    s = settings(jwt_secret=SECRET)
    principal = await TokenVerifier(s).verify(mint_token(s, "bob", 60))
    assert principal.user_id == "bob"


@pytest.mark.parametrize(
    ("alg", "key", "kid"),
    [("RS256", RSA_KEY, "rsa-1"), ("ES256", EC_KEY, "ec-1")],
)
async def test_valid_asymmetric_tokens_via_jwks(alg: str, key: Any, kid: str) -> None:
    principal = await jwks_verifier().verify(rs_token(key, alg, kid))
    assert principal.user_id == "alice"


async def test_jwks_is_cached() -> None:
    calls: list[int] = []
    verifier = jwks_verifier(calls)
    for _ in range(3):
        await verifier.verify(rs_token())
    assert len(calls) == 1


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


BAD_HS_TOKENS = {
    "garbage": "not-a-jwt",
    "wrong key": jwt.encode(claims(), "another-secret-" + "k" * 32, algorithm="HS256"),
    "expired": jwt.encode(claims(exp=int(time.time()) - 3600), SECRET, algorithm="HS256"),
    "no exp": jwt.encode(claims(exp=None), SECRET, algorithm="HS256"),
    "no sub": jwt.encode(claims(sub=None), SECRET, algorithm="HS256"),
    "empty sub": jwt.encode(claims(sub=""), SECRET, algorithm="HS256"),
    "long sub": jwt.encode(claims(sub="x" * 129), SECRET, algorithm="HS256"),
    "non-string sub": jwt.encode(claims(sub=None) | {"sub": 42}, SECRET, algorithm="HS256"),
    "wrong audience": jwt.encode(claims(aud="someone-else"), SECRET, algorithm="HS256"),
    "no audience": jwt.encode(claims(aud=None), SECRET, algorithm="HS256"),
    "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims()) + ".",
    "HS512 not accepted": jwt.encode(claims(), SECRET, algorithm="HS512"),
    "RS256 without JWKS": jwt.encode(claims(), RSA_KEY, algorithm="RS256"),
    "tampered payload": (
        lambda t: t.split(".")[0] + "." + _b64(claims(sub="mallory")) + "." + t.split(".")[2]
    )(jwt.encode(claims(), SECRET, algorithm="HS256")),
}


@pytest.mark.parametrize("case", sorted(BAD_HS_TOKENS))
async def test_bad_tokens_are_rejected(case: str) -> None:
    with pytest.raises(AuthError):
        await hs_verifier().verify(BAD_HS_TOKENS[case])


async def test_issuer_checked_when_configured() -> None:
    verifier = TokenVerifier(settings(jwt_secret=SECRET, jwt_issuer="https://idp.example"))
    good = jwt.encode(claims(iss="https://idp.example"), SECRET, algorithm="HS256")
    assert (await verifier.verify(good)).user_id == "alice"
    for bad in (claims(iss="https://evil.example"), claims()):
        with pytest.raises(AuthError):
            await verifier.verify(jwt.encode(bad, SECRET, algorithm="HS256"))


async def test_hs_rs_confusion_is_rejected() -> None:
    """An HMAC token keyed with the RSA *public* key must not pass as RS256."""
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"})
    payload = _b64(claims(iss=ISSUER))
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    # JWKS only: HS256 is not accepted at all.
    with pytest.raises(AuthError):
        await jwks_verifier().verify(forged)
    # JWKS and a (leftover) secret: HS256 is still refused, never checked against either.
    with pytest.raises(AuthError):
        await jwks_verifier(jwt_secret=SECRET).verify(forged)


async def test_asymmetric_token_signed_by_unknown_key_is_rejected() -> None:
    with pytest.raises(AuthError):
        await jwks_verifier().verify(rs_token(OTHER_RSA_KEY))


async def test_unknown_kid_is_rejected() -> None:
    with pytest.raises(AuthError, match="unknown signing key"):
        await jwks_verifier().verify(rs_token(kid="nope"))


async def test_es256_token_with_rsa_kid_is_rejected() -> None:
    with pytest.raises(AuthError):
        await jwks_verifier().verify(rs_token(EC_KEY, "ES256", "rsa-1"))


async def test_no_key_source_rejects_everything() -> None:
    verifier = TokenVerifier(settings())
    with pytest.raises(AuthError):
        await verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))


def test_mint_token_needs_a_secret_and_a_sane_subject() -> None:
    with pytest.raises(ValueError):
        mint_token(settings(), "alice")
    with pytest.raises(ValueError):
        mint_token(settings(jwt_secret=SECRET), "")


async def test_alg_header_that_is_not_a_string_is_rejected() -> None:
    header = _b64({"alg": ["RS256"], "kid": "rsa-1", "typ": "JWT"})
    with pytest.raises(AuthError, match="algorithm"):
        await jwks_verifier().verify(f"{header}.{_b64(claims(iss=ISSUER))}.c2ln")


# --- Subjects: the user id reaches PostgreSQL, so only printable text passes. ---


@pytest.mark.parametrize(
    "sub",
    [
        "\x00",
        "a\x00b",
        "tab\there",
        "line\nbreak",
        "\x1b[31mred",
        "del\x7f",
        "c1\x85",
        "c1\x9f",
        "lone\ud800surrogate",
        "x" * 129,
    ],
)
async def test_subject_with_a_control_character_or_too_long_is_rejected(sub: str) -> None:
    token = jwt.encode(claims(sub=sub), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="invalid subject"):
        await hs_verifier().verify(token)


@pytest.mark.parametrize(
    "sub", ["a", "x" * 128, "Zoë", "用户", "auth0|5f7c8ec7c33c6c004bbafe82", "with space", "🙂"]
)
async def test_ordinary_subjects_pass(sub: str) -> None:
    token = jwt.encode(claims(sub=sub), SECRET, algorithm="HS256")
    assert (await hs_verifier().verify(token)).user_id == sub


def test_mint_token_refuses_a_subject_with_control_characters() -> None:
    with pytest.raises(ValueError, match="control"):
        mint_token(settings(jwt_secret=SECRET), "alice\x00")


# --- Lifetime: a stolen long-lived token is a long-lived key. ---


async def test_lifetime_is_capped_from_iat() -> None:
    now = int(time.time())
    verifier = hs_verifier()
    ok = jwt.encode(claims(iat=now, exp=now + 86_400), SECRET, algorithm="HS256")
    assert (await verifier.verify(ok)).user_id == "alice"
    for too_long in (
        claims(iat=now, exp=now + 86_400 + 31),
        claims(iat=now - 2 * 86_400, exp=now + 60),  # almost expired, but issued for 2 days
        claims(iat=None, exp=now + 86_400 + 3600),  # without iat: measured from now
    ):
        with pytest.raises(AuthError, match="token lifetime too long"):
            await verifier.verify(jwt.encode(too_long, SECRET, algorithm="HS256"))


async def test_lifetime_cap_is_configurable_and_applies_to_jwks_tokens() -> None:
    now = int(time.time())
    short = settings(jwt_secret=SECRET, jwt_max_lifetime_s=600)
    with pytest.raises(AuthError, match="token lifetime too long"):
        await TokenVerifier(short).verify(
            jwt.encode(claims(iat=now, exp=now + 3600), SECRET, algorithm="HS256")
        )
    with pytest.raises(AuthError, match="token lifetime too long"):
        await jwks_verifier(jwt_max_lifetime_s=600).verify(rs_token(exp=now + 3600))


def test_mint_token_and_glia_token_respect_the_cap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="GLIA_JWT_MAX_LIFETIME_S"):
        mint_token(settings(jwt_secret=SECRET), "alice", 86_401)
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("GLIA_JWT_SECRET", SECRET)
    monkeypatch.setenv("GLIA_JWT_MAX_LIFETIME_S", "7200")
    with pytest.raises(SystemExit) as exited:
        glia_token(["alice", "--ttl", "7201"])
    assert exited.value.code == 2 and "7200" in capsys.readouterr().err
    glia_token(["alice", "--ttl", "7200"])
    token = capsys.readouterr().out.strip()
    assert jwt.decode(token, SECRET, algorithms=["HS256"], audience="glia")["sub"] == "alice"


# --- Configuration: what cannot work (or is unsafe) fails at start-up. ---


def test_environment_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings().environment == "development"
    monkeypatch.setenv("GLIA_ENVIRONMENT", "production")
    assert settings().environment == "production"
    monkeypatch.setenv("GLIA_ENVIRONMENT", "staging")
    with pytest.raises(ValueError):
        settings()


def test_jwks_mode_requires_an_issuer() -> None:
    with pytest.raises(AuthConfigError, match="GLIA_JWT_ISSUER"):
        TokenVerifier(settings(jwt_jwks_url=JWKS_URL))


async def test_jwks_tokens_must_carry_the_issuer() -> None:
    verifier = jwks_verifier()
    for bad in (rs_token(iss=None), rs_token(iss="https://evil.example/")):
        with pytest.raises(AuthError):
            await verifier.verify(bad)


async def test_jwks_mode_refuses_hs256_even_with_a_secret() -> None:
    """A leftover GLIA_JWT_SECRET must not be a way around the identity provider."""
    with capture_logs() as logs:
        verifier = jwks_verifier(jwt_secret=SECRET)
    assert any(e["event"] == "auth.secret_ignored" for e in logs)
    token = jwt.encode(claims(iss=ISSUER), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="algorithm not accepted"):
        await verifier.verify(token)


@pytest.mark.parametrize(
    ("url", "environment", "accepted"),
    [
        ("https://idp.example/jwks", "production", True),
        ("https://idp.example/jwks", "development", True),
        ("http://localhost:8080/jwks", "development", True),
        ("http://127.0.0.1:8080/jwks", "development", True),
        ("http://[::1]:8080/jwks", "development", True),
        ("http://localhost:8080/jwks", "production", False),
        ("http://idp.example/jwks", "development", False),
        ("http://localhost.evil.example/jwks", "development", False),
        ("ftp://idp.example/jwks", "development", False),
        ("idp.example/jwks", "development", False),
        ("https:///jwks", "production", False),
    ],
)
def test_jwks_url_must_be_https_outside_local_development(
    url: str, environment: str, accepted: bool
) -> None:
    s = settings(jwt_jwks_url=url, jwt_issuer=ISSUER, environment=environment)
    if accepted:
        TokenVerifier(s)
    else:
        with pytest.raises(AuthConfigError, match="https"):
            TokenVerifier(s)


async def test_short_secret_is_a_warning_in_development_and_an_error_in_production() -> None:
    short = "too-short"
    with capture_logs() as logs:
        verifier = TokenVerifier(settings(jwt_secret=short))
    assert [e["log_level"] for e in logs if e["event"] == "auth.short_secret"] == ["warning"]
    token = jwt.encode(claims(), short, algorithm="HS256")
    assert (await verifier.verify(token)).user_id == "alice"
    with pytest.raises(AuthConfigError, match="32 bytes"):
        TokenVerifier(settings(jwt_secret=short, environment="production"))
    TokenVerifier(settings(jwt_secret="k" * 32, environment="production"))


def test_production_needs_a_key_source() -> None:
    with pytest.raises(AuthConfigError, match="GLIA_JWT_JWKS_URL"):
        TokenVerifier(settings(environment="production"))


# --- JWKS outages: stale keys, backoff, one fetch at a time, fast failures. ---


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Provider:
    """A JWKS endpoint the test steers: the set it serves, a fault, a gate to hold it."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = JWKS
        self.fault: Callable[[], httpx.Response] | None = None
        self.gate: asyncio.Event | None = None
        self.calls = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fault is not None:
            return self.fault()
        return httpx.Response(200, json=self.jwks)

    def down(self) -> httpx.Response:
        raise httpx.ConnectError("connection refused")


def jwks_cache(provider: Provider, clock: Clock, **kw: Any) -> JwksCache:
    options: dict[str, Any] = {
        "ttl_s": 300,
        "stale_s": 3600,
        "min_refresh_s": 10,
        "backoff_s": (1.0, 60.0),
        "timeout_s": 1.0,
    }
    return JwksCache(
        JWKS_URL,
        transport=httpx.MockTransport(provider.handle),
        clock=clock,
        **(options | kw),
    )


async def settled(cache: JwksCache) -> None:
    """Let a background refresh finish."""
    for _ in range(1000):
        if cache._fetch is None:
            return
        await asyncio.sleep(0)
    raise AssertionError("the refresh did not finish")


async def test_stale_keys_serve_through_an_outage_until_they_expire() -> None:
    provider, clock = Provider(), Clock()
    cache = jwks_cache(provider, clock)
    assert (await cache.get("rsa-1")).key_id == "rsa-1"
    provider.fault = provider.down
    clock.now += 301  # past the TTL: the refresh fails, the stale set still serves
    assert (await cache.get("rsa-1")).key_id == "rsa-1"
    await settled(cache)
    assert provider.calls == 2
    clock.now += 0.5  # backing off: served from the stale set without a fetch
    assert (await cache.get("rsa-1")).key_id == "rsa-1"
    assert provider.calls == 2
    clock.now += 3600  # stale for longer than allowed: no key is trusted
    with pytest.raises(AuthError, match="signing keys are unavailable"):
        await cache.get("rsa-1")
    calls = provider.calls
    with pytest.raises(AuthError, match="signing keys are unavailable"):
        await cache.get("rsa-1")  # backing off: a fast 401, no fetch
    assert provider.calls == calls
    provider.fault = None
    clock.now += 60
    assert (await cache.get("rsa-1")).key_id == "rsa-1"


async def test_failed_fetches_back_off_exponentially_up_to_a_cap() -> None:
    provider, clock = Provider(), Clock()
    provider.fault = lambda: httpx.Response(503)
    cache = jwks_cache(provider, clock)
    attempts: list[float] = []
    for _ in range(2 * 400):
        calls = provider.calls
        with pytest.raises(AuthError, match="signing keys are unavailable"):
            await cache.get("rsa-1")
        if provider.calls > calls:
            attempts.append(clock.now)
        clock.now += 0.5
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[:8] == [1, 2, 4, 8, 16, 32, 60, 60] and set(gaps[6:]) == {60}


async def test_one_fetch_at_a_time_and_concurrent_callers_share_it() -> None:
    provider, clock = Provider(), Clock()
    provider.gate = asyncio.Event()
    cache = jwks_cache(provider, clock)
    waiting = [asyncio.create_task(cache.get("rsa-1")) for _ in range(20)]
    await asyncio.sleep(0.05)
    assert provider.calls == 1 and not any(t.done() for t in waiting)
    provider.gate.set()
    assert {k.key_id for k in await asyncio.gather(*waiting)} == {"rsa-1"}
    assert provider.calls == 1


async def test_callers_with_a_usable_key_never_wait_for_a_refresh() -> None:
    provider, clock = Provider(), Clock()
    cache = jwks_cache(provider, clock)
    await cache.get("rsa-1")
    provider.gate = asyncio.Event()  # the provider hangs from now on
    clock.now += 301
    for _ in range(5):
        assert (await asyncio.wait_for(cache.get("rsa-1"), 0.1)).key_id == "rsa-1"
    assert provider.calls == 2
    provider.gate.set()
    await settled(cache)


async def test_unknown_kid_refetches_at_most_once_per_interval() -> None:
    provider, clock = Provider(), Clock()
    cache = jwks_cache(provider, clock)
    await cache.get("rsa-1")
    for kid in ("rotated", "made-up", "rotated"):
        with pytest.raises(AuthError, match="unknown signing key"):
            await cache.get(kid)
    assert provider.calls == 1
    provider.jwks = {"keys": [*JWKS["keys"], _jwk(OTHER_RSA_KEY.public_key(), "rotated", "RS256")]}
    clock.now += 10
    assert (await cache.get("rotated")).key_id == "rotated"  # a rotation is picked up
    for _ in range(20):
        with pytest.raises(AuthError, match="unknown signing key"):
            await cache.get("made-up")
    assert provider.calls == 2


async def _stalling_server(drip: bool) -> tuple[asyncio.Server, list[int]]:
    """A real HTTP endpoint that never finishes an answer: silent, or dripping a byte
    every 0.1 s (which no per-read timeout catches)."""
    connections: list[int] = []

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.readuntil(b"\r\n\r\n")
        try:
            if drip:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                while True:
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.1)
            await reader.read()  # until the client gives up
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(stall, "127.0.0.1", 0), connections


@pytest.mark.parametrize("drip", [False, True], ids=["silent", "dripping"])
async def test_a_stalling_provider_costs_one_short_timeout_then_fast_401s(drip: bool) -> None:
    server, connections = await _stalling_server(drip)
    port = server.sockets[0].getsockname()[1]
    try:
        cache = JwksCache(
            f"http://127.0.0.1:{port}/jwks", ttl_s=300, stale_s=0, min_refresh_s=10, timeout_s=0.3
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            *(cache.get("rsa-1") for _ in range(10)), return_exceptions=True
        )
        assert loop.time() - started < 1.0
        assert all(
            isinstance(r, AuthError) and str(r) == "signing keys are unavailable" for r in results
        )
        started = loop.time()
        with pytest.raises(AuthError, match="signing keys are unavailable"):
            await cache.get("rsa-1")
        assert loop.time() - started < 0.05
        assert len(connections) == 1
    finally:
        server.close()


async def test_jwks_over_real_http_on_localhost_in_development() -> None:
    body = json.dumps(JWKS).encode()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        verifier = TokenVerifier(
            settings(jwt_jwks_url=f"http://127.0.0.1:{port}/jwks", jwt_issuer=ISSUER)
        )
        assert (await verifier.verify(rs_token())).user_id == "alice"
    finally:
        server.close()


def _raise(exc: Exception) -> Callable[[], httpx.Response]:
    def fault() -> httpx.Response:
        raise exc

    return fault


JWKS_FAULTS: dict[str, Callable[[], httpx.Response]] = {
    "500": lambda: httpx.Response(500),
    "404": lambda: httpx.Response(404),
    "redirect": lambda: httpx.Response(302, headers={"Location": "http://evil.example/"}),
    "html": lambda: httpx.Response(200, text="<html>maintenance</html>"),
    "a JSON list": lambda: httpx.Response(200, json=[]),
    "no keys": lambda: httpx.Response(200, json={"keys": []}),
    "keys not a list": lambda: httpx.Response(200, json={"keys": 7}),
    "unusable keys": lambda: httpx.Response(200, json={"keys": [{"kty": "bogus"}]}),
    "connection refused": _raise(httpx.ConnectError("refused")),
    "read timeout": _raise(httpx.ReadTimeout("slow")),
    "anything else": _raise(RuntimeError("surprise")),
}


@pytest.mark.parametrize("fault", sorted(JWKS_FAULTS))
async def test_every_jwks_failure_is_an_auth_error(fault: str) -> None:
    provider = Provider()
    provider.fault = JWKS_FAULTS[fault]
    verifier = jwks_verifier(transport=httpx.MockTransport(provider.handle))
    with pytest.raises(AuthError, match="signing keys are unavailable"):
        await verifier.verify(rs_token())


# --- Over HTTP: every failure is a 401 problem with exactly `WWW-Authenticate: Bearer`. ---


def _app(verifier: TokenVerifier) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.token_verifier = verifier

    @app.get("/v1/me")
    async def me(principal: CurrentPrincipal) -> dict[str, str]:
        return {"user": principal.user_id}

    return app


def _down_verifier() -> TokenVerifier:
    return jwks_verifier(transport=httpx.MockTransport(_raise(RuntimeError("down"))))


HTTP_CASES: dict[str, tuple[Callable[[], TokenVerifier], str | None]] = {
    "no token": (hs_verifier, None),
    "NUL in sub": (hs_verifier, jwt.encode(claims(sub="a\x00b"), SECRET, algorithm="HS256")),
    "lifetime too long": (
        hs_verifier,
        jwt.encode(claims(exp=int(time.time()) + 10 * 86_400), SECRET, algorithm="HS256"),
    ),
    "HS256 in JWKS mode": (
        lambda: jwks_verifier(jwt_secret=SECRET),
        jwt.encode(claims(iss=ISSUER), SECRET, algorithm="HS256"),
    ),
    "alg not a string": (
        jwks_verifier,
        _b64({"alg": ["RS256"]}) + "." + _b64(claims(iss=ISSUER)) + ".c2ln",
    ),
    "JWKS provider down": (_down_verifier, rs_token()),
}


@pytest.mark.parametrize("case", sorted(HTTP_CASES))
async def test_every_failure_is_a_401_bearer_problem(case: str) -> None:
    make_verifier, token = HTTP_CASES[case]
    transport = httpx.ASGITransport(app=_app(make_verifier()), raise_app_exceptions=False)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/v1/me", headers=headers)
    assert r.status_code == 401
    assert r.headers.get_list("www-authenticate") == ["Bearer"]
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 401 and r.json()["code"] == "unauthorized"


async def test_a_good_token_passes_over_http() -> None:
    transport = httpx.ASGITransport(app=_app(jwks_verifier()))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/v1/me", headers={"Authorization": f"Bearer {rs_token()}"})
    assert r.status_code == 200 and r.json() == {"user": "alice"}


async def test_a_verified_token_is_trusted_again_without_a_second_verification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = hs_verifier()
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    first = await verifier.verify(token)
    decoded: list[str] = []
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: decoded.append("again") or {})
    assert await verifier.verify(token) is first
    assert decoded == []


async def test_a_trusted_token_is_checked_again_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = hs_verifier()
    now = int(time.time())
    token = jwt.encode(claims(iat=now - 10, exp=now + 5), SECRET, algorithm="HS256")
    assert (await verifier.verify(token)).user_id == "alice"

    def expired(*_: Any, **__: Any) -> dict[str, Any]:
        raise jwt.ExpiredSignatureError

    # Past its expiry and the leeway (well within a minute): verified again, and refused.
    monkeypatch.setattr(time, "time", lambda: now + 5 + 31)
    monkeypatch.setattr(jwt, "decode", expired)
    with pytest.raises(AuthError, match="expired"):
        await verifier.verify(token)


async def test_a_trusted_token_is_verified_again_after_a_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = hs_verifier()
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    await verifier.verify(token)
    start = time.time()
    calls: list[str] = []
    real_decode = jwt.decode
    monkeypatch.setattr(time, "time", lambda: start + 61)
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: calls.append("x") or real_decode(*a, **k))
    assert (await verifier.verify(token)).user_id == "alice"
    assert calls == ["x"]
