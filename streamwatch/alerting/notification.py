"""What the policy announces: alerts, shaped like Alertmanager's, and the notification
of one model's window that carries them.

A notification names what changed in a window (``alerts``: fired, repeated, escalated
or resolved) and, beside it, the model's other alerts still firing (``active``), so a
receiver that rebuilds state from a group (as Alertmanager's do) never takes an alert
left out of the window as resolved. Its :meth:`Notification.to_dict` is Alertmanager's
webhook payload (version 4), key for key and type for type.
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from streamwatch.detectors import Severity, registry
from streamwatch.windows import WindowBounds

Status = Literal["firing", "resolved"]
# Alertmanager's "not ended" timestamp for firing alerts.
ZERO_TIME = "0001-01-01T00:00:00Z"
# The webhook payload's external URL without REPORT__BASE_URL.
EXTERNAL_URL = "streamwatch://"


def fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex-digit id of a label set (order does not matter)."""
    canonical = msgspec.json.encode(sorted(labels.items()))
    return hashlib.sha256(canonical).hexdigest()[:16]


def isoformat(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat().replace("+00:00", "Z")


def report_link(base_url: str, model: str, window: WindowBounds) -> str:
    """The daemon's report page of one model, at one window."""
    query = urllib.parse.urlencode({"model": model, "window": isoformat(window.start)})
    return f"{base_url.rstrip('/')}/report?{query}"


def generator_url(link: str | None, model: str, window: WindowBounds) -> str:
    """Where an alert comes from: its report ``link``, or a stable ``streamwatch://`` URL
    naming the model and window when the report has no address (no REPORT__BASE_URL)."""
    return link or report_link(EXTERNAL_URL + "streamwatch", model, window)


def look_at(alerts: Iterable[Alert]) -> str:
    """One line saying where the evidence is (in the report) for ``alerts``."""
    subjects: dict[str, list[str]] = {}
    for a in alerts:
        subjects.setdefault(a.labels["detector"], []).append(a.labels["subject"])
    parts = [
        (registry.look_at(d) or "{detector} of {subjects}").format(
            detector=d.replace("_", " "), subjects=", ".join(dict.fromkeys(names))
        )
        for d, names in sorted(subjects.items())
    ]
    return "Look at " + "; ".join(parts) + "."


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
        """The alert as one record (log, Kafka and retrain sinks), with typed extras."""
        return {
            "status": self.status,
            "labels": self.labels,
            "annotations": {"summary": self.summary, "description": self.description},
            "startsAt": isoformat(self.starts_at),
            "endsAt": ZERO_TIME if self.ends_at is None else isoformat(self.ends_at),
            "fingerprint": self.fingerprint,
            "value": self.value,
            "threshold": self.threshold,
            "window": {"start": isoformat(self.window.start), "end": isoformat(self.window.end)},
            "repeated": self.repeated,
        }

    def annotations(self, link: str | None) -> dict[str, str]:
        """Alertmanager's annotations (strings only): summary, description, where to look,
        and streamwatch's value, threshold, window (an ISO 8601 interval) and report."""
        window = f"{isoformat(self.window.start)}/{isoformat(self.window.end)}"
        return {
            "summary": self.summary,
            "description": self.description,
            "look_at": look_at([self]),
            "value": repr(self.value),  # the shortest text that reads back as the float
            "threshold": repr(self.threshold),
            "window": window,
            **({"report_url": link} if link else {}),
            **({"repeated": "true"} if self.repeated else {}),
        }

    def webhook_alert(self, link: str | None, model: str, window: WindowBounds) -> dict[str, Any]:
        """The alert as an Alertmanager webhook payload lists it."""
        return {
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations(link),
            "startsAt": isoformat(self.starts_at),
            "endsAt": ZERO_TIME if self.ends_at is None else isoformat(self.ends_at),
            "generatorURL": generator_url(link, model, window),
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True, slots=True)
class Notification:
    """The alerts of one model and window, sent together; ``id`` is stable across retries.
    ``active``: the model's other alerts firing now, unchanged in this window."""

    id: str
    model: str
    window: WindowBounds
    alerts: tuple[Alert, ...]
    link: str | None = None  # the report of this model and window, with REPORT__BASE_URL
    active: tuple[Alert, ...] = ()

    @property
    def status(self) -> Status:
        group = (*self.alerts, *self.active)
        return "firing" if any(a.status == "firing" for a in group) else "resolved"

    def look_at(self) -> str:
        """One line saying where the evidence is (in the report) for these alerts."""
        return look_at(self.alerts)

    def at_least(self, minimum: Severity) -> Notification | None:
        """This notification restricted to alerts of ``minimum`` severity or worse."""
        kept = tuple(a for a in self.alerts if a.severity.rank >= minimum.rank)
        active = tuple(a for a in self.active if a.severity.rank >= minimum.rank)
        return replace(self, alerts=kept, active=active) if kept else None

    def to_dict(self, receiver: str) -> dict[str, Any]:
        """Alertmanager's webhook payload (version 4) of the model's group: what changed,
        then what still fires. streamwatch's extras are annotations of each alert and
        top-level keys, which receivers of Alertmanager's ignore: the notification ``id``,
        its ``window`` and the fingerprints of the alerts that ``changed`` in it."""
        alerts = [a.webhook_alert(self.link, self.model, self.window) for a in self.alerts]
        alerts += [a.webhook_alert(self.link, self.model, self.window) for a in self.active]
        return {
            "receiver": receiver,
            "status": self.status,
            "alerts": alerts,
            "groupLabels": {"model": self.model},
            "commonLabels": _common(a["labels"] for a in alerts),
            "commonAnnotations": _common(a["annotations"] for a in alerts),
            "externalURL": _external_url(self.link),
            "version": "4",
            "groupKey": f'{{}}:{{model="{self.model}"}}',
            "truncatedAlerts": 0,
            "id": self.id,
            "window": {"start": isoformat(self.window.start), "end": isoformat(self.window.end)},
            "changed": [a.fingerprint for a in self.alerts],
        }


def sample_notification(now: float, extra: Mapping[str, str] | None = None) -> Notification:
    """A notification marked as a test in its every field, for ``streamwatch test-alert``,
    with the configured extra labels (ALERTS__LABELS) as the policy adds them."""
    window = WindowBounds(0, now - 60.0, now)
    labels = {
        **(extra or {}),
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
        notification_id("streamwatch-test", window, [alert]), "streamwatch-test", window, (alert,)
    )


def notification_id(model: str, window: WindowBounds, alerts: list[Alert]) -> str:
    # Derived from content, so re-processing the same window yields the same id.
    parts = [model, window.start, window.end, sorted((a.fingerprint, a.status) for a in alerts)]
    return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()[:32]


def _common(maps: Iterable[dict[str, str]]) -> dict[str, str]:
    """The items every map has (Alertmanager's commonLabels and commonAnnotations)."""
    common = set.intersection(*(set(m.items()) for m in maps))
    return dict(sorted(common))


def _external_url(link: str | None) -> str:
    """The report's base URL (REPORT__BASE_URL), which ``link`` starts with."""
    return link.rsplit("/report?", 1)[0] if link else EXTERNAL_URL
