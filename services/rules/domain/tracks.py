"""Persistence and hysteresis of one track, in O(1): runs are (start, count), never sample lists."""

from __future__ import annotations

from typing import NamedTuple

from services.rules.domain.compiled import Policy
from services.rules.domain.state import Episode, TrackState
from shared.events import AlertKind


class Runs(NamedTuple):
    """Consecutive samples at least yellow, at least red, and clear: each as (start, count)."""

    y_since: int
    y_n: int
    r_since: int
    r_n: int
    c_since: int
    c_n: int


def advance(prev: TrackState | None, *, t: int, level: int, clear: bool, policy: Policy) -> Runs:
    """Extend or restart each run with a sample; a gap longer than the data gap restarts all."""
    if prev is None or t - prev.last_us > policy.gap_us:
        ys = yn = rs = rn = cs = cn = 0
    else:
        ys, yn, rs, rn = prev.y_since, prev.y_n, prev.r_since, prev.r_n
        cs, cn = prev.c_since, prev.c_n
    # Counts stop at what the policy needs, so they stay small shared ints. Clearing matters only
    # while an episode is open, so a green patient's track holds no clear run at all.
    clearing = clear and prev is not None and prev.episode is not None
    ys, yn = ((ys, min(yn + 1, policy.sustain_n)) if yn else (t, 1)) if level >= 1 else (0, 0)
    rs, rn = ((rs, min(rn + 1, policy.sustain_n)) if rn else (t, 1)) if level >= 2 else (0, 0)
    cs, cn = ((cs, min(cn + 1, policy.clear_n)) if cn else (t, 1)) if clearing else (0, 0)
    return Runs(ys, yn, rs, rn, cs, cn)


def held_level(runs: Runs, *, t: int, policy: Policy) -> int:
    """Return the highest level (0 green, 1 yellow, 2 red) that has persisted long enough."""
    if runs.r_n >= policy.sustain_n and t - runs.r_since >= policy.sustain_us:
        return 2
    if runs.y_n >= policy.sustain_n and t - runs.y_since >= policy.sustain_us:
        return 1
    return 0


def has_cleared(runs: Runs, *, t: int, policy: Policy) -> bool:
    """Return True when values stayed clear of the thresholds long enough to resolve."""
    return runs.c_n >= policy.clear_n and t - runs.c_since >= policy.clear_us


def decide(episode: Episode | None, *, held: int, cleared: bool) -> tuple[AlertKind | None, int]:
    """Return the lifecycle step (None: no event) and the episode's severity after it."""
    if episode is None:
        return (AlertKind.OPENED, held) if held else (None, 0)
    if held > episode.severity:
        return AlertKind.ESCALATED, held
    if cleared:
        return AlertKind.RESOLVED, 0
    # An episode keeps its peak severity until it resolves: no event kind says "better".
    return None, episode.severity
