"""Sources of raw messages: Kafka (the daemon) and replay files."""

from streamwatch.sources.base import Message, Offsets, Source
from streamwatch.sources.replay import ReplaySource

__all__ = ["Message", "Offsets", "ReplaySource", "Source"]
