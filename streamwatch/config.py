"""The one Settings tree, read from the environment, env files and a secrets directory.

Every variable is ``STREAMWATCH_`` + the field path joined by ``__``, e.g.
``STREAMWATCH_WINDOW__SIZE=5m`` or ``STREAMWATCH_SINKS__AUDIT__PATH=alerts.jsonl``.
Nothing else in the package reads ``os.environ``: build a ``Settings`` once with
:func:`load_settings` and pass it in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from streamwatch.errors import ConfigError
from streamwatch.observe.redact import MaskedSecretUrl, MaskedUrl
from streamwatch.severity import Severity

ENV_PREFIX = "STREAMWATCH_"
NESTED = "__"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """``"90s"``, ``"5m"``, ``"1h"``, ``"2d"`` or a number of seconds, as seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number with a unit, e.g. 30s, 5m, 1h, 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"{value!r} is not a duration such as 30s, 5m, 1h or 1d")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    # Inputs stay out of validation errors: a sink's may hold a URL with its token.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class KafkaSettings(_Section):
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


class WindowSettings(_Section):
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


class ReferenceSettings(_Section):
    """What each window is compared with: a pinned file of events, or the first windows."""

    path: Path | None = Field(
        None, description="JSONL(.gz) file of events pinned as reference; else the first windows"
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


NumericStatistic = Literal["wasserstein", "psi", "jensen_shannon", "ks"]
CategoricalStatistic = Literal["total_variation", "jensen_shannon", "psi"]

# Effect-size thresholds (warning, critical) of each statistic. Wasserstein is
# normalised by the reference standard deviation: 0.1 reads "a tenth of a sd".
# Total variation, the share of mass that moved, is put on the same scale: between
# N(0, 1) and N(d, 1) it is 2 Phi(d/2) - 1, so 0.04 at 0.1 sd and 0.1 at 0.25 sd (the
# numeric critical). The warning sits a little above 0.04 because a sample's total
# variation is biased up by chance differences in every category (about 0.01 for five
# categories at 5,000 events a side, 0.03 for hundreds), which a shift of the mean
# is not; at 0.05 it still warns on 8 points moved at 5,000 events (a 0.2 sd shift's
# worth: the lowest of 600 windows read 0.07) and 12 points are critical.
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "wasserstein": (0.1, 0.25),
    "psi": (0.1, 0.25),
    "jensen_shannon": (0.1, 0.2),
    "ks": (0.1, 0.2),
    "total_variation": (0.05, 0.1),
}


class DriftSettings(_Section):
    """Feature or prediction drift: effect size decides severity, significance gates it."""

    enabled: bool = Field(True, description="run this detector")
    numeric_statistic: NumericStatistic = Field(
        "wasserstein", description="effect size that sets the severity of numeric columns"
    )
    categorical_statistic: CategoricalStatistic = Field(
        "total_variation",
        description="effect size that sets the severity of categorical columns",
    )
    numeric_warning: float | None = Field(None, gt=0, description="default follows the statistic")
    numeric_critical: float | None = Field(None, gt=0, description="default follows the statistic")
    categorical_warning: float | None = Field(
        None, gt=0, description="default follows the statistic"
    )
    categorical_critical: float | None = Field(
        None, gt=0, description="default follows the statistic"
    )
    # A daemon judges a window every few minutes, all day: at 1% a window it would raise
    # a false alarm every hundred windows (measured: 2 in 156 null windows of realistic
    # traffic); every detector is set to about one in a thousand.
    alpha: float = Field(0.001, gt=0, lt=1, description="false discovery rate per window")
    min_samples: int = Field(100, ge=2, description="fewer events in either window: no verdict")
    bins: int = Field(10, ge=2, le=100, description="coarse bins for PSI and Jensen-Shannon")
    max_categories: int = Field(200, ge=2, description="categories tracked per feature")

    @model_validator(mode="after")
    def _ordered(self) -> DriftSettings:
        for kind in ("numeric", "categorical"):
            warning, critical = self.thresholds(kind)
            if critical < warning:
                raise ValueError(
                    f"{kind}_critical ({critical}) is below {kind}_warning ({warning})"
                )
        return self

    def thresholds(self, kind: Literal["numeric", "categorical"]) -> tuple[float, float]:
        """(warning, critical) for numeric or categorical columns."""
        statistic = self.numeric_statistic if kind == "numeric" else self.categorical_statistic
        warning, critical = DEFAULT_THRESHOLDS[statistic]
        set_warning = self.numeric_warning if kind == "numeric" else self.categorical_warning
        set_critical = self.numeric_critical if kind == "numeric" else self.categorical_critical
        return (set_warning or warning, set_critical or critical)


