"""Spread models: keyed by event id, so that their events come through every partition.

Each partition keeps a :class:`Part` of such a model: its windows over the events that
came through that partition, binned on the pinned reference's grid (the same on every
instance). A window that closes there is not evaluated there: at the partition's next
checkpoint, before its state goes to the changelog, its detector state is published to
the partials topic, keyed by model, with how far the partition's watermark has come.

A label comes through the partition of its prediction (keyed by the same event id, when
the label and prediction topics are partitioned alike) and is joined there, as one
model's monitor joins it (pipeline/outcomes.py, which also says when a window's labels
are due: label horizon, label time-to-live). A window whose labels are due there is not
evaluated there either: its labelled outcomes (spread_outcomes.py) are published the
same way, with how far the partition's labels have come.

Whoever owns the model's partition of the partials topic keeps its aggregate
(spread_aggregate.py), which merges the partitions' shares of each window and
evaluates the merge: one evaluation, and so one alert, per model and window, and one
of its labelled outcomes.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from streamwatch.errors import StateError
from streamwatch.events import Event, EventColumns
from streamwatch.pipeline.monitor import ModelMonitor, Processed
from streamwatch.pipeline.outcomes import Outcomes
from streamwatch.scaleout.spread_outcomes import Errors, Share, part_detectors, regression
from streamwatch.state.store import FORMAT, ZLIB_LEVEL
from streamwatch.windows import LATE, TimeWindows


class Partial(msgspec.Struct, array_like=True):
    """What one partition publishes of a spread model: a window that closed there (its
    index, events and detector state, compressed), or a window whose labels are due
    there (its index and :class:`~streamwatch.scaleout.spread_outcomes.Share`,
    compressed), or neither; and how far its watermark and its labels (``clock``, see
    :meth:`Outcomes.clock`) have come. Each window is a record of its own, so that
    records stay small. Records from before labels were merged have no clock."""

    format: int
    shape: str
    model: str
    partition: int
    watermark: float
    window: tuple[int, int, bytes] | None = None
    clock: float = -math.inf
    outcomes: tuple[int, bytes] | None = None


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
        self.outcomes = Outcomes(
            judge.model_id, judge.settings, judge.binning.features, part_detectors(judge)
        )
        self.closed: list[tuple[int, int, bytes]] = []  # not yet published
        self.labelled: list[tuple[int, bytes]] = []  # shares not yet published
        self.published = -math.inf  # the watermark last published
        self.published_clock = -math.inf  # and the labels' clock

    def process(self, predictions: EventColumns, labels: Sequence[Event] = ()) -> Processed:
        """Window predictions and join labels: how many were windowed, how many were late
        and what became of the labels (the windows that closed, and those whose labels
        are due, are kept to be published, not evaluated here)."""
        before, windowed, late = self.outcomes.counts, 0, 0
        task = regression(self.judge)
        if predictions.n:
            batch = self.judge.schema.build(predictions)
            ids = self.windows.add(batch)
            self.outcomes.expect(batch, ids, task)
            late = int((ids == LATE).sum())
            windowed = batch.n - late
        self._close(final=False)
        self.outcomes.label(labels, task)
        self._due(final=False)
        return Processed(windowed, late, [], self.outcomes.counts - before)

    def finish(self) -> None:
        """End of input (a backfill's file): every window closes, and its labels are
        due, to be published."""
        self._close(final=True)
        self._due(final=True)

    def _close(self, final: bool) -> None:
        for bounds, state, n in self.windows.pop_closed(final):
            blob = zlib.compress(msgspec.msgpack.encode(state.snapshot()), ZLIB_LEVEL)
            self.closed.append((bounds.index, n, blob))
            self.outcomes.closed(bounds, n)

    def _due(self, final: bool) -> None:
        errors = self.outcomes.sequential.get(Errors.name)
        for bounds, labelled, coverage in self.outcomes.ready(self.windows.lateness, final):
            share = Share(labelled, coverage, list(self.outcomes.dimensions))
            if isinstance(errors, Errors):
                share.errors = errors.take(bounds.index)
            self.labelled.append((bounds.index, share.pack()))

    @property
    def clock(self) -> float:
        """How far the partition's labels have come (a window is due once its end plus
        the label horizon is at or before this)."""
        return self.outcomes.clock(self.windows.lateness)

    def partials(self, shape: str) -> list[Partial]:
        """What to publish: each closed window, then each window whose labels are due,
        each record with the end of its window as how far the partition has come (and,
        of a labelled window, that end plus the label horizon as how far its labels
        have: its later windows are in later records); the watermark and the clock with
        the last; or those alone, if either moved."""
        model, size = self.judge.model_id, self.windows.size
        horizon = self.judge.settings.labels.horizon
        watermark, clock = self.windows.watermark, self.clock
        records = [
            Partial(FORMAT, shape, model, self.partition, (index + 1) * size, (index, n, blob))
            for index, n, blob in self.closed
        ]
        records += [
            Partial(
                FORMAT,
                shape,
                model,
                self.partition,
                (index + 1) * size,
                clock=(index + 1) * size + horizon,
                outcomes=(index, blob),
            )
            for index, blob in self.labelled
        ]
        if records:
            records[-1].watermark, records[-1].clock = watermark, clock
        elif watermark > self.published or clock > self.published_clock:
            records.append(Partial(FORMAT, shape, model, self.partition, watermark, clock=clock))
        return records

    def published_up_to(self, last: Partial) -> None:
        """The records up to ``last`` (the last of :meth:`partials`) were published."""
        self.closed, self.labelled = [], []
        self.published, self.published_clock = last.watermark, last.clock

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": self.windows.snapshot(),
            "closed": self.closed,
            "published": self.published,
            "outcomes": self.outcomes.snapshot(),
            "labelled": self.labelled,
            "published_clock": self.published_clock,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Restore; a part saved before labels were joined has no outcomes."""
        self.windows.restore(state["windows"])
        self.closed = [(int(i), int(n), bytes(b)) for i, n, b in state["closed"]]
        self.published = float(state["published"])
        if "outcomes" in state:
            self.outcomes.restore(state["outcomes"])
            self.labelled = [(int(i), bytes(b)) for i, b in state["labelled"]]
            self.published_clock = float(state["published_clock"])
