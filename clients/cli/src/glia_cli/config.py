"""Where the CLI keeps its token and server addresses.

The file is ``$GLIA_CONFIG_DIR/config.json`` (default ``$XDG_CONFIG_HOME/glia``, or
``~/.config/glia``), readable by its owner only. ``GLIA_TOKEN``, ``GLIA_CHAT_URL`` and
``GLIA_CARDS_URL`` in the environment, and the command-line options, win over it.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from glia_cli.api import DEFAULT_CARDS_URL, DEFAULT_CHAT_URL


def config_dir() -> Path:
    if explicit := os.environ.get("GLIA_CONFIG_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "glia"


def config_path() -> Path:
    return config_dir() / "config.json"


@dataclass
class Profile:
    token: str | None = None
    chat_url: str = DEFAULT_CHAT_URL
    cards_url: str = DEFAULT_CARDS_URL


def load_profile() -> Profile:
    try:
        raw = json.loads(config_path().read_text())
    except FileNotFoundError:
        return Profile()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {config_path()}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_path()} is not a JSON object")
    known = {k: v for k, v in raw.items() if k in Profile.__dataclass_fields__ and v}
    return Profile(**known)


def save_profile(profile: Profile) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    # Created owner-only from the start: the file holds a bearer token.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(profile), f, indent=2)
        f.write("\n")
    tmp.replace(path)
    return path


def forget_token() -> bool:
    profile = load_profile()
    if profile.token is None:
        return False
    profile.token = None
    save_profile(profile)
    return True


class ConfigError(Exception):
    pass


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified: only to tell the user who and until when."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def describe_token(token: str) -> str:
    claims = token_claims(token)
    who = claims.get("sub", "an unknown user")
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        return f"{who}"
    left = int(exp - time.time())
    if left <= 0:
        return f"{who} (the token has expired)"
    if left < 120:
        return f"{who} (the token expires in {left} s)"
    if left < 7200:
        return f"{who} (the token expires in {left // 60} min)"
    return f"{who} (the token expires in {left // 3600} h)"
