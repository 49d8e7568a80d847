"""Machine facts and the Markdown block `make bench` prints (pasted into docs/benchmarks.md)."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tools.bench_e2e import EPISODE_READINGS, E2ERun
from tools.bench_revoke import TIMEOUT_S, RevokeRun
from tools.bench_stack import REPO_ROOT, HandlerStat
from tools.bench_wrk import WrkResult


@dataclass(frozen=True)
class Throughput:
    """Phase B results: the same wrk command against ingest and against the bare ceiling.

    `ingest` ran on a stack of ingest and the broker alone (what issue 3's figure is about, as
    in `make bench-ingest`), `ceiling` beside that stack while it idled; `pipeline`, when
    measured, ran while rules and the notifier consumed every reading on the same two cores,
    `pipeline_ceiling` beside that whole stack while it idled."""

    command: str
    ingest: WrkResult
    ceiling: WrkResult
    pipeline: WrkResult | None = None
    pipeline_ceiling: WrkResult | None = None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _run(*argv: str) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO_ROOT, check=False)
    return out.stdout.strip()


def _meminfo_gib() -> str:
    with open("/proc/meminfo") as f:
        kib = next(int(ln.split()[1]) for ln in f if ln.startswith("MemTotal:"))
    return f"{kib / 1024**2:.1f} GiB"


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")


def _uncommitted() -> str:
    """Uncommitted paths, the bench's own files apart (they do not change what is measured)."""
    paths = [ln.split(maxsplit=1)[1] for ln in _run("git", "status", "--porcelain").splitlines()]
    bench = [p for p in paths if p.startswith("tools/bench") or p == "docs/benchmarks.md"]
    others = [p for p in paths if p not in bench]
    if not paths:
        return ""
    if not others:
        return " (uncommitted: the bench's own files only)"
    return f" (uncommitted changes to the code under test: {', '.join(sorted(others))})"


