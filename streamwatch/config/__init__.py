"""The one Settings tree, read from the environment, env files and a secrets directory.

Every variable is ``STREAMWATCH_`` + the field path joined by ``__``, e.g.
``STREAMWATCH_WINDOW__SIZE=5m`` or ``STREAMWATCH_SINKS__AUDIT__PATH=alerts.jsonl``.
Nothing else in the package reads ``os.environ``: build a ``Settings`` once with
:func:`load_settings` and pass it in.

Each section lives beside its owner's others: ``base.py`` holds the variable naming,
durations and the section base class; ``runtime.py`` the daemon's own running (the Kafka
source, windows, the reference, the label join, the outbox, the HTTP server, state,
history, the report); ``detectors.py`` :class:`DetectorSettings` and the families judged
on a window's events, ``outcome_detectors.py`` those judged on outcomes; ``sinks.py``
every sink's settings and :data:`SINK_SETTINGS`, the registry of kinds that packages
extend through the ``streamwatch.sinks`` entry-point group; ``alerts.py`` the alert
lifecycle; ``tables.py`` which columns of a table are which event fields;
``settings.py`` the root, :class:`Settings`, with every check that spans sections, and
:func:`load_settings`; ``variables.py`` which variables of the environment
are no setting, and which one holds a value that is not the JSON its setting takes.
"""

from streamwatch.config.alerts import AlertSettings, Hysteresis, Silence
from streamwatch.config.base import ENV_PREFIX, NESTED, Duration, Section, parse_duration
from streamwatch.config.detectors import (
    DEFAULT_THRESHOLDS,
    CategoricalStatistic,
    DataQualitySettings,
    DetectorSettings,
    DriftSettings,
    NumericStatistic,
    OperationalSettings,
    OutOfDistributionSettings,
)
from streamwatch.config.outcome_detectors import (
    ConceptDriftSettings,
    EstimatedPerformanceSettings,
    LabelShiftSettings,
    PerformanceSettings,
    ShadowSettings,
    SliceSettings,
    Task,
)
from streamwatch.config.review import ReviewRule, ReviewSettings
from streamwatch.config.runtime import (
    HistorySettings,
    KafkaSettings,
    LabelSettings,
    MetricsSettings,
    OutboxSettings,
    ReferenceSettings,
    ReportSettings,
    ServerSettings,
    StateSettings,
    WindowSettings,
)
from streamwatch.config.settings import (
    Settings,
    add_sink_kinds,
    env_name,
    load_settings,
    masked,
)
from streamwatch.config.sinks import (
    ENTRY_POINT_GROUP,
    SINK_SETTINGS,
    AlertmanagerSinkSettings,
    AppriseSinkSettings,
    FileSinkSettings,
    GithubIssueSinkSettings,
    JiraSinkSettings,
    KafkaSinkSettings,
    LogSinkSettings,
    RetrainSinkSettings,
    ReviewSinkSettings,
    SinkSettings,
    SinkSettingsBase,
    WebhookSinkSettings,
    kind_of,
    webhook_signer,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ENTRY_POINT_GROUP",
    "ENV_PREFIX",
    "NESTED",
    "SINK_SETTINGS",
    "AlertSettings",
    "AlertmanagerSinkSettings",
    "AppriseSinkSettings",
    "CategoricalStatistic",
    "ConceptDriftSettings",
    "DataQualitySettings",
    "DetectorSettings",
    "DriftSettings",
    "Duration",
    "EstimatedPerformanceSettings",
    "FileSinkSettings",
    "GithubIssueSinkSettings",
    "HistorySettings",
    "Hysteresis",
    "JiraSinkSettings",
    "KafkaSettings",
    "KafkaSinkSettings",
    "LabelSettings",
    "LabelShiftSettings",
    "LogSinkSettings",
    "MetricsSettings",
    "NumericStatistic",
    "OperationalSettings",
    "OutOfDistributionSettings",
    "OutboxSettings",
    "PerformanceSettings",
    "ReferenceSettings",
    "ReportSettings",
    "RetrainSinkSettings",
    "ReviewRule",
    "ReviewSettings",
    "ReviewSinkSettings",
    "Section",
    "ServerSettings",
    "Settings",
    "ShadowSettings",
    "Silence",
    "SinkSettings",
    "SinkSettingsBase",
    "SliceSettings",
    "StateSettings",
    "Task",
    "WebhookSinkSettings",
    "WindowSettings",
    "env_name",
    "kind_of",
    "load_settings",
    "masked",
    "parse_duration",
    "webhook_signer",
]

# Last, when every name above is bound: a third-party sink kind's module, loaded here,
# may import streamwatch.config (and streamwatch.sinks) itself.
add_sink_kinds()
