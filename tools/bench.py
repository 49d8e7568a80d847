"""Benchmark of the walking skeleton, end to end, for throughput and revocation: `make bench`.

Starts a fake identity provider, the embedded broker, a fake Slack and ingest, rules and notifier
as real subprocesses (CONSENT_REQUIRED=false), all on loopback, then:
  A. posts N sustained red episodes (one request of 3 readings per patient) and times each from
     its 202 to the fake Slack receipt;
  B. runs the same wrk command against a bare uvicorn app (the ceiling) and against ingest, in
     that pipeline (context) and on a stack of ingest and the broker alone (issue 3's figure:
     nothing else consumes the two cores, as in `make bench-ingest`).
Then a second stack, with the consent service and CONSENT_REQUIRED=true:
  C. grants and revokes monitoring consent for K patients, one at a time, and times each revoke's
     200 to ingest withholding the patient's next reading and to rules' consent_revoked resolve.
Every request carries a bearer token from the fake IdP. Prints a Markdown block for
docs/benchmarks.md, with phase B's verdict against issue 3's target (>= 2,000 requests/s answered
without error, p99 < 50 ms, ingest + broker) and ingest's CPU time per request.
`--throughput-only` runs the ceiling and the ingest + broker stack alone. Everything it started is stopped on any exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

import httpx
from aiokafka.errors import KafkaError

from deploy.embedded_broker import free_port
from tools.bench_auth import READINGS_WRITE, BenchAuth, running_idp
from tools.bench_e2e import E2ERun, Load, cpu_seconds, run_e2e
from tools.bench_report import Throughput, machine_info, render, render_throughput
from tools.bench_revoke import RevokeRun, run_revocations
from tools.bench_stack import (
    NOTIFIER_DATABASES,
    HandlerStat,
    Stack,
    StackOptions,
    handler_stats,
    running_processes,
    running_stack,
    spawn,
    wait_ready,
)
from tools.bench_wrk import WrkResult, WrkSettings, require_wrk, run_wrk, write_script

READINGS_PATH = "/v1/readings"
TARGET_REQUESTS_PER_S = 2000  # issue 3: single-reading POST /v1/readings
TARGET_P99_MS = 50.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --quick shrinks the run for a smoke test."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--episodes", type=int, default=2000, help="phase A episodes, 3 readings each (2000)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="phase A in-flight POSTs (32)")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="phase A episodes/s; 0 = unpaced (default)"
    )
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (2)")
    parser.add_argument("--wrk-connections", type=int, default=32, help="wrk -c (32)")
    parser.add_argument("--wrk-duration", type=int, default=10, help="wrk -d, seconds (10)")
    parser.add_argument(
        "--revocations", type=int, default=50, help="phase C patients (50); 0 skips phase C"
    )
    parser.add_argument(
        "--notifier-db",
        choices=NOTIFIER_DATABASES,
        default="sqlite",
        help="notifier database: a fresh SQLite file (default) or a fresh PostgreSQL schema",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 200 episodes, wrk for 3 s, 10 revocations"
    )
    parser.add_argument(
        "--throughput-only",
        action="store_true",
        help="phase B alone (single-reading POST throughput against its ceiling)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.episodes, args.wrk_duration = min(args.episodes, 200), min(args.wrk_duration, 3)
        args.revocations = min(args.revocations, 10)
    if min(args.episodes, args.concurrency, args.wrk_duration) < 1 or args.rate < 0:
        parser.error("--episodes, --concurrency, --wrk-duration must be positive, --rate >= 0")
    if args.revocations < 0:
        parser.error("--revocations must be >= 0")
    return args


def run_ceiling(wrk: WrkSettings, script: Path, work_dir: Path) -> WrkResult:
    """The wrk command against a bare uvicorn app answering 202 (the ceiling)."""
    port, env = free_port(), dict(os.environ)
    with running_processes([]) as ceiling:
        ceiling.append(
            spawn("ceiling", ["-m", "tools.bench_ceiling", str(port)], port, env, work_dir)
        )
        wait_ready(ceiling)
        return run_wrk(wrk, script, ceiling[0].url + READINGS_PATH)


def run_ingest(stack: Stack, wrk: WrkSettings, script: Path) -> tuple[WrkResult, float]:
    """The wrk command against ingest, and ingest's CPU time per request answered without error
    during it: a figure that stays comparable on a loaded machine, where requests/s does not."""
    cpu_before = cpu_seconds(stack)["ingest"]
    result = run_wrk(wrk, script, stack.ingest_url + READINGS_PATH)
    answered = result.requests_per_s * result.duration_s
    return result, (cpu_seconds(stack)["ingest"] - cpu_before) / max(answered, 1.0)


def warm_up(stack: Stack, wrk: WrkSettings, script: Path) -> None:
    """One second of the same load first: JWKS fetched, the token in the verified cache."""
    run_wrk(WrkSettings(wrk.threads, wrk.connections, 1), script, stack.ingest_url + READINGS_PATH)


def ingest_alone(
    auth: BenchAuth, wrk: WrkSettings, work_dir: Path, run_id: str
) -> tuple[Throughput, float, dict[str, int]]:
    """Phase B's figure for issue 3: the ceiling, then ingest, beside a stack of ingest and the
    broker alone (nothing consumes readings.v1, as in `make bench-ingest`); also ingest's CPU
    per request and the stack's log lines at WARNING or above."""
    work_dir.mkdir(exist_ok=True)
    with running_stack(work_dir, StackOptions(auth.env(), services=("ingest",))) as stack:
        script = write_script(work_dir, run_id, auth.token(READINGS_WRITE))
        ceiling = run_ceiling(wrk, script, work_dir)
        warm_up(stack, wrk, script)
        result, cpu = run_ingest(stack, wrk, script)
        logs = {f"{name} (B)": p.log_lines() for name, p in stack.services.items()}
    return Throughput(_command(wrk), ingest=result, ceiling=ceiling), cpu, logs


