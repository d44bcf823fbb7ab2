"""Sinks, chosen by ``kind`` from the settings through one registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamwatch.config import FileSinkSettings, LogSinkSettings, SinkSettings
from streamwatch.detectors import Severity
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult, Sink
from streamwatch.sinks.file import FileSink
from streamwatch.sinks.log import LogSink

__all__ = [
    "Delivered",
    "DeliveryFailed",
    "DeliveryResult",
    "RoutedSink",
    "Sink",
    "build_sink",
    "build_sinks",
]


def build_sink(name: str, settings: SinkSettings) -> Sink:
    """The sink of ``settings.kind``: the one place that maps kinds to classes."""
    match settings:
        case LogSinkSettings():
            return LogSink(name)
        case FileSinkSettings():
            return FileSink(name, settings.path)


@dataclass(frozen=True, slots=True)
class RoutedSink:
    """A sink with the least severity it wants to hear about."""

    sink: Sink
    min_severity: Severity


def build_sinks(settings: Mapping[str, SinkSettings]) -> list[RoutedSink]:
    return [RoutedSink(build_sink(name, s), s.min_severity) for name, s in sorted(settings.items())]
