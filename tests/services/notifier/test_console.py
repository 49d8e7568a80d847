"""The console sink (no provider configured): one line per message, addresses masked."""

from __future__ import annotations

import io

from services.notifier.adapters.console import ConsoleChannelSender
from services.notifier.ports import Channel, Delivery


async def test_each_message_is_one_line_with_the_address_masked() -> None:
    out = io.StringIO()
    sms = ConsoleChannelSender(Channel.SMS, out)
    slack = ConsoleChannelSender(Channel.SLACK, out)
    await sms.send(Delivery("k1", Channel.SMS, "+5511988887777", "RED alert a-1 for pt-1"))
    post = await slack.send(Delivery("k2", Channel.SLACK, "#care-alerts", "RED alert a-1"))
    edit = await slack.send(
        Delivery("k3", Channel.SLACK, "#care-alerts", "resolved", update_ref=post.provider_ref)
    )
    lines = out.getvalue().splitlines()
    assert lines == [
        "[ALERT sms message to …77] RED alert a-1 for pt-1",
        "[ALERT slack message to #care-alerts] RED alert a-1",
        "[ALERT slack update to #care-alerts] resolved",
    ]
    assert edit.provider_ref == post.provider_ref  # an edit keeps the message's reference
