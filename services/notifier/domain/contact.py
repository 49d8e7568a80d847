"""A patient's contact preferences (PUT/GET /v1/patients/{patient_id}/contact) and quiet hours."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator, model_validator

from services.notifier.domain.common import (
    DEFAULT_LANGUAGE,
    E164,
    FieldError,
    Language,
    PersonChannel,
    PushToken,
    Strict,
)

ClockTime = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["22:00"])]
# Which field must be set for a preferred channel to be usable.
_NEEDS = {"sms": "phone", "whatsapp": "whatsapp", "push": "push_tokens"}


class QuietHours(Strict):
    """A daily window, in the patient's time zone, when informational messages wait."""

    start: ClockTime
    end: ClockTime
    timezone: str = Field(examples=["America/Sao_Paulo"], description="IANA time zone name.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone like America/Sao_Paulo") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise FieldError("end", "must differ from start")
        return self


class ContactPreferences(Strict):
    """How a patient wants to be reached: channels in order of preference and their addresses.

    Fields are declared addresses first so that `preferred_channels` can check them.
    """

    phone: E164 | None = Field(None, description="For SMS.")
    whatsapp: E164 | None = Field(None, description="WhatsApp number, may equal phone.")
    push_tokens: list[PushToken] = Field(default_factory=list, max_length=10)
    preferred_channels: list[PersonChannel] = Field(
        min_length=1, description="Tried in this order; the next one when a channel fails."
    )
    language: Language = DEFAULT_LANGUAGE
    quiet_hours: QuietHours | None = None

    @field_validator("push_tokens")
    @classmethod
    def _distinct_tokens(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a token twice")
        return value

    @field_validator("preferred_channels")
    @classmethod
    def _usable(cls, value: list[PersonChannel], info: ValidationInfo) -> list[PersonChannel]:
        if len(set(value)) != len(value):
            raise ValueError("lists a channel twice")
        for channel in value:
            needed = _NEEDS[channel]
            if not info.data.get(needed):
                raise ValueError(f"{channel} is listed but {needed} is missing or invalid")
        return value


def _window(quiet: QuietHours, now: datetime) -> tuple[datetime, time, time]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(ZoneInfo(quiet.timezone))
    return local, time.fromisoformat(quiet.start), time.fromisoformat(quiet.end)


def in_quiet_hours(prefs: ContactPreferences, now: datetime) -> bool:
    """Whether now falls in the patient's quiet hours (start inclusive, end exclusive)."""
    if prefs.quiet_hours is None:
        return False
    local, start, end = _window(prefs.quiet_hours, now)
    clock = local.time().replace(tzinfo=None)
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end  # the window crosses midnight, e.g. 22:00-07:00


def quiet_hours_end(prefs: ContactPreferences, now: datetime) -> datetime | None:
    """Return when the current quiet hours end (in now's time zone), or None outside them."""
    if prefs.quiet_hours is None or not in_quiet_hours(prefs, now):
        return None
    local, _, end = _window(prefs.quiet_hours, now)
    candidate = datetime.combine(local.date(), end, tzinfo=local.tzinfo)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), end, tzinfo=local.tzinfo)
    return candidate.astimezone(now.tzinfo)
