"""Delivery planning: who gets a step, on which channels in which order, retries and fallback."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from services.notifier.domain.common import (
    DEFAULT_LANGUAGE,
    Language,
    PersonChannel,
    person_channel,
)
from services.notifier.domain.contact import ContactPreferences, quiet_hours_end
from services.notifier.domain.escalation import Step
from services.notifier.domain.routing import Agent, Target, TargetKind
from services.notifier.ports import Channel
from shared.events import Severity

_MAX_EXPONENT = 32  # 2**32 x base already exceeds any sensible cap; avoids float overflow


class Audience(StrEnum):
    """Whom a plan reaches, which decides the message template."""

    PATIENT = "patient"
    ONCALL_SLACK = "oncall_slack"
    AGENT = "agent"


@dataclass(frozen=True)
class Candidate:
    """One channel to try and its addresses (several push tokens: one send per device)."""

    channel: Channel
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class DeliveryPlan:
    """One recipient of a step: channels in the order to try, and not before when."""

    alert_id: str
    event: str
    audience: Audience
    recipient: str  # patient id, agent id or Slack channel: who, never a phone number
    candidates: tuple[Candidate, ...]
    not_before: datetime
    language: Language | None = None  # patient plans only; agent and Slack texts are English

    def key(self, channel: Channel, address: str) -> str:
        """Return the idempotency key of the send of this plan to one address."""
        return idempotency_key(self.alert_id, self.event, channel=channel, recipient=address)


@dataclass(frozen=True)
class RetryPolicy:
    """Per-channel retries: exponential backoff with full jitter, then fail over."""

    base: timedelta = timedelta(seconds=2)
    cap: timedelta = timedelta(minutes=5)
    max_attempts: int = 5
    # A provider that asks to wait (429 + Retry-After) uses up no attempt for this long.
    rate_limit_max_wait: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class RetryAt:
    """Try the same channel again at `at`."""

    at: datetime


@dataclass(frozen=True)
class FailOver:
    """Give up on the failed channel and try this one now."""

    candidate: Candidate


@dataclass(frozen=True)
class GiveUp:
    """Every channel failed: dead-letter the send and alert on the notifier's own failure."""

    reason: str


def idempotency_key(alert_id: str, event: str, *, channel: Channel, recipient: str) -> str:
    """Return a stable 32-hex key for one send; hashed, so it never reveals the address."""
    raw = "\x1f".join((alert_id, event, channel.value, recipient))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def backoff(
    attempt: int,
    *,
    base: timedelta,
    cap: timedelta,
    rand: float,
    retry_after: timedelta | None = None,
) -> timedelta:
    """Return the wait after the `attempt`-th failure (1-based): rand x min(cap, base x 2^(n-1)).

    A provider's Retry-After is a floor, honoured even beyond the cap.
    """
    if attempt < 1:
        raise ValueError("attempt counts failures and starts at 1")
    if not 0.0 <= rand <= 1.0:
        raise ValueError("rand must lie in [0, 1]")
    ceiling = min(
        cap.total_seconds(), base.total_seconds() * 2.0 ** min(attempt - 1, _MAX_EXPONENT)
    )
    wait = timedelta(seconds=rand * ceiling)
    return max(wait, retry_after) if retry_after is not None else wait


def counts_as_attempt(
    *, retry_after: timedelta | None, waited: timedelta | None, policy: RetryPolicy
) -> bool:
    """Return whether a transient failure uses up an attempt.

    A provider that said when to come back (429 + Retry-After: Slack, Twilio 20429, FCM
    QUOTA_EXCEEDED) is rate limiting, not failing: a storm of those must not exhaust the attempts
    of a red alert's page. They are bounded by time instead: once the send has `waited` (since it
    was queued) the policy's rate_limit_max_wait, they count again. Unknown `waited` counts.
    """
    if retry_after is None or waited is None:
        return True
    return waited >= policy.rate_limit_max_wait


def after_failure(
    plan: DeliveryPlan,
    *,
    channel: Channel,
    attempt: int,
    permanent: bool,
    failed_before: Collection[Channel],
    policy: RetryPolicy,
    rand: float,
    now: datetime,
    retry_after: timedelta | None = None,
    counted: bool = True,
) -> RetryAt | FailOver | GiveUp:
    """Decide what follows a failed send: retry (transient, attempts left), fail over, or give up.

    `attempt` counts the failures that used up an attempt; `counted=False` (a rate limit, see
    counts_as_attempt) always retries, no sooner than the provider's Retry-After.
    """
    if not permanent and (not counted or attempt < policy.max_attempts):
        wait = backoff(
            max(1, attempt), base=policy.base, cap=policy.cap, rand=rand, retry_after=retry_after
        )
        return RetryAt(at=now + wait)
    candidate = next_candidate(plan, {*failed_before, channel})
    if candidate is not None:
        return FailOver(candidate=candidate)
    return GiveUp(reason=f"all channels failed for {plan.audience.value} {plan.event}")


