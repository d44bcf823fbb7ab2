"""Alerts: findings of a closed window turned into firing and resolved alerts.

An alert is identified by its labels (alertname, model, detector, subject, statistic:
the check, as one feature has several) and their fingerprint. It fires when its subject
breaches, and resolves on the next conclusive clean window. The findings of one model
and window travel as one notification.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from streamwatch.detectors import Finding, Severity
from streamwatch.windows import WindowBounds

Status = Literal["firing", "resolved"]
# Alertmanager's "not ended" timestamp for firing alerts.
_ZERO_TIME = "0001-01-01T00:00:00Z"


def fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex-digit id of a label set (order does not matter)."""
    canonical = msgspec.json.encode(sorted(labels.items()))
    return hashlib.sha256(canonical).hexdigest()[:16]


def isoformat(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert record, shaped like Alertmanager's, plus value, threshold and window."""

    status: Status
    labels: dict[str, str]
    summary: str
    description: str
    starts_at: float
    ends_at: float | None
    fingerprint: str
    value: float
    threshold: float
    window: WindowBounds
    repeated: bool = False  # still firing, sent again after the repeat interval

    @property
    def severity(self) -> Severity:
        return Severity(self.labels["severity"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": self.labels,
            "annotations": {"summary": self.summary, "description": self.description},
            "startsAt": isoformat(self.starts_at),
            "endsAt": _ZERO_TIME if self.ends_at is None else isoformat(self.ends_at),
            "fingerprint": self.fingerprint,
            "value": self.value,
            "threshold": self.threshold,
            "window": {"start": isoformat(self.window.start), "end": isoformat(self.window.end)},
            "repeated": self.repeated,
        }


@dataclass(frozen=True, slots=True)
class Notification:
    """The alerts of one model and window, sent together; ``id`` is stable across retries."""

    id: str
    model: str
    window: WindowBounds
    alerts: tuple[Alert, ...]

    @property
    def status(self) -> Status:
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    def at_least(self, minimum: Severity) -> Notification | None:
        """This notification restricted to alerts of ``minimum`` severity or worse."""
        kept = tuple(a for a in self.alerts if a.severity.rank >= minimum.rank)
        return replace(self, alerts=kept) if kept else None

    def to_dict(self, receiver: str) -> dict[str, Any]:
        """Alertmanager's webhook payload (version 4) with the notification id."""
        common = set.intersection(*(set(a.labels.items()) for a in self.alerts))
        return {
            "version": "4",
            "id": self.id,
            "groupKey": f'{{}}:{{model="{self.model}"}}',
            "status": self.status,
            "receiver": receiver,
            "groupLabels": {"model": self.model},
            "commonLabels": dict(sorted(common)),
            "commonAnnotations": {},
            "alerts": [a.to_dict() for a in self.alerts],
        }


@dataclass(slots=True)
class _Active:
    starts_at: float
    severity: Severity


class AlertPolicy:
    """Which findings start, escalate or end an alert; remembers what is firing."""

    def __init__(self) -> None:
        self.active: dict[str, _Active] = {}

    def snapshot(self) -> dict[str, Any]:
        return {key: [a.starts_at, a.severity.value] for key, a in self.active.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.active = {key: _Active(float(s), Severity(v)) for key, (s, v) in state.items()}

    def observe(
        self, model: str, window: WindowBounds, findings: Iterable[Finding]
    ) -> Notification | None:
        alerts = [a for f in findings if (a := self._observe(f)) is not None]
        if not alerts:
            return None
        return Notification(_notification_id(model, window, alerts), model, window, tuple(alerts))

    def _observe(self, finding: Finding) -> Alert | None:
        labels = {
            "alertname": _alertname(finding.detector),
            "model": finding.model,
            "detector": finding.detector,
            "subject": finding.subject,
            "statistic": finding.statistic,
        }
        key = fingerprint(labels)
        active = self.active.get(key)
        if finding.severity is Severity.OK:
            if active is None:
                return None
            del self.active[key]
            return _alert("resolved", labels, key, finding, active.severity, active.starts_at)
        if active is not None and finding.severity.rank <= active.severity.rank:
            return None  # still firing, no worse than announced: nothing new to say
        starts_at = active.starts_at if active else finding.window.end
        self.active[key] = _Active(starts_at, finding.severity)
        return _alert("firing", labels, key, finding, finding.severity, starts_at)


def _alert(
    status: Status,
    labels: dict[str, str],
    key: str,
    finding: Finding,
    severity: Severity,
    starts_at: float,
) -> Alert:
    what = f"{finding.detector.replace('_', ' ')} on {finding.subject} of {finding.model}"
    summary = f"{severity.value}: {what}" if status == "firing" else f"resolved: {what}"
    return Alert(
        status=status,
        labels={**labels, "severity": severity.value},
        summary=summary,
        description=finding.explanation,
        starts_at=starts_at,
        ends_at=finding.window.end if status == "resolved" else None,
        fingerprint=key,
        value=finding.value,
        threshold=finding.threshold,
        window=finding.window,
    )


def _alertname(detector: str) -> str:
    return "".join(part.capitalize() for part in detector.split("_"))


def _notification_id(model: str, window: WindowBounds, alerts: list[Alert]) -> str:
    # Derived from content, so re-processing the same window yields the same id.
    parts = [model, window.start, window.end, sorted((a.fingerprint, a.status) for a in alerts)]
    return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()[:32]
