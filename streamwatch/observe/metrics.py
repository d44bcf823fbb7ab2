"""Every Prometheus metric of streamwatch, defined once against an injected registry.

Labels are bounded: model ids, detector and sink names from the config, bad-event
reasons from a fixed list, severities and statuses.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        # Only detectors whose subjects are few per model (not one per feature or slice).
        self.statistic = Gauge(
            "streamwatch_statistic",
            "The latest value of a model-level detector statistic",
            ["model", "detector", "subject", "statistic"],
            registry=registry,
        )

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
