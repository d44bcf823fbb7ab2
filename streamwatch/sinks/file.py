"""``kind=file``: appends each notification as one JSON object (a line) to ``path``."""

from __future__ import annotations

from pathlib import Path

import msgspec

from streamwatch.alerts import Notification
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult


class FileSink:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    def send(self, notification: Notification) -> DeliveryResult:
        line = msgspec.json.encode(notification.to_dict(receiver=self.name)) + b"\n"
        try:
            # Opened per notification: rare, and a rotated or deleted file is recreated.
            with self.path.open("ab") as out:
                out.write(line)
        except OSError as exc:
            return DeliveryFailed(self.name, f"cannot append to {self.path}: {exc}", True)
        return Delivered(self.name)

    def close(self) -> None:
        """Nothing stays open between notifications."""
