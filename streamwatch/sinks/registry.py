"""Sink kinds: the one place that maps a ``kind`` of the settings to its sink.

A :class:`SinkKind` names a kind, its settings class (the one whose ``kind`` field is
that name) and how to build its sink. The built-in kinds import their sink's module only
when a sink of theirs is built: apprise loads all its plugins on import, and a kind no
one configured should cost nothing. Third parties add kinds through the
``streamwatch.sinks`` entry-point group, each entry point naming a :class:`SinkKind`,
e.g. in a ``pyproject.toml``::

    [project.entry-points."streamwatch.sinks"]
    pager = "streamwatch_pager:KIND"
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from streamwatch import plugins
from streamwatch.config import (
    ENTRY_POINT_GROUP,
    AlertmanagerSinkSettings,
    AppriseSinkSettings,
    FileSinkSettings,
    GithubIssueSinkSettings,
    JiraSinkSettings,
    KafkaSinkSettings,
    LogSinkSettings,
    RetrainSinkSettings,
    ReviewSinkSettings,
    Settings,
    SinkSettingsBase,
    WebhookSinkSettings,
)
from streamwatch.errors import ConfigError
from streamwatch.sinks.base import Sink

S = TypeVar("S", bound=SinkSettingsBase)


@dataclass(frozen=True, slots=True)
class SinkKind(Generic[S]):
    """A kind of sink. ``settings`` subclasses
    :class:`~streamwatch.config.SinkSettingsBase` with ``kind: Literal["<kind>"]``.
    ``build`` makes the sink from its name, its settings and all the settings (the Kafka
    sink borrows the source's brokers); it may raise
    :class:`~streamwatch.errors.ConfigError` and does not touch the network."""

    kind: str
    settings: type[S]
    build: Callable[[str, S, Settings], Sink]


def _log(name: str, settings: LogSinkSettings, everything: Settings) -> Sink:
    from streamwatch.sinks.log import LogSink

    return LogSink(name)


def _file(name: str, settings: FileSinkSettings, everything: Settings) -> Sink:
    from streamwatch.sinks.file import FileSink

    return FileSink(name, settings.path)


def _apprise(name: str, settings: AppriseSinkSettings, everything: Settings) -> Sink:
    from streamwatch.sinks.apprise import AppriseSink

    return AppriseSink(name, settings)


def _webhook(name: str, settings: WebhookSinkSettings, everything: Settings) -> Sink:
    from streamwatch.sinks.webhook import WebhookSink

    return WebhookSink(name, settings)


def _alertmanager(name: str, settings: AlertmanagerSinkSettings, everything: Settings) -> Sink:
    from streamwatch.sinks.alertmanager import AlertmanagerSink

    return AlertmanagerSink(name, settings)


def _retrain(name: str, settings: RetrainSinkSettings, everything: Settings) -> Sink:
    from streamwatch.sinks.retrain import RetrainSink

    return RetrainSink(name, settings)


def _jira(name: str, settings: JiraSinkSettings, everything: Settings) -> Sink:
    from streamwatch.sinks.tickets import jira_sink

    return jira_sink(name, settings)


def _github_issue(name: str, settings: GithubIssueSinkSettings, everything: Settings) -> Sink:
    from streamwatch.sinks.tickets import github_issue_sink

    return github_issue_sink(name, settings)


def _kafka(name: str, settings: KafkaSinkSettings, everything: Settings) -> Sink:
    from streamwatch.sinks.kafka import KafkaSink

    return KafkaSink(name, settings, everything.kafka)


def _review(name: str, settings: ReviewSinkSettings, everything: Settings) -> Sink:
    from streamwatch.sinks.review import review_sink

    return review_sink(name, settings, everything.kafka)


_BUILT_IN: tuple[SinkKind[Any], ...] = (
    SinkKind("log", LogSinkSettings, _log),
    SinkKind("file", FileSinkSettings, _file),
    SinkKind("apprise", AppriseSinkSettings, _apprise),
    SinkKind("webhook", WebhookSinkSettings, _webhook),
    SinkKind("alertmanager", AlertmanagerSinkSettings, _alertmanager),
    SinkKind("retrain", RetrainSinkSettings, _retrain),
    SinkKind("jira", JiraSinkSettings, _jira),
    SinkKind("github_issue", GithubIssueSinkSettings, _github_issue),
    SinkKind("kafka", KafkaSinkSettings, _kafka),
    SinkKind("review", ReviewSinkSettings, _review),
)
BUILT_IN: Mapping[str, SinkKind[Any]] = MappingProxyType({k.kind: k for k in _BUILT_IN})


def third_party(found: Iterable[EntryPoint]) -> dict[str, SinkKind[Any]]:
    """The kinds that ``found`` (entry points of the ``streamwatch.sinks`` group) register. A
    :class:`~streamwatch.errors.ConfigError` names the entry point that cannot be loaded,
    is no :class:`SinkKind`, or takes a kind that is built in or taken already."""
    kinds: dict[str, SinkKind[Any]] = {}
    origins: dict[str, str] = {}
    for origin, loaded in plugins.load(found):
        if not isinstance(loaded, SinkKind):
            what = type(loaded).__qualname__
            raise ConfigError(f"{origin}: loads an object of type {what}, not a SinkKind")
        kind = loaded.kind
        if kind in BUILT_IN:
            raise ConfigError(f"{origin}: sink kind {kind!r} clashes with the built-in one")
        if kinds.get(kind) is loaded:
            continue  # the same package found twice on the path
        if kind in kinds:
            raise ConfigError(f"{origin}: sink kind {kind!r} clashes with {origins[kind]}")
        kinds[kind] = loaded
        origins[kind] = origin
    return kinds


@functools.cache
def sink_kinds() -> Mapping[str, SinkKind[Any]]:
    """Every kind: the built-in ones and those installed, read once per process."""
    return MappingProxyType({**BUILT_IN, **third_party(entry_points(group=ENTRY_POINT_GROUP))})
