"""Accounting: what the loop counts (metrics) and the log of every closed window."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Iterable, Sequence

import msgspec

from streamwatch.alerting.policy import Notification, isoformat
from streamwatch.detectors import Severity
from streamwatch.events import BadEvent, Polled
from streamwatch.observe import history
from streamwatch.observe.detector_metrics import DetectorGauges
from streamwatch.observe.logs import RateLimited
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.monitor import ClosedWindow, Processed
from streamwatch.review.reviewer import Counts

log = logging.getLogger("streamwatch.engine")


class Accounting:
    def __init__(self, metrics: Metrics, max_subjects: int) -> None:
        self.metrics = metrics
        self.gauges = DetectorGauges(metrics, max_subjects)
        self._bad_log = RateLimited()

    def consumed(self, polled: Polled, fresh: int) -> None:
        """A polled batch, of which ``fresh`` messages were not processed before."""
        for topic, count in polled.by_topic().items():
            self.metrics.consumed.labels(topic).inc(count)
        if len(polled) > fresh:
            self.metrics.redelivered.inc(len(polled) - fresh)

    def processed(self, model_id: str, processed: Processed) -> list[ClosedWindow]:
        """Count what a model's monitor (or part) processed; its closed windows."""
        metrics = self.metrics
        metrics.events.labels(model_id).inc(processed.windowed)
        metrics.late_events.labels(model_id).inc(processed.late)
        labels = processed.labels
        metrics.labels.labels(model_id, "joined").inc(labels.joined)
        metrics.labels.labels(model_id, "unknown").inc(labels.unknown)
        metrics.labels.labels(model_id, "late").inc(labels.late)
        if processed.reviewed is not None:
            self._reviewed(model_id, processed.reviewed)
        return processed.closed

    def _reviewed(self, model_id: str, counts: Counts) -> None:
        metrics = self.metrics
        for rule, n in counts.requested.items():
            metrics.review_requests.labels(model_id, rule).inc(n)
        metrics.review_over_budget.labels(model_id).inc(counts.over_budget)
        metrics.review_budget_used.labels(model_id).set(counts.budget_used)
        for fate in ("joined", "unsolicited", "late"):
            metrics.review_verdicts.labels(model_id, fate).inc(getattr(counts, fate))

    def closed(self, window: ClosedWindow) -> None:
        """A closed window's counts, statistics (as gauges) and log line."""
        metrics = self.metrics
        if window.role == "outcomes":
            metrics.outcomes_evaluated.labels(window.model).inc()
        elif window.role in history.WINDOW_ROLES:
            metrics.windows_closed.labels(window.model, window.role).inc()
        for f in window.findings:
            metrics.findings.labels(f.model, f.detector, f.severity.value).inc()
        self.gauges.closed(window.model, window.findings)
        _log_window(window)

    def alerted(self, notification: Notification) -> None:
        for alert in notification.alerts:
            detector = alert.labels["detector"]
            self.metrics.alerts.labels(notification.model, detector, alert.status).inc()

    def firing(self, alerts: Iterable[tuple[str, Severity]]) -> None:
        """The alerts firing now, as (model, severity) of each."""
        self.gauges.firing(alerts)

    def forget(self, models: Collection[str]) -> None:
        """The gauges of ``models``, let go or moved to another instance, removed."""
        self.gauges.forget(models)

    def unencodable(self, model_id: str, error: Exception) -> None:
        # A bug in what a detector reported must not stop the loop for good (the same
        # window is rebuilt after every restart): say so, go on.
        self.metrics.unencodable.labels(model_id).inc()
        log.error("notification not stored", extra={"error": str(error)})

    def rejected(self, bad: Sequence[BadEvent]) -> None:
        """Bad events: counted, and logged at a limited rate per reason."""
        for event in bad:
            self.metrics.bad_events.labels(event.reason).inc()
            suppressed = self._bad_log.allow(event.reason)
            if suppressed is not None:
                origin = event.origin
                log.warning(
                    "bad event",
                    extra={
                        "reason": event.reason,
                        "detail": event.detail[:200],
                        "origin": f"{origin.topic}:{origin.partition}:{origin.offset}",
                        "suppressed_since_last": suppressed,
                    },
                )


def _log_window(window: ClosedWindow) -> None:
    """One line per closed window: what it held and a digest of every statistic, so
    that two runs over the same input can be compared window by window."""
    statistics = sorted(
        (f.detector, f.subject, f.statistic, f"{f.value:.6g}", f.severity.value)
        for f in window.findings
    )
    log.info(
        "window closed",
        extra={
            "model": window.model,
            "window_start": isoformat(window.bounds.start),
            "window_end": isoformat(window.bounds.end),
            "role": window.role,
            "events": window.n,
            "findings": len(window.findings),
            "breaches": sum(f.severity is not Severity.OK for f in window.findings),
            "digest": hashlib.sha256(msgspec.json.encode(statistics)).hexdigest()[:16],
        },
    )
