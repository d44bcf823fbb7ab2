"""Spread models: keyed by event id, so that their events come through every partition.

Each partition keeps a :class:`Part` of such a model: its windows over the events that
came through that partition, binned on the pinned reference's grid (the same on every
instance). A window that closes there is not evaluated there: at the partition's next
checkpoint, before its state goes to the changelog, its detector state is published to
the partials topic, keyed by model, with how far the partition's watermark has come.

Whoever owns the model's partition of the partials topic keeps its :class:`Aggregate`
(part of that partition's state, like any model's). It merges a window's partials in
partition order once every partition has passed the window's end, or once
``STATE__AGGREGATE_TIMEOUT`` has passed since the first came (a warning finding names the
partitions left out), and evaluates the merge against the reference: one evaluation,
and so one alert, per model and window. Partials published twice (a partition redone
after a crash) are the same, and the second is ignored.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from streamwatch.detectors import Finding, Severity
from streamwatch.errors import StateError
from streamwatch.events import Event
from streamwatch.model import ClosedWindow, ModelMonitor
from streamwatch.state import FORMAT
from streamwatch.windows import LATE, TimeWindows, WindowBounds

log = logging.getLogger("streamwatch.spread")


class Partial(msgspec.Struct, array_like=True):
    """What one partition publishes of a spread model at a checkpoint: the windows that
    closed there since the last (index, events, detector state), and its watermark."""

    format: int
    shape: str
    model: str
    partition: int
    watermark: float
    windows: list[tuple[int, int, dict[str, Any]]]


def decode(value: bytes, shape: str) -> Partial:
    """A partial record; refused if unreadable or written with other settings."""
    try:
        partial = msgspec.msgpack.decode(value, type=Partial)
    except msgspec.DecodeError as exc:
        raise StateError(f"unreadable partial: {exc}") from exc
    if partial.format != FORMAT or partial.shape != shape:
        raise StateError(
            f"partial of {partial.model!r} from partition {partial.partition} was written by "
            "another streamwatch format or with other window or detector settings"
        )
    return partial


class Part:
    """One partition's share of a spread model."""

    def __init__(self, judge: ModelMonitor) -> None:
        window = judge.settings.window
        self.judge = judge  # its schema and grid are the pinned reference's
        self.windows = TimeWindows(judge.new_state, window.seconds, window.allowed_lateness)
        self.closed: list[tuple[int, int, dict[str, Any]]] = []  # not yet published
        self.published = -math.inf  # the watermark last published

    def process(self, predictions: list[Event]) -> tuple[int, int]:
        """Window predictions; return how many were windowed and how many were late."""
        batch = self.judge.schema.build(predictions)
        late = int((self.windows.add(batch) == LATE).sum())
        self.closed += [(b.index, n, s.snapshot()) for b, s, n in self.windows.pop_closed()]
        return batch.n - late, late

    def partial(self, model: str, partition: int, shape: str) -> Partial | None:
        """What to publish: closed windows, or at least a watermark that moved."""
        watermark = self.windows.watermark
        if not self.closed and watermark <= self.published:
            return None
        return Partial(FORMAT, shape, model, partition, watermark, self.closed)

    def sent(self, partial: Partial) -> None:
        self.closed = []
        self.published = partial.watermark

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": self.windows.snapshot(),
            "closed": self.closed,
            "published": self.published,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.windows.restore(state["windows"])
        self.closed = [(int(i), int(n), s) for i, n, s in state["closed"]]
        self.published = float(state["published"])


class Aggregate:
    """A spread model's partials, merged and evaluated window by window by its owner."""

    def __init__(self, judge: ModelMonitor, partitions: int, timeout: float) -> None:
        self.judge = judge
        self.partitions = partitions
        self.timeout = timeout
        self.size = judge.settings.window.seconds
        self.pending: dict[int, dict[int, tuple[int, dict[str, Any]]]] = {}  # window -> part
        self.passed: dict[int, float] = {}  # partition -> its watermark
        self.evaluated_through = -math.inf  # window index
        self._first: dict[int, float] = {}  # window -> when its first partial came (monotonic)

    def receive(self, partial: Partial, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for index, n, state in partial.windows:
            if index <= self.evaluated_through:
                log.warning(
                    "partial came after its window was evaluated",
                    extra={"model": partial.model, "partition": partial.partition, "window": index},
                )
                continue
            self.pending.setdefault(index, {})[partial.partition] = (n, state)
            self._first.setdefault(index, now)
        self.passed[partial.partition] = max(
            self.passed.get(partial.partition, -math.inf), partial.watermark
        )

    def due(self, now: float | None = None) -> list[ClosedWindow]:
        """Evaluate, in order, the windows every partition has passed (or waited for
        longer than the timeout)."""
        now = time.monotonic() if now is None else now
        evaluated = []
        for index in sorted(self.pending):
            end = (index + 1) * self.size
            missing = [p for p in range(self.partitions) if self.passed.get(p, -math.inf) < end]
            # (After a restore the wait starts anew: when the first came is not saved.)
            if missing and now - self._first.setdefault(index, now) < self.timeout:
                break
            evaluated.append(self._evaluate(index, self.pending.pop(index), missing))
            self._first.pop(index, None)
            self.evaluated_through = index
        return evaluated

    def _evaluate(
        self, index: int, parts: Mapping[int, tuple[int, dict[str, Any]]], missing: list[int]
    ) -> ClosedWindow:
        merged, n = self.judge.new_state(), 0
        for partition in sorted(parts):
            count, snapshot = parts[partition]
            state = self.judge.new_state()
            state.restore(snapshot)
            merged.merge(state)
            n += count
        bounds = WindowBounds(index, index * self.size, (index + 1) * self.size)
        window = self.judge.compare(bounds, merged, n)
        if missing:
            window.findings.append(self._incomplete(bounds, n, missing))
        return window

    def _incomplete(self, bounds: WindowBounds, n: int, missing: list[int]) -> Finding:
        return Finding(
            model=self.judge.model_id,
            detector="aggregation",
            subject="partitions",
            statistic="missing",
            value=float(len(missing)),
            threshold=0.0,
            severity=Severity.WARNING,
            n_reference=self.partitions,
            n_current=n,
            window=bounds,
            explanation=(
                f"evaluated without partitions {', '.join(map(str, missing))}: they had not "
                f"passed the window's end {self.timeout:g} s after its first partial came"
            ),
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "pending": [
                [index, partition, n, state]
                for index, parts in sorted(self.pending.items())
                for partition, (n, state) in sorted(parts.items())
            ],
            "passed": sorted(self.passed.items()),
            "evaluated_through": self.evaluated_through,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.pending = {}
        for index, partition, n, snapshot in state["pending"]:
            self.pending.setdefault(int(index), {})[int(partition)] = (int(n), snapshot)
        self.passed = {int(p): float(w) for p, w in state["passed"]}
        self.evaluated_through = float(state["evaluated_through"])
