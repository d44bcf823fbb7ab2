"""Sources of raw messages: Kafka (the daemon) and replay files."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from streamwatch.sources.base import Hooks, Message, Offsets, Source
from streamwatch.sources.replay import ReplaySource

if TYPE_CHECKING:
    from streamwatch.config import KafkaSettings
    from streamwatch.observe.metrics import Metrics
    from streamwatch.sources.confluent import ConfluentSource
    from streamwatch.sources.kafka import KafkaSource

__all__ = ["Hooks", "Message", "Offsets", "ReplaySource", "Source", "kafka_source"]


def kafka_source(
    settings: KafkaSettings,
    metrics: Metrics,
    stopping: threading.Event,
    hooks: Hooks,
) -> KafkaSource | ConfluentSource:
    """The consumer of ``settings.client``; only that client's library is imported."""
    if settings.client == "confluent":
        from streamwatch.sources.confluent import ConfluentSource

        return ConfluentSource(settings, metrics, stopping, hooks)
    from streamwatch.sources.kafka import KafkaSource

    return KafkaSource(settings, metrics, stopping, hooks)
