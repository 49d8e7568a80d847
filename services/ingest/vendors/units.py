"""Translate vendor unit strings into unit strings the metric catalogue (shared/vitals.py) accepts.

The catalogue owns conversions; this table only renames spellings it does not know. The
translated unit still goes through `to_canonical` downstream, which converts and range-checks.
"""

from __future__ import annotations

import re

from services.ingest.vendors.common import PayloadError
from shared.vitals import CATALOG, Metric

# HealthKit spells glucose in mmol as a molar-mass-qualified unit, e.g. "mmol<180.1558800000541>/L"
# (HKUnit.moleUnit(with: .milli, molarMass: HKUnitMolarMassBloodGlucose) / liter). The molar mass
# inside the brackets is glucose's, so the quantity is plain mmol/L.
_MMOL_WITH_MOLAR_MASS = re.compile(r"^mmol<[0-9.]+>/[Ll]$")

_ALIASES: dict[str, str] = {
    "degF": "[degF]",  # HealthKit HKUnit.degreeFahrenheit(); the catalogue spells it the UCUM way
}


def translate(unit: str) -> str:
    """Return the catalogue spelling of a vendor unit string (unchanged if already known)."""
    stripped = unit.strip()
    if _MMOL_WITH_MOLAR_MASS.match(stripped):
        return "mmol/L"
    return _ALIASES.get(stripped, stripped)


def catalogue_unit(metric: Metric, unit: str, *, field: str) -> str:
    """Return the catalogue unit for `unit`, or raise PayloadError when it cannot measure `metric`."""
    candidate = translate(unit)
    spec = CATALOG[metric]
    if candidate not in spec.conversions:
        raise PayloadError(
            field,
            f"unit {unit!r} does not fit {metric.value}; accepted: {', '.join(spec.accepted_units())}",
        )
    return candidate


def spo2_percent(value: float) -> float:
    """Return SpO2 on the 0-100 scale; a value <= 1.0 is a fraction (HealthKit percent()) and is scaled."""
    return round(value * 100, 6) if value <= 1.0 else value
