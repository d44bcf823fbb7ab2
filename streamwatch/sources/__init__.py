"""Sources of raw messages: Kafka (the daemon) and replay files."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from streamwatch.sources.base import Message, Offsets, Source
from streamwatch.sources.replay import ReplaySource

if TYPE_CHECKING:
    from streamwatch.config import KafkaSettings
    from streamwatch.metrics import Metrics
    from streamwatch.sources.confluent import ConfluentSource
    from streamwatch.sources.kafka import KafkaSource

__all__ = ["Message", "Offsets", "ReplaySource", "Source", "kafka_source"]


def kafka_source(
    settings: KafkaSettings,
    metrics: Metrics,
    stopping: threading.Event,
    positions: Callable[[], Offsets] = dict,
    on_revoke: Callable[[Collection[int]], Offsets] = lambda partitions: {},
    on_assign: Callable[[Collection[int]], Offsets] | None = None,
    on_lost: Callable[[Collection[int]], Offsets] = lambda partitions: {},
    partitioned: bool = False,
) -> KafkaSource | ConfluentSource:
    """The consumer of ``settings.client``; only that client's library is imported.
    ``on_revoke``, ``on_assign`` and ``on_lost`` take the partition numbers that move and
    return the offsets to commit, and to resume from; the last three arguments (scaling
    out) are kafka-python's."""
    if settings.client == "confluent":
        from streamwatch.sources.confluent import ConfluentSource

        return ConfluentSource(settings, metrics, stopping, positions, on_revoke)
    from streamwatch.sources.kafka import KafkaSource

    return KafkaSource(
        settings, metrics, stopping, positions, on_revoke, on_assign, on_lost, partitioned
    )
