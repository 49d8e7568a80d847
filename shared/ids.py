"""Deterministic identifiers: the same input always yields the same id, so replays are harmless."""

from __future__ import annotations

import hashlib
import uuid

# Fixed namespace for every id this system derives (uuid5 = SHA-1 name-based UUID, RFC 9562).
NAMESPACE = uuid.UUID("6f0f2a4e-6c8e-5a39-9d0b-2a0f5f0c8a11")
_SEEDED = hashlib.sha1(NAMESPACE.bytes, usedforsecurity=False)


def derive_id(*parts: str) -> str:
    """Return a UUIDv5 over the parts, joined unambiguously."""
    name = "\x1f".join(parts)
    if name.count("\x1f") >= len(parts):  # a part holds the separator itself (rare)
        name = "\x1f".join(p.replace("\x1f", " ") for p in parts)
    # uuid.uuid5(NAMESPACE, name) spelled out: the same bytes, without building a UUID object
    # (ingest derives one id per reading, tens of thousands a second).
    digest = _SEEDED.copy()
    digest.update(name.encode())
    raw = digest.digest()
    h = (
        raw[:6] + bytes(((raw[6] & 0x0F) | 0x50, raw[7], (raw[8] & 0x3F) | 0x80)) + raw[9:16]
    ).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
