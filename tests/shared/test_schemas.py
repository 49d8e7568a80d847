"""The exported JSON Schemas in docs/schemas/ match the event models."""

from __future__ import annotations

from pathlib import Path

from shared.schemas import drifted, export

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_exported_schemas_are_current() -> None:
    assert drifted(SCHEMAS) == [], "event models changed: run `make schemas` and commit"


def test_drift_is_detected(tmp_path: Path) -> None:
    export(tmp_path)
    assert drifted(tmp_path) == []
    (tmp_path / "alerts.v1.schema.json").write_text("{}\n")
    (tmp_path / "old.v0.schema.json").write_text("{}\n")
    (tmp_path / "consent.v1.schema.json").unlink()
    assert drifted(tmp_path) == [
        "alerts.v1.schema.json",
        "consent.v1.schema.json",
        "old.v0.schema.json",
    ]
