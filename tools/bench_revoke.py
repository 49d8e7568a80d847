"""Phase C: revocation enforcement latency, on a stack with CONSENT_REQUIRED=true.

Every POST of this phase carries one sustained red episode (three heart rates of 130 /min at
now-60 s, now-30 s and now: the rule set's heart-rate sustain), and ingest counts
withheld_no_consent per reading, so a withheld episode answers 3. One patient at a time: grant
monitoring consent, post episodes until ingest accepts one (withheld_no_consent == 0), wait until
rules' `opened` event for it is on alerts.v1, revoke, then post the patient's episodes back to back
(each POST starts when the previous one answered) until ingest answers withheld_no_consent == 3,
and wait for rules' `resolved` event with reason `consent_revoked`. Every time is this process's
time.perf_counter(), read when the response (or the alerts.v1 record) was received; the resolve is
also timed by its record timestamp (rules' producer clock, ms) against time.time() at the revoke's
200. The notifier's part: before the revoke the bench waits until the fake Slack has the
notifier's chat.postMessage of the patient's alert (a main message naming the patient), after it
until the fake has a chat.update of that message (same ts; the fake accepts an update only in the
message's own channel) showing the cancellation. That one is timed by the fake's receipt stamp,
its time.perf_counter() on arrival: CLOCK_MONOTONIC, the bench's clock too (tools/bench_slack.py).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from shared.events import AlertKind
from shared.topics import ALERTS
from tests.fakes.slack import SlackCall
from tools.bench_auth import CONSENT_ADMIN, READINGS_WRITE, BenchAuth
from tools.bench_e2e import EPISODE_READINGS, RED_HEART_RATE, AlertTracker, episode_body
from tools.bench_slack import RemoteSlack
from tools.bench_stack import FETCH_MAX_WAIT_MS, Stack

TIMEOUT_S = 10.0  # for one acceptance, one enforcement, one alert to show up
GRANT_BODY = {
    "purpose": "monitoring",
    "notice_version": "bench",
    "performer": {"type": "patient", "reference": "bench"},
    "evidence": {"type": "app-checkbox", "reference": "bench"},
}


class PhaseError(RuntimeError):
    """A step of phase C failed (refused request, event that never came)."""


@dataclass
class AlertWatch:
    """alerts.v1 as the bench receives it: `opened` and `consent_revoked` resolves per patient."""

    opened: dict[str, float] = field(default_factory=dict)
    resolved: dict[str, tuple[float, float]] = field(default_factory=dict)  # perf, record time
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def follow(self, consumer: AIOKafkaConsumer) -> None:
        """Fold every record into the dicts until cancelled."""
        while True:
            batch = await consumer.getmany(timeout_ms=1000)
            received = time.perf_counter()
            for record in (r for records in batch.values() for r in records):
                try:
                    event = ALERTS.decode(record.value or b"")
                except ValidationError:
                    continue
                if event.kind is AlertKind.OPENED:
                    self.opened.setdefault(event.patient_id, received)
                elif event.kind is AlertKind.RESOLVED and event.reason == "consent_revoked":
                    self.resolved.setdefault(event.patient_id, (received, record.timestamp / 1e3))
            if batch:
                self.changed.set()

    async def wait_for(self, seen: Mapping[str, object], patient_id: str, timeout_s: float) -> bool:
        """Wait (bounded) until `patient_id` is in `seen` (self.opened or self.resolved)."""
        deadline = time.perf_counter() + timeout_s
        while patient_id not in seen:
            self.changed.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return False
        return True


@dataclass(frozen=True)
class Revocation:
    """One revoke, timed from its 200 (perf_counter and wall clock)."""

    patient_id: str
    revoked_at: float
    revoked_wall: float
    revoke_request_s: float
    enforced_at: float | None  # first POST answered withheld_no_consent == 3 (whole episode)
    probe_s: tuple[float, ...]  # each POST /v1/readings after the revoke


@dataclass
class RevokeRun:
    """Raw outcome of phase C."""

    patients: int
    warmup_s: float | None = None  # the first (unreported) patient's enforcement latency
    grant_to_accept_s: list[float] = field(default_factory=list)
    revocations: list[Revocation] = field(default_factory=list)
    opened_before_revoke: set[str] = field(default_factory=set)
    watch: AlertWatch = field(default_factory=AlertWatch)
    failures: Counter[str] = field(default_factory=Counter)
    pages: AlertTracker | None = None  # the fake Slack's calls naming these patients
    slack_posts: dict[str, SlackCall] = field(default_factory=dict)  # main message before revoke
    slack_update_s: list[float] = field(default_factory=list)  # revoke 200 → its chat.update

    def enforcement_s(self) -> list[float]:
        """Revoke 200 → ingest withholds the patient's next episode."""
        return [r.enforced_at - r.revoked_at for r in self.revocations if r.enforced_at]

    def resolve_s(self, *, record_time: bool) -> list[float]:
        """Revoke 200 → rules' consent_revoked resolve, by receive time or record timestamp."""
        return [
            (seen[1] - r.revoked_wall) if record_time else (seen[0] - r.revoked_at)
            for r in self.revocations
            if r.patient_id in self.opened_before_revoke
            and (seen := self.watch.resolved.get(r.patient_id))
        ]

    def probe_s(self) -> list[float]:
        """Every POST /v1/readings made while waiting for enforcement (the resolution)."""
        return [s for r in self.revocations for s in r.probe_s]


