"""Notifier errors."""

from __future__ import annotations


class NotifierError(Exception):
    """Base of every notifier error."""


class PermanentDeliveryError(NotifierError):
    """The provider refused for good (bad token, unknown channel...): retrying will not help."""


class TransientDeliveryError(NotifierError):
    """The provider may accept later (5xx, rate limit, network)."""
