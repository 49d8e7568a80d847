"""Print a dev access token signed with the DEV_AUTH key: `make token SCOPES="consent:read"`.

Reads the same settings as the services (AUTH_ISSUER, AUTH_AUDIENCE, DEV_AUTH_KEY_FILE); values
already in the environment win over those of --env-file. Refuses unless DEV_AUTH=1.
"""

from __future__ import annotations

import argparse
import sys

import structlog

from shared.devauth import issue_dev_token, load_or_create_dev_key
from shared.settings import ServiceSettings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m tools.token", description=__doc__)
    parser.add_argument("--scopes", default="", help='space-separated, e.g. "consent:read admin"')
    parser.add_argument("--tenant", default="dev-tenant", help="tenant_id claim")
    parser.add_argument("--sub", default="dev-user", help="sub claim")
    parser.add_argument("--client-id", default="dev-cli", help="client_id claim")
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    parser.add_argument("--env-file", default=None, help="defaults for unset variables")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print one token on stdout; explain on stderr and return 2 when dev auth is off."""
    args = parse_args(argv)
    settings = ServiceSettings(_env_file=args.env_file)  # type: ignore[call-arg]
    if not settings.dev_auth:
        print("refusing: dev tokens need DEV_AUTH=1 (dev setups only)", file=sys.stderr)
        return 2
    if not (settings.auth_issuer and settings.auth_audience):
        print("refusing: set AUTH_ISSUER and AUTH_AUDIENCE", file=sys.stderr)
        return 2
    token = issue_dev_token(
        key=load_or_create_dev_key(settings.dev_auth_key_file),
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        scopes=args.scopes.split(),
        sub=args.sub,
        tenant_id=args.tenant,
        client_id=args.client_id,
        ttl_s=args.ttl,
    )
    print(token)
    return 0


if __name__ == "__main__":
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr)
    )  # stdout: the token
    sys.exit(main())
