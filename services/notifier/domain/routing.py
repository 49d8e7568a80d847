"""The routing file: on-call agents, where each severity goes, and how it escalates.

Validated up front: a bad file is refused with a message naming the field, e.g.
"policies.red.levels[1].after: '4x' is not a duration like 90s, 15m, 4h".
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationError,
    model_serializer,
    model_validator,
)

from services.notifier.domain.common import (
    E164,
    FieldError,
    PersonChannel,
    PushToken,
    Strict,
    describe_validation_error,
)
from services.notifier.errors import NotifierError
from shared.events import Severity

DEFAULT_ROUTING_FILE = Path(__file__).resolve().parent.parent / "routing.yaml"

_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


class RoutingError(NotifierError):
    """The routing file is unreadable or invalid; the message names the field."""


def parse_duration(value: object) -> timedelta:
    """Parse '90s', '15m', '4h' or '1d' (a timedelta passes through) or raise ValueError."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a duration like 90s, 15m, 4h")
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


def format_duration(value: timedelta) -> str:
    """Render a whole-second timedelta in the largest exact unit, e.g. 4h or 90s."""
    seconds = int(value.total_seconds())
    for unit, size in _UNIT_SECONDS.items():
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]
Role = Literal["agent", "manager"]
PolicyName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


class Agent(Strict):
    """A person on call: reached on Slack by user id, by SMS/WhatsApp on `phone`, or by push."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    name: str = Field(min_length=1, max_length=200)
    slack_user_id: str = Field(pattern=r"^[UW][A-Z0-9]{2,20}$")
    phone: E164
    role: Role
    push_tokens: tuple[PushToken, ...] = Field((), max_length=10)


class TargetKind(StrEnum):
    """Who a level notifies."""

    PATIENT = "patient"  # automatic response to the patient on their preferred channel
    ONCALL_SLACK = "oncall_slack"  # the severity's Slack channel
    ROLE = "role"  # every agent of a role, on the listed channels in order


class Target(Strict):
    """One recipient group of a level; written `patient`, `oncall_slack` or `{role, via}`."""

    kind: TargetKind
    role: Role | None = None
    via: tuple[PersonChannel, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str) and data in (TargetKind.PATIENT, TargetKind.ONCALL_SLACK):
            return {"kind": data}
        if isinstance(data, dict) and "kind" not in data:
            return {"kind": TargetKind.ROLE.value, **data}
        if isinstance(data, dict | Target):
            return data
        raise ValueError(
            f"{data!r} is not a target: use patient, oncall_slack or "
            "{role: agent|manager, via: [sms, push, whatsapp]}"
        )

    @model_validator(mode="after")
    def _coherent(self) -> Target:
        if self.kind is not TargetKind.ROLE:
            if self.role is not None or self.via:
                raise FieldError("role", f"{self.kind.value} takes no role or via")
            return self
        if self.role is None:
            raise FieldError("role", "give agent or manager")
        if not self.via:
            raise FieldError("via", "list at least one of sms, push, whatsapp")
        if len(set(self.via)) != len(self.via):
            raise FieldError("via", "lists a channel twice")
        return self

    @model_serializer
    def _compact(self) -> str | dict[str, Any]:
        if self.kind is TargetKind.ROLE:
            return {"role": self.role, "via": list(self.via)}
        return self.kind.value


class Level(Strict):
    """One escalation level: due `after` the alert opened, unless acknowledged by then."""

    after: Duration
    notify: tuple[Target, ...]

    @model_validator(mode="after")
    def _distinct(self) -> Level:
        # Emptiness is checked here, not with min_length, which pydantic also reports (wrongly)
        # when an item is invalid.
        if not self.notify:
            raise FieldError("notify", "list at least one target")
        if len(set(self.notify)) != len(self.notify):
            raise FieldError("notify", "lists a target twice")
        return self


class Policy(Strict):
    """How an alert climbs; copied into the alert when it opens."""

    ack_timeout: Duration | None = None
    levels: tuple[Level, ...]

    @model_validator(mode="after")
    def _coherent(self) -> Policy:
        if not self.levels:
            raise FieldError("levels", "list at least one level")
        if self.ack_timeout is not None and self.ack_timeout <= timedelta(0):
            raise FieldError("ack_timeout", "must be longer than 0s")
        for index in range(1, len(self.levels)):
            previous, level = self.levels[index - 1].after, self.levels[index].after
            if level < previous:
                raise FieldError(
                    f"levels[{index}].after",
                    f"{format_duration(level)} is earlier than levels[{index - 1}] "
                    f"({format_duration(previous)}); sort levels by after",
                )
        return self

    def roles(self) -> set[Role]:
        """Return the roles any level of this policy notifies."""
        return {t.role for lv in self.levels for t in lv.notify if t.role is not None}


class SeverityRoute(Strict):
    """Where alerts of one severity go."""

    slack_channel: str = Field(min_length=1, max_length=80)
    policy: PolicyName


class Severities(Strict):
    """Routes per severity; green is never routed (it only resolves)."""

    red: SeverityRoute
    yellow: SeverityRoute


class Routing(Strict):
    """The whole routing file."""

    agents: tuple[Agent, ...] = ()
    severities: Severities
    policies: dict[PolicyName, Policy]

    @model_validator(mode="after")
    def _references(self) -> Routing:
        if not self.policies:
            raise FieldError("policies", "define at least one policy")
        for name, route in (("red", self.severities.red), ("yellow", self.severities.yellow)):
            if route.policy not in self.policies:
                known = ", ".join(sorted(self.policies))
                raise FieldError(
                    f"severities.{name}.policy", f"unknown policy {route.policy!r}; known: {known}"
                )
        _check_unique(self.agents, "id")
        _check_unique(self.agents, "slack_user_id")
        staffed = {agent.role for agent in self.agents}
        for name, policy in self.policies.items():
            for role in sorted(policy.roles() - staffed):
                raise FieldError(f"policies.{name}", f"notifies role {role} but no agent has it")
        return self

    def route(self, severity: Severity) -> SeverityRoute | None:
        """Return the route of a severity, or None for green."""
        if severity is Severity.GREEN:
            return None
        return self.severities.red if severity is Severity.RED else self.severities.yellow

    def policy_for(self, severity: Severity) -> Policy | None:
        """Return the escalation policy of a severity, or None for green."""
        route = self.route(severity)
        return None if route is None else self.policies[route.policy]

    def agent_by_slack_user(self, slack_user_id: str) -> Agent | None:
        """Return the agent with this Slack user id, or None for anyone else."""
        return next((a for a in self.agents if a.slack_user_id == slack_user_id), None)


def _check_unique(agents: tuple[Agent, ...], attribute: str) -> None:
    seen: set[str] = set()
    for index, agent in enumerate(agents):
        value = str(getattr(agent, attribute))
        if value in seen:
            raise FieldError(f"agents[{index}].{attribute}", f"{value!r} is used twice")
        seen.add(value)


def load_routing(text: str, *, source: str | None = None) -> Routing:
    """Parse and validate a YAML routing file, or raise RoutingError naming the field."""
    prefix = f"{source}: " if source else ""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoutingError(f"{prefix}not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise RoutingError(f"{prefix}expected a mapping with agents, severities and policies")
    try:
        return Routing.model_validate(data)
    except ValidationError as exc:
        raise RoutingError(prefix + describe_validation_error(exc)) from None
