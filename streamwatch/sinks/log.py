"""``kind=log``: one JSON line per alert on standard output."""

from __future__ import annotations

import sys
from typing import TextIO

import msgspec

from streamwatch.alerting.policy import Notification
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult


class LogSink:
    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self.stream = stream or sys.stdout

    def send(self, notification: Notification) -> DeliveryResult:
        lines = [
            msgspec.json.encode(
                {"sink": self.name, "notification": notification.id, **alert.to_dict()}
            ).decode()
            for alert in notification.alerts
        ]
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError) as exc:  # closed or broken stream
            return DeliveryFailed(self.name, f"cannot write to the log: {exc}", retryable=False)
        return Delivered(self.name)

    def close(self) -> None:
        """Standard output is not ours to close."""
