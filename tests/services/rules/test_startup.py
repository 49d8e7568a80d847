"""A bad rule file stops the rules service with a message naming the rule and the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.rules.domain import DEFAULT_RULES_FILE

ROOT = Path(__file__).resolve().parents[3]


def test_a_bad_rule_file_stops_the_service_naming_rule_and_field(tmp_path: Path) -> None:
    text = Path(DEFAULT_RULES_FILE).read_text(encoding="utf-8")
    bad = tmp_path / "rules.yaml"
    # Make heart-rate red easier to reach than yellow: red above 120 -> 90 (yellow is above 100).
    bad.write_text(text.replace("      above: 120\n", "      above: 90\n", 1), encoding="utf-8")
    env = {**os.environ, "RULES_FILE": str(bad), "RULES_DATABASE_URL": f"sqlite:///{tmp_path}/r.db"}
    done = subprocess.run(
        [sys.executable, "-m", "services.rules"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "heart_rate" in done.stderr and "above" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
