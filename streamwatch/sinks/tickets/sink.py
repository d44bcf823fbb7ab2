"""Tickets, one per alert: what the Jira and GitHub Issues sinks share.

An alert's issue carries the label ``streamwatch-<fingerprint>``. A firing alert opens
one, or comments on the open one (a repeat, an escalation); a resolved alert comments
on it and closes it. Each alert starts with a search for its open issue, and every text
names the notification, so a notification sent again after a failure (whole, by the
outbox) neither opens a second issue nor comments twice.
"""

from __future__ import annotations

import time

from streamwatch.alerting.policy import Alert, Notification, isoformat
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult
from streamwatch.sinks.http import HttpError
from streamwatch.sinks.render import alert_line
from streamwatch.sinks.tickets.tracker import Issue, Tracker

LABEL = "streamwatch"
MAX_TITLE = 255  # Jira's limit on a summary; GitHub allows 256


def label_of(alert: Alert) -> str:
    """The label that ties an issue to one alert across its lifecycle."""
    return f"{LABEL}-{alert.fingerprint}"


class TicketSink:
    """One issue per alert in ``tracker``, kept up to date as the alert changes."""

    def __init__(self, name: str, tracker: Tracker, timeout: float) -> None:
        self.name = name
        self.tracker = tracker
        self.timeout = timeout

    def send(self, notification: Notification) -> DeliveryResult:
        # Each call has its own timeout; the send as a whole starts no further alert once
        # the sink's timeout has passed. The retry sends all again and skips what is done.
        deadline = time.monotonic() + self.timeout
        try:
            for done, alert in enumerate(notification.alerts):
                if done and time.monotonic() > deadline:
                    total = len(notification.alerts)
                    reason = f"timed out after {done} of {total} alerts"
                    return DeliveryFailed(self.name, reason, retryable=True)
                self._deliver(alert, notification.id)
        except HttpError as exc:
            return exc.failure
        except (ValueError, KeyError, TypeError) as exc:
            # Not the API's JSON (a proxy's page, a wrong URL): the same again next time.
            reason = f"unexpected answer: {type(exc).__name__} {exc}"[:300]
            return DeliveryFailed(self.name, reason, retryable=False)
        return Delivered(self.name)

    def close(self) -> None:
        self.tracker.close()

    def _deliver(self, alert: Alert, notification_id: str) -> None:
        label = label_of(alert)
        issue = self.tracker.find_open(label)
        if issue is None:
            if alert.status == "firing":
                body = issue_body(alert, notification_id)
                self.tracker.create(issue_title(alert), body, [LABEL, label])
            return  # a resolved alert without an open issue: closed already, or never opened
        if not self._said(issue, notification_id):
            self.tracker.comment(issue, comment(alert, notification_id))
        if alert.status == "resolved":
            self.tracker.resolve(issue)

    def _said(self, issue: Issue, notification_id: str) -> bool:
        """Whether an earlier attempt of this notification opened or commented on ``issue``."""
        if notification_id in issue.body:
            return True
        return any(notification_id in text for text in self.tracker.recent_comments(issue))


def issue_title(alert: Alert) -> str:
    return f"[streamwatch] {alert.summary} (model {alert.labels['model']})"[:MAX_TITLE]


def issue_body(alert: Alert, notification_id: str) -> str:
    """What an on-call person needs first: what moved, by how much, when, which alert."""
    labels = ", ".join(f"`{k}={v}`" for k, v in sorted(alert.labels.items()))
    return "\n".join(
        [
            alert.description,
            "",
            f"- **Value** {alert.value:.4g} (threshold {alert.threshold:.4g})",
            f"- **Window** {isoformat(alert.window.start)} to {isoformat(alert.window.end)}",
            f"- **Firing since** {isoformat(alert.starts_at)}",
            f"- **Labels** {labels}",
            "",
            f"Opened by streamwatch for notification `{notification_id}`. Repeats, "
            "escalations and the resolution follow as comments.",
        ]
    )


def comment(alert: Alert, notification_id: str) -> str:
    return f"{alert_line(alert)}\n\nNotification `{notification_id}`."
