"""What each window is compared with: a pinned file of events, or a model's first
closed windows pooled.

Real streams have seasons: traffic, the mix of inputs and so the error rate follow the
time of day. A window at 3 a.m. compared with a whole day pooled differs from it with
nothing changed, and every detector would say so. With ``REFERENCE__SEASON=1d`` the
reference covers a whole season and is pooled by phase as well (``REFERENCE__PHASES``
equal parts of the season, 24 by default: the hours of the day), and each window is
compared with the reference at its own phase. A change is then a change against the
same time of day, at full sensitivity; the drift within one phase (a 0.5-sd daily
cycle moves a mean by at most 0.13 sd within an hour) is what remains.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, Self, TypeVar

import numpy as np
from numpy.typing import NDArray

from streamwatch.batch import Batch, FloatArray, Schema
from streamwatch.config import ReferenceSettings, Settings
from streamwatch.errors import ConfigError
from streamwatch.events import Event, decode_batch
from streamwatch.events.reader import Reader
from streamwatch.pipeline.by_model import by_model
from streamwatch.sources.tables import open_files
from streamwatch.windows import WindowBounds

log = logging.getLogger("streamwatch.reference")


@dataclass(frozen=True, slots=True)
class Pinned:
    """One model's reference events as columns, with the schema they were read with, and
    the labels in the file (label events, and predictions that came with theirs)."""

    schema: Schema
    batch: Batch
    labels: Sequence[Event] = ()


def load_reference(path: Path, settings: Settings) -> dict[str, Pinned]:
    """Read a reference file (JSONL, or a table: see sources/tables.py) into columns per
    model; bad events are skipped and counted."""
    source = open_files([path], settings.table)
    schemas: dict[str, Schema] = {}
    parts: dict[str, list[Batch]] = {}
    labels: dict[str, list[Event]] = {}
    bad, reader = 0, Reader()
    while (messages := source.poll(10_000)) is not None:
        decoded = decode_batch(messages, settings.max_message_bytes, reader=reader)
        bad += len(decoded.bad)
        for model_id, events in by_model(decoded.columns).items():
            if events.predictions.n:
                schema = schemas.setdefault(model_id, Schema.of(model_id, settings))
                parts.setdefault(model_id, []).append(schema.build(events.predictions))
            labels.setdefault(model_id, []).extend(events.labels)
    if bad:
        log.warning("reference file has bad events", extra={"path": str(path), "bad": bad})
    if not parts:
        raise ConfigError(f"reference file {path} holds no prediction events")
    return {
        m: Pinned(schemas[m], Batch.concat(batches), labels.get(m, ()))
        for m, batches in parts.items()
    }


class Pooled(Protocol):
    """A detector state that windows pool into: counted, mergeable, checkpointable."""

    @property
    def n(self) -> int: ...

    def merge(self, other: Self) -> None: ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


S = TypeVar("S", bound=Pooled)


class ReferencePool(Generic[S]):
    """A model's first closed windows, pooled into its reference until it holds
    ``min_events`` and, with a season, covers a whole one; with a season, pooled by
    phase too."""

    def __init__(self, settings: ReferenceSettings, new: Callable[[], S]) -> None:
        self.settings = settings
        self.new = new
        self.state: S | None = None
        self.phases: dict[int, S] = {}
        self.start = math.inf  # the event time the reference covers
        self.end = -math.inf
        self.complete = False

    def phases_of(self, times: FloatArray) -> NDArray[np.int64]:
        """The part of the season each event time falls in (0 without a season)."""
        season = self.settings.season
        if not season:
            return np.zeros(len(times), dtype=np.int64)
        return (times % season / season * self.settings.phases).astype(np.int64)

    @property
    def full(self) -> bool:
        """Whether the reference holds all it will: complete, or enough that the next
        window will not be pooled (its state is final)."""
        return self.complete or (
            self.state is not None
            and self.state.n >= self.settings.min_events
            and self.end - self.start >= self.settings.season
        )

    def pin(self, state: S, phases: Mapping[int, S]) -> None:
        """Take a reference that is complete as it is (a pinned file)."""
        self.state, self.phases, self.complete = state, dict(phases), True

    def add(self, bounds: WindowBounds, window: S) -> bool:
        """Pool a closed window while the reference is incomplete; False once it is
        complete (the window is then to be compared with :meth:`of`)."""
        if self.complete:
            return False
        if self.state is not None and (
            self.state.n >= self.settings.min_events
            and self.end - self.start >= self.settings.season
        ):
            self.complete = True
            return False
        if self.state is None:
            self.state = self.new()
        self.state.merge(window)
        if self.settings.season:
            self.phases.setdefault(self._phase_of(bounds), self.new()).merge(window)
        self.start, self.end = min(self.start, bounds.start), max(self.end, bounds.end)
        return True

    def of(self, bounds: WindowBounds) -> S:
        """The reference a window is compared with: its phase's, where that has events."""
        assert self.state is not None
        phase = self.phases.get(self._phase_of(bounds))
        return phase if phase is not None and phase.n > 0 else self.state

    def _phase_of(self, bounds: WindowBounds) -> int:
        return int(self.phases_of(np.array([(bounds.start + bounds.end) / 2]))[0])

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": None if self.state is None else self.state.snapshot(),
            "phases": [[p, s.snapshot()] for p, s in sorted(self.phases.items())],
            "covers": [self.start, self.end],
            "complete": self.complete,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.state = None if state["state"] is None else self._restored(state["state"])
        self.phases = {int(p): self._restored(s) for p, s in state["phases"]}
        self.start, self.end = (float(t) for t in state["covers"])
        self.complete = bool(state["complete"])

    def _restored(self, snapshot: Any) -> S:
        restored = self.new()
        restored.restore(snapshot)
        return restored
