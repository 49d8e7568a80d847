"""Types every vendor mapper returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.vitals import Metric


@dataclass(frozen=True)
class VendorSample:
    """One sample in vendor terms, before it is tied to a patient and normalized.

    vendor_user: the vendor's user id (Fitbit ownerId, Google health user id, Garmin userId, or
    the Apple device key id); `unit` is the vendor's unit string and must be one the metric's
    catalogue entry accepts (shared/vitals.py) after the mapper's own translation; `measured_at`
    is timezone-aware UTC; `source_id` is the vendor's sample id or a stable composite (e.g.
    summaryId + offset) so that a retried push maps to the same reading id.
    """

    vendor_user: str
    metric: Metric
    value: float
    unit: str
    measured_at: datetime
    source_id: str


class PayloadError(ValueError):
    """The payload does not have the vendor's documented shape; `field` is a JSON path to the
    culprit (e.g. `dailies[0].startTimeInSeconds`), `message` says what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class MalformedJsonError(PayloadError):
    """The body is not JSON at all (a 400, where a wrong shape is a 422)."""
