"""Alerts: findings of closed windows turned into firing, repeated and resolved alerts.

An alert is identified by its sorted labels (the configured extra labels, alertname,
model, detector, subject, statistic: the check, as one feature has several) and their
fingerprint. Counting conclusive windows only (a finding was made), it fires when
``fire_after`` of the last ``of_last`` breach, is sent again when it escalates or
every ``repeat_interval`` while it still breaches, and resolves after
``resolve_after`` clean windows in a row. A critical alert inhibits the warnings that
share its ``ALERTS__INHIBIT_EQUAL`` labels (by default model, detector and subject, as
an Alertmanager inhibit rule with ``equal``), so a critical drift of one feature does
not hide a warning on another. The alerts of one model and window travel as one
notification.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from streamwatch.config import AlertSettings
from streamwatch.detectors import Finding, Severity, registry
from streamwatch.windows import WindowBounds

Status = Literal["firing", "resolved"]
# Alertmanager's "not ended" timestamp for firing alerts.
_ZERO_TIME = "0001-01-01T00:00:00Z"


def fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex-digit id of a label set (order does not matter)."""
    canonical = msgspec.json.encode(sorted(labels.items()))
    return hashlib.sha256(canonical).hexdigest()[:16]


def alias(name: str) -> str:
    """What a redacted feature is called in alerts: stable, and not the name."""
    return "redacted-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def isoformat(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat().replace("+00:00", "Z")


def report_link(base_url: str, model: str, window: WindowBounds) -> str:
    """The daemon's report page of one model, at one window."""
    query = urllib.parse.urlencode({"model": model, "window": isoformat(window.start)})
    return f"{base_url.rstrip('/')}/report?{query}"


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
    link: str | None = None  # the report of this model and window, with REPORT__BASE_URL

    @property
    def status(self) -> Status:
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    def look_at(self) -> str:
        """One line saying where the evidence is (in the report) for these alerts."""
        subjects: dict[str, list[str]] = {}
        for a in self.alerts:
            subjects.setdefault(a.labels["detector"], []).append(a.labels["subject"])
        # Where the evidence of an alert is (the report has each of these), by detector.
        parts = [
            (registry.look_at(d) or "{detector} of {subjects}").format(
                detector=d.replace("_", " "), subjects=", ".join(dict.fromkeys(names))
            )
            for d, names in sorted(subjects.items())
        ]
        return "Look at " + "; ".join(parts) + "."

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
            "commonAnnotations": {"look_at": self.look_at()}
            | ({"report_url": self.link} if self.link else {}),
            "alerts": [a.to_dict() for a in self.alerts],
        }


@dataclass(slots=True)
class _Track:
    """One alert's recent verdicts and lifecycle."""

    labels: dict[str, str]
    breaches: list[bool] = field(default_factory=list)  # the last ``of_last`` verdicts
    clean: int = 0  # clean windows in a row
    severity: Severity | None = None  # as announced while firing; None: not firing
    starts_at: float = 0.0
    sent_at: float | None = None  # window end of the last notification; None: unannounced

    def snapshot(self) -> list[Any]:
        severity = None if self.severity is None else self.severity.value
        return [self.labels, self.breaches, self.clean, severity, self.starts_at, self.sent_at]

    @classmethod
    def restore(cls, state: list[Any]) -> _Track:
        labels, breaches, clean, severity, starts_at, sent_at = state
        return cls(
            dict(labels),
            [bool(b) for b in breaches],
            int(clean),
            None if severity is None else Severity(severity),
            float(starts_at),
            None if sent_at is None else float(sent_at),
        )


