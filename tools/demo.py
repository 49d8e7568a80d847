"""`make demo`: against a running `make run`, grant monitoring consent for a demo patient and post a
short sustained episode of 150 /min, so the notifier prints a red alert.

Uses a dev token (DEV_AUTH=1, the same key as `make token`). Ports from INGEST_PORT / CONSENT_PORT.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import structlog

from shared.devauth import issue_dev_token, load_or_create_dev_key
from shared.settings import ServiceSettings

PATIENT = "pt-demo-001"
SCOPES = ["readings:write", "consent:read", "consent:write"]


def dev_token(settings: ServiceSettings) -> str:
    """Sign a dev token for the demo scopes."""
    return issue_dev_token(
        key=load_or_create_dev_key(settings.dev_auth_key_file),
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        scopes=SCOPES,
        sub="demo-clinician",
    )


def ensure_consent(client: httpx.Client, consent_url: str) -> None:
    """Grant monitoring consent unless the demo patient already has it."""
    status = client.get(f"{consent_url}/consent-status", params={"purpose": "monitoring"})
    if status.status_code == 200 and status.json()["allowed"]:
        print(f"{PATIENT} already has monitoring consent")
        return
    grant = client.post(
        f"{consent_url}/consents",
        json={
            "purpose": "monitoring",
            "notice_version": "demo-2026-11",
            "performer": {"type": "patient", "reference": "demo-app-user"},
            "evidence": {"type": "app-checkbox", "reference": "demo-receipt-1"},
        },
    )
    grant.raise_for_status()
    print(f"granted monitoring consent {grant.json()['id']} for {PATIENT}")


def post_episode(client: httpx.Client, ingest_url: str) -> dict[str, object]:
    """Post a short sustained episode (150 /min at now-60 s, now-30 s, now): the rule set needs
    >= 3 readings above 120 /min spanning >= 60 s before heart rate turns red. Retries briefly
    while the new consent reaches ingest."""
    now = datetime.now(UTC)
    readings = [
        {
            "patient_id": PATIENT,
            "metric": "heart_rate",
            "value": 150,
            "unit": "/min",
            "measured_at": (now - timedelta(seconds=back)).isoformat(),
            "source": "demo",
        }
        for back in (60, 30, 0)
    ]
    deadline = time.monotonic() + 5
    while True:
        response = client.post(f"{ingest_url}/v1/readings", json={"readings": readings})
        response.raise_for_status()
        body: dict[str, object] = response.json()
        if body["withheld_no_consent"] == 0 or time.monotonic() > deadline:
            return body
        time.sleep(0.2)  # consent propagates in milliseconds; this is a demo's patience


def main() -> int:
    """Run the demo; print what happened."""
    settings = ServiceSettings(_env_file="deploy/dev.env")  # type: ignore[call-arg]
    if not settings.dev_auth:
        print("make demo needs DEV_AUTH=1 (the `make run` default)", file=sys.stderr)
        return 2
    ingest = f"http://127.0.0.1:{os.environ.get('INGEST_PORT', '8001')}"
    consent = f"http://127.0.0.1:{os.environ.get('CONSENT_PORT', '8004')}/v1/patients/{PATIENT}"
    headers = {"Authorization": f"Bearer {dev_token(settings)}"}
    with httpx.Client(headers=headers, timeout=10) as client:
        ensure_consent(client, consent)
        print("POST /v1/readings ->", post_episode(client, ingest))
    print("watch the notifier's output in the `make run` terminal for the red alert")
    return 0


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    sys.exit(main())
