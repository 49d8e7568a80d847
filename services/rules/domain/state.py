"""What the engine remembers per patient: small, immutable, and a compact versioned JSON form.

A track follows one signal (a metric, or the NEWS2 aggregate): the newest sample's event time and
value, three runs (consecutive samples at least yellow, at least red, and clear of the thresholds)
as (start, count), a silent flag for data gaps, and the open episode if any. No sample history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from services.rules.domain.eventtime import from_micros
from services.rules.errors import RulesError
from shared.events import RuleRef, Severity
from shared.vitals import Metric

STATE_FORMAT = 1
METRICS: tuple[Metric, ...] = tuple(Metric)
METRIC_INDEX: dict[Metric, int] = {metric: i for i, metric in enumerate(METRICS)}
SEVERITIES: tuple[Severity, ...] = (Severity.GREEN, Severity.YELLOW, Severity.RED)


class StateFormatError(RulesError):
    """A stored state cannot be read back."""


@dataclass(frozen=True, slots=True)
class Episode:
    """An open alert episode: its id, severity (1 yellow, 2 red) and the band that set it."""

    alert_id: str
    severity: int
    rule: RuleRef

    @property
    def level(self) -> Severity:
        """The severity as the events carry it."""
        return SEVERITIES[self.severity]


@dataclass(frozen=True, slots=True)
class TrackState:
    """One signal's state; times are microseconds since the epoch, in event time."""

    last_us: int
    value: float
    reading_id: str
    y_since: int = 0
    y_n: int = 0
    r_since: int = 0
    r_n: int = 0
    c_since: int = 0
    c_n: int = 0
    silent: bool = False
    episode: Episode | None = None


EMPTY_TRACKS: tuple[TrackState | None, ...] = (None,) * len(METRICS)


@dataclass(frozen=True, slots=True)
class PatientState:
    """A patient's tracks (indexed like METRICS), NEWS2 aggregate track and data-gap episode."""

    patient_id: str
    tracks: tuple[TrackState | None, ...] = EMPTY_TRACKS
    news2: TrackState | None = None
    gap: Episode | None = None

    def track(self, metric: Metric) -> TrackState | None:
        """Return the metric's track, if the patient sent that metric."""
        return self.tracks[METRIC_INDEX[metric]]

    def open_episodes(self) -> dict[str, Episode]:
        """Return open episodes by rule id, e.g. {'heart_rate': ..., 'news2': ..., 'data_gap': ...}."""
        named = [(m.value, t) for m, t in zip(METRICS, self.tracks, strict=True)]
        named.append(("news2", self.news2))
        found = {name: t.episode for name, t in named if t is not None and t.episode is not None}
        return found | ({"data_gap": self.gap} if self.gap is not None else {})

    def describe(self) -> dict[str, object]:
        """Everything held about the patient, for a data-subject export."""
        tracks = {
            m.value: {
                "last_measured_at": from_micros(t.last_us).isoformat(),
                "last_value": t.value,
                "last_reading_id": t.reading_id,
                "no_data": t.silent,
            }
            for m, t in zip(METRICS, self.tracks, strict=True)
            if t is not None
        }
        episodes = {
            name: {
                "alert_id": e.alert_id,
                "severity": e.level.value,
                "rule_version": e.rule.version,
            }
            for name, e in self.open_episodes().items()
        }
        return {"tracks": tracks, "open_episodes": episodes}

    def to_json(self) -> str:
        """Encode as compact JSON (format version STATE_FORMAT)."""
        tracks = {
            m.value: _track_row(t)
            for m, t in zip(METRICS, self.tracks, strict=True)
            if t is not None
        }
        document = {
            "v": STATE_FORMAT,
            "patient": self.patient_id,
            "tracks": tracks,
            "news2": _track_row(self.news2) if self.news2 else None,
            "gap": _episode_row(self.gap),
        }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> PatientState:
        """Decode what to_json produced, or raise StateFormatError."""
        try:
            document = json.loads(text)
            if document.get("v") != STATE_FORMAT:
                raise StateFormatError(f"unsupported state format {document.get('v')!r}")
            tracks = list(EMPTY_TRACKS)
            for name, row in document["tracks"].items():
                tracks[METRIC_INDEX[Metric(name)]] = _track_from_row(row)
            news2 = document["news2"]
            return cls(
                patient_id=str(document["patient"]),
                tracks=tuple(tracks),
                news2=_track_from_row(news2) if news2 is not None else None,
                gap=_episode_from_row(document["gap"]),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise StateFormatError(f"unreadable rule state: {exc!r}") from None


def _track_row(t: TrackState) -> list[Any]:
    runs = [t.y_since, t.y_n, t.r_since, t.r_n, t.c_since, t.c_n]
    return [t.last_us, t.value, t.reading_id, *runs, int(t.silent), _episode_row(t.episode)]


def _track_from_row(row: list[Any]) -> TrackState:
    last_us, value, reading_id, ys, yn, rs, rn, cs, cn, silent, episode = row
    ints = (last_us, ys, yn, rs, rn, cs, cn)
    if not all(isinstance(i, int) for i in ints) or not isinstance(reading_id, str):
        raise TypeError("track times and counts must be integers, the reading id a string")
    last_us, ys, yn, rs, rn, cs, cn = ints
    return TrackState(
        last_us, float(value), reading_id, ys, yn, rs, rn, cs, cn, bool(silent),
        _episode_from_row(episode),
    )  # fmt: skip


def _episode_row(e: Episode | None) -> list[Any] | None:
    if e is None:
        return None
    r = e.rule
    return [e.alert_id, e.severity, r.rule_id, r.version, r.description, r.threshold]


def _episode_from_row(row: list[Any] | None) -> Episode | None:
    if row is None:
        return None
    alert_id, severity, *ref = row
    if severity not in (1, 2) or not isinstance(alert_id, str):
        raise ValueError(f"bad episode {row!r}")
    return Episode(alert_id, severity, rule_ref(*ref))


@lru_cache(maxsize=4096)
def rule_ref(rule_id: str, version: str, description: str, threshold: str) -> RuleRef:
    """Return a shared RuleRef, so thousands of open episodes hold one object, not copies."""
    return RuleRef(rule_id=rule_id, version=version, description=description, threshold=threshold)
