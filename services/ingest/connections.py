"""Vendor connections: which vendor account feeds which pseudonymous patient (pure parts)."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Vendor(StrEnum):
    """Sources that push or are pulled through a connection."""

    FITBIT = "fitbit"
    GOOGLE_HEALTH = "google_health"
    GARMIN = "garmin"
    APPLE_HEALTH = "apple_health"


class ConnectionStatus(StrEnum):
    """Whether data from the vendor account is processed."""

    ACTIVE = "active"
    NEEDS_MIGRATION = "needs_migration"  # Fitbit legacy API answered 410 Gone
    NEEDS_REAUTH = "needs_reauth"  # refresh token refused: the user must authorize again
    REVOKED = "revoked"  # the user revoked access at the vendor / deregistered


@dataclass(frozen=True)
class Connection:
    """A stored link; never carries tokens or key material."""

    connection_id: str
    vendor: Vendor
    vendor_user: str
    patient_id: str
    tenant_id: str
    status: ConnectionStatus
    status_reason: str | None
    utc_offset_minutes: int | None
    has_tokens: bool
    created_at: datetime
    updated_at: datetime
    created_by: str


# Apple device keys: "hak_<16 hex key id>_<secret>". The key id is the connection's vendor_user
# (so the key is found without a scan); only SHA-256 of the secret is stored. The secret has
# 256 bits of entropy, so a fast hash is enough (no password-hash stretching needed).
DEVICE_KEY = re.compile(r"^hak_(?P<key_id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})$")


def device_key(key_id: str, secret: str) -> str:
    """Format the device key handed to the phone once."""
    return f"hak_{key_id}_{secret}"


def split_device_key(key: str) -> tuple[str, str] | None:
    """Return (key id, secret) of a well-formed device key, else None."""
    match = DEVICE_KEY.match(key)
    return (match["key_id"], match["secret"]) if match else None


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a device key secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str | None) -> bool:
    """Constant-time check of a device key secret against its stored hash."""
    return stored_hash is not None and hmac.compare_digest(hash_secret(secret), stored_hash)
