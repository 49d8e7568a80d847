"""Typed access to decoded vendor JSON: every failure is a PayloadError naming the JSON path.

Mappers call these instead of indexing dicts directly, so that a KeyError, TypeError or ValueError
can never escape to the caller: bad input always surfaces as `PayloadError(field, message)`.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from services.ingest.vendors.common import MalformedJsonError, PayloadError

ROOT = "$"


def at(path: str, key: str) -> str:
    """Return the JSON path of `key` inside the object at `path`."""
    return key if path in ("", ROOT) else f"{path}.{key}"


def item(path: str, index: int) -> str:
    """Return the JSON path of element `index` of the array at `path`."""
    return f"[{index}]" if path in ("", ROOT) else f"{path}[{index}]"


def entry(path: str, key: str) -> str:
    """Return the JSON path of the map entry `key` (e.g. a Garmin time-offset key)."""
    return f'{path}["{key}"]'


def decode(raw: bytes) -> Any:
    """Decode a JSON document, raising PayloadError on bytes that are not JSON."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MalformedJsonError(ROOT, f"is not valid JSON: {exc}") from exc


def as_object(value: object, path: str) -> dict[str, Any]:
    """Return `value` as a JSON object or raise."""
    if not isinstance(value, dict):
        raise PayloadError(path, f"must be an object, got {_kind(value)}")
    return value


def as_list(value: object, path: str) -> list[Any]:
    """Return `value` as a JSON array or raise."""
    if not isinstance(value, list):
        raise PayloadError(path, f"must be an array, got {_kind(value)}")
    return value


def as_str(value: object, path: str) -> str:
    """Return `value` as a non-empty string or raise."""
    if not isinstance(value, str) or not value:
        raise PayloadError(path, f"must be a non-empty string, got {_kind(value)}")
    if not value.isascii():  # JSON may carry lone UTF-16 surrogates ("\\ud800"): not Unicode
        check_unicode(value, path)
    return value


def check_unicode(text: str, path: str) -> None:
    """Raise PayloadError unless `text` encodes as UTF-8 (a lone surrogate does not)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise PayloadError(path, "is not valid Unicode (lone UTF-16 surrogate)") from None


def as_number(value: object, path: str) -> float:
    """Return `value` as a finite number (JSON booleans are not numbers) or raise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PayloadError(path, f"must be a number, got {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        raise PayloadError(path, "is out of range") from None
    if not math.isfinite(number):
        raise PayloadError(path, "must be a finite number")
    return number


def as_int(value: object, path: str) -> int:
    """Return `value` as an integer (an integral float such as 3.0 is accepted) or raise."""
    number = as_number(value, path)
    if not number.is_integer():
        raise PayloadError(path, f"must be an integer, got {value!r}")
    return int(number)


def need(obj: dict[str, Any], key: str, path: str) -> Any:
    """Return `obj[key]`, raising PayloadError naming the path when it is absent or null."""
    value = obj.get(key)
    if value is None:
        raise PayloadError(at(path, key), "is required")
    return value


def need_str(obj: dict[str, Any], key: str, path: str) -> str:
    """Return the required string member `key`."""
    return as_str(need(obj, key, path), at(path, key))


def opt_str(obj: dict[str, Any], key: str, path: str) -> str | None:
    """Return the optional string member `key` (None when absent or null)."""
    value = obj.get(key)
    return None if value is None else as_str(value, at(path, key))


def need_number(obj: dict[str, Any], key: str, path: str) -> float:
    """Return the required numeric member `key`."""
    return as_number(need(obj, key, path), at(path, key))


def aware_utc(moment: datetime, path: str) -> datetime:
    """Return `moment` converted to UTC; a naive datetime has no instant, so it is rejected."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PayloadError(path, "has no UTC offset")
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+01:00 has no UTC representation
        raise PayloadError(path, f"is out of range: {moment.isoformat()}") from exc


def parse_instant(text: object, path: str) -> datetime:
    """Parse an ISO-8601 date-time that carries an offset (or Z) into an aware UTC datetime."""
    value = as_str(text, path)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise PayloadError(path, f"is not an ISO-8601 date-time: {value!r}") from exc
    return aware_utc(moment, path)


def from_epoch(seconds: float, path: str) -> datetime:
    """Convert Unix epoch seconds to an aware UTC datetime, rejecting out-of-range values."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise PayloadError(path, f"is not a usable epoch time: {seconds!r}") from exc


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string" if value else "an empty string"
    return type(value).__name__
