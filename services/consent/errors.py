"""Consent errors."""

from __future__ import annotations


class ConsentError(Exception):
    """Base of every consent error."""


class PatientNotFoundError(ConsentError):
    """No such patient in the caller's tenant (also said for another tenant's patient)."""


class ConsentNotFoundError(ConsentError):
    """No such consent for this patient in the caller's tenant."""


class InvalidConsentError(ConsentError):
    """The grant is not acceptable (e.g. an empty period)."""