Task = Literal["auto", "classification", "regression"]


class PerformanceSettings(_Section):
    """Performance against the reference once labels join (see detectors/performance)."""

    enabled: bool = Field(True, description="run this detector")
    # "auto" reads a model as a classifier when it sends scores, probabilities, or
    # string or boolean predictions; a classifier sending bare integers needs saying so.
    task: Task = Field("auto", description="classification, regression, or auto")
    tasks: dict[str, Task] = Field(default_factory=dict, description="model id -> its task")
    positive_class: str = Field("1", description="the class precision, recall, F1 are of")
    warning: float = Field(0.05, gt=0, description="relative degradation that warns")
    critical: float = Field(0.15, gt=0, description="relative degradation that is critical")
    alpha: float = Field(0.001, gt=0, lt=1, description="false discovery rate per window")
    min_labels: int = Field(100, ge=2, description="fewer labels on either side: no verdict")


class DataQualitySettings(_Section):
    """Missing values, out-of-range values, unseen categories, schema changes: a rate
    warns when it rose significantly over the reference's, by at least ``warning``."""

    enabled: bool = Field(True, description="run this detector")
    # The test decides; the warning, a floor, keeps a huge window from warning on a trivial rise,
    # and covers what the test cannot see: the share outside the range in the events
    # the grid was fitted on is 1.56% by construction, while later events' share is
    # 1.6% give or take 0.27 points (sd, 2,048 fitted events).
    warning: float = Field(
        0.01, gt=0, description="smallest absolute rise of a rate that warns, if significant"
    )
    critical: float = Field(
        0.2, gt=0, description="absolute rise of a rate that is critical, if significant"
    )
    alpha: float = Field(0.001, gt=0, lt=1, description="false discovery rate per window")
    min_samples: int = Field(100, ge=10, description="fewer events: no verdict")

    @model_validator(mode="after")
    def _ordered(self) -> DataQualitySettings:
        if self.critical < self.warning:
            raise ValueError(f"critical ({self.critical}) is below warning ({self.warning})")
        return self


class OutOfDistributionSettings(_Section):
    """The share of events far from the reference in all features at once (detectors/ood)."""

    enabled: bool = Field(True, description="run this detector")
    quantile: float = Field(0.99, gt=0.5, lt=1, description="reference distance quantile")
    max_features: int = Field(50, ge=2, description="numeric features used, most present first")
    warning: float = Field(0.02, gt=0, description="absolute rise of the share that warns")
    critical: float = Field(0.1, gt=0, description="absolute rise of the share, critical")
    alpha: float = Field(0.001, gt=0, lt=1, description="significance level")
    min_samples: int = Field(200, ge=10, description="fewer events: no fit, no verdict")


class OperationalSettings(_Section):
    """Latency, error rate and volume against the reference (detectors/operational)."""

    enabled: bool = Field(True, description="run this detector")
    latency_warning: float = Field(0.5, gt=0, description="relative p95/p99 rise that warns")
    latency_critical: float = Field(1.0, gt=0, description="relative rise that is critical")
    latency_p99_limit_ms: float | None = Field(None, gt=0, description="an absolute p99 limit")
    error_warning: float = Field(0.01, gt=0, description="error-rate increase that warns")
    error_critical: float = Field(0.05, gt=0, description="error-rate increase, critical")
    volume_warning: float = Field(2.0, gt=1, description="fold change of volume that warns")
    volume_critical: float = Field(4.0, gt=1, description="fold change that is critical")
    alpha: float = Field(
        0.001, gt=0, lt=1, description="significance level of a window's tests together"
    )
    min_samples: int = Field(100, ge=10, description="fewer events: no latency verdict")


