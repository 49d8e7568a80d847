"""Phase A: sustained episodes posted over HTTP, timed from their 202 to the fake Slack's receipt.

Every request is one patient's sustained red episode: three heart rates of 130 /min (> 120)
measured at now-60 s, now-30 s and now, what the rule set needs before heart rate turns red
(>= 3 readings spanning >= 60 s). Each must produce exactly one chat.postMessage mentioning that
patient. Times on both ends are this process's time.perf_counter(): the client stamps the 202,
the in-process fake Slack stamps the arrival.

The latency is split at alerts.v1: each patient's `opened` record carries its CreateTime (set by
rules' producer when it sent the event, ms resolution, the same machine's clock), read back after
the run; 202 → record is ingest's hop to rules plus rules, record → Slack is the notifier. The CPU
time each service process, the fake Slack's process and this one (posting clients, fake IdP)
used while the episodes were posted and paged is read from /proc.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer

from shared.events import AlertKind
from shared.topics import ALERTS
from tests.fakes.slack import SlackCall
from tools.bench_slack import RemoteSlack
from tools.bench_stack import FETCH_MAX_WAIT_MS, Stack, provider_latency

RED_HEART_RATE = 130.0
EPISODE_OFFSETS_S = (60, 30, 0)  # seconds before now: 3 readings spanning 60 s (the HR sustain)
EPISODE_READINGS = len(EPISODE_OFFSETS_S)
POST_TIMEOUT_S = 10.0
SLACK_WAIT_S = 60.0
RECORDS_WAIT_S = 15.0


def episode_body(patient_id: str, value: float) -> dict[str, Any]:
    """POST /v1/readings body: one sustained heart-rate episode (now-60 s, now-30 s, now)."""
    now = datetime.now(UTC)
    return {
        "readings": [
            {
                "patient_id": patient_id,
                "metric": "heart_rate",
                "value": value,
                "unit": "/min",
                "measured_at": (now - timedelta(seconds=back)).isoformat(),
                "source": "bench",
            }
            for back in EPISODE_OFFSETS_S
        ]
    }


@dataclass(frozen=True)
class Load:
    """What phase A sends: how many episodes (one request each), how many in flight, at what pace
    in episodes/s (0: unpaced)."""

    episodes: int
    concurrency: int
    rate: float = 0.0


@dataclass
class AlertTracker:
    """Folds fake-Slack calls into per-patient counts; incremental, so cheap to call often."""

    pattern: re.Pattern[str]
    first_at: dict[str, float] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    _scanned: int = 0

    def scan(self, calls: list[SlackCall]) -> int:
        """Account for calls not seen yet; return how many distinct patients were paged."""
        for call in calls[self._scanned :]:
            for patient_id in set(self.pattern.findall(json.dumps(call.body))):
                self.counts[patient_id] += 1
                self.first_at.setdefault(patient_id, call.received_at)
        self._scanned = len(calls)
        return len(self.first_at)

    @property
    def duplicates(self) -> int:
        """Patients paged more than once."""
        return sum(1 for n in self.counts.values() if n > 1)


@dataclass
class PostOutcome:
    """What the posting side saw."""

    accepted_at: dict[str, float] = field(default_factory=dict)
    post_latency_s: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0


@dataclass
class E2ERun:
    """Raw outcome of phase A; summarised after the whole run so late duplicates still count."""

    load: Load
    posted: PostOutcome
    tracker: AlertTracker
    all_arrived: bool
    warmup_s: float
    # epoch seconds of each patient's `opened` record on alerts.v1, and time.time() minus
    # time.perf_counter() in this process (to put the perf_counter stamps on the same clock)
    alert_record_at: dict[str, float] = field(default_factory=dict)
    clock_offset_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds used
    paging_wall_s: float = 0.0  # first POST to the last expected Slack call (or the wait's end)
    slack_calls: tuple[int, float] = (0, 0.0)  # the notifier's Slack API calls, mean seconds

    def e2e_latency_s(self) -> list[float]:
        """202 → Slack receipt, per patient that got both."""
        first = self.tracker.first_at
        return [first[p] - t for p, t in self.posted.accepted_at.items() if p in first]

    def to_alert_s(self) -> list[float]:
        """202 → the patient's `opened` record on alerts.v1 (ingest → Kafka → rules)."""
        at = self.alert_record_at
        accepted = self.posted.accepted_at
        return [at[p] - (t + self.clock_offset_s) for p, t in accepted.items() if p in at]

    def from_alert_s(self) -> list[float]:
        """The `opened` record on alerts.v1 → Slack receipt (Kafka → notifier → Slack)."""
        at = self.alert_record_at
        first = self.tracker.first_at
        return [t + self.clock_offset_s - at[p] for p, t in first.items() if p in at]


async def _post_one(
    session: aiohttp.ClientSession, url: str, patient_id: str, outcome: PostOutcome
) -> None:
    started = time.perf_counter()
    body = json.dumps(episode_body(patient_id, RED_HEART_RATE)).encode()
    try:
        async with session.post(url, data=body) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        outcome.failures[type(exc).__name__] += 1
        return
    done = time.perf_counter()
    if status != 202:
        outcome.failures[f"HTTP {status}"] += 1
        return
    outcome.accepted_at[patient_id] = done
    outcome.post_latency_s.append(done - started)


