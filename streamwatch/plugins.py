"""Third-party detectors and sinks: the objects that the entry points of a group name,
each with where it came from, so that an error can name the package to blame."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import EntryPoint

from streamwatch.errors import ConfigError


def origin(point: EntryPoint) -> str:
    """E.g. ``entry point pager = thirdparty:KIND in group streamwatch.sinks (of thirdparty
    0.1)``."""
    where = f"entry point {point.name} = {point.value} in group {point.group}"
    if point.dist is not None:
        where += f" (of {point.dist.name} {point.dist.version})"
    return where


def load(points: Iterable[EntryPoint]) -> list[tuple[str, object]]:
    """Each entry point's object with its origin; a :class:`ConfigError` names one that
    cannot be loaded (a third party's import may raise anything)."""
    loaded = []
    for point in points:
        where = origin(point)
        try:
            loaded.append((where, point.load()))
        except Exception as exc:
            raise ConfigError(f"{where} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    return loaded
