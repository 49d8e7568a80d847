"""POST /v1/readings on the embedded broker: an accepted request gets the same answer, and its
readings the same ids, whether the full app serves it (token not seen yet) or the fast path does
(every later request with that token); withheld readings are counted and audited on both."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from shared.audit import AuditRecorded
from shared.topics import AUDIT, READINGS
from tests.fakes.idp import FakeIdP
from tests.integration.ingest_harness import (
    Ingest,
    at_least,
    dropped_readings,
    ingest_service,
    read_topic,
)

pytestmark = pytest.mark.integration


def body(patient: str, value: float, at: datetime) -> bytes:
    reading = {
        "patient_id": patient,
        "metric": "heart_rate",
        "value": value,
        "unit": "beats/min",
        "measured_at": at.isoformat(),
        "source": "api",
    }
    return json.dumps({"readings": [reading]}).encode()


async def post_twice(ingest: Ingest, content: bytes) -> tuple[httpx.Response, httpx.Response]:
    """The same request with one token twice: the first verifies it, the second reuses it."""
    token = ingest.idp.mint(now=int(datetime.now(UTC).timestamp()), scope="readings:write")
    headers = {"Authorization": f"Bearer {token}"}
    first = await ingest.post("/v1/readings", content=content, headers=headers)
    second = await ingest.post("/v1/readings", content=content, headers=headers)
    return first, second


async def test_an_accepted_reading_gets_the_same_answer_and_id_on_both_paths(
    broker: str, idp: FakeIdP, tmp_path: Path
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=1)
    async with ingest_service(broker, idp, tmp_path) as ingest:
        first, second = await post_twice(ingest, body("pt-fast-1", 72, at))
        assert first.status_code == second.status_code == 202, (first.text, second.text)
        assert first.json() == second.json()
        assert first.json()["accepted"] == 1
        (reading_id,) = first.json()["reading_ids"]
        events = await read_topic(broker, READINGS, until=at_least(2))
    mine = [e for e in events if e.patient_id == "pt-fast-1"]
    assert [e.reading_id for e in mine] == [reading_id, reading_id]  # at-least-once, one id
    assert (mine[1].value, mine[1].unit, mine[1].code) == (72, "/min", "8867-4")


async def test_readings_without_consent_are_withheld_and_audited_on_both_paths(
    broker: str, idp: FakeIdP, tmp_path: Path
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=1)
    async with ingest_service(broker, idp, tmp_path, consent_required=True) as ingest:
        first, second = await post_twice(ingest, body("pt-fast-nc", 70, at))
        assert first.status_code == second.status_code == 202, (first.text, second.text)
        assert first.json() == second.json()
        assert first.json()["withheld_no_consent"] == 1
        assert first.json()["accepted"] == 1  # counted in reading_ids, not published
        dropped = await dropped_readings(ingest, count=2)
    mine = [d for d in dropped if d.patient_id == "pt-fast-nc"]
    assert [d.reason for d in mine] == ["no_active_consent", "no_active_consent"]


async def test_a_refused_reading_is_audited_once_with_its_request_id_on_both_paths(
    broker: str, idp: FakeIdP, tmp_path: Path
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=1)
    wrong_unit = body("pt-fast-422", 5.5, at).replace(b"beats/min", b"mmol/L")
    token = idp.mint(now=int(datetime.now(UTC).timestamp()), scope="readings:write")
    async with ingest_service(broker, idp, tmp_path) as ingest:
        answers = [
            await ingest.post(
                "/v1/readings",
                content=wrong_unit,
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": f"rid-422-{n}"},
            )
            for n in (1, 2)  # the full app, then the fast path
        ]
        assert [a.status_code for a in answers] == [422, 422], answers[1].text
        assert answers[0].json() == answers[1].json()

        def refused(events: list[AuditRecorded]) -> list[AuditRecorded]:
            return [e for e in events if (e.request_id or "").startswith("rid-422-")]

        events = await read_topic(broker, AUDIT, until=lambda es: len(refused(es)) >= 2)
    assert sorted(
        (e.request_id, e.action, e.reason, (e.details or {}).get("route")) for e in refused(events)
    ) == [
        ("rid-422-1", "request.refused", "http_422", "/v1/readings"),
        ("rid-422-2", "request.refused", "http_422", "/v1/readings"),
    ]