@dataclass(frozen=True)
class Clients:
    """One single-connection client per service, with the Authorization header its calls need.

    The headers are minted once, before the phase (tokens live an hour): no signing in a timed call.
    """

    ingest: httpx.AsyncClient
    consent: httpx.AsyncClient
    readings_auth: dict[str, str]
    consent_auth: dict[str, str]
    slack: RemoteSlack
    slack_http: httpx.AsyncClient  # for its long polls


async def post_episode(clients: Clients, patient_id: str) -> int:
    """POST one sustained red episode; return withheld_no_consent (raise on anything but 202)."""
    response = await clients.ingest.post(
        "/v1/readings",
        json=episode_body(patient_id, RED_HEART_RATE),
        headers=clients.readings_auth,
    )
    if response.status_code != 202:
        raise PhaseError(f"POST /v1/readings: HTTP {response.status_code} {response.text[:200]}")
    return int(response.json()["withheld_no_consent"])


async def post_until(
    clients: Clients, patient_id: str, withheld: int
) -> tuple[float | None, list[float]]:
    """Post back to back until a 202 says withheld_no_consent == `withheld` (bounded).

    Returns the receive time of that response (None at the deadline) and each POST's duration.
    """
    durations: list[float] = []
    deadline = time.perf_counter() + TIMEOUT_S
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        answer = await post_episode(clients, patient_id)
        done = time.perf_counter()
        durations.append(done - started)
        if answer == withheld:
            return done, durations
    return None, durations


async def grant(clients: Clients, patient_id: str) -> tuple[str, float]:
    """Grant monitoring consent; return the consent id and when the 201 arrived."""
    response = await clients.consent.post(
        f"/v1/patients/{patient_id}/consents",
        json=GRANT_BODY,
        headers=clients.consent_auth,
    )
    if response.status_code != 201:
        raise PhaseError(f"grant: HTTP {response.status_code} {response.text[:200]}")
    return str(response.json()["id"]), time.perf_counter()


async def revoke(clients: Clients, patient_id: str, consent_id: str) -> tuple[float, float, float]:
    """Revoke; return (perf_counter, time.time()) at the 200 and the request's duration."""
    started = time.perf_counter()
    response = await clients.consent.post(
        f"/v1/patients/{patient_id}/consents/{consent_id}/revoke",
        json={"reason": "bench: patient withdrew consent"},
        headers=clients.consent_auth,
    )
    done, wall = time.perf_counter(), time.time()
    if response.status_code != 200:
        raise PhaseError(f"revoke: HTTP {response.status_code} {response.text[:200]}")
    return done, wall, done - started