def verdict_lines(
    tp: Throughput, cpu_per_request_s: float, pipeline_cpu_s: float | None
) -> list[str]:
    """Phase B's target verdict (ingest + broker) and ingest's CPU per request."""
    met = tp.ingest.requests_per_s >= TARGET_REQUESTS_PER_S and tp.ingest.p99_ms < TARGET_P99_MS
    lines = [
        f"- target ≥ {TARGET_REQUESTS_PER_S:,} requests/s with p99 < {TARGET_P99_MS:g} ms "
        f"(ingest + broker): {'met' if met else 'NOT met'}",
        f"- ingest CPU per request answered (process CPU time / requests without error): "
        f"{cpu_per_request_s * 1e6:.0f} µs",
    ]
    if tp.pipeline is not None and pipeline_cpu_s is not None:
        lines.append(
            f"- the same with rules + notifier consuming on the same cores: "
            f"{tp.pipeline.requests_per_s:,.0f} requests/s, p99 {tp.pipeline.p99_ms:.1f} ms, "
            f"ingest CPU per request {pipeline_cpu_s * 1e6:.0f} µs"
        )
    return lines


def throughput_only(args: argparse.Namespace, wrk_version: str) -> str:
    """Phase B alone: the ceiling, then ingest, on a stack of ingest and the broker."""
    run_id = secrets.token_hex(3)
    wrk = WrkSettings(args.wrk_threads, args.wrk_connections, args.wrk_duration)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, running_idp() as auth:
        tp, cpu, logs = ingest_alone(auth, wrk, Path(tmp), run_id)
    lines = ["## Benchmark run (phase B only)", ""]
    lines += [f"- {key}: {value}" for key, value in machine_info(wrk_version)]
    log_note = ", ".join(f"{name} {n}" for name, n in logs.items())
    return "\n".join(
        [
            *lines,
            "",
            *render_throughput(tp),
            "",
            *verdict_lines(tp, cpu, None),
            "",
            f"Service log lines at WARNING or above during the run: {log_note}",
        ]
    )


def _command(wrk: WrkSettings) -> str:
    return wrk.display(f"http://127.0.0.1:PORT{READINGS_PATH}")


