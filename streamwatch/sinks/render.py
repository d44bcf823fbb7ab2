"""Notifications as text people read: a title and a markdown body (chat, email, tickets)."""

from __future__ import annotations

from streamwatch.alerting.policy import Alert, Notification, isoformat
from streamwatch.detectors import registry

_RANK = {"resolved": 0, "warning": 1, "critical": 2}


def title(notification: Notification) -> str:
    firing = [a for a in notification.alerts if a.status == "firing"]
    worst = max((a.severity.value for a in firing), default="resolved", key=lambda s: _RANK[s])
    what = f"{len(notification.alerts)} alert" + ("s" if len(notification.alerts) != 1 else "")
    return (
        f"[streamwatch] {worst.upper()}: model {notification.model}, {what}, window "
        f"{isoformat(notification.window.start)} to {isoformat(notification.window.end)}"
    )


def body(notification: Notification) -> str:
    """Model, window, what moved and by how much, and what to do, in markdown."""
    lines = [
        f"**Model** `{notification.model}`, window {isoformat(notification.window.start)} "
        f"to {isoformat(notification.window.end)}",
        "",
    ]
    for alert in notification.alerts:
        lines += [f"- {alert_line(alert)}"]
    lines += ["", notification.look_at()]
    if notification.link:
        lines += [f"Report: {notification.link}"]
    # What to do, by detector: the first step an on-call person takes.
    advice = sorted({h for d in _detectors(notification) if (h := registry.hint(d)) is not None})
    if advice and notification.status == "firing":
        lines += ["", "**What to do**", "", *(f"- {a}" for a in advice)]
    lines += ["", f"Notification `{notification.id}`."]
    return "\n".join(lines)


def alert_line(alert: Alert) -> str:
    state = "RESOLVED" if alert.status == "resolved" else alert.severity.value.upper()
    repeated = " (still firing)" if alert.repeated else ""
    return (
        f"**{state}**{repeated} {alert.labels['detector']} · `{alert.labels['subject']}` · "
        f"{alert.labels['statistic']} = {alert.value:.4g} (threshold {alert.threshold:.4g}): "
        f"{alert.description}"
    )


def _detectors(notification: Notification) -> set[str]:
    return {a.labels["detector"] for a in notification.alerts}
