"""Event time as whole microseconds since the Unix epoch: exact, compact, cheap to compare."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND = timedelta(microseconds=1)


def to_micros(at: datetime) -> int:
    """Return an aware datetime as exact microseconds since the epoch."""
    return (at - EPOCH) // _ONE_MICROSECOND


def from_micros(us: int) -> datetime:
    """Return the UTC datetime of microseconds since the epoch."""
    return EPOCH + timedelta(microseconds=us)


def seconds_to_micros(seconds: float) -> int:
    """Convert configured seconds to whole microseconds."""
    return round(seconds * 1_000_000)
