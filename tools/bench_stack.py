"""The benchmark's system under test: embedded broker, fake Slack, services as real subprocesses.

The services trust the bench's fake identity provider (StackOptions.auth_env); rules keeps its
state (RULES_DATABASE_URL), the notifier its alerts and outbox (NOTIFIER_DATABASE_URL) and the
consent service (phase C only) its database in SQLite files in the stack's temporary directory,
never in the repository's .data/; with StackOptions.notifier_db = "postgresql" the notifier uses a
fresh schema on BENCH_POSTGRES_URL (default the local postgresql://postgres@127.0.0.1:5432/test),
dropped when the stack stops. Slack's per-channel pacing (about 1 message/s, right for a real
channel) is lifted: the bench measures the pipeline's latency, not one channel's throughput.

Everything listens on 127.0.0.1, every wait has a deadline, and `running_stack()` stops what it
started (services, then the fake Slack, then the broker) on any exit, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
from prometheus_client.parser import text_string_to_metric_families

from deploy.embedded_broker import free_port, start_tansu, stop_tansu
from tools.bench_slack import SLACK_TOKEN, RemoteSlack

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("ingest", "rules", "notifier")
SLACK_CHANNEL = "#care-alerts"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.1
FETCH_MAX_WAIT_MS = 20
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
NOTIFIER_DATABASES = ("sqlite", "postgresql")
BENCH_SLACK_RATE_PER_S = 100_000
BENCH_SLACK_BURST = 100_000
HANDLE_METRIC = "kafka_message_handle_seconds"
CONSUMED_METRIC = "kafka_messages_consumed"
PROVIDER_METRIC = "notifier_provider_latency_seconds"


class StackError(RuntimeError):
    """A process of the stack failed to start or to become ready."""


@dataclass(frozen=True)
class Process:
    """A subprocess serving HTTP on a loopback port, with its combined output in a log file."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        """Base URL on the loopback interface."""
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        """Last lines of the process output (for error messages)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def log_lines(self) -> int:
        """Lines the process logged at WARNING or above (any line that is not a JSON log event
        below WARNING counts: a traceback, a line of a library writing on its own)."""
        return sum(
            1
            for line in self.log_path.read_text(errors="replace").splitlines()
            if _log_level(line) not in QUIET_LEVELS
        )


QUIET_LEVELS = frozenset({"debug", "info"})


def _log_level(line: str) -> str | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return str(event.get("level", "")).lower() if isinstance(event, dict) else None


@dataclass(frozen=True)
class StackOptions:
    """How to start the stack: AUTH_* variables, consent enforcement, consent service or not."""

    auth_env: dict[str, str]
    consent_required: bool = False
    with_consent_service: bool = False
    notifier_db: str = "sqlite"  # or "postgresql": a fresh schema on BENCH_POSTGRES_URL
    services: tuple[str, ...] = SERVICES  # ("ingest",): ingest and the broker alone


@dataclass(frozen=True)
class Stack:
    """The running system under test."""

    bootstrap: str
    slack: RemoteSlack
    services: dict[str, Process]

    @property
    def ingest_url(self) -> str:
        """Base URL of the ingest service."""
        return self.services["ingest"].url

    @property
    def consent_url(self) -> str:
        """Base URL of the consent service (only in a stack started with it)."""
        return self.services["consent"].url


@dataclass(frozen=True)
class HandlerStat:
    """Time one consumer spent in its handler (it handles its calls one after another).

    A per-message consumer (notifier) makes one call per message; a batch consumer (rules) one
    call per poll batch (all its partitions), so `calls` < `messages` there.
    """

    service: str
    topic: str
    calls: int
    messages: int
    total_s: float

    @property
    def mean_call_ms(self) -> float:
        """Mean time of one handler call (one message, or one poll batch)."""
        return self.total_s / self.calls * 1000 if self.calls else 0.0

    @property
    def mean_ms(self) -> float:
        """Handler time per message; 1000 / mean_ms is that consumer's ceiling in msg/s."""
        return self.total_s / self.messages * 1000 if self.messages else 0.0


