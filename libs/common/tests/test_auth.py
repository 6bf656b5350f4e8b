"""Every way a bearer token can be wrong is a 401-worthy AuthError; the right ones pass."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from glia_common.auth import AuthError, TokenVerifier, mint_token
from glia_common.settings import AuthSettings

SECRET = "unit-test-secret-" + "s" * 32
JWKS_URL = "https://idp.example/.well-known/jwks.json"

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


def jwks_verifier(calls: list[int] | None = None, **kw: Any) -> TokenVerifier:
    return TokenVerifier(
        settings(jwt_jwks_url=JWKS_URL, **kw), jwks_transport=_jwks_transport(calls)
    )


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
    token = jwt.encode(claims(), key, algorithm=alg, headers={"kid": kid})
    principal = await jwks_verifier().verify(token)
    assert principal.user_id == "alice"


async def test_jwks_is_cached() -> None:
    calls: list[int] = []
    verifier = jwks_verifier(calls)
    for _ in range(3):
        token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
        await verifier.verify(token)
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
    payload = _b64(claims())
    import hashlib
    import hmac

    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    # JWKS only: HS256 is not accepted at all.
    with pytest.raises(AuthError):
        await jwks_verifier().verify(forged)
    # JWKS and a secret: HS256 is checked against the secret, never the public key.
    with pytest.raises(AuthError):
        await jwks_verifier(jwt_secret=SECRET).verify(forged)


async def test_asymmetric_token_signed_by_unknown_key_is_rejected() -> None:
    token = jwt.encode(claims(), OTHER_RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(AuthError):
        await jwks_verifier().verify(token)


async def test_unknown_kid_is_rejected() -> None:
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "nope"})
    with pytest.raises(AuthError):
        await jwks_verifier().verify(token)


async def test_es256_token_with_rsa_kid_is_rejected() -> None:
    token = jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "rsa-1"})
    with pytest.raises(AuthError):
        await jwks_verifier().verify(token)


async def test_no_key_source_rejects_everything() -> None:
    verifier = TokenVerifier(settings())
    with pytest.raises(AuthError):
        await verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))


def test_mint_token_needs_a_secret_and_a_sane_subject() -> None:
    with pytest.raises(ValueError):
        mint_token(settings(), "alice")
    with pytest.raises(ValueError):
        mint_token(settings(jwt_secret=SECRET), "")
