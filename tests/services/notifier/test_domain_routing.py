"""The routing file: what the shipped default promises, and which mistakes are refused by name."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.notifier.domain import (
    DEFAULT_ROUTING_FILE,
    RoutingError,
    TargetKind,
    format_duration,
    load_routing,
    parse_duration,
)
from shared.events import Severity

VALID = """
agents:
  - {id: ana, name: Ana, slack_user_id: U01, phone: "+5511987654321", role: agent}
  - {id: bia, name: Bia, slack_user_id: U02, phone: "+5511987654322", role: manager}
severities:
  red: {slack_channel: "#red", policy: red}
  yellow: {slack_channel: "#yellow", policy: yellow}
policies:
  red:
    ack_timeout: 30s
    levels:
      - {after: 0s, notify: [oncall_slack, patient]}
      - {after: 60s, notify: [{role: agent, via: [sms, push]}]}
      - {after: 120s, notify: [{role: manager, via: [sms]}]}
  yellow:
    levels:
      - {after: 0s, notify: [oncall_slack]}
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0s", 0), ("90s", 90), ("15m", 900), ("4h", 14400), ("1d", 86400)],
)
def test_durations_are_read_as_written(text: str, expected: int) -> None:
    assert parse_duration(text) == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["4x", "4", "", "1.5h", "-1s", "4 h", "h"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration like 90s, 15m, 4h"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (90, "90s"), (900, "15m"), (14400, "4h"), (172800, "2d")]
)
def test_durations_are_written_back_in_the_largest_exact_unit(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text


def test_shipped_routing_follows_the_product_policy() -> None:
    routing = load_routing(DEFAULT_ROUTING_FILE.read_text(encoding="utf-8"))
    red = routing.policy_for(Severity.RED)
    assert red is not None
    plan = [(level.after, level.notify) for level in red.levels]
    assert plan[0][0] == timedelta(0)
    assert {t.kind for t in plan[0][1]} == {TargetKind.PATIENT, TargetKind.ONCALL_SLACK}
    assert plan[1][0] == timedelta(hours=4)
    assert [(t.role, t.via) for t in plan[1][1]] == [("agent", ("sms", "push"))]
    assert plan[2][0] == timedelta(hours=8)
    assert [(t.role, t.via) for t in plan[2][1]] == [("manager", ("sms",))]
    yellow = routing.policy_for(Severity.YELLOW)
    assert yellow is not None
    assert [[t.kind for t in lv.notify] for lv in yellow.levels] == [[TargetKind.ONCALL_SLACK]]


def test_routes_and_agents_are_looked_up() -> None:
    routing = load_routing(VALID)
    route = routing.route(Severity.RED)
    assert route is not None and route.slack_channel == "#red"
    assert routing.route(Severity.GREEN) is None
    agent = routing.agent_by_slack_user("U02")
    assert agent is not None and agent.id == "bia"
    assert routing.agent_by_slack_user("U99") is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "after: 60s",
            "after: 4x",
            "policies.red.levels[1].after: '4x' is not a duration like 90s, 15m, 4h",
        ),
        (
            "after: 120s",
            "after: 10s",
            "policies.red.levels[2].after: 10s is earlier than levels[1] (1m)",
        ),
        ("policy: yellow", "policy: amber", "severities.yellow.policy: unknown policy 'amber'"),
        ("role: manager}", "role: agent}", "policies.red: notifies role manager but no agent"),
        (
            "slack_user_id: U02",
            "slack_user_id: U01",
            "agents[1].slack_user_id: 'U01' is used twice",
        ),
        ("id: bia", "id: ana", "agents[1].id: 'ana' is used twice"),
        ('"+5511987654322"', '"011987654322"', "agents[1].phone: String should match pattern"),
        ("role: agent}", "role: nurse}", "agents[0].role: Input should be 'agent' or 'manager'"),
        ("[oncall_slack, patient]", "[oncall_slack, pager]", "levels[0].notify[1]: 'pager' is not"),
        ("via: [sms]", "via: [fax]", "levels[2].notify[0].via[0]: Input should be"),
        ("via: [sms]", "via: []", "levels[2].notify[0].via: list at least one"),
        ("{role: manager, via: [sms]}", "{via: [sms]}", "notify[0].role: give agent or manager"),
        ("[oncall_slack, patient]", "[patient, patient]", "levels[0].notify: lists a target twice"),
        ("[oncall_slack]", "[]", "policies.yellow.levels[0].notify: list at least one target"),
        ("ack_timeout: 30s", "ack_timeout: 0s", "policies.red.ack_timeout: must be longer than 0s"),
        ("  red: {slack", "  green: {slack", "severities.red: Field required"),
        ("    ack_timeout: 30s", "    ack_timout: 30s", "policies.red.ack_timout: Extra inputs"),
    ],
)
def test_a_bad_routing_file_is_refused_naming_the_field(old: str, new: str, message: str) -> None:
    assert old in VALID
    with pytest.raises(RoutingError) as caught:
        load_routing(VALID.replace(old, new, 1))
    assert message in str(caught.value)


@pytest.mark.parametrize("text", ["", "- a list", "agents: [", "just text"])
def test_a_file_that_is_not_a_yaml_mapping_is_refused(text: str) -> None:
    with pytest.raises(RoutingError):
        load_routing(text, source="routing.yaml")


def test_the_source_prefixes_the_message_so_the_operator_knows_which_file() -> None:
    with pytest.raises(RoutingError, match=r"^/etc/routing.yaml: policies.red.levels\[1\].after"):
        load_routing(VALID.replace("after: 60s", "after: 1w"), source="/etc/routing.yaml")
