"""The daemon's own running: the Kafka source, windows, the reference, the label join,
the outbox, the HTTP server, state, history and the report."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from streamwatch.config.base import Duration, Section, parse_duration
from streamwatch.observe.redact import MaskedUrl


class KafkaSettings(Section):
    """The Kafka source: predictions and labels are consumed from these topics (sources/)."""

    client: Literal["kafka-python", "confluent"] = Field(
        "kafka-python",
        description="Kafka client: kafka-python (pure Python) or confluent "
        "(librdkafka: several times more events per core)",
    )
    bootstrap_servers: str = Field("localhost:9092", description="host:port[,host:port...]")
    topics: tuple[str, ...] = Field(("predictions",), description="topics to consume")
    group_id: str = Field("streamwatch", description="consumer group id")
    group_instance_id: str | None = Field(
        None,
        description="static membership: this instance's stable name in the group (e.g. the "
        "pod name), so that a restart within the session timeout moves no partition",
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a group without committed offsets starts reading"
    )
    dlq_topic: str | None = Field(None, description="dead-letter topic for bad messages")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how clients reach the brokers: TLS or not, SASL or not"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism, with a SASL_ protocol; unset: no SASL"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password")
    ssl_cafile: Path | None = Field(
        None, description="CA certificates (PEM) the brokers' TLS certificates are checked with"
    )
    connect_timeout: Duration = Field(10.0, gt=0, description="per attempt to reach the cluster")
    max_fetch_bytes: int = Field(
        16 << 20, ge=1 << 20, description="largest message fetched or dead-lettered"
    )


class WindowSettings(Section):
    """Tumbling windows per model, by event time (with a watermark) or by count (windows.py)."""

    mode: Literal["time", "count"] = Field("time", description="event-time or event-count")
    size: str = Field(
        "5m",
        description="duration (time mode) or number of events (count)",
        validate_default=True,  # so that MODE=count alone is caught, not the default 5m
    )
    allowed_lateness: Duration = Field(60.0, description="how late an event may arrive")
    max_future: Duration = Field(
        86400.0, gt=0, description="events stamped further ahead of the clock are bad"
    )

    @field_validator("size")
    @classmethod
    def _size_fits_mode(cls, size: str, info: ValidationInfo) -> str:
        if info.data.get("mode") == "count":
            if not size.strip().isdigit() or int(size) < 1:
                raise ValueError(f"{size!r} is not a positive event count (count mode)")
        elif parse_duration(size) <= 0:
            raise ValueError("the window size must be a positive duration")
        return size

    @property
    def seconds(self) -> float:
        return parse_duration(self.size)

    @property
    def events(self) -> int:
        return int(self.size)


class ReferenceSettings(Section):
    """What each window is compared with: a pinned file of events, or the first windows."""

    path: Path | None = Field(
        None,
        description="events pinned as reference: a JSONL(.gz) file, or a table (Parquet, CSV: "
        "a file or a directory); else the first windows",
    )
    min_events: int = Field(
        1000, ge=1, description="first closed windows are pooled into the reference up to this"
    )
    season: Duration = Field(
        0.0,
        ge=0,
        description="the period of the stream's cycle (e.g. 1d): the reference then covers "
        "a whole one and each window is compared with the reference at its own phase",
    )
    phases: int = Field(24, ge=1, description="equal parts of the season compared apart")


class LabelSettings(Section):
    """The label join: predictions wait for their labels (see join.py)."""

    horizon: Duration = Field(
        3600.0, ge=0, description="how long after a window ends its labels are awaited"
    )
    ttl: Duration = Field(7 * 86400.0, gt=0, description="how long a prediction waits at most")
    max_pending: int = Field(
        200_000, ge=1, description="predictions waiting per model; the oldest make room"
    )


class OutboxSettings(Section):
    """Notifications waiting for delivery (alerting/outbox.py), beside the state file by default."""

    path: Path | None = Field(None, description="default: the state path + .outbox")
    drain_timeout: Duration = Field(30.0, ge=0, description="wait for sends at the end")
    max_age: Duration = Field(
        12 * 3600.0,
        gt=0,
        description="a notification is retried until it is this old, then dead (an outage "
        "longer than this loses it unless `streamwatch outbox retry` sends it again)",
    )


class ServerSettings(Section):
    """The HTTP server of /metrics, /livez and /readyz (observe/health.py)."""

    enabled: bool = Field(True, description="serve /metrics, /livez and /readyz")
    host: str = Field("127.0.0.1", description="0.0.0.0 to be scraped from outside the pod")
    port: int = Field(9108, ge=0, le=65535, description="0 picks a free port")
    liveness_timeout: Duration = Field(60.0, gt=0, description="/livez fails past this")
    # Under Kubernetes' default terminationGracePeriodSeconds of 30.
    grace_period: Duration = Field(25.0, gt=0, description="SIGTERM to exit, at most")


class MetricsSettings(Section):
    """What /metrics shows of the detectors (observe/metrics.py)."""

    max_subjects: int = Field(
        20,
        ge=0,
        description="per model and detector, the subjects (features, slices, ...) whose "
        "statistic is exported as a gauge, the most breached first",
    )


class StateSettings(Section):
    """Checkpoints of the engine and the source offsets they cover (state/)."""

    path: Path = Field(
        Path("streamwatch-state.sqlite"), description="SQLite file the checkpoints are written to"
    )
    checkpoint_interval: Duration = Field(
        10.0, description="least time between checkpoints, and so between offset commits"
    )
    changelog_topic: str | None = Field(
        None,
        description="scale out: state is kept per partition and each checkpoint also writes "
        "it to this compacted topic (created if missing), so that it follows its partition to "
        "whichever instance of the group is assigned it; kafka-python client only",
    )
    spread_models: list[str] = Field(
        default_factory=list,
        description="scale out: models keyed by event id, so that their events spread over "
        "every partition; each partition's closed windows go to the topic {changelog}.partials "
        "and one instance merges and evaluates them (needs time windows and a pinned reference)",
    )
    aggregate_timeout: Duration = Field(
        300.0,
        gt=0,
        description="how long a spread model's window waits for partitions that have not passed "
        "its end, once another partition's share came; then it is evaluated without them",
    )

    @property
    def partials_topic(self) -> str:
        """Where spread models' closed windows go, partition by partition."""
        return f"{self.changelog_topic}.partials"


class HistorySettings(Section):
    """Closed windows kept in the state file for reports and ``status`` (observe/history.py)."""

    enabled: bool = Field(True, description="keep a history of closed windows")
    max_age: Duration = Field(
        30 * 86400.0,
        gt=0,
        description="windows ending this long (event time) before a model's newest are pruned",
    )
    max_windows: int = Field(2000, ge=1, description="windows kept per model, the newest")


class ReportSettings(Section):
    """The HTML report (report/): served at /report, linked from alerts."""

    base_url: MaskedUrl | None = Field(
        None,
        description="the daemon's server as readers reach it (e.g. https://sw.example.com); "
        "alerts then link to {base_url}/report?model=M&window=START",
    )
