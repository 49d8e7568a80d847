"""The delivery worker against in-memory channel senders (fakes of the ChannelSender port): sends
once, retries with backoff, honours Retry-After, falls over, dead-letters, keeps Slack in order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
import structlog.testing
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from services.notifier.actions import Who, acknowledge
from services.notifier.adapters import deliveries
from services.notifier.adapters.contacts import is_disabled
from services.notifier.adapters.dispatcher import Dispatcher
from services.notifier.adapters.metrics import DeliveryMetrics
from services.notifier.adapters.outcomes import Outcomes
from services.notifier.adapters.rate_limit import ChannelPacer
from services.notifier.adapters.scheduler import Scheduler
from services.notifier.adapters.tables import outbox
from services.notifier.domain import RetryPolicy, slack_alert_message
from services.notifier.errors import PermanentDeliveryError, TransientDeliveryError
from services.notifier.handlers import Notifier
from services.notifier.ports import Channel, Delivery, Receipt
from services.notifier.settings import NotifierSettings
from shared.events import DeadLetter, Purpose
from tests.services.notifier.harness import eventually, eventually_async
from tests.services.notifier.support import (
    Clock,
    alert_event,
    alert_row,
    consent_event,
    feed,
    make_notifier,
    rows,
    set_contact,
    summary,
    timeline_kinds,
)

Script = Callable[[Delivery], Exception | None]


class FakeSender:
    """A ChannelSender that records what it accepted; `script` may refuse a delivery."""

    def __init__(self, channel: Channel, script: Script | None = None) -> None:
        self.channel = channel
        self.accepted: list[Delivery] = []
        self.script = script

    async def send(self, delivery: Delivery) -> Receipt:
        error = self.script(delivery) if self.script else None
        if error is not None:
            raise error
        self.accepted.append(delivery)
        ref = delivery.update_ref or f"C0CAREALERT:{len(self.accepted)}.000"
        return Receipt(provider_ref=ref, latency_s=0.01)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def n(tmp_path: Path, clock: Clock) -> Notifier:
    notifier = await make_notifier(f"sqlite:///{tmp_path}/n.db", clock)
    await set_contact(notifier)
    return notifier


@pytest.fixture
def senders() -> dict[Channel, FakeSender]:
    return {c: FakeSender(c) for c in (Channel.SLACK, Channel.SMS, Channel.PUSH)}


@pytest.fixture
def dispatcher(n: Notifier, clock: Clock, senders: dict[Channel, FakeSender]) -> Dispatcher:
    outcomes = Outcomes(
        policy=RetryPolicy(base=timedelta(seconds=1), cap=timedelta(seconds=8), max_attempts=3),
        ops_channel="#care-ops",
        metrics=DeliveryMetrics(CollectorRegistry()),
        rand=lambda: 1.0,
    )
    return Dispatcher(
        store=n.store,
        senders=senders,
        outcomes=outcomes,
        pacer=ChannelPacer(rate=1000, burst=100, clock=lambda: clock.now.timestamp()),
        consent=n.consent,
        render=lambda a: slack_alert_message(a.snapshot, a.last_event, dashboard_url="http://d/"),
        concurrency=8,
        claim_ttl_s=60,
        poll_s=1,
    )


async def test_each_queued_message_is_sent_once(
    n: Notifier, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    await feed(n, alert_event())
    assert await dispatcher.drain_once() == 2
    assert await dispatcher.drain_once() == 0
    (post,) = senders[Channel.SLACK].accepted
    assert post.recipient == "#care-alerts" and post.update_ref is None
    assert any(b["type"] == "actions" for b in post.slack["blocks"])  # type: ignore[index]
    (sms,) = senders[Channel.SMS].accepted
    assert sms.recipient == "+5511988887777" and "140" not in sms.text  # no value to a phone
    assert [r.status for r in await rows(n)] == ["sent", "sent"]
    assert (await alert_row(n)).slack_ref == "C0CAREALERT:1.000"
    assert (await timeline_kinds(n)).count("delivered") == 2


async def test_edits_and_replies_refer_to_their_post_once_it_is_sent(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    await feed(n, alert_event())
    clock.advance(2)
    await Scheduler(n, poll_s=1).tick()  # escalation queues update + reply of the unsent post
    await dispatcher.drain_once()
    clock.advance(1)
    await dispatcher.drain_once()
    assert {r.status for r in await rows(n)} == {"sent"}
    post, *later = senders[Channel.SLACK].accepted
    assert post.update_ref is None and post.thread_ref is None
    (update,) = [d for d in later if d.update_ref]
    (reply,) = [d for d in later if d.thread_ref]
    assert update.update_ref == reply.thread_ref == "C0CAREALERT:1.000"
    assert "Escalated to level 2" in update.text and "Escalated to level 2" in reply.text


async def test_an_update_waits_while_its_post_is_retried(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    failures = [TransientDeliveryError("503")]
    senders[Channel.SLACK].script = lambda d: failures.pop() if failures else None
    await feed(n, alert_event())
    clock.advance(2)
    await Scheduler(n, poll_s=1).tick()
    await dispatcher.drain_once()
    by_role = {r.role: r for r in await rows(n) if r.channel is Channel.SLACK}
    assert by_role["post"].status == "pending" and by_role["post"].attempts == 1
    assert by_role["update"].status == "pending" and by_role["update"].attempts == 0
    clock.advance(0.1)
    await dispatcher.drain_once()  # the post is still waiting out its backoff: so is the update
    assert senders[Channel.SLACK].accepted == []
    clock.advance(5)
    await dispatcher.drain_once()
    clock.advance(1)
    await dispatcher.drain_once()
    slack = senders[Channel.SLACK].accepted
    assert slack[0].update_ref is None and len(slack) == 3


async def test_a_transient_failure_is_retried_with_backoff(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    failures = [TransientDeliveryError("503"), TransientDeliveryError("503")]
    senders[Channel.SMS].script = lambda d: failures.pop() if failures else None
    await feed(n, alert_event())
    await dispatcher.drain_once()
    sms = (await rows(n))[1]
    assert (sms.status, sms.attempts) == ("pending", 1)
    assert sms.next_attempt_at == clock.now + timedelta(seconds=1)  # base x 2^0 (rand = 1)
    clock.advance(1)
    await dispatcher.drain_once()
    assert (await rows(n))[1].next_attempt_at == clock.now + timedelta(seconds=2)  # doubled
    clock.advance(2)
    await dispatcher.drain_once()
    assert [(r.status, r.attempts) for r in await rows(n)][1] == ("sent", 3)
    assert len(senders[Channel.SMS].accepted) == 1


async def test_retry_after_is_honoured(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    failures = [TransientDeliveryError("429", retry_after_s=30)]
    senders[Channel.SMS].script = lambda d: failures.pop() if failures else None
    await feed(n, alert_event())
    await dispatcher.drain_once()
    assert (await rows(n))[1].next_attempt_at == clock.now + timedelta(seconds=30)


async def test_a_permanent_refusal_falls_over_to_the_next_channel_at_once(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    refusal = PermanentDeliveryError("twilio refused: 21610", code="21610", disable_recipient=True)
    senders[Channel.SMS].script = lambda d: refusal if d.recipient == "+5511900000001" else None
    await feed(n, alert_event())
    await dispatcher.drain_once()
    clock.advance(2)
    await Scheduler(n, poll_s=1).tick()  # level 2: Ana by SMS, then push
    await dispatcher.drain_once()
    await dispatcher.drain_once()
    people = [r for r in await rows(n) if r.recipient_label == "ana"]
    assert [(r.channel.value, r.status) for r in people] == [("sms", "failed"), ("push", "sent")]
    assert [d.recipient for d in senders[Channel.PUSH].accepted] == ["tok-ana"]
    async with n.store.reading() as conn:
        assert await is_disabled(conn, Channel.SMS, "+5511900000001")
    assert "fallback" in await timeline_kinds(n)


async def test_every_channel_failing_dead_letters_and_tells_ops(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    senders[Channel.SMS].script = lambda d: PermanentDeliveryError("refused", code="21211")
    await feed(n, alert_event())
    await dispatcher.drain_once()
    await dispatcher.drain_once()  # the ops notice
    assert summary(await rows(n))[1:] == [
        ("post", "sms", "patient", "pt-1", "dead"),
        ("post", "slack", "ops", "#care-ops", "sent"),
    ]
    notice = senders[Channel.SLACK].accepted[-1]
    assert notice.recipient == "#care-ops" and "a-1" in notice.text
    assert "+55" not in notice.text
    async with n.store.reading() as conn:
        (payload,) = (await conn.execute(select(outbox.c.payload))).scalars().all()
    letter = DeadLetter.model_validate_json(payload)
    assert letter.reason == "delivery_failed" and "21211" in letter.detail
    assert json.loads(letter.payload)["recipient"] == "pt-1"
    assert "+55" not in letter.payload


async def test_transient_failures_use_up_attempts_then_fall_over(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    await set_contact(n, push_tokens=["tok-patient"], preferred_channels=["sms", "push"])
    senders[Channel.SMS].script = lambda d: TransientDeliveryError("down")
    await feed(n, alert_event())
    for _ in range(3):
        await dispatcher.drain_once()
        clock.advance(10)
    await dispatcher.drain_once()
    people = [(r.channel.value, r.status, r.attempts) for r in await rows(n)][1:]
    assert people == [("sms", "failed", 3), ("push", "sent", 1)]


async def test_a_slack_rate_limit_storm_uses_up_no_attempt_until_an_hour_has_passed(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    tries: list[Delivery] = []

    def rate_limited(d: Delivery) -> Exception:
        tries.append(d)
        return TransientDeliveryError("429", retry_after_s=30)

    senders[Channel.SLACK].script = rate_limited
    await feed(n, alert_event())
    for _ in range(10):  # far more 429s than NOTIFIER_MAX_ATTEMPTS (3 here)
        await dispatcher.drain_once()
        post = (await rows(n))[0]
        assert (post.status, post.attempts) == ("pending", 0)
        assert post.next_attempt_at >= clock.now + timedelta(seconds=30)  # Retry-After honoured
        clock.advance(30)
    assert len(tries) == 10 and "dead_lettered" not in await timeline_kinds(n)
    senders[Channel.SLACK].script = None
    await dispatcher.drain_once()
    assert (await rows(n))[0].status == "sent" and len(senders[Channel.SLACK].accepted) == 1


async def test_a_rate_limit_lasting_past_the_deadline_counts_again(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    senders[Channel.SMS].script = lambda d: TransientDeliveryError("429", retry_after_s=60)
    await feed(n, alert_event())
    await dispatcher.drain_once()
    assert (await rows(n))[1].attempts == 0
    clock.advance(3600)  # RetryPolicy.rate_limit_max_wait (1 h) since the send was queued
    for _ in range(3):
        await dispatcher.drain_once()
        clock.advance(60)
    sms = (await rows(n))[1]
    assert (sms.status, sms.attempts) == ("dead", 3)


async def test_a_dead_oncall_slack_post_escalates_at_once(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    revoked = PermanentDeliveryError("slack refused: token_revoked", code="token_revoked")
    senders[Channel.SLACK].script = lambda d: revoked
    await feed(n, alert_event())
    await dispatcher.drain_once()
    assert summary(await rows(n))[0] == ("post", "slack", "oncall", "#care-alerts", "dead")
    # level 2 (Ana, due at 2 s) is due now, not at 2 s: the scheduler sends it without waiting
    assert (await alert_row(n)).values()["next_wake_at"] <= clock.now
    assert await Scheduler(n, poll_s=1).tick() == 1
    await dispatcher.drain_once()
    assert [d.recipient for d in senders[Channel.SMS].accepted] == [
        "+5511988887777",  # the patient's automatic response (level 1)
        "+5511900000001",  # Ana, level 2, at t = 0
    ]
    kinds = await timeline_kinds(n)
    assert kinds.index("dead_lettered") < kinds.index("escalated_slack_failed")
    assert (
        kinds[-1] == "delivered"
        and "level_notified" in kinds[kinds.index("escalated_slack_failed") :]
    )
    assert (await alert_row(n)).snapshot.level_reached == 2


async def test_a_dead_oncall_post_of_an_acknowledged_alert_does_not_escalate(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    failures = [TransientDeliveryError("503")] * 3
    senders[Channel.SLACK].script = lambda d: failures.pop() if failures else None
    await feed(n, alert_event())
    await dispatcher.drain_once()
    await acknowledge(n, "a-1", Who(id="ana", via="api"), tenant_id=None)
    for _ in range(2):
        clock.advance(10)
        await dispatcher.drain_once()
    assert (await rows(n))[0].status == "dead"  # the on-call post
    assert "escalated_slack_failed" not in await timeline_kinds(n)
    assert (await alert_row(n)).snapshot.forced_level == 0


async def test_an_ack_not_resolved_within_ack_timeout_retriggers_and_updates_slack(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    scheduler = Scheduler(n, poll_s=1)
    await feed(n, alert_event())
    await dispatcher.drain_once()
    await acknowledge(n, "a-1", Who(id="ana", via="api"), tenant_id=None)
    await dispatcher.drain_once()
    slack = senders[Channel.SLACK].accepted
    assert len(slack) == 3  # the post, its "acknowledged" update and thread reply
    clock.advance(29)
    assert await scheduler.tick() == 0  # still within ack_timeout (30 s) of the ack
    clock.advance(1)
    assert await scheduler.tick() == 1  # the timer is the alert's next_wake_at in the database
    await dispatcher.drain_once()
    clock.advance(1)
    await dispatcher.drain_once()
    row = await alert_row(n)
    assert row.summary()["status"] == "open" and row.snapshot.acknowledged_by is None
    assert row.summary()["acknowledged_via"] is None  # the cleared ack takes its channel along
    update, reply = slack[3:]
    assert update.update_ref == "C0CAREALERT:1.000" and "Open again" in update.text
    # level 1 (the on-call channel) notified again: an @here reply under the alert
    assert reply.thread_ref == "C0CAREALERT:1.000"
    assert reply.text.startswith("<!here>") and "not resolved in time" in reply.text
    assert len(senders[Channel.SMS].accepted) == 1  # the patient's response is not repeated
    assert (await timeline_kinds(n))[-3:].count("level_retriggered") == 1


async def test_a_crash_is_logged_without_its_message_or_traceback(
    n: Notifier, clock: Clock, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    def crash(d: Delivery) -> Exception:
        # like a pydantic error on a stored contact: the message carries the input
        return ValueError(f"input_value='{d.recipient}' is not valid")

    senders[Channel.SMS].script = crash
    with structlog.testing.capture_logs() as logs:
        await feed(n, alert_event())
        await dispatcher.drain_once()
    (crashed,) = [e for e in logs if e["event"] == "delivery_crashed"]
    assert crashed["error"] == "ValueError" and crashed["where"].startswith("test_dispatcher.py:")
    assert not any("exc_info" in e or "exception" in e for e in logs)
    assert "+55" not in repr(logs)
    sms = (await rows(n))[1]
    assert (sms.status, sms.last_error) == ("pending", "transient: internal:ValueError")


async def test_a_patient_message_is_dropped_when_consent_goes_before_it_is_sent(
    n: Notifier, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    await feed(n, alert_event())
    n.consent.apply(consent_event("pt-1", Purpose.NOTIFICATIONS, False))
    await dispatcher.drain_once()
    assert senders[Channel.SMS].accepted == []
    assert [r.status for r in await rows(n)] == ["sent", "cancelled"]


async def test_an_unconfigured_channel_counts_as_a_refusal(
    n: Notifier, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    del senders[Channel.SMS]
    await feed(n, alert_event())
    await dispatcher.drain_once()
    sms = (await rows(n))[1]
    assert (sms.status, sms.last_error) == ("dead", "permanent: channel_not_configured")


async def test_sends_queued_by_an_event_are_claimed_in_its_own_commit(
    n: Notifier, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    """No claim round trip between an alert and its page, and no other instance can take it."""
    n.adopt_ttl = timedelta(seconds=60)
    n.on_commit.append(lambda alerts, token: token and dispatcher.adopt(token, alerts))
    await feed(n, alert_event())
    assert {r.status for r in await rows(n)} == {"sending"}  # written claimed
    async with n.store.reading() as conn:
        assert await deliveries.due_ids(conn, now=n.store.clock(), limit=10) == []
    assert await dispatcher.drain_once() == 2
    assert [r.status for r in await rows(n)] == ["sent", "sent"]
    assert len(senders[Channel.SLACK].accepted) == len(senders[Channel.SMS].accepted) == 1


class GatedSender(FakeSender):
    """Holds every send until `gate` opens; records how many were in flight at once."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(channel)
        self.gate = asyncio.Event()
        self.active = self.most_active = 0

    async def send(self, delivery: Delivery) -> Receipt:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await self.gate.wait()
            return await super().send(delivery)
        finally:
            self.active -= 1


