"""Notifier errors."""

from __future__ import annotations


class NotifierError(Exception):
    """Base of every notifier error."""


class PermanentDeliveryError(NotifierError):
    """The provider refused for good (bad token, unknown channel, opted-out number...).

    `code` is the provider's error code; `disable_recipient` says the recipient itself is dead
    (FCM UNREGISTERED, Twilio 21610 opted out) and must not be tried again.
    """

    def __init__(self, message: str, *, code: str = "", disable_recipient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.disable_recipient = disable_recipient


class TransientDeliveryError(NotifierError):
    """The provider may accept later (5xx, rate limit, network); `retry_after_s` when it said."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
