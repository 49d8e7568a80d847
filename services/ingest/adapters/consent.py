"""Consent view used until the consent service publishes consent.v1 (see issue: consent gateway)."""

from __future__ import annotations


class AllowAllConsentView:
    """Allows every patient. Placeholder behind the ConsentView port; replaced by a consent.v1 view."""

    def allows_monitoring(self, patient_id: str) -> bool:
        """Return True for every patient."""
        return True
