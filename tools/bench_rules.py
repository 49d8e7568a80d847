"""Alert quality, throughput and memory of the rules engine on synthetic patients: `make bench-rules`.

Generates seeded synthetic patient-days (tools/bench_rules_gen.py), runs them through the real pure
engine (`evaluate` with the default rule set; no Kafka, `make bench` measures that) and through a
naive single-sample threshold, and prints a Markdown block for docs/benchmarks.md: sensitivity on
injected true events, detection delay, false alerts per patient-day against the naive threshold,
readings/s of `evaluate` in this process, and the memory of N active patients' states.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from services.rules.domain import DEFAULT_RULES_FILE, PatientState, RuleSet, load_rule_set
from tools.bench_report import machine_info, percentile
from tools.bench_rules_gen import TRUE_EVENTS, Kind, generate_patient
from tools.bench_rules_perf import MB, Memory, measure_memory, time_evaluate
from tools.bench_rules_score import Detection, Quality, score_patient

GOAL_SENSITIVITY = 1.0
GOAL_FALSE_RATIO = 10.0
GOAL_READINGS_PER_S = 30_000
GOAL_MEMORY_MB = 300
EXPECTED = ("event", "exercise", "technical")  # causes that are not false alerts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; the defaults run in well under two minutes on two cores."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench_rules", description=__doc__)
    parser.add_argument("--patients", type=int, default=300, help="synthetic patients (300)")
    parser.add_argument("--days", type=int, default=1, help="days per patient (1)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (1)")
    parser.add_argument(
        "--rules", default=str(DEFAULT_RULES_FILE), help="rule file (the shipped rules.yaml)"
    )
    parser.add_argument(
        "--memory-patients", type=int, default=100_000, help="active patients (100000)"
    )
    parser.add_argument(
        "--trace-build",
        action="store_true",
        help="trace the evaluate build with tracemalloc (about 5x slower) instead of from_json",
    )
    args = parser.parse_args(argv)
    if min(args.patients, args.days, args.memory_patients) < 1:
        parser.error("--patients, --days and --memory-patients must be positive")
    return args


def run_patients(args: argparse.Namespace, rules: RuleSet) -> tuple[Quality, int, float]:
    """Score every patient; time `evaluate` over the same readings with fresh states."""
    quality, states = Quality(), dict[str, PatientState]()
    readings, seconds = 0, 0.0
    for index in range(args.patients):
        data = generate_patient(args.seed, index, args.days)
        score_patient(data, rules, quality)
        seconds += time_evaluate(data.readings, rules, states)
        readings += len(data.readings)
    return quality, readings, seconds


def _verdict(met: bool) -> str:
    return "met" if met else "**NOT met**"


def _min(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _delay_row(name: str, found: list[Detection]) -> str:
    delays = [d.delay_s for d in found if d.delay_s is not None]
    reds = [d.red_delay_s for d in found if d.red_delay_s is not None]
    share = f"{len(delays) / len(found):.1%}" if found else "n/a"
    cells = [_min(percentile(delays, q)) if delays else "n/a" for q in (50, 90, 100)]
    cells += [_min(percentile(reds, q)) if reds else "n/a" for q in (50, 100)]
    return (
        f"| {name} | {len(found)} | {len(delays)} | {share} | {len(reds)} | {' | '.join(cells)} |"
    )


def render_sensitivity(q: Quality) -> list[str]:
    """Sensitivity and detection delay per event kind."""
    found = q.detections
    detected = sum(1 for d in found if d.delay_s is not None)
    delays = [d.delay_s for d in found if d.delay_s is not None]
    met = bool(found) and detected / len(found) >= GOAL_SENSITIVITY
    median = _min(statistics.median(delays)) if delays else "n/a"
    lines = [
        f"- sensitivity: {detected}/{len(found)} true events detected; goal 100 %: {_verdict(met)}",
        f"- median detection delay (all events): {median}",
        "",
        "| true event | injected | detected | sensitivity | red in window | delay p50 | delay p90 "
        "| delay max | to red p50 | to red max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *[_delay_row(k.value, [d for d in found if d.kind is k]) for k in TRUE_EVENTS],
        _delay_row("all", found),
    ]
    misses = Counter(f"{d.kind.value}: {d.miss}" for d in found if d.delay_s is None)
    lines += [f"- missed: {reason} ({n})" for reason, n in sorted(misses.items())]
    return lines


def _per_day(n: int, q: Quality) -> str:
    return f"{n / q.patient_days:.2f}"


def render_false_alerts(q: Quality) -> list[str]:
    """False alerts per patient-day, engine vs naive, and what caused them."""
    engine = sum(n for (_, _, c), n in q.engine.items() if c not in EXPECTED)
    naive = sum(n for (_, _, c), n in q.naive.items() if c not in EXPECTED)
    ratio = naive / engine if engine else float("inf")
    lines = [
        f"- false alerts per patient-day: engine {_per_day(engine, q)} ({engine} opened "
        f"episodes), naive threshold {_per_day(naive, q)} ({naive}); naive / engine = "
        f"{ratio:.1f}x; goal >= {GOAL_FALSE_RATIO:g}x fewer: {_verdict(ratio >= GOAL_FALSE_RATIO)}",
        f"- pages per patient-day (opened + escalated, clinical rules; naive: every rise in "
        f"level): engine {_per_day(q.engine_pages, q)}, naive {_per_day(q.naive_pages, q)}",
        f"- exercise bouts: {q.windows['exercise']}; with an engine alert: {q.exercise_engine}; "
        f"with a naive alert: {q.exercise_naive} (expected by the rule set, not counted as false)",
        "",
        "| rule | severity at opening | cause | engine | naive |",
        "| --- | --- | --- | --- | --- |",
    ]
    keys = sorted(set(q.engine) | set(q.naive), key=lambda k: (k[2] in EXPECTED, k))
    lines += [
        f"| {rule} | {severity} | {cause}{'' if cause in EXPECTED else ' (false)'} | "
        f"{q.engine[(rule, severity, cause)]} | {q.naive[(rule, severity, cause)]} |"
        for rule, severity, cause in keys
    ]
    return lines


def render_perf(readings: int, seconds: float, m: Memory) -> list[str]:
    """Throughput and memory, against their goals."""
    rate = readings / seconds
    per_patient = m.traced_bytes / m.patients
    return [
        f"- throughput: {readings} readings through `evaluate` in {seconds:.2f} s = "
        f"{rate:,.0f} readings/s in one process; goal >= {GOAL_READINGS_PER_S:,}: "
        f"{_verdict(rate >= GOAL_READINGS_PER_S)}",
        f"- memory, {m.patients:,} active patients ({m.readings_fed:,} readings fed, "
        f"{m.open_episodes:,} with an open episode): tracemalloc {m.traced_bytes / MB:.1f} MB "
        f"({per_patient:,.0f} bytes per patient; {m.traced_how}); RSS growth over the build "
        f"{m.rss_bytes / MB:.1f} MB; goal < {GOAL_MEMORY_MB} MB: "
        f"{_verdict(max(m.traced_bytes, m.rss_bytes) < GOAL_MEMORY_MB * MB)}",
        f"- state as stored (to_json): {m.json_bytes / m.patients:,.0f} bytes per patient; "
        f"untraced build {m.seconds:.1f} s",
    ]


def _rule_file(path: str) -> str:
    return "the shipped rules.yaml" if Path(path).resolve() == DEFAULT_RULES_FILE else path


def render_data(args: argparse.Namespace, q: Quality, rules: RuleSet) -> list[str]:
    """What was generated."""
    events = ", ".join(f"{k.value} {q.windows[k.value]}" for k in TRUE_EVENTS)
    readings = ", ".join(f"{m} {n}" for m, n in sorted(q.readings.items()))
    return [
        f"- data: {args.patients} patients x {args.days} day(s) = {q.patient_days} "
        f"patient-days, seed {args.seed}; rule set {rules.version} ({_rule_file(args.rules)})",
        f"- readings: {sum(q.readings.values())} ({readings}); motion artifacts "
        f"{q.artifacts}; dropouts {q.windows[Kind.DROPOUT.value]}; activity bursts "
        f"{q.windows[Kind.ACTIVITY.value]}; exercise bouts {q.windows[Kind.EXERCISE.value]}",
        f"- injected true events: {events}",
    ]


def render(
    args: argparse.Namespace,
    argv: list[str],
    rules: RuleSet,
    measured: tuple[Quality, int, float, Memory, float],
) -> str:
    """The whole Markdown block."""
    q, readings, seconds, memory, wall = measured
    command = shlex.join(["python", "-m", "tools.bench_rules", *argv])
    return "\n".join(
        [
            "## Rules benchmark run",
            "",
            *[f"- {key}: {value}" for key, value in machine_info(None)],
            f"- command: `{command}` (whole run {wall:.0f} s)",
            *render_data(args, q, rules),
            "",
            "### Sensitivity and detection delay",
            "",
            *render_sensitivity(q),
            "",
            "### False alerts: engine vs naive single-sample threshold",
            "",
            *render_false_alerts(q),
            "",
            "### Throughput and memory",
            "",
            *render_perf(readings, seconds, memory),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: memory first (a fresh process, so RSS growth means something), then quality."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.perf_counter()
    rules = load_rule_set(args.rules)
    print(f"memory: {args.memory_patients} active patients ...", file=sys.stderr, flush=True)
    memory = measure_memory(args.memory_patients, rules, trace_build=args.trace_build)
    print(
        f"quality: {args.patients} patients x {args.days} day(s) ...", file=sys.stderr, flush=True
    )
    quality, readings, seconds = run_patients(args, rules)
    wall = time.perf_counter() - started
    print(render(args, argv, rules, (quality, readings, seconds, memory, wall)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
