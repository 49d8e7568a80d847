"""Ingest errors."""

from __future__ import annotations


class IngestError(Exception):
    """Base of every ingest error."""


class InvalidReadingError(IngestError):
    """A submitted reading cannot be normalized; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class BrokerUnavailableError(IngestError):
    """The broker did not acknowledge; nothing may be reported as accepted."""


class ConsentUnknownError(IngestError):
    """The consent view has not caught up: whether to process is unknown, so nothing is accepted."""


class ConnectionExistsError(IngestError):
    """The vendor account is already linked to a patient."""


class TokenStorageUnavailableError(IngestError):
    """Vendor tokens cannot be stored: no encryption key is configured."""


class DatabaseUnavailableError(IngestError):
    """The connections database cannot be reached (refused, timed out, locked): transient."""


class IngestConfigurationError(IngestError):
    """A setting is unusable (e.g. the Google Health public key file): the service cannot start."""
