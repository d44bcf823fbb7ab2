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
notification, with the model's other alerts still firing beside them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from streamwatch.alerting.notification import (
    Alert,
    Notification,
    Status,
    fingerprint,
    isoformat,
    notification_id,
    report_link,
    sample_notification,
)
from streamwatch.config import AlertSettings, Hysteresis
from streamwatch.detectors import Finding, Severity
from streamwatch.windows import WindowBounds

__all__ = [
    "Alert",
    "AlertPolicy",
    "Notification",
    "Status",
    "alias",
    "fingerprint",
    "isoformat",
    "report_link",
    "sample_notification",
]


def alias(name: str) -> str:
    """What a redacted feature is called in alerts: stable, and not the name."""
    return "redacted-" + hashlib.sha256(name.encode()).hexdigest()[:8]


@dataclass(slots=True)
class _Track:
    """One alert's recent verdicts and lifecycle."""

    labels: dict[str, str]
    breaches: list[bool] = field(default_factory=list)  # the last ``of_last`` verdicts
    clean: int = 0  # clean windows in a row
    severity: Severity | None = None  # as announced while firing; None: not firing
    starts_at: float = 0.0
    sent_at: float | None = None  # window end of the last notification; None: unannounced
    last: Alert | None = None  # as last announced while firing

    def snapshot(self) -> list[Any]:
        severity = None if self.severity is None else self.severity.value
        last = None if self.last is None else msgspec.to_builtins(self.last)
        return [
            self.labels,
            self.breaches,
            self.clean,
            severity,
            self.starts_at,
            self.sent_at,
            last,
        ]

    @classmethod
    def restore(cls, state: list[Any]) -> _Track:
        # A checkpoint written before tracks kept their last alert has six fields.
        labels, breaches, clean, severity, starts_at, sent_at, *rest = state
        last = rest[0] if rest else None
        return cls(
            dict(labels),
            [bool(b) for b in breaches],
            int(clean),
            None if severity is None else Severity(severity),
            float(starts_at),
            None if sent_at is None else float(sent_at),
            None if last is None else msgspec.convert(last, Alert),
        )


