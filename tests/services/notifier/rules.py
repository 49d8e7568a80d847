"""A rule reference as the rules service puts it in alert events (the notifier only reads it)."""

from shared.events import RuleRef

HEART_RATE_HIGH = RuleRef(
    rule_id="heart_rate",
    version="2026.11-1",
    description="Heart rate above 120 /min",
    threshold="> 120 /min",
)
