"""streamwatch: a real-time drift and alerting daemon for deployed ML models."""

from streamwatch.config import Settings, load_settings
from streamwatch.detectors import Finding, Severity
from streamwatch.errors import ConfigError, SourceError, StreamwatchError
from streamwatch.events import BadEvent, Event
from streamwatch.pipeline.engine import Engine

__all__ = [
    "BadEvent",
    "ConfigError",
    "Engine",
    "Event",
    "Finding",
    "Settings",
    "Severity",
    "SourceError",
    "StreamwatchError",
    "load_settings",
]
__version__ = "0.1.0"
