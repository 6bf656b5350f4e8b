"""glia-token SUB [--ttl SECONDS]: print a signed development token for user SUB."""

from __future__ import annotations

import argparse
import sys

from glia_common.auth import mint_token
from glia_common.settings import AuthSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="glia-token", description=__doc__)
    parser.add_argument("sub", help="the user id (JWT subject), 1 to 128 characters")
    parser.add_argument(
        "--ttl",
        type=int,
        default=3600,
        help="lifetime in seconds (default 3600; at most GLIA_JWT_MAX_LIFETIME_S)",
    )
    args = parser.parse_args(argv)
    if args.ttl <= 0:
        parser.error("--ttl must be positive")
    settings = AuthSettings()
    try:
        token = mint_token(settings, args.sub, args.ttl)
    except ValueError as exc:
        print(f"glia-token: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    if settings.jwt_jwks_url:
        print(
            "glia-token: GLIA_JWT_JWKS_URL is set, so the services accept only the identity "
            "provider's tokens and will refuse this one",
            file=sys.stderr,
        )
    print(token)


if __name__ == "__main__":
    main()
