"""Setup shared by the notifier integration tests (test_notifier_*.py): the notifier's settings
against the fakes, consent that puts a patient in tenant-a, and the patient's deliveries of an
alert. The moving parts themselves live in tests.services.notifier.harness."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.notifier.settings import NotifierSettings
from shared.events import Purpose
from tests.conftest import bearer
from tests.fakes.idp import FakeIdP
from tests.fakes.slack import FakeSlack
from tests.fakes.twilio import FakeTwilio
from tests.services.notifier.harness import (
    Service,
    api,
    eventually,
    publish_consent,
    routing_file,
    settings,
    sqlite_db,
)
from tests.services.notifier.support import ROUTING, consent_event


def notifier_settings(
    broker: str,
    idp: FakeIdP,
    tmp_path: Path,
    slack: FakeSlack,
    twilio: FakeTwilio,
    *,
    db: dict[str, Any] | None = None,
    routing: str = ROUTING,
    **overrides: Any,
) -> NotifierSettings:
    """The notifier against the fakes: SQLite in `tmp_path` unless `db` is given, the routing
    file written from `routing`; `overrides` go to the settings as they are."""
    return settings(
        broker=broker,
        idp=idp,
        db=sqlite_db(tmp_path) if db is None else db,
        slack=slack,
        twilio=twilio,
        routing=routing_file(tmp_path, routing),
        **overrides,
    )


async def consented(
    service: Service, patient: str, purpose: Purpose = Purpose.NOTIFICATIONS
) -> None:
    """Record the patient's consent (tenant-a) and wait until the notifier has seen it."""
    await publish_consent(service.broker, consent_event(patient, purpose, True))
    await eventually(lambda: service.notifier.consent.tenant_of(patient))


async def patient_deliveries(service: Service, idp: FakeIdP, alert_id: str) -> list[dict[str, Any]]:
    """The alert's deliveries to the patient, from the alert's timeline over the API."""
    detail = await api(service, "GET", f"/v1/alerts/{alert_id}", bearer(idp, "alerts:read"))
    return [d for d in detail.json()["deliveries"] if d["recipient_kind"] == "patient"]