class SliceSettings(_Section):
    """Subgroup performance and fairness (detectors/slices)."""

    enabled: bool = Field(True, description="run this detector")
    features: tuple[str, ...] = Field((), description="features to slice by, besides segments")
    protected: tuple[str, ...] = Field(
        (),
        description="attributes whose fairness gaps to check (sliced, listed as features or not)",
    )
    max_slices: int = Field(20, ge=2, description="values tracked per dimension; the rest: other")
    min_support: int = Field(
        100, ge=10, description="labelled events a slice needs, in the window and the reference"
    )
    warning: float = Field(
        0.05,
        gt=0,
        description="a slice this much worse than in the reference, or this much further "
        "behind the rest than in the reference, warns",
    )
    critical: float = Field(0.15, gt=0, description="this much worse is critical")
    # Many small slices are scanned every window, each two ways (42 tests for seven
    # slices): at this level about one window in a thousand breaches by chance, and a 5%
    # slice losing 10 points at 10,000 events a window is found within two windows.
    alpha: float = Field(0.001, gt=0, lt=1, description="false discovery rate per window")
    parity_warning: float = Field(0.1, gt=0, description="parity and odds gaps that warn")
    parity_critical: float = Field(0.2, gt=0, description="gaps that are critical")
    impact_warning: float = Field(0.8, gt=0, le=1, description="disparate impact below: warns")
    impact_critical: float = Field(0.6, gt=0, le=1, description="below this: critical")


class ShadowSettings(_Section):
    """Challenger versions against the champion (detectors/shadow)."""

    enabled: bool = Field(True, description="run this detector")
    champions: dict[str, str] = Field(
        default_factory=dict,
        description="model id -> champion version; only then are other versions compared",
    )
    disagreement_warning: float = Field(0.05, gt=0, description="disagreement that warns")
    disagreement_critical: float = Field(0.15, gt=0, description="disagreement, critical")
    score_warning: float = Field(0.05, gt=0, description="mean score difference that warns")
    score_critical: float = Field(0.1, gt=0, description="mean score difference, critical")
    alpha: float = Field(0.001, gt=0, lt=1, description="significance level")
    min_pairs: int = Field(100, ge=10, description="fewer pairs in a window: no verdict")
    max_waiting: int = Field(100_000, ge=1, description="challengers waiting for the champion")


class ConceptDriftSettings(_Section):
    """Concept drift: each window's errors against the reference's errors on the same
    kind of predictions, or a river change detector on the error stream (detectors/concept)."""

    enabled: bool = Field(True, description="run this detector")
    detector: Literal["reference", "adwin", "page_hinkley", "ddm", "eddm"] = Field(
        "reference",
        description="reference: a window's errors beyond those the reference makes on the "
        "same predictions (follows daily cycles); adwin, page_hinkley, ddm, eddm: a river "
        "change detector on the errors in arrival order (not seasonal-aware; ddm and eddm "
        "read classifiers' misses only)",
    )
    warning: float = Field(
        0.05,
        gt=0,
        description="excess error rate that warns (for a regressor: a share of the expected "
        "mean absolute error)",
    )
    critical: float = Field(0.1, gt=0, description="excess error rate that is critical")
    # One test per window, not a family: a strict level keeps chance excesses in windows
    # of a few hundred labels to about one in a thousand windows.
    alpha: float = Field(0.001, gt=0, lt=1, description="significance level")
    min_labels: int = Field(
        100, ge=10, description="fewer labels in the window or the reference: no verdict"
    )


