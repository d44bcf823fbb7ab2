"""Notifications as text people read: a title and a markdown body (chat, email, tickets)."""

from __future__ import annotations

from streamwatch.alerting.policy import Alert, Notification, isoformat

_RANK = {"resolved": 0, "warning": 1, "critical": 2}
# What to do, by detector: the first step an on-call person takes.
_ADVICE = {
    "feature_drift": "check the upstream data for the drifted features; retrain if the "
    "new distribution is the new normal",
    "prediction_drift": "compare the model's inputs for the same period; check recent "
    "deployments of the model",
    "data_quality": "check the feature pipeline for missing or malformed fields",
    "out_of_distribution": "look at a sample of the window's events: the inputs are unlike "
    "the reference taken together",
    "performance": "review recent labelled errors; consider retraining",
    "concept_drift": "the error rate changed within the stream: review recent labels and "
    "consider retraining",
    "label_shift": "the class mix moved: recalibrate thresholds or retrain on recent data",
    "labels": "labels stopped arriving in time: check the labelling pipeline",
    "slice_performance": "review the subgroup's errors with the model owner (human review)",
    "fairness": "review the gap with the model owner before the next release",
    "shadow": "hold the rollout of the challenger until the disagreement is understood",
    "operational": "check the model server's latency, errors and traffic",
}


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
    advice = sorted({_ADVICE[d] for d in _detectors(notification) if d in _ADVICE})
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