async def open_episode(clients: Clients, run: RevokeRun, patient_id: str) -> str:
    """Grant, wait until ingest accepts a red episode, rules' `opened` is on alerts.v1 and the
    notifier's Slack post of the alert is at the fake Slack.

    Rules reads consent.v1 on its own: if its view lagged behind ingest's, it skipped the
    episode's readings, so another episode is posted (up to 3 in all) before giving up.
    Returns the consent id.
    """
    consent_id, granted_at = await grant(clients, patient_id)
    accepted_at, _ = await post_until(clients, patient_id, withheld=0)
    if accepted_at is None:
        raise PhaseError(f"ingest withheld {patient_id}'s readings {TIMEOUT_S:.0f}s after grant")
    run.grant_to_accept_s.append(accepted_at - granted_at)
    for _attempt in range(3):
        if await run.watch.wait_for(run.watch.opened, patient_id, TIMEOUT_S / 3):
            run.opened_before_revoke.add(patient_id)
            post = await clients.slack.main_post(clients.slack_http, patient_id, TIMEOUT_S)
            if post is None:
                run.failures["no Slack post before the revoke"] += 1
            else:
                run.slack_posts[patient_id] = post
            return consent_id
        await post_episode(clients, patient_id)
    run.failures["no opened event before revoke"] += 1
    return consent_id


async def revoke_and_probe(
    clients: Clients, run: RevokeRun, patient_id: str, consent_id: str
) -> None:
    """Revoke, probe ingest until it withholds, then wait (bounded) for resolve and update."""
    revoked_at, wall, request_s = await revoke(clients, patient_id, consent_id)
    enforced_at, probes = await post_until(clients, patient_id, withheld=EPISODE_READINGS)
    run.revocations.append(
        Revocation(patient_id, revoked_at, wall, request_s, enforced_at, tuple(probes))
    )
    if enforced_at is None:
        run.failures[f"not withheld within {TIMEOUT_S:.0f}s of the revoke"] += 1
    if patient_id in run.opened_before_revoke and not await run.watch.wait_for(
        run.watch.resolved, patient_id, TIMEOUT_S
    ):
        run.failures["no consent_revoked resolve"] += 1
    post = run.slack_posts.get(patient_id)
    if post is not None:
        update = await clients.slack.update_of(clients.slack_http, post, "cancelled", TIMEOUT_S)
        if update is None:
            run.failures["no chat.update cancelling the Slack message"] += 1
        else:
            run.slack_update_s.append(update.received_at - revoked_at)


async def warm_up(clients: Clients, watch: AlertWatch, patient_id: str) -> float | None:
    """One whole cycle outside the figures (groups join, connections and JWKS caches fill)."""
    warm = RevokeRun(patients=1, watch=watch)
    consent_id = await open_episode(clients, warm, patient_id)
    await revoke_and_probe(clients, warm, patient_id, consent_id)
    return next(iter(warm.enforcement_s()), None)


async def _phase(
    stack: Stack, auth: BenchAuth, warmup_id: str, patient_ids: list[str]
) -> RevokeRun:
    run = RevokeRun(patients=len(patient_ids))
    consumer = AIOKafkaConsumer(
        ALERTS.name,
        bootstrap_servers=stack.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # a fresh broker: alerts.v1 holds only this phase's events
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    follower = asyncio.create_task(run.watch.follow(consumer))
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    try:
        async with (
            httpx.AsyncClient(base_url=stack.ingest_url, limits=one, timeout=TIMEOUT_S) as ingest,
            httpx.AsyncClient(base_url=stack.consent_url, limits=one, timeout=TIMEOUT_S) as consent,
            httpx.AsyncClient(limits=one) as slack_http,
        ):
            clients = Clients(
                ingest,
                consent,
                auth.headers(READINGS_WRITE),
                auth.headers(CONSENT_ADMIN),
                slack=stack.slack,
                slack_http=slack_http,
            )
            run.warmup_s = await warm_up(clients, run.watch, warmup_id)
            for patient_id in patient_ids:
                consent_id = await open_episode(clients, run, patient_id)
                await revoke_and_probe(clients, run, patient_id, consent_id)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await consumer.stop()
    return run


def run_revocations(stack: Stack, auth: BenchAuth, run_id: str, patients: int) -> RevokeRun:
    """Phase C for `patients` patients (bench-<run>-rv-<i>), one after another.

    Afterwards, counts the fake Slack's pages for them: one per opened episode, none twice.
    """
    prefix = f"bench-{run_id}-rv-"
    ids = [f"{prefix}{i}" for i in range(patients)]
    run = asyncio.run(_phase(stack, auth, f"{prefix}warmup", ids))
    run.pages = AlertTracker(re.compile(re.escape(prefix) + r"\d+(?!\d)"))
    run.pages.scan(list(stack.slack.calls))
    return run