class LabelShiftSettings(_Section):
    """Label shift: observed once labels join, estimated (BBSE) from predictions."""

    enabled: bool = Field(True, description="run this detector")
    # BBSE holds only under label shift (p(x|y) unchanged); under covariate shift it
    # reads moved predictions as moved priors. Turn it on where label shift is the
    # expected kind of change.
    estimate: bool = Field(False, description="estimate priors from predictions (BBSE)")
    warning: float = Field(0.1, gt=0, description="shift of the class priors that warns")
    critical: float = Field(0.2, gt=0, description="shift of the class priors that is critical")
    # One test per window (not a family under FDR control): a stricter level keeps false
    # alarms to about one in a thousand windows.
    alpha: float = Field(0.001, gt=0, lt=1, description="significance level")
    min_samples: int = Field(500, ge=10, description="labels (and predictions) needed")


class LabelSettings(_Section):
    """The label join: predictions wait for their labels (see join.py)."""

    horizon: Duration = Field(
        3600.0, ge=0, description="how long after a window ends its labels are awaited"
    )
    ttl: Duration = Field(7 * 86400.0, gt=0, description="how long a prediction waits at most")
    max_pending: int = Field(
        200_000, ge=1, description="predictions waiting per model; the oldest make room"
    )


class DetectorSettings(_Section):
    """The detectors run on each model's closed windows, each on or off by ``enabled``."""

    feature_drift: DriftSettings = Field(
        DriftSettings(), description="each feature of the events against the reference"
    )
    prediction_drift: DriftSettings = Field(
        DriftSettings(),
        description="the model's outputs: score, predicted class or value, probabilities",
    )
    performance: PerformanceSettings = PerformanceSettings()
    concept_drift: ConceptDriftSettings = ConceptDriftSettings()
    slices: SliceSettings = SliceSettings()
    shadow: ShadowSettings = ShadowSettings()
    label_shift: LabelShiftSettings = LabelShiftSettings()
    operational: OperationalSettings = OperationalSettings()
    data_quality: DataQualitySettings = DataQualitySettings()
    out_of_distribution: OutOfDistributionSettings = OutOfDistributionSettings()
    grid_sample: int = Field(
        2048, ge=16, description="events per model used to fix the fine numeric bin grid"
    )


def _alerting(severity: Severity) -> Severity:
    if severity is Severity.OK:
        raise ValueError("a sink's minimum severity is warning or critical")
    return severity


class _SinkBase(_Section):
    min_severity: Annotated[Severity, AfterValidator(_alerting)] = Field(
        Severity.WARNING, description="alerts of this severity or worse are sent"
    )
    matchers: dict[str, str] = Field(
        default_factory=dict, description="label -> value; only alerts with all these are sent"
    )
    timeout: Duration = Field(10.0, gt=0, description="one delivery attempt at most")
    max_attempts: int | None = Field(
        None,
        ge=1,
        description="attempts before a notification is dead; default: no limit but OUTBOX__MAX_AGE",
    )
    retry_base: Duration = Field(1.0, gt=0, description="first backoff; doubles per attempt")
    retry_cap: Duration = Field(
        50.0, gt=0, description="longest backoff: delivery resumes within this of a recovery"
    )


class LogSinkSettings(_SinkBase):
    """One JSON line per alert on standard output."""

    kind: Literal["log"]


class FileSinkSettings(_SinkBase):
    """Each notification as one JSON line appended to a file, each notification id once."""

    kind: Literal["file"]
    path: Path = Field(description="file the notifications are appended to")


class AppriseSinkSettings(_SinkBase):
    """Chat and email through apprise: mailto://, slack://, discord://, tgram://, ..."""

    kind: Literal["apprise"]
    urls: tuple[MaskedSecretUrl, ...] = Field(min_length=1, description="apprise URLs (secrets)")


class WebhookSinkSettings(_SinkBase):
    """Alertmanager's webhook payload, signed the Standard Webhooks way."""

    kind: Literal["webhook"]
    url: MaskedSecretUrl = Field(description="endpoint each notification is POSTed to")
    secret: SecretStr | None = Field(None, description="whsec_... signing secret")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="header -> value, sent with every request (secrets)"
    )


