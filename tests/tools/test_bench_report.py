"""Phase C's section of the bench report: the notifier's chat.update row and its count."""

from __future__ import annotations

from tests.fakes.slack import SlackCall
from tools.bench_report import render_revocations
from tools.bench_revoke import Revocation, RevokeRun

UPDATE_ROW = (
    "| revoke 200 → notifier's chat.update at the fake Slack, the fake's receipt time "
    "(same monotonic clock) |"
)


def phase_c_run() -> RevokeRun:
    """Two patients paged before their revoke; only the first one's message was updated."""
    run = RevokeRun(patients=2)
    for i, patient_id in enumerate(("pt-a", "pt-b")):
        run.revocations.append(Revocation(patient_id, 10.0 + i, 1e9 + i, 0.004, 10.05 + i, (0.01,)))
        run.opened_before_revoke.add(patient_id)
        run.slack_posts[patient_id] = SlackCall(received_at=9.0 + i, body={}, ts=f"1.00000{i}")
    run.slack_update_s.append(0.0423)
    run.failures["no chat.update cancelling the Slack message"] += 1
    return run


def test_the_update_row_gives_the_revoke_to_update_percentiles() -> None:
    lines = render_revocations(phase_c_run())
    (row,) = [line for line in lines if line.startswith(UPDATE_ROW)]
    assert row == f"{UPDATE_ROW} 42.3 ms | 42.3 ms | 42.3 ms | 42.3 ms |"
    table = [line for line in lines if line.startswith("| revoke 200 → ")]
    assert table[-1] == row  # after the ingest and rules rows, before grant and POST timings


def test_the_summary_counts_messages_never_updated() -> None:
    lines = render_revocations(phase_c_run())
    (summary,) = [line for line in lines if "chat.update cancelling" in line and "- the" in line]
    assert "1/2 messages" in summary and "never seen within 10 s: 1" in summary
    assert "no chat.update cancelling the Slack message: 1" in lines[2]


def test_no_update_gives_an_empty_row_not_a_crash() -> None:
    run = RevokeRun(patients=1)
    (row,) = [line for line in render_revocations(run) if line.startswith(UPDATE_ROW)]
    assert row == f"{UPDATE_ROW} nan ms | nan ms | nan ms | nan ms |"
