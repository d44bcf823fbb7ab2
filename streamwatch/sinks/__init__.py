"""Sinks, chosen by ``kind`` from the settings through one registry."""

from __future__ import annotations

from dataclasses import dataclass

from streamwatch.config import Settings, SinkSettings
from streamwatch.errors import ConfigError
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult, Sink
from streamwatch.sinks.registry import SinkKind, sink_kinds

__all__ = [
    "Delivered",
    "DeliveryFailed",
    "DeliveryResult",
    "RoutedSink",
    "Sink",
    "SinkKind",
    "build_sink",
    "build_sinks",
]


def build_sink(name: str, settings: SinkSettings, everything: Settings) -> Sink:
    """The sink of ``settings.kind``, as its kind in :mod:`streamwatch.sinks.registry`
    builds it."""
    kind = sink_kinds().get(settings.kind)
    if kind is None:
        known = ", ".join(sorted(sink_kinds()))
        raise ConfigError(f"sink {name}: no sink kind {settings.kind!r} (known: {known})")
    return kind.build(name, settings, everything)


@dataclass(frozen=True, slots=True)
class RoutedSink:
    """A sink with its settings: what it wants to hear about, and how to retry it."""

    sink: Sink
    settings: SinkSettings


def build_sinks(settings: Settings) -> list[RoutedSink]:
    return [
        RoutedSink(build_sink(name, s, settings), s) for name, s in sorted(settings.sinks.items())
    ]