def _samples(text: str, family_name: str) -> dict[tuple[str, str], float]:
    """{(sample name, topic): value} of one metric family in a Prometheus text page."""
    return {
        (sample.name, sample.labels["topic"]): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == family_name
        for sample in family.samples
        if "topic" in sample.labels
    }


def handler_stats(processes: Iterable[Process]) -> list[HandlerStat]:
    """Read kafka_message_handle_seconds (sum, count) and kafka_messages_consumed per topic."""
    stats: list[HandlerStat] = []
    with httpx.Client(timeout=5.0) as client:
        for process in processes:
            text = client.get(f"{process.url}/metrics").text
            handled = _samples(text, HANDLE_METRIC)
            consumed = _samples(text, CONSUMED_METRIC)
            stats += [
                HandlerStat(
                    process.name,
                    topic,
                    calls=int(n),
                    messages=int(consumed.get((f"{CONSUMED_METRIC}_total", topic), n)),
                    total_s=handled[(f"{HANDLE_METRIC}_sum", topic)],
                )
                for (name, topic), n in handled.items()
                if name == f"{HANDLE_METRIC}_count"
            ]
    return stats


def provider_latency(process: Process, channel: str = "slack") -> tuple[int, float]:
    """(calls, mean seconds) of the notifier's provider API calls on one channel, from its
    notifier_provider_latency_seconds histogram (the fake Slack's answer time as it waited)."""
    with httpx.Client(timeout=5.0) as client:
        text = client.get(f"{process.url}/metrics").text
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == PROVIDER_METRIC
        for sample in family.samples
        if sample.labels.get("channel") == channel and not sample.name.endswith("_bucket")
    }
    calls = int(values.get(f"{PROVIDER_METRIC}_count", 0))
    return calls, values.get(f"{PROVIDER_METRIC}_sum", 0.0) / calls if calls else 0.0


def service_env(
    bootstrap: str, slack: RemoteSlack, ports: dict[str, int], options: StackOptions, data_dir: Path
) -> dict[str, str]:
    """Environment shared by the services: everything on loopback, quiet logs, fake IdP, rules
    state in <data_dir>/rules.db."""
    return {
        **os.environ,
        **options.auth_env,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()},
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "SLACK_API_BASE_URL": slack.base_url,
        "SLACK_CHANNEL": SLACK_CHANNEL,
        # The services' default, a line per request and per alert, unless BENCH_LOG_LEVEL says.
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        "LOG_FORMAT": "json",  # Process.log_lines reads the level of each line
        "KAFKA_SESSION_TIMEOUT_MS": "2000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "300",
        # Tansu answers a fetch only when its wait expires (as deploy/dev.env does for make run).
        "KAFKA_FETCH_MAX_WAIT_MS": str(FETCH_MAX_WAIT_MS),
        "BIND_HOST": "127.0.0.1",
        "RULES_DATABASE_URL": f"sqlite:///{data_dir}/rules.db",
        "NOTIFIER_DATABASE_URL": f"sqlite:///{data_dir}/notifier.db",
        # A real Slack channel takes about 1 message/s (the notifier's default pacing); the bench
        # measures the pipeline's latency, not one channel's throughput, so pacing is lifted.
        "SLACK_CHANNEL_RATE_PER_S": str(BENCH_SLACK_RATE_PER_S),
        "SLACK_CHANNEL_BURST": str(BENCH_SLACK_BURST),
        # false: patients never seen on consent.v1 are processed (the consent lookup still runs),
        # so phases A/B need no grants; true for phase C, where every patient is granted first.
        "CONSENT_REQUIRED": "true" if options.consent_required else "false",
    }