class AlertPolicy:
    """Which findings start, repeat, escalate or end an alert; remembers each alert's
    recent windows. Times are event times (window ends), so replaying the same input
    after a crash yields the same notifications with the same ids."""

    def __init__(self, settings: AlertSettings | None = None) -> None:
        self.settings = settings or AlertSettings()
        self.tracks: dict[str, _Track] = {}

    @property
    def firing(self) -> dict[str, Severity]:
        """Fingerprint -> severity of every alert firing now."""
        return {k: t.severity for k, t in self.tracks.items() if t.severity is not None}

    def snapshot(self, models: Collection[str] | None = None) -> dict[str, Any]:
        """The alerts' state: of every model, or of ``models`` only."""
        return {
            key: track.snapshot()
            for key, track in self.tracks.items()
            if models is None or track.labels["model"] in models
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take on the alerts of a snapshot (beside those of other models held)."""
        self.tracks.update({key: _Track.restore(track) for key, track in state.items()})

    def forget(self, models: Collection[str]) -> None:
        """Drop the alerts of ``models`` (whose partition moved to another instance)."""
        self.tracks = {k: t for k, t in self.tracks.items() if t.labels["model"] not in models}

    def observe(
        self, model: str, window: WindowBounds, findings: Iterable[Finding]
    ) -> Notification | None:
        """The notification of one model's window: what fired, repeated, escalated or
        resolved in it, less warnings inhibited by a critical alert with equal labels."""
        changes = [c for f in findings if (c := self._observe(self.redacted(f))) is not None]
        equal = self.settings.inhibit_equal
        critical = {
            tuple(t.labels.get(k) for k in equal)
            for t in self.tracks.values()
            if t.severity is Severity.CRITICAL
        }
        alerts = []
        for key, alert in changes:
            inhibited = (
                alert.status == "firing"
                and alert.severity is Severity.WARNING
                and tuple(alert.labels.get(k) for k in equal) in critical
            )
            if not inhibited:
                alerts.append(alert)
                if alert.status == "firing":
                    self.tracks[key].sent_at = window.end
        if not alerts:
            return None
        return Notification(_notification_id(model, window, alerts), model, window, tuple(alerts))

    def redacted(self, finding: Finding) -> Finding:
        """The finding with every name of ``ALERTS__REDACT`` replaced by its alias."""
        subject, explanation = finding.subject, finding.explanation
        for name in self.settings.redact:
            if name in subject or name in explanation:
                pattern = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])")
                subject = pattern.sub(alias(name), subject)
                explanation = pattern.sub(alias(name), explanation)
        if subject == finding.subject and explanation == finding.explanation:
            return finding
        return replace(finding, subject=subject, explanation=explanation)

    def _observe(self, finding: Finding) -> tuple[str, Alert] | None:
        labels = {
            **self.settings.labels,
            "alertname": _alertname(finding.detector),
            "model": finding.model,
            "detector": finding.detector,
            "subject": finding.subject,
            "statistic": finding.statistic,
        }
        key = fingerprint(labels)
        track = self.tracks.get(key)
        breach = finding.severity is not Severity.OK
        if track is None:
            if not breach:
                return None  # nothing to remember about a clean subject
            track = self.tracks[key] = _Track(labels)
        rule = self.settings.hysteresis_of(finding.detector)
        track.breaches = [*track.breaches, breach][-rule.of_last :]
        track.clean = 0 if breach else track.clean + 1
        alert = self._transition(key, track, finding, rule.fire_after, rule.resolve_after)
        if track.severity is None and not any(track.breaches):
            del self.tracks[key]  # not firing and nothing recent: forget it
        return None if alert is None else (key, alert)

    def _transition(
        self, key: str, track: _Track, finding: Finding, fire_after: int, resolve_after: int
    ) -> Alert | None:
        end = finding.window.end
        if track.severity is None:  # not firing
            if sum(track.breaches) < fire_after or finding.severity is Severity.OK:
                return None
            track.severity, track.starts_at, track.sent_at = finding.severity, end, None
            return _alert("firing", track.labels, key, finding, finding.severity, end)
        if track.clean >= resolve_after:
            announced, severity = track.sent_at is not None, track.severity
            track.severity, track.breaches = None, []
            if not announced:
                return None  # inhibited all along: nobody heard it fire
            return _alert("resolved", track.labels, key, finding, severity, track.starts_at)
        if finding.severity.rank > track.severity.rank:  # escalated
            track.severity = finding.severity
            return _alert("firing", track.labels, key, finding, finding.severity, track.starts_at)
        if finding.severity is not Severity.OK and (
            track.sent_at is None or end - track.sent_at >= self.settings.repeat_interval
        ):
            return _alert(
                "firing", track.labels, key, finding, track.severity, track.starts_at, True
            )
        return None


def sample_notification(now: float) -> Notification:
    """A notification marked as a test in its every field, for ``streamwatch test-alert``."""
    window = WindowBounds(0, now - 60.0, now)
    labels = {
        "alertname": "StreamwatchTest",
        "model": "streamwatch-test",
        "detector": "test",
        "subject": "test",
        "statistic": "test",
        "severity": Severity.WARNING.value,
    }
    alert = Alert(
        status="firing",
        labels=labels,
        summary="TEST: streamwatch test notification, no action needed",
        description="This is a test sent by `streamwatch test-alert` to check this sink.",
        starts_at=now,
        ends_at=None,
        fingerprint=fingerprint(labels),
        value=0.0,
        threshold=0.0,
        window=window,
    )
    return Notification(
        _notification_id("streamwatch-test", window, [alert]), "streamwatch-test", window, (alert,)
    )


def _alert(
    status: Status,
    labels: dict[str, str],
    key: str,
    finding: Finding,
    severity: Severity,
    starts_at: float,
    repeated: bool = False,
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
        repeated=repeated,
    )


def _alertname(detector: str) -> str:
    return "".join(part.capitalize() for part in detector.split("_"))


def _notification_id(model: str, window: WindowBounds, alerts: list[Alert]) -> str:
    # Derived from content, so re-processing the same window yields the same id.
    parts = [model, window.start, window.end, sorted((a.fingerprint, a.status) for a in alerts)]
    return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()[:32]
