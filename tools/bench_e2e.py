"""Phase A: sustained episodes posted over HTTP, timed from their 202 to the fake Slack's receipt.

Every request is one patient's sustained red episode: three heart rates of 130 /min (> 120)
measured at now-60 s, now-30 s and now, what the rule set needs before heart rate turns red
(>= 3 readings spanning >= 60 s). Each must produce exactly one chat.postMessage mentioning that
patient. Times on both ends are this process's time.perf_counter(): the client stamps the 202,
the in-process fake Slack stamps the arrival.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.fakes.slack import FakeSlack, SlackCall

RED_HEART_RATE = 130.0
EPISODE_OFFSETS_S = (60, 30, 0)  # seconds before now: 3 readings spanning 60 s (the HR sustain)
EPISODE_READINGS = len(EPISODE_OFFSETS_S)
POST_TIMEOUT_S = 10.0
SLACK_WAIT_S = 60.0


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

    def e2e_latency_s(self) -> list[float]:
        """202 → Slack receipt, per patient that got both."""
        first = self.tracker.first_at
        return [first[p] - t for p, t in self.posted.accepted_at.items() if p in first]


async def _post_one(client: httpx.AsyncClient, patient_id: str, outcome: PostOutcome) -> None:
    started = time.perf_counter()
    try:
        response = await client.post("/v1/readings", json=episode_body(patient_id, RED_HEART_RATE))
    except httpx.HTTPError as exc:
        outcome.failures[type(exc).__name__] += 1
        return
    done = time.perf_counter()
    if response.status_code != 202:
        outcome.failures[f"HTTP {response.status_code}"] += 1
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
    Each worker owns a one-connection client: one client shared by many in-flight requests
    spends most of its CPU in its connection pool (about 3x at 32), and this process needs the
    CPU for the fake Slack too.
    """
    outcome = PostOutcome()
    pending = enumerate(patient_ids)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    started = time.perf_counter()

    async def worker() -> None:
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=POST_TIMEOUT_S, limits=limits
        ) as client:
            for index, patient_id in pending:  # one shared iterator: each id is posted once
                if rate > 0:
                    await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
                await _post_one(client, patient_id, outcome)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    outcome.wall_s = time.perf_counter() - started
    return outcome


def warm_up(url: str, slack: FakeSlack, patient_id: str, headers: dict[str, str]) -> float:
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


def run_e2e(url: str, slack: FakeSlack, run_id: str, load: Load, headers: dict[str, str]) -> E2ERun:
    """Warm up, post the red episodes, wait (bounded) until every alert reached Slack.

    `headers` carries the bearer token (scope readings:write) every POST sends.
    """
    warmup_s = warm_up(url, slack, f"bench-{run_id}-warmup", headers)
    prefix = f"bench-{run_id}-"
    patient_ids = [f"{prefix}{i}" for i in range(load.episodes)]
    posted = asyncio.run(post_all(url, patient_ids, load.concurrency, headers, load.rate))
    tracker = AlertTracker(re.compile(re.escape(prefix) + r"\d+(?!\d)"))
    expected = len(posted.accepted_at)
    all_arrived = slack.wait_for(lambda calls: tracker.scan(calls) >= expected, SLACK_WAIT_S)
    return E2ERun(load, posted, tracker, all_arrived, warmup_s)
