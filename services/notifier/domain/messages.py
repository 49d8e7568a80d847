"""Texts for people's phones: patient templates (pt-BR, en) and on-call agents' SMS/push.

Patient texts are fixed templates without placeholders: no reading, value, metric or diagnosis can
reach an SMS, a WhatsApp message or a lock screen. They are calm, say the team is on it, and say
where to turn in an emergency (SAMU 192 in Brazil). Agent texts carry the pseudonymous patient
id, severity, metric name and alert id, and a dashboard link; never a value, a name or a phone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.notifier.domain.common import DEFAULT_LANGUAGE, Language
from services.notifier.domain.escalation import AlertSnapshot
from shared.events import Severity


class PatientMessageKind(StrEnum):
    """Which patient template to send."""

    RED_ALERT = "red_alert"  # the automatic response to a red alert
    YELLOW_ALERT = "yellow_alert"  # informational; waits for the end of quiet hours
    RESOLVED = "resolved"  # the alert the patient was told about has been closed


@dataclass(frozen=True)
class Message:
    """A text for a phone: `title` for push notifications, `body` for every channel."""

    title: str
    body: str


_SAMU = "Se você se sentir mal, ligue 192 (SAMU)."
_EMERGENCY = "If you feel unwell, call your local emergency number."

PATIENT_TEMPLATES: dict[Language, dict[PatientMessageKind, Message]] = {
    "pt-BR": {
        PatientMessageKind.RED_ALERT: Message(
            title="Aviso da sua equipe de cuidado",
            body="Recebemos uma medição sua que precisa de atenção. Nossa equipe já foi avisada "
            f"e vai entrar em contato com você. {_SAMU}",
        ),
        PatientMessageKind.YELLOW_ALERT: Message(
            title="Aviso da sua equipe de cuidado",
            body="Recebemos uma medição sua que a nossa equipe vai revisar. Você não precisa "
            f"fazer nada agora. {_SAMU}",
        ),
        PatientMessageKind.RESOLVED: Message(
            title="Aviso encerrado",
            body="O aviso sobre a sua medição foi encerrado. Continue usando o seu dispositivo "
            f"normalmente. {_SAMU}",
        ),
    },
    "en": {
        PatientMessageKind.RED_ALERT: Message(
            title="A message from your care team",
            body="We received a reading of yours that needs attention. Our care team has been "
            f"notified and will contact you. {_EMERGENCY}",
        ),
        PatientMessageKind.YELLOW_ALERT: Message(
            title="A message from your care team",
            body="We received a reading of yours that our care team will review. You don't need "
            f"to do anything right now. {_EMERGENCY}",
        ),
        PatientMessageKind.RESOLVED: Message(
            title="Notice closed",
            body="The notice about your reading has been closed. Keep using your device as "
            f"usual. {_EMERGENCY}",
        ),
    },
}


def patient_alert_kind(severity: Severity) -> PatientMessageKind:
    """Pick the patient template of an alert: red gets the automatic response, else informational."""
    if severity is Severity.RED:
        return PatientMessageKind.RED_ALERT
    return PatientMessageKind.YELLOW_ALERT


def patient_message(kind: PatientMessageKind, language: Language | None = None) -> Message:
    """Return a patient template in the patient's language (pt-BR when unset)."""
    return PATIENT_TEMPLATES[language or DEFAULT_LANGUAGE][kind]


def agent_message(
    alert: AlertSnapshot, *, level: int, dashboard_url: str, reminder: bool = False
) -> Message:
    """Build the SMS/WhatsApp/push text to an on-call agent or manager: ids and links only."""
    severity = alert.severity.value.upper()
    prefix = "Reminder: " if reminder else ""
    levels = len(alert.policy.levels)
    return Message(
        title=f"{prefix}{severity} alert, level {level} of {levels}",
        body=(
            f"{prefix}{severity} alert {alert.alert_id} not acknowledged: {alert.subject}, "
            f"patient {alert.patient_id}. Level {level} of {levels}. {dashboard_url}"
        ),
    )
