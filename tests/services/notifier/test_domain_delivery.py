"""Delivery: one key per send, bounded jittered retries, channels tried in the person's order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier.domain import (
    Audience,
    Candidate,
    ContactPreferences,
    DeliveryPlan,
    FailOver,
    GiveUp,
    QuietHours,
    RetryAt,
    RetryPolicy,
    Step,
    Target,
    after_failure,
    backoff,
    counts_as_attempt,
    idempotency_key,
    load_routing,
    next_candidate,
    plan_targets,
)
from services.notifier.ports import Channel
from shared.events import Severity

NOW = datetime(2026, 11, 23, 1, 30, tzinfo=UTC)  # 22:30 in São Paulo: inside quiet hours
PHONE, WHATSAPP = "+5511987654321", "+5511912345678"
AGENTS = load_routing(
    """
agents:
  - {id: ana, name: Ana, slack_user_id: U01, phone: "+5511900000001", role: agent,
     push_tokens: [ana-tok]}
  - {id: caio, name: Caio, slack_user_id: U03, phone: "+5511900000003", role: agent}
  - {id: bia, name: Bia, slack_user_id: U02, phone: "+5511900000002", role: manager}
severities:
  red: {slack_channel: "#red", policy: p}
  yellow: {slack_channel: "#yellow", policy: p}
policies:
  p:
    levels: [{after: 0s, notify: [{role: manager, via: [sms]}]}]