def machine_info(wrk_version: str | None) -> list[tuple[str, str]]:
    """What the figures were measured on (the wrk line only when a version is given)."""
    commit = _run("git", "rev-parse", "--short", "HEAD") or "?"
    dirty = _uncommitted()
    facts = [
        ("date (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M")),
        ("git commit", commit + dirty),
        ("nproc", _run("nproc") or str(os.cpu_count())),
        ("CPU", _cpu_model()),
        ("memory", _meminfo_gib()),
        ("python", f"{platform.python_version()} ({platform.platform()})"),
    ]
    return facts if wrk_version is None else [*facts, ("wrk", wrk_version)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _latency_row(name: str, values: Sequence[float]) -> str:
    cells = " | ".join(_ms(percentile(values, q)) for q in (50, 90, 99, 100))
    return f"| {name} | {cells} |"


def render_e2e(run: E2ERun) -> list[str]:
    """Phase A section."""
    posted = run.posted
    failures = ", ".join(f"{k}: {v}" for k, v in posted.failures.items()) or "none"
    e2e = run.e2e_latency_s()
    load = run.load
    pace = f"paced at {load.rate:g} episodes/s" if load.rate > 0 else "unpaced"
    accepted = len(posted.accepted_at)
    return [
        f"### Phase A: end to end ({load.episodes} sustained episodes of {EPISODE_READINGS} "
        f"readings, one request each, concurrency {load.concurrency}, {pace})",
        "",
        f"- accepted: {accepted}/{load.episodes} episodes (failures: {failures})",
        f"- accepted episodes/s: {accepted / posted.wall_s:.0f}, readings/s: "
        f"{accepted * EPISODE_READINGS / posted.wall_s:.0f} "
        f"(posting wall time {posted.wall_s:.2f} s)",
        f"- Slack calls: {len(run.tracker.first_at)} patients paged of "
        f"{len(posted.accepted_at)} expected"
        f"{'' if run.all_arrived else ' (NOT all arrived within the wait)'}; "
        f"duplicates (patients paged more than once, by end of run): {run.tracker.duplicates}",
        f"- warm-up (first alert, consumer groups just joined): {_ms(run.warmup_s)}",
        *_slack_line(run),
        "- latency below: from the episode request's 202 to the Slack call naming its patient; "
        "Slack's per-channel pacing is lifted (SLACK_CHANNEL_RATE_PER_S, SLACK_CHANNEL_BURST): "
        "a real channel takes about 1 message/s, so this is the pipeline's latency, not one "
        "channel's throughput",
        "",
        "| latency | p50 | p90 | p99 | max |",
        "| --- | --- | --- | --- | --- |",
        _latency_row("202 → fake Slack receipt", e2e),
        *_stage_rows(run),
        _latency_row("POST /v1/readings, 3 readings (client side)", posted.post_latency_s),
        "",
        *render_cpu(run),
    ]


def _stage_rows(run: E2ERun) -> list[str]:
    """The end-to-end latency split at alerts.v1 (by the `opened` records' CreateTime)."""
    if not run.alert_record_at:
        return []
    return [
        _latency_row("of which 202 → `opened` on alerts.v1 (ingest → rules)", run.to_alert_s()),
        _latency_row("of which alerts.v1 → fake Slack (notifier)", run.from_alert_s()),
    ]


def _slack_line(run: E2ERun) -> list[str]:
    calls, mean_s = run.slack_calls
    if not calls:
        return []
    return [
        f"- the notifier's Slack API calls (whole run, warm-up included): {calls}, mean "
        f"{_ms(mean_s)} until the fake Slack answered (notifier_provider_latency_seconds)",
    ]


def render_cpu(run: E2ERun) -> list[str]:
    """CPU time each process used from the first POST until the last page arrived."""
    if not run.cpu_s:
        return []
    episodes = max(len(run.posted.accepted_at), 1)
    wall = max(run.paging_wall_s, 1e-9)
    lines = [
        f"CPU time used from the first POST to the last page ({run.paging_wall_s:.2f} s wall; "
        "the broker and the machine's other load are not in it; 2 cores = 200 %):",
        "",
        "| process | CPU | of one core | per episode |",
        "| --- | --- | --- | --- |",
    ]
    for name, used in run.cpu_s.items():
        lines.append(
            f"| {name} | {used:.2f} s | {used / wall * 100:.0f} % | {used / episodes * 1000:.2f} ms |"
        )
    return lines


def render_handlers(stats: Sequence[HandlerStat]) -> list[str]:
    """Consumer handler times after phase A (each consumer runs its handler calls one by one)."""
    lines = [
        "| consumer (after phase A) | messages | handler calls | mean per call | per message "
        "| serial ceiling |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in stats:
        ceiling = f"{1000 / s.mean_ms:.0f} msg/s" if s.mean_ms else "n/a"
        lines.append(
            f"| {s.service} ← {s.topic} | {s.messages} | {s.calls} | {s.mean_call_ms:.2f} ms "
            f"| {s.mean_ms:.2f} ms | {ceiling} |"
        )
    return lines


def _wrk_row(name: str, result: WrkResult) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in result.errors.items()) or "0"
    return (
        f"| {name} | {result.requests_per_s:.0f} | {result.p50_ms:.1f} ms | "
        f"{result.p99_ms:.1f} ms | {result.max_ms:.1f} ms | {result.requests} | {errors} |"
    )


def render_throughput(tp: Throughput) -> list[str]:
    """Phase B section."""
    ratio = tp.ingest.requests_per_s / tp.ceiling.requests_per_s
    pipeline = []
    if tp.pipeline and tp.pipeline_ceiling:
        pipeline = [
            _wrk_row("ingest POST /v1/readings, rules + notifier consuming", tp.pipeline),
            _wrk_row("ceiling beside the idle pipeline", tp.pipeline_ceiling),
        ]
    return [
        "### Phase B: single-reading POST throughput (wrk)",
        "",
        f"Command (same for both targets): `{tp.command}`",
        "",
        "| target | requests/s | p50 | p99 | max | requests | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        _wrk_row("ingest POST /v1/readings (ingest + broker)", tp.ingest),
        _wrk_row("ceiling: bare uvicorn ASGI app, 202, beside ingest + broker", tp.ceiling),
        *pipeline,
        "",
        f"ingest / ceiling: {ratio:.2f}"
        + (
            f"; with rules + notifier consuming / its ceiling: "
            f"{tp.pipeline.requests_per_s / tp.pipeline_ceiling.requests_per_s:.2f}"
            if tp.pipeline and tp.pipeline_ceiling
            else ""
        ),
    ]


REVOKE_TARGET_S = 0.5


def _revocation_summary(run: RevokeRun) -> list[str]:
    """Phase C bullet points: counts, pages, probes, verdict on the ingest part."""
    enforced = run.enforcement_s()
    opened = len(run.opened_before_revoke)
    failures = ", ".join(f"{k}: {v}" for k, v in run.failures.items()) or "none"
    warmup = "not enforced" if run.warmup_s is None else _ms(run.warmup_s)
    p99 = percentile(enforced, 99)
    verdict = "yes" if p99 < REVOKE_TARGET_S and len(enforced) == run.patients else "NO"
    probes = [len(r.probe_s) for r in run.revocations]
    pages = run.pages
    return [
        f"- revoked: {len(run.revocations)}/{run.patients}; withheld by ingest afterwards: "
        f"{len(enforced)}/{run.patients}; failures: {failures}",
        f"- open red episode before the revoke: {opened}; resolved as consent_revoked on "
        f"alerts.v1: {len(run.resolve_s(record_time=False))}/{opened}",
        f"- Slack pages for these patients: {len(pages.first_at) if pages else 0} patients paged "
        f"(at most the {opened} with an episode); paged more than once: "
        f"{pages.duplicates if pages else 0}",
        f"- the notifier's chat.update cancelling the alert's Slack message after the revoke: "
        f"{len(run.slack_update_s)}/{len(run.slack_posts)} messages (those posted before the "
        f"revoke); never seen within {TIMEOUT_S:.0f} s: "
        f"{len(run.slack_posts) - len(run.slack_update_s)}",
        f"- POSTs (one episode each) per revoke until withheld: mean {sum(probes) / max(1, len(probes)):.1f}, "
        f"max {max(probes, default=0)}; warm-up patient (not in the figures): {warmup}",
        f"- ingest part of the requirement (p99 < {_ms(REVOKE_TARGET_S)}): {verdict} "
        f"(p99 {_ms(p99)})",
    ]


def render_revocations(run: RevokeRun) -> list[str]:
    """Phase C section."""
    return [
        f"### Phase C: revocation enforcement ({run.patients} patients, one at a time, "
        "CONSENT_REQUIRED=true)",
        "",
        *_revocation_summary(run),
        "",
        "| latency | p50 | p90 | p99 | max |",
        "| --- | --- | --- | --- | --- |",
        _latency_row("revoke 200 → ingest withholds the next episode", run.enforcement_s()),
        _latency_row(
            "revoke 200 → rules' resolved (consent_revoked), bench receive time",
            run.resolve_s(record_time=False),
        ),
        _latency_row(
            "revoke 200 → same event, its record timestamp (rules' producer clock)",
            run.resolve_s(record_time=True),
        ),
        _latency_row(
            "revoke 200 → notifier's chat.update at the fake Slack, "
            "the fake's receipt time (same monotonic clock)",
            run.slack_update_s,
        ),
        _latency_row("grant 201 → ingest accepts the next episode", run.grant_to_accept_s),
        _latency_row("POST /v1/readings, 3 readings, while probing (resolution)", run.probe_s()),
        _latency_row("POST …/revoke (client side)", [r.revoke_request_s for r in run.revocations]),
    ]


def render(
    machine: list[tuple[str, str]],
    run: E2ERun,
    handlers: Sequence[HandlerStat],
    tp: Throughput,
    revocations: RevokeRun | None,
    logs: dict[str, int],
) -> str:
    """The whole Markdown block."""
    log_note = ", ".join(f"{name} {n}" for name, n in logs.items())
    phase_c = ["", *render_revocations(revocations)] if revocations else []
    lines = [
        "## Benchmark run",
        "",
        *[f"- {key}: {value}" for key, value in machine],
        "",
        *render_e2e(run),
        "",
        *render_handlers(handlers),
        "",
        *render_throughput(tp),
        *phase_c,
        "",
        f"Service log lines at WARNING or above during the run: {log_note}",
    ]
    return "\n".join(lines)