async def test_a_batch_adopting_more_sends_than_slots_sends_them_all_within_the_limit(
    n: Notifier, dispatcher: Dispatcher, senders: dict[Channel, FakeSender]
) -> None:
    """A poll batch may adopt hundreds of pages: never more than `concurrency` sends at once
    (the provider and the HTTP pool see a bounded burst), and every one goes out once."""
    slack = GatedSender(Channel.SLACK)
    senders[Channel.SLACK] = slack
    n.adopt_ttl = timedelta(seconds=60)
    n.on_commit.append(lambda alerts, token: token and dispatcher.adopt(token, alerts))
    events = [alert_event(f"e-{i}", alert_id=f"a-{i}", patient=f"pt-{i}") for i in range(20)]
    await feed(n, *events)
    runner = asyncio.create_task(dispatcher.run())

    async def all_sent() -> bool:
        async with n.store.reading() as conn:
            statuses = await deliveries.statuses(conn, range(1, 21))
        return len(statuses) == 20 and {s for s, _, _ in statuses.values()} == {"sent"}

    try:
        await eventually(lambda: slack.active == 8)  # every slot taken, the rest in memory
        slack.gate.set()
        await eventually_async(all_sent)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert slack.most_active == 8  # the fixture's concurrency, never more
    assert len(slack.accepted) == 20


class MonotonicClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def released_at(
    pacer: ChannelPacer, clock: MonotonicClock, channels: list[str]
) -> list[float]:
    """When each send (in order) gets its token, the clock moved to each due time (no sleeping)."""
    times: list[float] = []
    for channel in channels:
        while (wait := await pacer.token(channel, max_wait=0.0)) > 0:
            clock.now += wait
        times.append(round(clock.now, 6))
    return times


async def test_slack_default_pacing_releases_one_message_a_second_per_channel() -> None:
    settings = NotifierSettings()
    clock = MonotonicClock()
    pacer = ChannelPacer(
        rate=settings.slack_channel_rate_per_s, burst=settings.slack_channel_burst, clock=clock
    )
    assert await released_at(pacer, clock, ["#care-alerts"] * 5) == [0, 1, 2, 3, 4]
    # a channel quiet for a minute still sends only one at once (no saved-up burst)
    clock.now += 60
    assert await released_at(pacer, clock, ["#care-alerts"] * 2) == [64, 65]


async def test_two_slack_channels_do_not_share_a_bucket() -> None:
    clock = MonotonicClock()
    pacer = ChannelPacer(rate=1.0, clock=clock)
    channels = ["#care-alerts", "#ops", "#care-alerts", "#ops"]
    assert await released_at(pacer, clock, channels) == [0, 0, 1, 1]


async def test_a_429_pauses_only_its_channel() -> None:
    clock = MonotonicClock()
    pacer = ChannelPacer(rate=1.0, clock=clock)
    pacer.pause("#care-alerts", 5.0)
    assert await released_at(pacer, clock, ["#ops", "#care-alerts", "#ops"]) == [0, 6, 6]
