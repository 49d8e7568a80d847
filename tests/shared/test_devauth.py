"""Dev-only auth (DEV_AUTH=1): the local key, its JWKS route, dev tokens and `make token`."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from joserfc import jwt

from shared.auth import Principal, build_token_validator
from shared.devauth import JWKS_PATH, dev_jwks_router, issue_dev_token, load_or_create_dev_key
from shared.settings import ServiceSettings
from tests.conftest import serving
from tools import token as token_tool

REPO = Path(__file__).resolve().parents[2]
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}
ISSUER = "http://127.0.0.1:8004/dev-idp"


def test_the_dev_key_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / ".dev" / "dev-signing-key.json"
    key = load_or_create_dev_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key.is_private and key.alg == "RS256" and key.kid
    assert key.public_key.key_size == 2048
    assert load_or_create_dev_key(path).kid == key.kid
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_a_key_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    load_or_create_dev_key(path)
    path.chmod(0o644)
    load_or_create_dev_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_jwks_route_is_refused_unless_dev_auth_is_set(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    with pytest.raises(RuntimeError):
        dev_jwks_router(ServiceSettings(dev_auth=False, dev_auth_key_file=str(path)))
    assert not path.exists()


async def test_a_dev_token_validates_against_the_served_jwks(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    base = {"dev_auth_key_file": str(path), "auth_issuer": ISSUER, "auth_audience": "vitals"}
    app = FastAPI()
    app.include_router(dev_jwks_router(ServiceSettings(dev_auth=True, **base)))
    async with serving(app) as url, httpx.AsyncClient() as http:
        doc = (await http.get(f"{url}{JWKS_PATH}")).json()
        settings = ServiceSettings(auth_jwks_url=f"{url}{JWKS_PATH}", **base)
        validator = build_token_validator(settings, http)
        assert validator is not None
        token = issue_dev_token(
            key=load_or_create_dev_key(path),
            issuer=ISSUER,
            audience="vitals",
            scopes=["consent:read", "admin"],
            tenant_id="t-1",
        )
        principal = await validator.validate(token)
    (public,) = doc["keys"]
    assert not PRIVATE_MEMBERS & public.keys()
    assert (public["kty"], public["alg"], public["kid"]) == (
        "RSA",
        "RS256",
        header_of(token)["kid"],
    )
    assert header_of(token)["typ"] == "at+jwt"
    assert principal == Principal(
        sub="dev-user",
        client_id="dev-cli",
        tenant_id="t-1",
        scopes=frozenset({"consent:read", "admin"}),
        jti=principal.jti,
        issuer=ISSUER,
    )


def header_of(token: str) -> dict[str, str]:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@pytest.fixture
def dev_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment for the token tool, its key file under tmp_path."""
    for name in ("DEV_AUTH", "AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_URL"):
        monkeypatch.delenv(name, raising=False)
    key_file = tmp_path / "key.json"
    monkeypatch.setenv("DEV_AUTH_KEY_FILE", str(key_file))
    return key_file


def test_the_token_tool_refuses_without_dev_auth(
    dev_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert token_tool.main(["--scopes", "consent:read"]) == 2
    assert "DEV_AUTH=1" in capsys.readouterr().err
    assert not dev_env.exists()


def test_an_explicit_dev_auth_0_wins_over_the_dev_env_file(
    dev_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEV_AUTH", "0")
    assert token_tool.main(["--env-file", str(REPO / "deploy/dev.env")]) == 2


def test_make_token_prints_only_a_token_signed_by_the_dev_key(dev_env: Path) -> None:
    env = {**os.environ, "AUTH_AUDIENCE": "consent-api"}  # the environment wins over dev.env
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.token",
            "--env-file",
            "deploy/dev.env",
            "--tenant",
            "t-9",
            "--scopes",
            "readings:write admin",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (token,) = out.splitlines()
    claims = jwt.decode(token, load_or_create_dev_key(dev_env), algorithms=["RS256"]).claims
    assert (claims["iss"], claims["aud"], claims["tenant_id"]) == (ISSUER, "consent-api", "t-9")
    assert claims["scope"] == "readings:write admin"
    assert {"exp", "iat", "sub", "jti", "client_id"} <= claims.keys()