class RetrainSinkSettings(_SinkBase):
    """A retraining run triggered by a firing alert, at most once per model per cooldown."""

    kind: Literal["retrain"]
    min_severity: Annotated[Severity, AfterValidator(_alerting)] = Field(
        Severity.CRITICAL, description="alerts of this severity or worse start a run"
    )
    preset: Literal["github_workflow", "github_repository", "airflow", "generic"] = Field(
        "generic",
        description="the API called: GitHub workflow_dispatch or repository_dispatch, "
        "an Airflow DAG run (REST API v1), or any JSON endpoint",
    )
    url: MaskedSecretUrl = Field(description="the dispatch, DAG-run or generic endpoint")
    token: SecretStr | None = Field(None, description="bearer token (GitHub) or basic user:pass")
    ref: str = Field("main", description="git ref of a workflow_dispatch")
    event_type: str = Field("streamwatch-retrain", description="repository_dispatch type")
    body: str | None = Field(None, description="generic preset: JSON template with $fields")
    secret: SecretStr | None = Field(None, description="whsec_... signing secret (generic)")
    cooldown: Duration = Field(86400.0, ge=0, description="one trigger per model per cooldown")


class JiraSinkSettings(_SinkBase):
    """One Jira issue per alert (REST API v2); repeats and the resolution comment on it."""

    kind: Literal["jira"]
    url: MaskedUrl = Field(description="base URL, e.g. https://example.atlassian.net")
    project: str = Field(description="key of the project issues are created in")
    issue_type: str = Field("Bug", description="issue type of the issues created")
    user: str = Field(description="account email (Cloud) or user name")
    token: SecretStr = Field(description="API token (Cloud) or password, sent as basic auth")
    resolve_transition: str | None = Field(None, description="transition name on resolve")


class GithubIssueSinkSettings(_SinkBase):
    """One GitHub issue per alert; repeats and the resolution comment on it."""

    kind: Literal["github_issue"]
    repository: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="owner/name")
    token: SecretStr = Field(description="token with write access to the issues (to label them)")
    api_url: MaskedUrl = Field(
        "https://api.github.com",
        description="REST API root; GitHub Enterprise: https://HOST/api/v3",
    )
    close_on_resolve: bool = Field(True, description="close the issue when its alert resolves")


class KafkaSinkSettings(_SinkBase):
    """Each alert as JSON on a topic, keyed by fingerprint, with the source's security."""

    kind: Literal["kafka"]
    topic: str = Field(description="topic the alert records are produced to")
    bootstrap_servers: str | None = Field(None, description="default: the source's brokers")


SinkSettings = Annotated[
    LogSinkSettings
    | FileSinkSettings
    | AppriseSinkSettings
    | WebhookSinkSettings
    | RetrainSinkSettings
    | JiraSinkSettings
    | GithubIssueSinkSettings
    | KafkaSinkSettings,
    Field(discriminator="kind"),
]


class Hysteresis(_Section):
    """When an alert fires and resolves, counted in conclusive windows."""

    fire_after: int = Field(1, ge=1, description="breaching windows among the last of_last")
    of_last: int = Field(1, ge=1, description="the windows fire_after counts in")
    resolve_after: int = Field(1, ge=1, description="clean windows in a row that resolve")

    @model_validator(mode="after")
    def _fits(self) -> Hysteresis:
        if self.fire_after > self.of_last:
            raise ValueError(f"fire_after ({self.fire_after}) exceeds of_last ({self.of_last})")
        return self


class Silence(_Section):
    """Alerts matching every label here are recorded but not sent, from starts to ends
    (event time, epoch seconds or RFC 3339)."""

    matchers: dict[str, str] = Field(
        min_length=1, description="label -> value; alerts with all of these are held back"
    )
    starts: AwareDatetime = Field(description="start, in event time")
    ends: AwareDatetime = Field(description="end, in event time")
    comment: str = Field("", description="a note for readers of the configuration")


