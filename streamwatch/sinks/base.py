"""The Sink protocol and the typed outcome of a delivery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from streamwatch.alerting.policy import Notification
from streamwatch.review.request import ReviewRequest


@dataclass(frozen=True, slots=True)
class Delivered:
    sink: str


@dataclass(frozen=True, slots=True)
class DeliveryFailed:
    """``retryable``: a network error, a timeout, 429 or 5xx; anything else will fail
    the same way again. ``retry_after``: seconds the receiver asked us to wait."""

    sink: str
    reason: str
    retryable: bool
    retry_after: float | None = None


DeliveryResult = Delivered | DeliveryFailed


class Sink(Protocol):
    """Where notifications go. ``send`` reports failure as a value, it does not raise,
    and returns within the sink's timeout. The same notification may be sent again
    after a failure or a restart: ``notification.id`` says it is the same one."""

    name: str

    def send(self, notification: Notification) -> DeliveryResult: ...

    def close(self) -> None: ...


@runtime_checkable
class ReviewSink(Sink, Protocol):
    """Where review requests go (``kind=review``); it hears no alerts. ``request`` is
    like ``send``: a request may come again, ``request.id`` says it is the same one."""

    def request(self, request: ReviewRequest) -> DeliveryResult: ...
