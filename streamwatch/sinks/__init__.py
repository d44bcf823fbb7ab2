"""Sinks, chosen by ``kind`` from the settings through one registry."""

from __future__ import annotations

from dataclasses import dataclass

from streamwatch.config import (
    AppriseSinkSettings,
    FileSinkSettings,
    GithubIssueSinkSettings,
    JiraSinkSettings,
    KafkaSinkSettings,
    LogSinkSettings,
    RetrainSinkSettings,
    Settings,
    SinkSettings,
    WebhookSinkSettings,
)
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult, Sink

__all__ = [
    "Delivered",
    "DeliveryFailed",
    "DeliveryResult",
    "RoutedSink",
    "Sink",
    "build_sink",
    "build_sinks",
]


def build_sink(name: str, settings: SinkSettings, everything: Settings) -> Sink:
    """The sink of ``settings.kind``: the one place that maps kinds to classes. Each
    module is imported when its kind is configured (apprise loads many plugins)."""
    match settings:
        case LogSinkSettings():
            from streamwatch.sinks.log import LogSink

            return LogSink(name)
        case FileSinkSettings():
            from streamwatch.sinks.file import FileSink

            return FileSink(name, settings.path)
        case AppriseSinkSettings():
            from streamwatch.sinks.apprise import AppriseSink

            return AppriseSink(name, settings)
        case WebhookSinkSettings():
            from streamwatch.sinks.webhook import WebhookSink

            return WebhookSink(name, settings)
        case RetrainSinkSettings():
            from streamwatch.sinks.retrain import RetrainSink

            return RetrainSink(name, settings)
        case JiraSinkSettings() | GithubIssueSinkSettings():
            from streamwatch.sinks.tickets import ticket_sink

            return ticket_sink(name, settings)
        case KafkaSinkSettings():
            from streamwatch.sinks.kafka import KafkaSink

            return KafkaSink(name, settings, everything.kafka)


@dataclass(frozen=True, slots=True)
class RoutedSink:
    """A sink with its settings: what it wants to hear about, and how to retry it."""

    sink: Sink
    settings: SinkSettings


def build_sinks(settings: Settings) -> list[RoutedSink]:
    return [
        RoutedSink(build_sink(name, s, settings), s) for name, s in sorted(settings.sinks.items())
    ]
