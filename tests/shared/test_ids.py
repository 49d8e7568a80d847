"""Derived ids are deterministic and unambiguous."""

from __future__ import annotations

from shared.ids import derive_id


def test_same_parts_same_id_and_different_parts_different_id() -> None:
    assert derive_id("a", "b") == derive_id("a", "b")
    assert derive_id("a", "b") != derive_id("a", "c")
    # Joining is unambiguous: moving a boundary changes the id.
    assert derive_id("ab", "c") != derive_id("a", "bc")
