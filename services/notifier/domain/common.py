"""Types shared by the notifier's configuration and contact models, and one error renderer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.notifier.ports import Channel

E164 = Annotated[
    str,
    Field(pattern=r"^\+[1-9]\d{7,14}$", description="Phone number in E.164, e.g. +5511987654321."),
]
PushToken = Annotated[
    str,
    Field(min_length=1, max_length=4096, pattern=r"^\S+$", description="FCM registration token."),
]
Language = Literal["pt-BR", "en"]
DEFAULT_LANGUAGE: Language = "pt-BR"
# Channels that reach a person's phone; Slack reaches a channel, not a person.
PersonChannel = Literal["sms", "whatsapp", "push"]


def person_channel(value: PersonChannel) -> Channel:
    """Map a configured channel name to the port's Channel."""
    return Channel(value)


class Strict(BaseModel):
    """Base of every notifier model: immutable, unknown keys rejected, no NaN/Infinity."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class FieldError(ValueError):
    """A validation failure about one field, named by its path relative to the model."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def describe_validation_error(exc: ValidationError) -> str:
    """Render pydantic errors as 'path.to[0].field: message', one per problem, joined by '; '."""
    return "; ".join(_describe(error) for error in exc.errors())


def _describe(error: Mapping[str, Any]) -> str:
    path = ""
    for part in error["loc"]:
        if part != "[key]":
            path = _join(path, f"[{part}]" if isinstance(part, int) else str(part))
    cause = (error.get("ctx") or {}).get("error")
    message = str(error["msg"])
    if isinstance(cause, FieldError):
        path, message = _join(path, cause.field), cause.message
    elif isinstance(cause, ValueError):
        message = str(cause)
    return f"{path or '(top level)'}: {message}"


def _join(path: str, part: str) -> str:
    if not path or part.startswith("["):
        return path + part
    return f"{path}.{part}"