class AlertSettings(_Section):
    """The alert lifecycle (alerts.py): hysteresis, repeats, silences, extra labels."""

    hysteresis: Hysteresis = Field(
        Hysteresis(), description="the hysteresis of every detector without its own"
    )
    detectors: dict[str, Hysteresis] = Field(
        default_factory=dict,
        description="detector -> its own hysteresis; keys as in the alerts' detector label",
    )
    repeat_interval: Duration = Field(
        4 * 3600.0, gt=0, description="a firing alert is repeated at most this often"
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="label -> value added to every alert"
    )
    silences: tuple[Silence, ...] = Field((), description="alerts held back, recorded, not sent")
    redact: tuple[str, ...] = Field(
        (), description="feature names never written in an alert: a stable alias instead"
    )
    inhibit_equal: tuple[str, ...] = Field(
        ("model", "detector", "subject"),
        description="a critical alert inhibits the warnings that share these labels with it "
        "(Alertmanager's inhibit rule 'equal')",
    )

    def hysteresis_of(self, detector: str) -> Hysteresis:
        return self.detectors.get(detector, self.hysteresis)


class OutboxSettings(_Section):
    """Notifications waiting for delivery (outbox.py), beside the state file by default."""

    path: Path | None = Field(None, description="default: the state path + .outbox")
    drain_timeout: Duration = Field(30.0, ge=0, description="wait for sends at the end")
    max_age: Duration = Field(
        12 * 3600.0,
        gt=0,
        description="a notification is retried until it is this old, then dead (an outage "
        "longer than this loses it unless `streamwatch outbox retry` sends it again)",
    )


def _default_sinks() -> dict[str, SinkSettings]:
    return {"log": LogSinkSettings(kind="log")}


class ServerSettings(_Section):
    """The HTTP server of /metrics, /livez and /readyz (health.py)."""

    enabled: bool = Field(True, description="serve /metrics, /livez and /readyz")
    host: str = Field("127.0.0.1", description="0.0.0.0 to be scraped from outside the pod")
    port: int = Field(9108, ge=0, le=65535, description="0 picks a free port")
    liveness_timeout: Duration = Field(60.0, gt=0, description="/livez fails past this")
    # Under Kubernetes' default terminationGracePeriodSeconds of 30.
    grace_period: Duration = Field(25.0, gt=0, description="SIGTERM to exit, at most")


class StateSettings(_Section):
    """Checkpoints of the engine and the source offsets they cover (state.py)."""

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


class HistorySettings(_Section):
    """Closed windows kept in the state file for reports and ``status`` (history.py)."""

    enabled: bool = Field(True, description="keep a history of closed windows")
    max_age: Duration = Field(
        30 * 86400.0,
        gt=0,
        description="windows ending this long (event time) before a model's newest are pruned",
    )
    max_windows: int = Field(2000, ge=1, description="windows kept per model, the newest")


class ReportSettings(_Section):
    """The HTML report (report/): served at /report, linked from alerts."""

    base_url: MaskedUrl | None = Field(
        None,
        description="the daemon's server as readers reach it (e.g. https://sw.example.com); "
        "alerts then link to {base_url}/report?model=M&window=START",
    )