def phases_a_b(
    args: argparse.Namespace, auth: BenchAuth, work_dir: Path, run_id: str
) -> tuple[E2ERun, list[HandlerStat], tuple[WrkResult, WrkResult, float], dict[str, int]]:
    """Phase A, then phase B's ceiling and its run inside the whole pipeline, on a stack without
    the consent service (CONSENT_REQUIRED=false)."""
    wrk = WrkSettings(args.wrk_threads, args.wrk_connections, args.wrk_duration)
    options = StackOptions(auth.env(), notifier_db=args.notifier_db)
    with running_stack(work_dir, options) as stack:
        print(f"stack ready (broker {stack.bootstrap}); phase A ...", file=sys.stderr, flush=True)
        load = Load(args.episodes, args.concurrency, args.rate)
        e2e = run_e2e(stack, run_id, load, auth.headers(READINGS_WRITE))
        handlers = handler_stats(stack.services.values())
        print("phase B: wrk against ceiling, then ingest ...", file=sys.stderr, flush=True)
        script = write_script(work_dir, run_id, auth.token(READINGS_WRITE))
        ceiling = run_ceiling(wrk, script, work_dir)
        warm_up(stack, wrk, script)
        pipeline, cpu = run_ingest(stack, wrk, script)
        e2e.tracker.scan(list(stack.slack.calls))  # late duplicates count too
        logs = {name: p.log_lines() for name, p in stack.services.items()}
    return e2e, handlers, (pipeline, ceiling, cpu), logs


def phase_c(
    args: argparse.Namespace, auth: BenchAuth, work_dir: Path, run_id: str
) -> tuple[RevokeRun, dict[str, int]]:
    """Phase C on a fresh stack with the consent service and CONSENT_REQUIRED=true."""
    options = StackOptions(
        auth.env(),
        consent_required=True,
        with_consent_service=True,
        notifier_db=args.notifier_db,
    )
    with running_stack(work_dir, options) as stack:
        print(f"phase C: {args.revocations} revocations ...", file=sys.stderr, flush=True)
        run = run_revocations(stack, auth, run_id, args.revocations)
        logs = {f"{name} (C)": p.log_lines() for name, p in stack.services.items()}
    return run, logs


def benchmark(args: argparse.Namespace, wrk_version: str) -> str:
    """Run the phases on fresh stacks and return the Markdown report."""
    run_id = secrets.token_hex(3)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, running_idp() as auth:
        work_ab, work_c = Path(tmp, "ab"), Path(tmp, "c")
        work_ab.mkdir()
        work_c.mkdir()
        e2e, handlers, (pipeline, pipeline_ceiling, pipeline_cpu), logs = phases_a_b(
            args, auth, work_ab, run_id
        )
        print("phase B: ceiling and ingest beside ingest + broker ...", file=sys.stderr, flush=True)
        wrk = WrkSettings(args.wrk_threads, args.wrk_connections, args.wrk_duration)
        alone, cpu, logs_b = ingest_alone(auth, wrk, Path(tmp, "b"), run_id)
        logs |= logs_b
        throughput = dataclasses.replace(
            alone, pipeline=pipeline, pipeline_ceiling=pipeline_ceiling
        )
        revocations = None
        if args.revocations:
            revocations, logs_c = phase_c(args, auth, work_c, run_id)
            logs |= logs_c
    report = render(machine_info(wrk_version), e2e, handlers, throughput, revocations, logs)
    return "\n".join(
        [
            report,
            "",
            "Phase B against issue 3's target:",
            *verdict_lines(throughput, cpu, pipeline_cpu),
        ]
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 0 on a complete run, 1 on a failure, 130 on interruption."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # so `finally` cleans up on SIGTERM too
    try:
        wrk_version = require_wrk()
        report = (throughput_only if args.throughput_only else benchmark)(args, wrk_version)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except (RuntimeError, httpx.HTTPError, subprocess.SubprocessError, KafkaError) as exc:
        # StackError, WrkMissingError, PhaseError, a failed warm-up or wrk run, a service gone
        # silent, the bench's alerts.v1 consumer failing
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
