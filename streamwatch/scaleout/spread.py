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
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from streamwatch.detectors import DetectorSet, Finding, Severity
from streamwatch.errors import StateError
from streamwatch.events import Event, EventColumns
from streamwatch.pipeline.monitor import ClosedWindow, ModelMonitor, Processed
from streamwatch.state.store import FORMAT, ZLIB_LEVEL
from streamwatch.windows import LATE, TimeWindows, WindowBounds

log = logging.getLogger("streamwatch.spread")


class Partial(msgspec.Struct, array_like=True):
    """What one partition publishes of a spread model: a window that closed there (its
    index, events and detector state, compressed), or none, and how far its watermark
    has come. Each closed window is a record of its own, so that records stay small."""

    format: int
    shape: str
    model: str
    partition: int
    watermark: float
    window: tuple[int, int, bytes] | None = None


def encode(partial: Partial) -> bytes:
    return msgspec.msgpack.encode(partial)


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

    def __init__(self, judge: ModelMonitor, partition: int) -> None:
        window = judge.settings.window
        self.judge = judge  # its schema and grid are the pinned reference's
        self.partition = partition
        self.windows = TimeWindows(judge.new_state, window.seconds, window.allowed_lateness)
        self.closed: list[tuple[int, int, bytes]] = []  # not yet published
        self.published = -math.inf  # the watermark last published

    def process(self, predictions: EventColumns | Sequence[Event]) -> Processed:
        """Window predictions: how many were windowed and how many were late (the
        windows that closed are kept to be published, not evaluated here)."""
        batch = self.judge.schema.build(predictions)
        late = int((self.windows.add(batch) == LATE).sum())
        for bounds, state, n in self.windows.pop_closed():
            blob = zlib.compress(msgspec.msgpack.encode(state.snapshot()), ZLIB_LEVEL)
            self.closed.append((bounds.index, n, blob))
        return Processed(batch.n - late, late, [])

    def partials(self, shape: str) -> list[Partial]:
        """What to publish: each closed window, with the end of that window as how far
        the partition has come (its later windows are in later records), and the
        watermark with the last; or the watermark alone, if it moved."""
        model, watermark, size = self.judge.model_id, self.windows.watermark, self.windows.size
        records = [
            Partial(FORMAT, shape, model, self.partition, (index + 1) * size, (index, n, blob))
            for index, n, blob in self.closed
        ]
        if records:
            records[-1].watermark = watermark
        elif watermark > self.published:
            records.append(Partial(FORMAT, shape, model, self.partition, watermark))
        return records

    def published_up_to(self, watermark: float) -> None:
        self.closed = []
        self.published = watermark

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": self.windows.snapshot(),
            "closed": self.closed,
            "published": self.published,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.windows.restore(state["windows"])
        self.closed = [(int(i), int(n), bytes(b)) for i, n, b in state["closed"]]
        self.published = float(state["published"])


class Aggregate:
    """A spread model's partials, merged and evaluated window by window by its owner."""

    def __init__(self, judge: ModelMonitor, partitions: int, timeout: float) -> None:
        self.judge = judge
        self.partitions = partitions
        self.timeout = timeout
        self.size = judge.settings.window.seconds
        self.pending: dict[int, dict[int, tuple[int, DetectorSet]]] = {}  # window -> part
        self.watermarks: dict[int, float] = {}  # partition -> how far it has come
        self.evaluated_through = -math.inf  # window index
        # When each pending window's first partial came (monotonic). Not saved: after a
        # restore the wait starts anew.
        self._first: dict[int, float] = {}

    def receive(self, partial: Partial, now: float | None = None) -> None:
        """Take a partial on; raise :class:`StateError` if it does not make sense."""
        if not 0 <= partial.partition < self.partitions:
            raise StateError(f"partial from partition {partial.partition} of {self.partitions}")
        if partial.window is not None:
            index, n, blob = partial.window
            if index > self.evaluated_through:
                state = self._state(blob)
                self.pending.setdefault(index, {})[partial.partition] = (n, state)
                self._first.setdefault(index, time.monotonic() if now is None else now)
            else:  # published again after a crash: the same as the one merged
                log.debug("partial of an evaluated window", extra={"window": index})
        self.watermarks[partial.partition] = max(
            self.watermarks.get(partial.partition, -math.inf), partial.watermark
        )

    def _state(self, blob: bytes) -> DetectorSet:
        state = self.judge.new_state()
        try:
            state.restore(msgspec.msgpack.decode(zlib.decompress(blob)))
        except (msgspec.DecodeError, zlib.error, KeyError, TypeError, ValueError) as exc:
            raise StateError(f"a partial's detector state is unreadable: {exc!r}") from exc
        return state

    def due(self, now: float | None = None) -> list[ClosedWindow]:
        """Evaluate, in order, the windows every partition has passed (or waited for
        longer than the timeout)."""
        now = time.monotonic() if now is None else now
        evaluated = []
        for index in sorted(self.pending):
            end = (index + 1) * self.size
            missing = [p for p in range(self.partitions) if self.watermarks.get(p, -math.inf) < end]
            if missing and now - self._first.setdefault(index, now) < self.timeout:
                break
            evaluated.append(self._evaluate(index, self.pending.pop(index), missing))
            self._first.pop(index, None)
            self.evaluated_through = index
        return evaluated

    def _evaluate(
        self, index: int, parts: Mapping[int, tuple[int, DetectorSet]], missing: list[int]
    ) -> ClosedWindow:
        merged, n = self.judge.new_state(), 0
        for partition in sorted(parts):
            count, state = parts[partition]
            merged.merge(state)
            n += count
        bounds = WindowBounds(index, index * self.size, (index + 1) * self.size)
        window = self.judge.compare(bounds, merged, n)
        window.findings.append(self._completeness(bounds, n, missing))
        return window

    def _completeness(self, bounds: WindowBounds, n: int, missing: list[int]) -> Finding:
        """How many partitions the window was evaluated without: a warning if any (its
        alert resolves with the next window that has them all)."""
        explanation = (
            f"evaluated without partitions {', '.join(map(str, missing))}: they had not "
            f"passed the window's end {self.timeout:g} s after its first partial came"
            if missing
            else f"merged from all {self.partitions} partitions"
        )
        return Finding(
            model=self.judge.model_id,
            detector="aggregation",
            subject="partitions",
            statistic="missing",
            value=float(len(missing)),
            threshold=1.0,
            severity=Severity.WARNING if missing else Severity.OK,
            n_reference=self.partitions,
            n_current=n,
            window=bounds,
            explanation=explanation,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "pending": [
                [index, partition, n, state.snapshot()]
                for index, parts in sorted(self.pending.items())
                for partition, (n, state) in sorted(parts.items())
            ],
            "watermarks": sorted(self.watermarks.items()),
            "evaluated_through": self.evaluated_through,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.pending = {}
        for index, partition, n, snapshot in state["pending"]:
            detectors = self.judge.new_state()
            detectors.restore(snapshot)
            self.pending.setdefault(int(index), {})[int(partition)] = (int(n), detectors)
        self.watermarks = {int(p): float(w) for p, w in state["watermarks"]}
        self.evaluated_through = float(state["evaluated_through"])
