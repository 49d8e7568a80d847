"""Deterministic identifiers: the same input always yields the same id, so replays are harmless."""

from __future__ import annotations

import uuid

# Fixed namespace for every id this system derives (uuid5 = SHA-1 name-based UUID, RFC 9562).
NAMESPACE = uuid.UUID("6f0f2a4e-6c8e-5a39-9d0b-2a0f5f0c8a11")


def derive_id(*parts: str) -> str:
    """Return a UUIDv5 over the parts, joined unambiguously."""
    name = "\x1f".join(p.replace("\x1f", " ") for p in parts)
    return str(uuid.uuid5(NAMESPACE, name))