def next_candidate(plan: DeliveryPlan, failed_permanently: Collection[Channel]) -> Candidate | None:
    """Return the first channel of the plan not yet failed for good, or None when none is left."""
    return next((c for c in plan.candidates if c.channel not in failed_permanently), None)


def plan_targets(
    step: Step,
    *,
    contact: ContactPreferences | None,
    agents: Iterable[Agent],
    notifications_allowed: bool,
    now: datetime,
    disabled: Collection[tuple[Channel, str]] = (),
) -> list[DeliveryPlan]:
    """Turn a step's targets into one plan per recipient, channels in the order to try.

    `disabled`: (channel, address) pairs known dead (opted-out number, unregistered token).
    A patient without `notifications` consent gets no plan at all; one without usable contact data
    gets a plan without candidates, so the miss is recorded rather than silent.
    """
    plans: list[DeliveryPlan] = []
    for target in step.targets:
        if target.kind is TargetKind.ONCALL_SLACK:
            plans.append(_slack_plan(step, now=now))
        elif target.kind is TargetKind.PATIENT and notifications_allowed:
            plans.append(_patient_plan(step, contact=contact, now=now, disabled=disabled))
        elif target.kind is TargetKind.ROLE:
            plans.extend(_agent_plans(step, target, agents=agents, now=now, disabled=disabled))
    return plans


def _slack_plan(step: Step, *, now: datetime) -> DeliveryPlan:
    return DeliveryPlan(
        alert_id=step.alert_id,
        event=step.event,
        audience=Audience.ONCALL_SLACK,
        recipient=step.slack_channel,
        candidates=(Candidate(Channel.SLACK, (step.slack_channel,)),),
        not_before=now,
    )


def _patient_plan(
    step: Step,
    *,
    contact: ContactPreferences | None,
    now: datetime,
    disabled: Collection[tuple[Channel, str]],
) -> DeliveryPlan:
    candidates: list[Candidate] = []
    not_before, language = now, DEFAULT_LANGUAGE
    if contact is not None:
        language = contact.language
        for name in contact.preferred_channels:
            addresses = _patient_addresses(contact, name)
            candidates.extend(_candidate(person_channel(name), addresses, disabled=disabled))
        # Decision: the automatic response to a RED alert ignores quiet hours (it tells the patient
        # that the team is on it and how to reach SAMU); anything milder waits for the window end.
        if step.severity is not Severity.RED:
            not_before = quiet_hours_end(contact, now) or now
    return DeliveryPlan(
        alert_id=step.alert_id,
        event=step.event,
        audience=Audience.PATIENT,
        recipient=step.patient_id,
        candidates=tuple(candidates),
        not_before=not_before,
        language=language,
    )


def _patient_addresses(contact: ContactPreferences, channel: PersonChannel) -> list[str | None]:
    if channel == "push":
        return list(contact.push_tokens)
    return [contact.phone if channel == "sms" else contact.whatsapp]


def _agent_plans(
    step: Step,
    target: Target,
    *,
    agents: Iterable[Agent],
    now: datetime,
    disabled: Collection[tuple[Channel, str]],
) -> list[DeliveryPlan]:
    plans: list[DeliveryPlan] = []
    for agent in agents:
        if agent.role != target.role:
            continue
        candidates: list[Candidate] = []
        for name in target.via:
            # WhatsApp reaches an agent on the same number as SMS.
            addresses = list(agent.push_tokens) if name == "push" else [agent.phone]
            candidates.extend(_candidate(person_channel(name), addresses, disabled=disabled))
        plans.append(
            DeliveryPlan(
                alert_id=step.alert_id,
                event=step.event,
                audience=Audience.AGENT,
                recipient=agent.id,
                candidates=tuple(candidates),
                not_before=now,
            )
        )
    return plans


def _candidate(
    channel: Channel, addresses: Iterable[str | None], *, disabled: Collection[tuple[Channel, str]]
) -> list[Candidate]:
    usable = tuple(a for a in addresses if a and (channel, a) not in disabled)
    return [Candidate(channel, usable)] if usable else []