class Settings(BaseSettings):
    """Everything streamwatch reads from its environment. At the top level: bounds on what
    producers can make it hold."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED,
        secrets_nested_delimiter=NESTED,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    window: WindowSettings = WindowSettings()
    reference: ReferenceSettings = ReferenceSettings()
    labels: LabelSettings = LabelSettings()
    detectors: DetectorSettings = DetectorSettings()
    sinks: dict[str, SinkSettings] = Field(
        default_factory=_default_sinks,
        description="name -> a sink, whose kind decides its other settings",
    )
    alerts: AlertSettings = AlertSettings()
    outbox: OutboxSettings = OutboxSettings()
    server: ServerSettings = ServerSettings()
    state: StateSettings = StateSettings()
    history: HistorySettings = HistorySettings()
    report: ReportSettings = ReportSettings()
    max_message_bytes: int = Field(1_048_576, ge=1024, description="larger messages are bad")
    max_models: int = Field(
        1000, ge=1, description="models tracked; events of further models go to dead letters"
    )
    max_columns: int = Field(
        500, ge=1, description="feature columns tracked per model; further names are ignored"
    )
    max_sample_bytes: int = Field(
        4 << 20,
        ge=1024,
        description="bytes of held-back events per model during warm-up (their size in the "
        "checkpoint); at the limit the grid is fitted on the events held so far",
    )
    max_buffer_bytes: int = Field(
        64 << 20,
        ge=1024,
        description="bytes each per-model buffer holds at most (predictions waiting for labels, "
        "labels waiting for predictions, challengers waiting for the champion); the oldest "
        "entries make room",
    )
    models: list[str] = Field(
        default_factory=list,
        description="model ids watched; events of other ids go to dead letters (empty: any id)",
    )
    model_idle_ttl: Duration = Field(
        7 * 86400.0,
        gt=0,
        description="a model with no event for this long (event time, against the newest event "
        "seen of any model) is let go: its open windows are closed and recorded, its slot freed",
    )

    @model_validator(mode="after")
    def _changelog_client(self) -> Settings:
        if self.state.changelog_topic is not None and self.kafka.client != "kafka-python":
            raise ValueError(
                "STREAMWATCH_STATE__CHANGELOG_TOPIC (scale out) needs KAFKA__CLIENT=kafka-python"
            )
        return self

    @model_validator(mode="after")
    def _spread_models(self) -> Settings:
        """A spread model's partitions must bin alike and close windows alike."""
        spread = self.state.spread_models
        if not spread:
            return self
        needs = []
        if self.state.changelog_topic is None:
            needs.append("STREAMWATCH_STATE__CHANGELOG_TOPIC")
        if self.window.mode != "time":
            needs.append("WINDOW__MODE=time")
        if self.reference.path is None:
            needs.append("a pinned reference (REFERENCE__PATH), whose grid every partition shares")
        champions = sorted(set(spread) & set(self.detectors.shadow.champions))
        if champions:
            needs.append(f"no shadow champion (set for {', '.join(champions)})")
        if needs:
            raise ValueError("STREAMWATCH_STATE__SPREAD_MODELS needs " + "; ".join(needs))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A secret file is named like its variable (streamwatch_sinks__retrain__secret); the
        # nested source splits the name at "__" into the settings' sections.
        secrets = NestedSecretsSettingsSource(file_secret_settings)
        return init_settings, env_settings, dotenv_settings, secrets


def load_settings(
    env_files: Sequence[Path] = (), secrets_dir: Path | None = None, **overrides: Any
) -> Settings:
    """Build the settings; raise :class:`ConfigError` naming the variable that is wrong."""
    for path in env_files:
        if not path.is_file():
            raise ConfigError(f"env file {path} does not exist")
    if secrets_dir is not None and not secrets_dir.is_dir():
        raise ConfigError(f"secrets directory {secrets_dir} does not exist")
    try:
        return Settings(
            _env_file=tuple(env_files) or None,
            _secrets_dir=secrets_dir,
            **overrides,
        )
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None


def env_name(loc: Sequence[int | str]) -> str:
    """The variable behind a validation error location, e.g. STREAMWATCH_WINDOW__SIZE."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    # Inside the sinks' discriminated union pydantic repeats the kind in the path:
    # ("sinks", "audit", "file", "path") is STREAMWATCH_SINKS__AUDIT__PATH.
    if len(parts) >= 4 and parts[0] == "sinks":
        del parts[2]
    name = NESTED.join(parts).upper()
    # An unknown variable of an env file is reported under its own, prefixed, name.
    return name if name.startswith(ENV_PREFIX) else ENV_PREFIX + name


def _explain(exc: ValidationError) -> str:
    lines = [f"{env_name(error['loc'])}: {error['msg']}" for error in exc.errors()]
    return "invalid configuration:\n  " + "\n  ".join(lines)


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as JSON-able data with every secret masked."""
    return settings.model_dump(mode="json")