async def post_all(
    url: str,
    patient_ids: list[str],
    concurrency: int,
    headers: dict[str, str],
    rate: float = 0.0,
) -> PostOutcome:
    """POST one episode per patient with at most `concurrency` requests in flight.

    With rate > 0, episode i is not sent before i / rate seconds after the start (pacing, so
    latency can be read at a given load); with 0, as fast as the concurrency allows.
    Plain aiohttp, one session of `concurrency` connections: this process shares the 2 cores
    with the stack, and httpx over aiohttp cost ~3x the CPU a request (0.8 vs 0.3 ms, 3,000
    posts 32 at a time to the bare ceiling app).
    """
    outcome = PostOutcome()
    pending = enumerate(patient_ids)
    target = url + "/v1/readings"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(
        connector=connector,
        headers={**headers, "content-type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        started = time.perf_counter()

        async def worker() -> None:
            for index, patient_id in pending:  # one shared iterator: each id is posted once
                if rate > 0:
                    await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
                await _post_one(session, target, patient_id, outcome)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        outcome.wall_s = time.perf_counter() - started
    return outcome


def warm_up(url: str, slack: RemoteSlack, patient_id: str, headers: dict[str, str]) -> float:
    """One red episode through the whole pipeline (consumer groups join, connections open).

    Returns its 202 → Slack latency in seconds; raises if it never arrives.
    """
    tracker = AlertTracker(re.compile(re.escape(patient_id)))
    outcome = asyncio.run(post_all(url, [patient_id], 1, headers))
    if patient_id not in outcome.accepted_at:
        raise RuntimeError(f"warm-up episode not accepted: {dict(outcome.failures)}")
    if not slack.wait_for(lambda calls: tracker.scan(calls) >= 1, timeout=SLACK_WAIT_S):
        raise RuntimeError(f"warm-up alert did not reach the fake Slack within {SLACK_WAIT_S}s")
    return tracker.first_at[patient_id] - outcome.accepted_at[patient_id]


def proc_stat(pid: int) -> tuple[str, int, float]:
    """(command, parent pid, CPU seconds used so far, user + system) of a process, from
    /proc/<pid>/stat; OSError when it is gone."""
    text = Path(f"/proc/{pid}/stat").read_text()
    command, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
    values = fields.split()
    return command, int(values[1]), (int(values[11]) + int(values[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU time (user + system) used so far by each service process and by this process."""
    used = {"bench (posting clients, fake IdP)": sum(os.times()[:2])}
    pids = {name: p.proc.pid for name, p in stack.services.items()} | {
        "fake Slack": stack.slack.pid
    }
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            used[name] = proc_stat(pid)[2]
    return used


async def alert_record_times(bootstrap: str, prefix: str, expected: int) -> dict[str, float]:
    """Epoch seconds of each bench patient's first `opened` record on alerts.v1 (CreateTime)."""
    consumer = AIOKafkaConsumer(
        ALERTS.name,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # a fresh broker: alerts.v1 holds only this run's events
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    found: dict[str, float] = {}
    deadline = time.monotonic() + RECORDS_WAIT_S
    try:
        while len(found) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for record in (r for records in batch.values() for r in records):
                event = ALERTS.decode(record.value or b"")
                if event.kind is AlertKind.OPENED and event.patient_id.startswith(prefix):
                    found.setdefault(event.patient_id, record.timestamp / 1e3)
    finally:
        await consumer.stop()
    return found


def run_e2e(stack: Stack, run_id: str, load: Load, headers: dict[str, str]) -> E2ERun:
    """Warm up, post the red episodes, wait (bounded) until every alert reached Slack, then read
    the alerts' record times back from alerts.v1.

    `headers` carries the bearer token (scope readings:write) every POST sends.
    """
    url, slack = stack.ingest_url, stack.slack
    warmup_s = warm_up(url, slack, f"bench-{run_id}-warmup", headers)
    prefix = f"bench-{run_id}-"
    patient_ids = [f"{prefix}{i}" for i in range(load.episodes)]
    cpu_before, started = cpu_seconds(stack), time.perf_counter()
    offset = time.time() - time.perf_counter()
    gc.freeze()  # else a full collection of this process stalls posting and stamping mid-run
    try:
        posted = asyncio.run(post_all(url, patient_ids, load.concurrency, headers, load.rate))
    finally:
        gc.unfreeze()
    tracker = AlertTracker(re.compile(re.escape(prefix) + r"\d+(?!\d)"))
    expected = len(posted.accepted_at)
    all_arrived = slack.wait_for(lambda calls: tracker.scan(calls) >= expected, SLACK_WAIT_S)
    paging_wall_s = time.perf_counter() - started
    cpu_after = cpu_seconds(stack)
    run = E2ERun(load, posted, tracker, all_arrived, warmup_s, clock_offset_s=offset)
    run.cpu_s = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    run.paging_wall_s = paging_wall_s
    run.slack_calls = provider_latency(stack.services["notifier"])
    run.alert_record_at = asyncio.run(alert_record_times(stack.bootstrap, prefix, expected))
    return run
