"""Throughput and memory of the pure rules engine (`make bench-rules`).

- Throughput: `evaluate` over the synthetic readings, one process, states in a dict keyed by
  patient as the service's cache holds them; readings are built before the clock starts, so the
  figure is the engine alone (no Kafka, no JSON decoding, no database: `make bench` has those).
- Memory: PatientState for N active patients, each fed two readings a minute apart of heart rate,
  SpO2, respiratory rate, body temperature and glucose (five tracks, and a NEWS2 track since three
  NEWS2 vitals are present), every tenth also a sustained red heart rate (an open episode).
  Measured twice in this process: with tracemalloc (bytes still allocated once the states are
  built and everything transient is collected) and as the growth of the resident set (VmRSS) over
  a separate build without tracemalloc.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from services.rules.domain import PatientState, RuleSet, evaluate
from shared.events import Reading
from shared.vitals import Metric
from tools.bench_rules_gen import reading

MB = 1_000_000
NORMAL = (
    (Metric.HEART_RATE, 72.0),
    (Metric.SPO2, 97.0),
    (Metric.RESPIRATORY_RATE, 16.0),
    (Metric.BODY_TEMPERATURE, 36.8),
    (Metric.BLOOD_GLUCOSE, 105.0),
)
OPEN_EPISODE_EVERY = 10


def time_evaluate(
    readings: list[Reading], rules: RuleSet, states: dict[str, PatientState]
) -> float:
    """Seconds `evaluate` took over the readings, state looked up and stored per reading."""
    started = time.perf_counter()
    for r in readings:
        state, _ = evaluate(states.get(r.patient_id), r, rules=rules)
        states[r.patient_id] = state
    return time.perf_counter() - started


def _active_patient(index: int) -> Iterator[Reading]:
    """Readings of one active patient of the memory test, in event-time order."""
    patient_id = f"mem-{index:06d}"
    t0 = float(index % 3600)  # patients not all in lockstep
    for k in range(2):
        for metric, value in NORMAL:
            yield reading(patient_id, metric, t0 + 60 * k, value)
    if index % OPEN_EPISODE_EVERY == 0:
        for back in (60, 30, 0):
            yield reading(patient_id, Metric.HEART_RATE, t0 + 180 - back, 130.0)


def build_states(patients: int, rules: RuleSet) -> tuple[dict[str, PatientState], int]:
    """States of `patients` active patients; returns them and how many readings were fed."""
    states: dict[str, PatientState] = {}
    fed = 0
    for index in range(patients):
        state: PatientState | None = None
        for r in _active_patient(index):
            state, _ = evaluate(state, r, rules=rules)
            fed += 1
        assert state is not None
        states[state.patient_id] = state
    return states, fed


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return kib * 1024


@dataclass(frozen=True)
class Memory:
    """Memory held by the states of `patients` active patients."""

    patients: int
    readings_fed: int
    rss_bytes: int  # VmRSS growth over the untraced build
    traced_bytes: int  # tracemalloc: allocated and still held, see `traced_how`
    traced_how: str
    open_episodes: int
    json_bytes: int  # sum of to_json() sizes (what the rules database stores)
    seconds: float  # the untraced build


def _traced(build: Callable[[], object]) -> int:
    """Bytes allocated by `build` and still held once transient objects are collected."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del kept
    return held


def measure_memory(patients: int, rules: RuleSet, *, trace_build: bool = False) -> Memory:
    """Build the states untraced (RSS growth, time), then measure them with tracemalloc.

    tracemalloc slows every allocation (about fivefold here), so by default it traces the states
    as the service holds them after loading them from its database (`PatientState.from_json` of
    each state's `to_json`); with trace_build it traces a second `evaluate` build instead.
    """
    gc.collect()
    rss_before = _rss_bytes()
    started = time.perf_counter()
    states, fed = build_states(patients, rules)
    seconds = time.perf_counter() - started
    gc.collect()
    rss = _rss_bytes() - rss_before
    open_episodes = sum(1 for s in states.values() if s.open_episodes())
    texts = [s.to_json() for s in states.values()]
    del states
    if trace_build:
        how = "evaluate build, traced"
        traced = _traced(lambda: build_states(patients, rules))
    else:
        how = "states loaded back with PatientState.from_json, traced"
        traced = _traced(lambda: {s.patient_id: s for s in map(PatientState.from_json, texts)})
    json_bytes = sum(len(t.encode()) for t in texts)
    return Memory(patients, fed, rss, traced, how, open_episodes, json_bytes, seconds)
