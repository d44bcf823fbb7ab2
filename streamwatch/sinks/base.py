"""The Sink protocol and the typed outcome of a delivery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from streamwatch.alerts import Notification


@dataclass(frozen=True, slots=True)
class Delivered:
    sink: str


@dataclass(frozen=True, slots=True)
class DeliveryFailed:
    sink: str
    reason: str
    retryable: bool


DeliveryResult = Delivered | DeliveryFailed


class Sink(Protocol):
    """Where notifications go. ``send`` reports failure as a value, it does not raise."""

    name: str

    def send(self, notification: Notification) -> DeliveryResult: ...

    def close(self) -> None: ...
