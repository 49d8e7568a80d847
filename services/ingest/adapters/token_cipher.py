"""Encryption at rest of vendor OAuth tokens (Fernet: AES-128-CBC + HMAC-SHA256, with rotation)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class TokenCipherError(RuntimeError):
    """Keys missing or malformed, or a stored value cannot be decrypted with any key."""


class TokenCipher:
    """Encrypt with the first key; decrypt with any (rotate by prepending a new key)."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise TokenCipherError("no token encryption key configured")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except ValueError as exc:
            raise TokenCipherError(
                "INGEST_TOKEN_KEYS must be Fernet keys (32 url-safe base64 bytes)"
            ) from exc

    def encrypt(self, value: dict[str, str]) -> str:
        """Encrypt a small JSON object."""
        return self._fernet.encrypt(json.dumps(value, sort_keys=True).encode()).decode()

    def decrypt(self, token: str) -> dict[str, str]:
        """Decrypt what encrypt() produced."""
        try:
            data = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise TokenCipherError(
                "stored tokens cannot be decrypted with the configured keys"
            ) from exc
        return {str(k): str(v) for k, v in data.items()}

    def rotate(self, token: str) -> str:
        """Re-encrypt under the newest key."""
        return self._fernet.rotate(token.encode()).decode()


def cipher_from(keys: str | None, key_file: str | None) -> TokenCipher | None:
    """Keys from INGEST_TOKEN_KEYS (comma-separated, newest first) or a key file (created if
    missing: development setups only point INGEST_TOKEN_KEY_FILE at a local path); None if
    neither is set."""
    if keys:
        return TokenCipher([k.strip() for k in keys.split(",") if k.strip()])
    if not key_file:
        return None  # no OAuth vendor can be connected: storing tokens answers 503
    path = Path(key_file)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(Fernet.generate_key().decode())
    return TokenCipher([path.read_text().strip()])
