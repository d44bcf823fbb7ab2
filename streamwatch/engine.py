"""The loop: poll → decode → route → window → detect → alert → deliver → commit.

Only wiring lives here; each stage is its own module. The same engine runs for every
source (Kafka, replay files, the demo).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from streamwatch.alerts import AlertPolicy, Notification
from streamwatch.config import Settings
from streamwatch.events import BadEvent, decode_batch, gc_paused
from streamwatch.logs import RateLimited
from streamwatch.metrics import Metrics
from streamwatch.model import ClosedWindow, ModelMonitor
from streamwatch.reference import Pinned
from streamwatch.route import route
from streamwatch.sinks import Delivered, DeliveryFailed, RoutedSink
from streamwatch.sources import Message, Source

log = logging.getLogger("streamwatch.engine")

POLL_RECORDS = 5000


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one processed batch produced, for callers that watch (CLI, tests)."""

    closed: list[ClosedWindow]
    notifications: list[Notification]


class Engine:
    def __init__(
        self,
        settings: Settings,
        sinks: Sequence[RoutedSink],
        metrics: Metrics,
        reference: Mapping[str, Pinned] | None = None,
    ) -> None:
        self.settings = settings
        self.sinks = sinks
        self.metrics = metrics
        self.reference = reference or {}
        self.models: dict[str, ModelMonitor] = {}
        self.policy = AlertPolicy()
        self._bad_log = RateLimited()

    def run(
        self, source: Source, progress: Callable[[int], object] = lambda n: None
    ) -> list[Outcome]:
        """Process the source to its end, then close every open window."""
        outcomes = []
        while (messages := source.poll(POLL_RECORDS)) is not None:
            outcomes.append(self.process(messages))
            source.commit()
            progress(len(messages))
        outcomes.append(self.finish())
        return outcomes

    def process(self, messages: Sequence[Message]) -> Outcome:
        with gc_paused():
            closed = self._window(messages)
        return self._conclude(closed)

    def _window(self, messages: Sequence[Message]) -> list[ClosedWindow]:
        decoded = decode_batch(messages, self.settings.max_message_bytes)
        for bad in decoded.bad:
            self._reject(bad)
        closed: list[ClosedWindow] = []
        for model_id, events in route(decoded.events).items():
            monitor = self._monitor(model_id)
            if monitor is None:
                for i in events.positions:
                    detail = f"more than {self.settings.max_models} models"
                    self._reject(
                        BadEvent("model_limit", detail, decoded.raw[i], decoded.origins[i])
                    )
                continue
            self.metrics.labels.labels(model_id).inc(len(events.labels))
            if not events.predictions:
                continue
            processed = monitor.process(events.predictions)
            self.metrics.events.labels(model_id).inc(processed.windowed)
            self.metrics.late_events.labels(model_id).inc(processed.late)
            closed += processed.closed
        return closed

    def finish(self) -> Outcome:
        """End of input: close every open window of every model."""
        closed = []
        for model_id, monitor in self.models.items():
            flushed = monitor.flush()
            self.metrics.events.labels(model_id).inc(flushed.windowed)
            self.metrics.late_events.labels(model_id).inc(flushed.late)
            closed += flushed.closed
        return self._conclude(closed)

    def _monitor(self, model_id: str) -> ModelMonitor | None:
        """The model's monitor, made on first sight; ``None`` past the model limit."""
        monitor = self.models.get(model_id)
        if monitor is None:
            if len(self.models) >= self.settings.max_models:
                return None
            pinned = self.reference.get(model_id)
            monitor = self.models[model_id] = ModelMonitor(model_id, self.settings, pinned)
        return monitor

    def _conclude(self, closed: list[ClosedWindow]) -> Outcome:
        notifications = []
        for window in sorted(closed, key=lambda w: (w.bounds.end, w.model)):
            self.metrics.windows_closed.labels(window.model, window.role).inc()
            for f in window.findings:
                self.metrics.findings.labels(f.model, f.detector, f.severity.value).inc()
            notification = self.policy.observe(window.model, window.bounds, window.findings)
            if notification is not None:
                for alert in notification.alerts:
                    detector = alert.labels["detector"]
                    self.metrics.alerts.labels(window.model, detector, alert.status).inc()
                self._deliver(notification)
                notifications.append(notification)
        return Outcome(closed, notifications)

    def _deliver(self, notification: Notification) -> None:
        for routed in self.sinks:
            selected = notification.at_least(routed.min_severity)
            if selected is None:
                continue
            result = routed.sink.send(selected)
            sent = isinstance(result, Delivered)
            self.metrics.notifications.labels(routed.sink.name, "sent" if sent else "failed").inc()
            if isinstance(result, DeliveryFailed):
                log.warning(
                    "notification not delivered",
                    extra={"sink": result.sink, "reason": result.reason},
                )

    def _reject(self, bad: BadEvent) -> None:
        self.metrics.bad_events.labels(bad.reason).inc()
        suppressed = self._bad_log.allow(bad.reason)
        if suppressed is not None:
            log.warning(
                "bad event",
                extra={
                    "reason": bad.reason,
                    "detail": bad.detail[:200],
                    "origin": f"{bad.origin.topic}:{bad.origin.partition}:{bad.origin.offset}",
                    "suppressed_since_last": suppressed,
                },
            )
