"""Rules errors."""

from __future__ import annotations


class RulesError(Exception):
    """Base of every rules error."""
