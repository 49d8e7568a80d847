"""What the system costs doing nothing: `make bench-idle`.

Starts the same stack as `make bench` (broker, fake Slack, fake IdP, ingest, rules, notifier on
loopback, the bench's settings), lets it settle, then reads the CPU time (user + system, from
/proc/<pid>/stat) every process it started used over a quiet window. An idle stack is not free:
every consumer polls the broker once per fetch wait (KAFKA_FETCH_MAX_WAIT_MS for the consumers
someone waits on, KAFKA_BACKGROUND_FETCH_MAX_WAIT_MS for the others), and the broker answers
each poll. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from tools.bench_auth import running_idp
from tools.bench_e2e import proc_stat
from tools.bench_report import machine_info
from tools.bench_stack import StackOptions, running_stack


def children_cpu(root: int) -> dict[tuple[int, str], float]:
    """CPU seconds used so far by every live descendant of `root`, keyed by (pid, command)."""
    parent: dict[int, int] = {}
    stat: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            name, parent[int(entry)], used = proc_stat(int(entry))
        except OSError:
            continue  # gone meanwhile
        stat[int(entry)] = (name, used)
    found: dict[tuple[int, str], float] = {}
    for pid, (name, used) in stat.items():
        ancestor = parent.get(pid)
        while ancestor not in (None, 0, 1, root):
            ancestor = parent.get(ancestor)
        if ancestor == root:
            found[(pid, name)] = used
    return found


def measure(seconds: float, settle_s: float) -> list[tuple[str, float]]:
    """(process, share of one core) over `seconds` of an idle stack, busiest first."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp, running_idp() as auth:
        with running_stack(Path(tmp), StackOptions(auth.env())) as stack:
            label = {p.proc.pid: name for name, p in stack.services.items()}
            label[stack.slack.pid] = "fake Slack"
            time.sleep(settle_s)  # a fixed quiet window is the measurement, not a synchronisation
            before, started = children_cpu(os.getpid()), time.monotonic()
            own_before = sum(os.times()[:2])
            time.sleep(seconds)
            after, elapsed = children_cpu(os.getpid()), time.monotonic() - started
            own = (sum(os.times()[:2]) - own_before) / elapsed
    shares = [("bench (fake IdP)", own)]
    for (pid, name), used in after.items():
        share = (used - before.get((pid, name), used)) / elapsed
        shares.append((label.get(pid, name), share))
    return sorted(shares, key=lambda item: -item[1])


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints the Markdown report."""
    parser = argparse.ArgumentParser(prog="python -m tools.bench_idle", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="quiet window (10)")
    parser.add_argument("--settle", type=float, default=3.0, help="wait after ready (3)")
    args = parser.parse_args(argv)
    shares = measure(args.seconds, args.settle)
    lines = ["## Idle stack", ""]
    lines += [f"- {key}: {value}" for key, value in machine_info(None)]
    lines += [
        f"- window: {args.seconds:g} s, {args.settle:g} s after every /readyz answered 200",
        "",
        "| process | CPU, share of one core |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {share * 100:.1f} % |" for name, share in shares if share >= 0.001]
    lines.append(f"| **total** | {sum(s for _, s in shares) * 100:.1f} % |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
