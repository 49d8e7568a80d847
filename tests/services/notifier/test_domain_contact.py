"""Contact preferences: what a PUT body may say, and when a patient's quiet hours apply."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.notifier.domain import ContactPreferences, in_quiet_hours, quiet_hours_end

BODY: dict[str, Any] = {
    "preferred_channels": ["whatsapp", "sms", "push"],
    "phone": "+5511987654321",
    "whatsapp": "+5511987654321",
    "push_tokens": ["tok-1", "tok-2"],
    "language": "en",
    "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "America/Sao_Paulo"},
}


def prefs(**changes: Any) -> ContactPreferences:
    return ContactPreferences.model_validate({**BODY, **changes})


def test_a_full_body_is_accepted_and_language_defaults_to_portuguese() -> None:
    assert prefs().preferred_channels == ["whatsapp", "sms", "push"]
    minimal = ContactPreferences.model_validate(
        {"preferred_channels": ["sms"], "phone": "+5511987654321"}
    )
    assert minimal.language == "pt-BR"
    assert minimal.quiet_hours is None


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"preferred_channels": ["sms", "sms"]}, "preferred_channels", "twice"),
        ({"preferred_channels": []}, "preferred_channels", "at least 1"),
        ({"preferred_channels": ["email"]}, "preferred_channels", "'sms', 'whatsapp' or 'push'"),
        ({"phone": None}, "preferred_channels", "sms is listed but phone is missing"),
        ({"whatsapp": None}, "preferred_channels", "whatsapp is listed but whatsapp is missing"),
        ({"push_tokens": []}, "preferred_channels", "push is listed but push_tokens"),
        ({"phone": "11987654321"}, "phone", "pattern"),
        ({"whatsapp": "+0551198765"}, "whatsapp", "pattern"),
        ({"push_tokens": [f"t{i}" for i in range(11)]}, "push_tokens", "at most 10"),
        ({"push_tokens": ["a", "a"]}, "push_tokens", "twice"),
        ({"push_tokens": ["has space"]}, "push_tokens", "pattern"),
        ({"language": "es"}, "language", "'pt-BR' or 'en'"),
        ({"quiet_hours": {**BODY["quiet_hours"], "start": "24:00"}}, "quiet_hours", "pattern"),
        ({"quiet_hours": {**BODY["quiet_hours"], "end": "7:00"}}, "quiet_hours", "pattern"),
        (
            {"quiet_hours": {**BODY["quiet_hours"], "timezone": "Mars/Olympus"}},
            "quiet_hours",
            "not an IANA time zone",
        ),
        (
            {"quiet_hours": {"start": "22:00", "end": "22:00", "timezone": "UTC"}},
            "quiet_hours",
            "must differ from start",
        ),
        ({"name": "Maria"}, "name", "Extra inputs are not permitted"),
    ],
)
def test_an_invalid_body_is_refused_naming_the_field(
    changes: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        prefs(**changes)
    errors = caught.value.errors()
    assert any(e["loc"][0] == field and fragment in e["msg"] for e in errors), errors


@pytest.mark.parametrize(
    ("utc", "quiet"),
    [
        ("00:59", False),  # 21:59 in São Paulo (UTC-3)
        ("01:00", True),  # 22:00: start is inclusive
        ("05:30", True),  # 02:30: after midnight, still quiet
        ("09:59", True),  # 06:59
        ("10:00", False),  # 07:00: end is exclusive
        ("15:00", False),  # noon
    ],
)
def test_quiet_hours_crossing_midnight_in_the_patients_time_zone(utc: str, quiet: bool) -> None:
    hour, minute = map(int, utc.split(":"))
    assert in_quiet_hours(prefs(), datetime(2026, 11, 23, hour, minute, tzinfo=UTC)) is quiet


@pytest.mark.parametrize(("utc", "quiet"), [("12:59", False), ("13:00", True), ("14:00", False)])
def test_quiet_hours_within_one_day(utc: str, quiet: bool) -> None:
    daytime = prefs(quiet_hours={"start": "13:00", "end": "14:00", "timezone": "UTC"})
    hour, minute = map(int, utc.split(":"))
    assert in_quiet_hours(daytime, datetime(2026, 11, 23, hour, minute, tzinfo=UTC)) is quiet


def test_without_quiet_hours_it_is_never_quiet() -> None:
    assert not in_quiet_hours(prefs(quiet_hours=None), datetime(2026, 11, 23, 3, tzinfo=UTC))


@pytest.mark.parametrize(
    ("now", "end"),
    [
        (datetime(2026, 11, 23, 1, 30, tzinfo=UTC), datetime(2026, 11, 23, 10, 0, tzinfo=UTC)),
        (datetime(2026, 11, 23, 6, 0, tzinfo=UTC), datetime(2026, 11, 23, 10, 0, tzinfo=UTC)),
        (datetime(2026, 11, 23, 12, 0, tzinfo=UTC), None),
    ],
)
def test_quiet_hours_end_is_the_next_local_end_time(now: datetime, end: datetime | None) -> None:
    assert quiet_hours_end(prefs(), now) == end


def test_a_naive_time_is_refused_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        in_quiet_hours(prefs(), datetime(2026, 11, 23, 1, 30))
