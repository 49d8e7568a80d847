"""Derived ids are deterministic and unambiguous."""

from __future__ import annotations

import uuid

from shared.ids import NAMESPACE, derive_id


def test_same_parts_same_id_and_different_parts_different_id() -> None:
    assert derive_id("a", "b") == derive_id("a", "b")
    assert derive_id("a", "b") != derive_id("a", "c")
    # Joining is unambiguous: moving a boundary changes the id.
    assert derive_id("ab", "c") != derive_id("a", "bc")


def test_ids_are_uuid5_in_the_fixed_namespace() -> None:
    # Ids already stored and published were made by uuid.uuid5: a faster spelling must not move them.
    for parts in [
        ("a",),
        ("reading", "garmin", "u1", "heart_rate", "2026-01-01T00:00:00+00:00", ""),
    ]:
        assert derive_id(*parts) == str(uuid.uuid5(NAMESPACE, "\x1f".join(parts)))
    assert derive_id("a\x1fb") == str(uuid.uuid5(NAMESPACE, "a b"))
