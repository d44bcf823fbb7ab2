"""Every Prometheus metric of streamwatch, defined once against an injected registry.

Labels are bounded: model ids, detector and sink names from the config, bad-event
reasons from a fixed list, severities and statuses, and per model and detector the
``METRICS__MAX_SUBJECTS`` subjects most breached (detector_metrics.py). Counters whose
labels are known in advance (bad-event reasons, each sink's results) start at 0, so
that ``increase()`` sees their first event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamwatch.events.schema import BadReason

RESULTS = ("sent", "retried", "dead")  # of a notification's delivery attempt


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.consumed = Counter(
            "streamwatch_messages", "Messages consumed, good or bad", ["topic"], registry=registry
        )
        self.events = Counter(
            "streamwatch_events", "Prediction events windowed", ["model"], registry=registry
        )
        self.labels = Counter(
            "streamwatch_label_events",
            "Label events: joined to their prediction, unknown, or late for their window",
            ["model", "outcome"],
            registry=registry,
        )
        self.outcomes_evaluated = Counter(
            "streamwatch_outcomes_evaluated",
            "Windows whose labels were evaluated",
            ["model"],
            registry=registry,
        )
        self.bad_events = Counter(
            "streamwatch_bad_events",
            "Messages that are not valid events",
            ["reason"],
            registry=registry,
        )
        self.late_events = Counter(
            "streamwatch_late_events",
            "Events dropped because their window had closed",
            ["model"],
            registry=registry,
        )
        self.windows_closed = Counter(
            "streamwatch_windows_closed", "Windows closed", ["model", "role"], registry=registry
        )
        self.findings = Counter(
            "streamwatch_findings",
            "Findings by severity",
            ["model", "detector", "severity"],
            registry=registry,
        )
        self.alerts = Counter(
            "streamwatch_alerts",
            "Alert transitions",
            ["model", "detector", "status"],
            registry=registry,
        )
        self.redelivered = Counter(
            "streamwatch_redelivered_messages",
            "Messages skipped because the state already covers them",
            registry=registry,
        )
        self.dead_letters = Counter(
            "streamwatch_dead_letters",
            "Bad messages produced to the dead-letter topic",
            registry=registry,
        )
        self.checkpoint_seconds = Histogram(
            "streamwatch_checkpoint_seconds",
            "Time to write a checkpoint",
            registry=registry,
        )
        self.notifications = Counter(
            "streamwatch_notifications",
            "Notification delivery attempts by result: sent, retried, dead",
            ["sink", "result"],
            registry=registry,
        )
        self.unencodable = Counter(
            "streamwatch_unencodable_notifications",
            "Notifications kept out of the outbox because they could not be encoded",
            ["model"],
            registry=registry,
        )
        self.processing_seconds = Histogram(
            "streamwatch_processing_seconds",
            "Time to process one polled batch, decode to alerts",
            registry=registry,
        )
        self.checkpoint_age = Gauge(
            "streamwatch_checkpoint_age_seconds",
            "Seconds since the last checkpoint was written",
            registry=registry,
        )
        self.lag = Gauge(
            "streamwatch_consumer_lag",
            "Messages between the partition's end and the next one to process",
            ["topic", "partition"],
            registry=registry,
        )
        self.statistic = Gauge(
            "streamwatch_statistic",
            "The latest value of a detector statistic, of the METRICS__MAX_SUBJECTS "
            "subjects per model and detector most breached",
            ["model", "detector", "subject", "statistic"],
            registry=registry,
        )
        self.threshold = Gauge(
            "streamwatch_statistic_threshold",
            "The warning or critical threshold of a statistic exported, as its findings "
            "reported it (the critical one once a finding crossed it)",
            ["model", "detector", "subject", "statistic", "severity"],
            registry=registry,
        )
        self.alerts_firing = Gauge(
            "streamwatch_alerts_firing",
            "Alerts firing now",
            ["model", "severity"],
            registry=registry,
        )
        self.label_coverage = Gauge(
            "streamwatch_label_coverage_ratio",
            "Share of the predictions labelled, of the last window whose labels were evaluated",
            ["model"],
            registry=registry,
        )
        self.label_delay = Gauge(
            "streamwatch_label_delay_seconds",
            "Mean event time from prediction to label, of the last window evaluated with labels",
            ["model"],
            registry=registry,
        )
        self.review_requests = Counter(
            "streamwatch_review_requests",
            "Predictions requested for human review, by each rule that selected them",
            ["model", "rule"],
            registry=registry,
        )
        self.review_over_budget = Counter(
            "streamwatch_review_over_budget",
            "Predictions selected for review but dropped: their hour's budget was spent",
            ["model"],
            registry=registry,
        )
        self.review_budget_used = Gauge(
            "streamwatch_review_budget_used_ratio",
            "Share of REVIEW__MAX_PER_HOUR requested in the latest hour of event time",
            ["model"],
            registry=registry,
        )
        self.review_verdicts = Counter(
            "streamwatch_review_verdicts",
            "Reviewers' verdicts: joined to their request, unsolicited, or late",
            ["model", "fate"],
            registry=registry,
        )
        self.review_accuracy = Gauge(
            "streamwatch_review_accuracy",
            "Accuracy from the verdicts of the last window reported: weighted by each "
            "request's chance (an estimate for all predictions, with its interval) and "
            "observed (the reviewers' agreement with the model)",
            ["model", "estimate"],
            registry=registry,
        )
        self._backlog = _Backlog()
        registry.register(self._backlog)
        for reason in get_args(BadReason):
            self.bad_events.labels(reason)

    def delivering(self, sinks: Iterable[str], backlog: Callable[[], Mapping[str, int]]) -> None:
        """The sinks notifications are delivered to, every result of each counted from 0,
        and ``backlog``, their pending rows in the outbox (read when scraped)."""
        names = tuple(sinks)
        for sink in names:
            for result in RESULTS:
                self.notifications.labels(sink, result)
        self._backlog.sinks, self._backlog.count = names, backlog

    def summary(self) -> dict[str, int]:
        """The run's totals, for the replay summary and the daemon's last log line."""
        return {
            "consumed": self.total("streamwatch_messages"),
            "windowed": self.total("streamwatch_events"),
            "labels": self.total("streamwatch_label_events"),
            "bad": self.total("streamwatch_bad_events"),
            "late": self.total("streamwatch_late_events"),
            "redelivered": self.total("streamwatch_redelivered_messages"),
            "dead_letters": self.total("streamwatch_dead_letters"),
            "windows_closed": self.total("streamwatch_windows_closed"),
            "alerts_firing": self.total("streamwatch_alerts", status="firing"),
            "alerts_resolved": self.total("streamwatch_alerts", status="resolved"),
        }

    def lags(self) -> dict[str, int]:
        """The consumer lag last measured per partition, as "topic:partition"."""
        return {
            f"{sample.labels['topic']}:{sample.labels['partition']}": int(sample.value)
            for metric in self.lag.collect()
            for sample in metric.samples
        }

    def total(self, name: str, **labels: str) -> int:
        """The sum of a counter over the label values not given (0 if never counted)."""
        value = 0.0
        for metric in self.registry.collect():
            for sample in metric.samples:
                if sample.name == f"{name}_total" and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    value += sample.value
        return int(value)


class _Backlog(Collector):
    """The outbox's pending rows per sink, counted when scraped: the delivery workers
    change them between the loop's batches."""

    name = "streamwatch_outbox_pending"
    documentation = "Notifications stored in the outbox and not yet delivered, per sink"

    def __init__(self) -> None:
        self.sinks: tuple[str, ...] = ()
        self.count: Callable[[], Mapping[str, int]] = dict

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=["sink"])]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=["sink"])
        counts = self.count()
        for sink in sorted({*self.sinks, *counts}):
            family.add_metric([sink], counts.get(sink, 0))
        return [family]
