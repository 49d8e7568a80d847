"""Consent errors."""

from __future__ import annotations


class ConsentError(Exception):
    """Base of every consent error."""