class AlertPolicy:
    """Which findings start, repeat, escalate or end an alert; remembers each alert's
    recent windows. Times are event times (window ends), so replaying the same input
    after a crash yields the same notifications with the same ids. ``of_model`` gives a
    model's own alert settings (``MODELS__<MODEL>__ALERTS__...``); without it every
    model's are ``settings``."""

    def __init__(
        self,
        settings: AlertSettings | None = None,
        of_model: Callable[[str], AlertSettings] | None = None,
    ) -> None:
        self.settings = settings or AlertSettings()
        self.of_model = of_model
        self.tracks: dict[str, _Track] = {}

    def settings_of(self, model: str) -> AlertSettings:
        """The alert settings of ``model``."""
        return self.settings if self.of_model is None else self.of_model(model)

    @property
    def firing(self) -> dict[str, Severity]:
        """Fingerprint -> severity of every alert firing now."""
        return {k: t.severity for k, t in self.tracks.items() if t.severity is not None}

    def worst(self, model: str) -> Severity | None:
        """The worst severity of ``model``'s alerts firing now, if any fires."""
        firing = [
            t.severity
            for t in self.tracks.values()
            if t.severity is not None and t.labels["model"] == model
        ]
        return max(firing, key=lambda severity: severity.rank, default=None)

    def standing(self, models: Collection[str] | None = None) -> dict[str, tuple[Alert, ...]]:
        """Model -> its announced alerts firing now (of every model, or of ``models``), as
        last announced: what a receiver holding state (Alertmanager) must keep hearing."""
        found: dict[str, list[Alert]] = {}
        for track in self.tracks.values():
            model, last = track.labels["model"], track.last
            if (
                track.severity is not None
                and last is not None
                and (models is None or model in models)
            ):
                found.setdefault(model, []).append(last)
        return {model: tuple(alerts) for model, alerts in sorted(found.items())}

    def snapshot(self, models: Collection[str] | None = None) -> dict[str, Any]:
        """The alerts' state: of every model, or of ``models`` only."""
        return {
            key: track.snapshot()
            for key, track in self.tracks.items()
            if models is None or track.labels["model"] in models
        }

    def restore(self, state: Mapping[str, Any]) -> set[str]:
        """Take on the alerts of a snapshot (beside those of other models held); return
        the models they are of."""
        restored = {key: _Track.restore(track) for key, track in state.items()}
        self.tracks.update(restored)
        return {track.labels["model"] for track in restored.values()}

    def forget(self, models: Collection[str]) -> None:
        """Drop the alerts of ``models`` (whose partition moved to another instance)."""
        self.tracks = {k: t for k, t in self.tracks.items() if t.labels["model"] not in models}

    def observe(
        self, model: str, window: WindowBounds, findings: Iterable[Finding]
    ) -> Notification | None:
        """The notification of one model's window: what fired, repeated, escalated or
        resolved in it, less warnings inhibited by a critical alert with equal labels."""
        changes = [c for f in findings if (c := self._observe(self.redacted(f))) is not None]
        equal = self.settings_of(model).inhibit_equal
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
                    track = self.tracks[key]
                    track.sent_at, track.last = window.end, replace(alert, repeated=False)
        if not alerts:
            return None
        changed = {a.fingerprint for a in alerts}
        active = tuple(
            a for a in self.standing([model]).get(model, ()) if a.fingerprint not in changed
        )
        return Notification(
            notification_id(model, window, alerts), model, window, tuple(alerts), active=active
        )

    def redacted(self, finding: Finding) -> Finding:
        """The finding with every name of ``ALERTS__REDACT`` replaced by its alias."""
        subject, explanation = finding.subject, finding.explanation
        for name in self.settings_of(finding.model).redact:
            if name in subject or name in explanation:
                pattern = re.compile(rf"(?<![\w]){re.escape(name)}(?![\w])")
                subject = pattern.sub(alias(name), subject)
                explanation = pattern.sub(alias(name), explanation)
        if subject == finding.subject and explanation == finding.explanation:
            return finding
        return replace(finding, subject=subject, explanation=explanation)

    def _observe(self, finding: Finding) -> tuple[str, Alert] | None:
        settings = self.settings_of(finding.model)
        labels = {
            **settings.labels,
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
        rule = settings.hysteresis_of(finding.detector)
        track.breaches = [*track.breaches, breach][-rule.of_last :]
        track.clean = 0 if breach else track.clean + 1
        alert = self._transition(key, track, finding, rule, settings.repeat_interval)
        if track.severity is None and not any(track.breaches):
            del self.tracks[key]  # not firing and nothing recent: forget it
        return None if alert is None else (key, alert)

    def _transition(
        self, key: str, track: _Track, finding: Finding, rule: Hysteresis, repeat: float
    ) -> Alert | None:
        end = finding.window.end
        if track.severity is None:  # not firing
            if sum(track.breaches) < rule.fire_after or finding.severity is Severity.OK:
                return None
            track.severity, track.starts_at, track.sent_at = finding.severity, end, None
            return _alert("firing", track.labels, key, finding, finding.severity, end)
        if track.clean >= rule.resolve_after:
            announced, severity = track.sent_at is not None, track.severity
            track.severity, track.breaches, track.last = None, [], None
            if not announced:
                return None  # inhibited all along: nobody heard it fire
            return _alert("resolved", track.labels, key, finding, severity, track.starts_at)
        if finding.severity.rank > track.severity.rank:  # escalated
            track.severity = finding.severity
            return _alert("firing", track.labels, key, finding, finding.severity, track.starts_at)
        if finding.severity is not Severity.OK and (
            track.sent_at is None or end - track.sent_at >= repeat
        ):
            return _alert(
                "firing", track.labels, key, finding, track.severity, track.starts_at, True
            )
        return None


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
