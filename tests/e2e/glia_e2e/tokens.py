"""Every kind of bad bearer token a hostile client might send."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _hmac_token(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token keyed with arbitrary bytes (PyJWT refuses public keys as secrets)."""
    signing_input = _b64({"alg": "HS256", "typ": "JWT"}) + "." + _b64(claims)
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def bad_tokens(secret: str, user: str = "mallory") -> dict[str, str]:
    now = int(time.time())
    good = {"sub": user, "aud": "glia", "iat": now, "exp": now + 600}
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "garbage": "not.a.token",
        "wrong key": jwt.encode(good, "some-other-secret-" + "k" * 32, algorithm="HS256"),
        "expired": jwt.encode({**good, "exp": now - 3600}, secret, algorithm="HS256"),
        "no exp": jwt.encode(
            {k: v for k, v in good.items() if k != "exp"}, secret, algorithm="HS256"
        ),
        "wrong audience": jwt.encode({**good, "aud": "not-glia"}, secret, algorithm="HS256"),
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(good) + ".",
        "RS256 without JWKS": jwt.encode(good, rsa_key, algorithm="RS256"),
        "HS256 keyed with a public key": _hmac_token(good, public_pem),
        "empty subject": jwt.encode({**good, "sub": ""}, secret, algorithm="HS256"),
        # The user's id with a NUL or another control character must never reach SQL.
        "NUL in subject": jwt.encode({**good, "sub": user + "\x00"}, secret, algorithm="HS256"),
        "escape in subject": jwt.encode(
            {**good, "sub": "\x1b[2J" + user}, secret, algorithm="HS256"
        ),
        "lone surrogate in subject": jwt.encode(
            {**good, "sub": user + "\ud800"}, secret, algorithm="HS256"
        ),
        "lifetime over the cap": jwt.encode(
            {**good, "exp": now + 30 * 86_400}, secret, algorithm="HS256"
        ),
    }
