"""Pure rule evaluation: a patient's state and a reading in, the new state and alert events out.

No I/O besides reading the rule file, no logging, no clock: time is always a parameter.

- ruleset: the versioned YAML rule set and its validation (`load_rule_set`, `RuleSetError`)
- thresholds: per-patient bands (`PatientThresholds`, `parse_patient_thresholds`)
- engine: `evaluate` (per reading) and `classify` (per value)
- gaps: `check_gaps` (technical "no data" alert) and `close_on_consent_revoked`
- state: `PatientState` with a compact versioned JSON round trip
- news2: NEWS2 parameter scores
"""

from services.rules.domain.bands import Band
from services.rules.domain.engine import UnsupportedReadingError, classify, evaluate
from services.rules.domain.gaps import check_gaps, close_on_consent_revoked
from services.rules.domain.news2 import NEWS2_METRICS, news2_score
from services.rules.domain.ruleset import (
    DEFAULT_RULES_FILE,
    Clear,
    DataGap,
    MetricRule,
    News2Rule,
    RuleSet,
    RuleSetError,
    Sustain,
    load_rule_set,
    parse_rule_set,
)
from services.rules.domain.state import (
    STATE_FORMAT,
    Episode,
    PatientState,
    StateFormatError,
    TrackState,
)
from services.rules.domain.thresholds import (
    MetricBands,
    PatientThresholds,
    ThresholdError,
    check_patient_thresholds,
    parse_patient_thresholds,
)

__all__ = [
    "DEFAULT_RULES_FILE",
    "NEWS2_METRICS",
    "STATE_FORMAT",
    "Band",
    "Clear",
    "DataGap",
    "Episode",
    "MetricBands",
    "MetricRule",
    "News2Rule",
    "PatientState",
    "PatientThresholds",
    "RuleSet",
    "RuleSetError",
    "StateFormatError",
    "Sustain",
    "ThresholdError",
    "TrackState",
    "UnsupportedReadingError",
    "check_gaps",
    "check_patient_thresholds",
    "classify",
    "close_on_consent_revoked",
    "evaluate",
    "load_rule_set",
    "news2_score",
    "parse_patient_thresholds",
    "parse_rule_set",
]
