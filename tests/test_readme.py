"""The README documents every environment variable the services read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from services.consent.settings import ConsentSettings
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from services.rules.settings import RulesSettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def env_names(settings: type[BaseSettings]) -> list[str]:
    names = []
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        names.append(alias if isinstance(alias, str) else name.upper())
    return names


@pytest.mark.parametrize(
    "settings", [IngestSettings, RulesSettings, NotifierSettings, ConsentSettings]
)
def test_every_env_variable_is_in_the_readme_table(settings: type[BaseSettings]) -> None:
    missing = [n for n in env_names(settings) if f"| `{n}` |" not in README]
    assert missing == []