@contextmanager
def notifier_database(kind: str, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """The notifier's database settings: the SQLite file of `env`, or a fresh PostgreSQL schema
    (created here, dropped on exit) on BENCH_POSTGRES_URL."""
    if kind == "sqlite":
        yield env
        return
    url = os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    schema = f"bench_{secrets.token_hex(4)}"
    asyncio.run(_postgres(url, f'CREATE SCHEMA "{schema}"'))
    try:
        yield {**env, "NOTIFIER_DATABASE_URL": url, "NOTIFIER_DATABASE_SCHEMA": schema}
    finally:
        asyncio.run(_postgres(url, f'DROP SCHEMA "{schema}" CASCADE'))


async def _postgres(url: str, statement: str) -> None:
    try:
        conn = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StackError(f"PostgreSQL not reachable at {url}: {exc}") from exc
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def consent_env(env: dict[str, str], data_dir: Path) -> dict[str, str]:
    """The consent service's extra settings: SQLite file, fresh audit signing key."""
    return {
        **env,
        "DATABASE_URL": f"sqlite:///{data_dir}/consent.db",
        "AUDIT_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "EXPORT_SOURCES": "",
    }


def spawn(name: str, argv: Sequence[str], port: int, env: dict[str, str], log_dir: Path) -> Process:
    """Start `python <argv>` with its output going to <log_dir>/<name>.log."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *argv], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    return Process(name=name, port=port, proc=proc, log_path=log_path)


def stop_processes(processes: Sequence[Process]) -> None:
    """SIGTERM all, then wait for each (SIGKILL after STOP_TIMEOUT_S)."""
    for process in processes:
        if process.proc.poll() is None:
            process.proc.terminate()
    for process in processes:
        try:
            process.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.proc.kill()
            process.proc.wait()


def _is_ready(client: httpx.Client, process: Process) -> bool:
    try:
        return client.get(f"{process.url}/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(processes: Sequence[Process], timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll every /readyz until all answer 200; fail fast if one exits, fail at the deadline."""
    pending = list(processes)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while pending:
            for process in list(pending):
                if process.proc.poll() is not None:
                    raise StackError(
                        f"{process.name} exited with code {process.proc.returncode}:\n"
                        f"{process.log_tail()}"
                    )
                if _is_ready(client, process):
                    pending.remove(process)
            if pending and time.monotonic() > deadline:
                names = ", ".join(p.name for p in pending)
                tails = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in pending)
                raise StackError(f"not ready within {timeout_s:.0f}s: {names}\n{tails}")
            if pending:
                time.sleep(POLL_INTERVAL_S)


@contextmanager
def running_processes(processes: list[Process]) -> Iterator[list[Process]]:
    """Stop every process appended to `processes` when the block exits, however it exits."""
    try:
        yield processes
    finally:
        stop_processes(processes)


@contextmanager
def running_stack(log_dir: Path, options: StackOptions) -> Iterator[Stack]:
    """Start broker, fake Slack and the services; yield once every /readyz is 200."""
    with ExitStack() as exits:
        broker_port = free_port()
        broker = start_tansu(broker_port, quiet=True)
        exits.callback(stop_tansu, broker)
        slack_port = free_port()
        fake = exits.enter_context(running_processes([]))  # stopped after the services
        fake.append(
            spawn(
                "slack",
                ["-m", "tools.bench_slack", str(slack_port)],
                slack_port,
                {**os.environ},
                log_dir,
            )
        )
        wait_ready(fake)
        slack = RemoteSlack(fake[0].url, fake[0].proc.pid)
        bootstrap = f"127.0.0.1:{broker_port}"
        names = (*options.services, "consent") if options.with_consent_service else options.services
        ports = {name: free_port() for name in names}
        env = service_env(bootstrap, slack, ports, options, log_dir)
        env = exits.enter_context(notifier_database(options.notifier_db, env))
        services = exits.enter_context(running_processes([]))
        for name in names:
            own_env = consent_env(env, log_dir) if name == "consent" else env
            services.append(spawn(name, ["-m", f"services.{name}"], ports[name], own_env, log_dir))
        wait_ready(services)
        yield Stack(bootstrap=bootstrap, slack=slack, services={p.name: p for p in services})