"""
).agents
CONTACT = ContactPreferences(
    preferred_channels=["whatsapp", "sms", "push"],
    phone=PHONE,
    whatsapp=WHATSAPP,
    push_tokens=["tok-1", "tok-2"],
    language="en",
    quiet_hours=QuietHours(start="22:00", end="07:00", timezone="America/Sao_Paulo"),
)


def step(*targets: Any, severity: Severity = Severity.RED) -> Step:
    return Step(
        alert_id="a-1",
        patient_id="pt-77",
        severity=severity,
        slack_channel="#red",
        level=1,
        of_levels=3,
        targets=tuple(Target.model_validate(t) for t in targets),
        due_at=NOW,
    )


def plans(s: Step, **kwargs: Any) -> list[DeliveryPlan]:
    options: dict[str, Any] = {
        "contact": CONTACT,
        "agents": AGENTS,
        "notifications_allowed": True,
        "now": NOW,
        **kwargs,
    }
    return plan_targets(s, **options)


def route(plan: DeliveryPlan) -> list[tuple[str, tuple[str, ...]]]:
    return [(c.channel.value, c.addresses) for c in plan.candidates]


def test_the_idempotency_key_is_stable_short_and_hides_the_address() -> None:
    key = idempotency_key("a-1", "level1", channel=Channel.SMS, recipient=PHONE)
    assert key == idempotency_key("a-1", "level1", channel=Channel.SMS, recipient=PHONE)
    assert len(key) == 32 and int(key, 16) >= 0
    assert PHONE not in key and "a-1" not in key


@pytest.mark.parametrize(
    ("alert_id", "event", "channel", "recipient"),
    [
        ("a-2", "level1", Channel.SMS, PHONE),
        ("a-1", "level2", Channel.SMS, PHONE),
        ("a-1", "level1", Channel.WHATSAPP, PHONE),
        ("a-1", "level1", Channel.SMS, WHATSAPP),
        ("a-1l", "evel1", Channel.SMS, PHONE),  # no ambiguity from plain concatenation
    ],
)
def test_any_different_send_gets_a_different_key(
    alert_id: str, event: str, channel: Channel, recipient: str
) -> None:
    base = idempotency_key("a-1", "level1", channel=Channel.SMS, recipient=PHONE)
    assert idempotency_key(alert_id, event, channel=channel, recipient=recipient) != base


@pytest.mark.parametrize(
    ("attempt", "rand", "retry_after", "seconds"),
    [
        (1, 1.0, None, 2),
        (2, 1.0, None, 4),
        (3, 1.0, None, 8),
        (3, 0.5, None, 4),  # full jitter: anywhere between 0 and the ceiling
        (1, 0.0, None, 0),
        (7, 1.0, None, 60),  # capped
        (10_000, 1.0, None, 60),  # no overflow however many attempts
        (1, 0.1, 30, 30),  # the provider's Retry-After is a floor
        (7, 1.0, 300, 300),  # even beyond the cap
    ],
)
def test_backoff_is_exponential_with_full_jitter_and_capped(
    attempt: int, rand: float, retry_after: int | None, seconds: float
) -> None:
    wait = backoff(
        attempt,
        base=timedelta(seconds=2),
        cap=timedelta(seconds=60),
        rand=rand,
        retry_after=None if retry_after is None else timedelta(seconds=retry_after),
    )
    assert wait == timedelta(seconds=seconds)


@pytest.mark.parametrize(("attempt", "rand"), [(0, 0.5), (1, -0.1), (1, 1.5)])
def test_backoff_refuses_meaningless_input(attempt: int, rand: float) -> None:
    with pytest.raises(ValueError):
        backoff(attempt, base=timedelta(seconds=1), cap=timedelta(seconds=10), rand=rand)


def test_the_patient_is_tried_in_their_order_with_every_device_and_their_language() -> None:
    (plan,) = plans(step("patient"))
    assert (plan.audience, plan.recipient, plan.language) == (Audience.PATIENT, "pt-77", "en")
    assert route(plan) == [
        ("whatsapp", (WHATSAPP,)),
        ("sms", (PHONE,)),
        ("push", ("tok-1", "tok-2")),
    ]


def test_dead_addresses_are_skipped() -> None:
    disabled = {(Channel.SMS, PHONE), (Channel.PUSH, "tok-1")}
    (plan,) = plans(step("patient"), disabled=disabled)
    assert route(plan) == [("whatsapp", (WHATSAPP,)), ("push", ("tok-2",))]


def test_a_patient_without_notifications_consent_is_never_planned() -> None:
    result = plans(step("oncall_slack", "patient"), notifications_allowed=False)
    assert [p.audience for p in result] == [Audience.ONCALL_SLACK]


def test_a_patient_without_contact_data_gets_an_empty_plan_so_the_miss_is_recorded() -> None:
    (plan,) = plans(step("patient"), contact=None)
    assert (plan.candidates, plan.language, next_candidate(plan, ())) == ((), "pt-BR", None)


@pytest.mark.parametrize(
    ("severity", "now", "not_before"),
    [
        # Red: the automatic response goes out even at night.
        (Severity.RED, NOW, NOW),
        # Yellow: informational, waits for 07:00 in São Paulo (10:00 UTC).
        (Severity.YELLOW, NOW, datetime(2026, 11, 23, 10, 0, tzinfo=UTC)),
        (Severity.YELLOW, NOW + timedelta(hours=12), NOW + timedelta(hours=12)),
    ],
)
def test_quiet_hours_hold_back_only_what_is_not_red(
    severity: Severity, now: datetime, not_before: datetime
) -> None:
    (plan,) = plans(step("patient", severity=severity), now=now)
    assert plan.not_before == not_before


def test_agents_of_the_role_are_tried_on_the_listed_channels_in_order() -> None:
    result = plans(step({"role": "agent", "via": ["push", "whatsapp", "sms"]}))
    assert [(p.audience, p.recipient) for p in result] == [
        (Audience.AGENT, "ana"),
        (Audience.AGENT, "caio"),
    ]
    assert route(result[0]) == [
        ("push", ("ana-tok",)),
        ("whatsapp", ("+5511900000001",)),
        ("sms", ("+5511900000001",)),
    ]
    assert route(result[1]) == [("whatsapp", ("+5511900000003",)), ("sms", ("+5511900000003",))]
    assert all(p.not_before == NOW for p in result)  # on call: no quiet hours


def test_the_oncall_slack_target_posts_to_the_severitys_channel() -> None:
    (plan,) = plans(step("oncall_slack"))
    assert (plan.audience, route(plan)) == (Audience.ONCALL_SLACK, [("slack", ("#red",))])


def test_plan_keys_are_per_address_and_per_step() -> None:
    (plan,) = plans(step("patient"))
    keys = {plan.key(c.channel, a) for c in plan.candidates for a in c.addresses}
    assert len(keys) == 4
    assert plan.key(Channel.SMS, PHONE) == idempotency_key(
        "a-1", "red.level1", channel=Channel.SMS, recipient=PHONE
    )


@pytest.mark.parametrize(
    ("failed", "expected"),
    [(set(), "whatsapp"), ({Channel.WHATSAPP}, "sms"), ({Channel.WHATSAPP, Channel.SMS}, "push")],
)
def test_next_candidate_falls_back_in_order(failed: set[Channel], expected: str) -> None:
    (plan,) = plans(step("patient"))
    candidate = next_candidate(plan, failed)
    assert candidate is not None and candidate.channel.value == expected


POLICY = RetryPolicy(base=timedelta(seconds=2), cap=timedelta(seconds=60), max_attempts=3)


@pytest.mark.parametrize(
    ("channel", "attempt", "permanent", "failed_before", "expected"),
    [
        (Channel.WHATSAPP, 1, False, (), RetryAt(NOW + timedelta(seconds=1))),
        (Channel.WHATSAPP, 2, False, (), RetryAt(NOW + timedelta(seconds=2))),
        (Channel.WHATSAPP, 3, False, (), FailOver(Candidate(Channel.SMS, (PHONE,)))),
        (Channel.WHATSAPP, 1, True, (), FailOver(Candidate(Channel.SMS, (PHONE,)))),
        (Channel.SMS, 1, True, (Channel.WHATSAPP,), FailOver(Candidate(Channel.PUSH, ("tok-1",)))),
        (Channel.PUSH, 1, True, (Channel.WHATSAPP, Channel.SMS), GiveUp),
    ],
)
def test_after_a_failure_retry_then_fail_over_then_give_up(
    channel: Channel,
    attempt: int,
    permanent: bool,
    failed_before: tuple[Channel, ...],
    expected: object,
) -> None:
    (plan,) = plans(step("patient"), disabled={(Channel.PUSH, "tok-2")})
    outcome = after_failure(
        plan,
        channel=channel,
        attempt=attempt,
        permanent=permanent,
        failed_before=failed_before,
        policy=POLICY,
        rand=0.5,
        now=NOW,
    )
    if expected is GiveUp:
        assert isinstance(outcome, GiveUp)
    else:
        assert outcome == expected


def test_a_retry_honours_the_providers_retry_after() -> None:
    (plan,) = plans(step("patient"))
    outcome = after_failure(
        plan,
        channel=Channel.WHATSAPP,
        attempt=1,
        permanent=False,
        failed_before=(),
        policy=POLICY,
        rand=0.5,
        now=NOW,
        retry_after=timedelta(seconds=90),
    )
    assert outcome == RetryAt(NOW + timedelta(seconds=90))


@pytest.mark.parametrize(
    ("retry_after", "waited", "counts"),
    [
        (None, timedelta(0), True),  # a plain transient failure always counts
        (timedelta(seconds=5), timedelta(0), False),  # a rate limit does not
        (timedelta(seconds=5), timedelta(minutes=59), False),
        (timedelta(seconds=5), timedelta(hours=1), True),  # ... until it has lasted too long
        (timedelta(seconds=5), None, True),
    ],
)
def test_a_rate_limit_uses_up_no_attempt_for_an_hour(
    retry_after: timedelta | None, waited: timedelta | None, counts: bool
) -> None:
    policy = RetryPolicy(max_attempts=3)
    assert counts_as_attempt(retry_after=retry_after, waited=waited, policy=policy) is counts


def test_an_uncounted_rate_limit_retries_even_with_no_attempts_left() -> None:
    (plan,) = plans(step("patient"))
    outcome = after_failure(
        plan,
        channel=Channel.WHATSAPP,
        attempt=POLICY.max_attempts,
        permanent=False,
        failed_before=(),
        policy=POLICY,
        rand=0.0,
        now=NOW,
        retry_after=timedelta(seconds=60),
        counted=False,
    )
    assert outcome == RetryAt(NOW + timedelta(seconds=60))
