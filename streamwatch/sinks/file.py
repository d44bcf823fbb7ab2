"""``kind=file``: appends each notification as one JSON object (a line) to ``path``.

Each notification id is appended once. The outbox records a delivery after the sink
returns, so a crash between the append and that record sends the notification again
after restart; the sink finds its id among the file's last lines and does not append it
twice. The outbox delivers a sink's rows one at a time, so the line a crash interrupted
is among the last few written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import msgspec

from streamwatch.alerting.policy import Notification
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult

RECENT = 256 * 1024  # bytes of the file's end searched for an id already appended


class FileSink:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    def send(self, notification: Notification) -> DeliveryResult:
        line = msgspec.json.encode(notification.to_dict(receiver=self.name))
        return self.append(notification.id, line)

    def append(self, id_: str, line: bytes) -> DeliveryResult:
        """Append ``line`` (a JSON object holding ``"id": id_``) unless the file's end
        holds it already."""
        try:
            # Opened per notification: rare, and a rotated or deleted file is recreated.
            with self.path.open("a+b") as out:
                if not _appended(out, id_):
                    out.write(line + b"\n")
        except OSError as exc:
            return DeliveryFailed(self.name, f"cannot append to {self.path}: {exc}", True)
        return Delivered(self.name)

    def close(self) -> None:
        """Nothing stays open between notifications."""


def _appended(out: BinaryIO, notification_id: str) -> bool:
    """Whether the file's last ``RECENT`` bytes hold the notification with this id."""
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - RECENT))
    return b'"id":"%s"' % notification_id.encode() in out.read()
