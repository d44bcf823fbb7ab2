"""A spread model's aggregate (spread.py): the partitions' shares of each window,
merged and evaluated by the model's owner.

Whoever owns the model's partition of the partials topic keeps its :class:`Aggregate`
(part of that partition's state, like any model's). It merges a window's partials in
partition order once every partition has passed the window's end, or once
``STATE__AGGREGATE_TIMEOUT`` has passed since the first came (a warning finding names the
partitions left out), and evaluates the merge against the reference: one evaluation,
and so one alert, per model and window. A backfill (backfill.py) has no timeout: no
window goes without a partition, and none is said.

A window's labelled outcomes are merged the same way, in partition order, once they are
due in every partition (the window has closed there and the partition's labels have
come past its end plus the label horizon), or once the timeout has passed since the
first share came. The merge is evaluated as one model's monitor evaluates a window's
outcomes (pipeline/outcomes.py), with the aggregate's own: its outcome reference, pooled
from the first merged labelled windows (or pinned from the reference file's labels),
and its sequential detectors, which read the errors of each window, in window order,
and within a window a partition's (in the order they were joined there) after the one
before it. Shares published twice (a partition redone after a crash) are the same, and
the second is ignored.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import msgspec

from streamwatch.config import Settings
from streamwatch.detectors import DetectorSet, Finding, Severity
from streamwatch.detectors.base import LabelledBatch
from streamwatch.detectors.coverage import LabelCoverage
from streamwatch.errors import StateError
from streamwatch.pipeline.labelled import Labelled
from streamwatch.pipeline.monitor import ClosedWindow, ModelMonitor
from streamwatch.scaleout.spread import Partial
from streamwatch.scaleout.spread_outcomes import Share, regression
from streamwatch.windows import WindowBounds

log = logging.getLogger("streamwatch.spread")
T = TypeVar("T")


class Aggregate:
    """A spread model's partials, merged and evaluated window by window by its owner."""

    def __init__(self, judge: ModelMonitor, partitions: int, timeout: float) -> None:
        self.judge = judge  # the aggregate's own: its outcome reference is built here
        self.partitions = partitions
        self.timeout = timeout
        self.size = judge.settings.window.seconds
        self.horizon = judge.settings.labels.horizon
        self.pending: dict[int, dict[int, tuple[int, DetectorSet]]] = {}  # window -> part
        self.labelled: dict[int, dict[int, Share]] = {}  # window -> partition -> share
        self.watermarks: dict[int, float] = {}  # partition -> how far it has come
        self.clocks: dict[int, float] = {}  # partition -> how far its labels have come
        self.evaluated_through = -math.inf  # window index
        # When each pending window's first partial came (monotonic). Not saved: after a
        # restore the wait starts anew.
        self._first: dict[int, float] = {}
        self._first_labelled: dict[int, float] = {}

    def receive(self, partial: Partial, now: float | None = None) -> None:
        """Take a partial on; raise :class:`StateError` if it does not make sense."""
        if not 0 <= partial.partition < self.partitions:
            raise StateError(f"partial from partition {partial.partition} of {self.partitions}")
        now = time.monotonic() if now is None else now
        if partial.window is not None:
            index, n, blob = partial.window
            if index > self.evaluated_through:
                state = self._state(blob)
                self.pending.setdefault(index, {})[partial.partition] = (n, state)
                self._first.setdefault(index, now)
            else:  # published again after a crash: the same as the one merged
                log.debug("partial of an evaluated window", extra={"window": index})
        if partial.outcomes is not None:
            index, blob = partial.outcomes
            if index > self.judge.outcomes.evaluated_through:
                share = Share.unpack(blob, self._new_labelled)
                self.labelled.setdefault(index, {})[partial.partition] = share
                self._first_labelled.setdefault(index, now)
            else:
                log.debug("labelled outcomes of an evaluated window", extra={"window": index})
        p = partial.partition
        self.watermarks[p] = max(self.watermarks.get(p, -math.inf), partial.watermark)
        self.clocks[p] = max(self.clocks.get(p, -math.inf), partial.clock)

    def drain(self) -> list[ClosedWindow]:
        """Every partition at its end (a backfill's files all read): each pending window
        and labelled window evaluated, in the order one instance evaluates them (see
        :func:`due_at`). Estimation in a window then reads the outcome reference pooled
        by that time, as it does live."""
        settings = self.judge.settings
        order = sorted(
            [(due_at(settings, (i + 1) * self.size, True), 0, i) for i in self.labelled]
            + [(due_at(settings, (i + 1) * self.size, False), 1, i) for i in self.pending]
        )
        evaluated = []
        for _, is_window, index in order:
            if is_window:
                evaluated.append(self._evaluate(index, self.pending.pop(index), []))
                self.evaluated_through = index
            else:
                evaluated.append(self._outcomes(index, self.labelled.pop(index), []))
                self.judge.outcomes.evaluated_through = index
        return evaluated

    def _state(self, blob: bytes) -> DetectorSet:
        state = self.judge.new_state()
        try:
            state.restore(msgspec.msgpack.decode(zlib.decompress(blob)))
        except (msgspec.DecodeError, zlib.error, KeyError, TypeError, ValueError) as exc:
            raise StateError(f"a partial's detector state is unreadable: {exc!r}") from exc
        return state

    def _new_labelled(self) -> Labelled:
        return Labelled(self.judge.settings.detectors, self.judge.outcomes.entries)

    def due(self, now: float | None = None) -> list[ClosedWindow]:
        """Evaluate, in order, the windows every partition has passed, then the labelled
        windows due in every partition (or, either, waited for longer than the timeout)."""
        now = time.monotonic() if now is None else now
        evaluated = []
        for index, missing in _mergeable(self.pending, self._first, self._open, self.timeout, now):
            evaluated.append(self._evaluate(index, self.pending.pop(index), missing))
            self._first.pop(index, None)
            self.evaluated_through = index
        labelled, first = self.labelled, self._first_labelled
        for index, missing in _mergeable(labelled, first, self._undue, self.timeout, now):
            evaluated.append(self._outcomes(index, labelled.pop(index), missing))
            first.pop(index, None)
            self.judge.outcomes.evaluated_through = index
        return evaluated

    def _open(self, index: int) -> list[int]:
        """The partitions that have not passed the window's end."""
        end = (index + 1) * self.size
        return [p for p in range(self.partitions) if self.watermarks.get(p, -math.inf) < end]

    def _undue(self, index: int) -> list[int]:
        """The partitions where the window's labels are not due yet: it is open there,
        or their labels have not come past its end plus the label horizon."""
        end = (index + 1) * self.size
        return [
            p
            for p in range(self.partitions)
            if self.watermarks.get(p, -math.inf) < end
            or self.clocks.get(p, -math.inf) < end + self.horizon
        ]

    def _evaluate(
        self, index: int, parts: Mapping[int, tuple[int, DetectorSet]], missing: list[int]
    ) -> ClosedWindow:
        merged, n = self.judge.new_state(), 0
        for partition in sorted(parts):
            count, state = parts[partition]
            merged.merge(state)
            n += count
        bounds = self._bounds(index)
        window = self.judge.compare(bounds, merged, n)
        if math.isfinite(self.timeout):  # with none, no window goes without a partition
            window.findings.append(self._completeness(bounds, n, missing, labelled=False))
        return window

    def _outcomes(
        self, index: int, shares: Mapping[int, Share], missing: list[int]
    ) -> ClosedWindow:
        """A window's labelled outcomes, merged in partition order and evaluated; the
        sequential detectors read each partition's errors of it in that order first."""
        outcomes, task = self.judge.outcomes, regression(self.judge)
        state, coverage = self._new_labelled(), LabelCoverage()
        for partition in sorted(shares):
            share = shares[partition]
            state.merge(share.state)
            coverage.merge(share.coverage)
            if share.errors is not None:
                errors = LabelledBatch(share.errors, task, share.dimensions, outcomes.vocabulary)
                for detector in outcomes.sequential.values():
                    detector.observe(errors)
        bounds = self._bounds(index)
        findings = outcomes.evaluate(bounds, state, coverage).findings
        if math.isfinite(self.timeout):
            findings.append(self._completeness(bounds, coverage.labels, missing, labelled=True))
        return ClosedWindow(self.judge.model_id, bounds, 0, "outcomes", findings)

    def _bounds(self, index: int) -> WindowBounds:
        return WindowBounds(index, index * self.size, (index + 1) * self.size)

    def _completeness(
        self, bounds: WindowBounds, n: int, missing: list[int], labelled: bool
    ) -> Finding:
        """How many partitions the window (or its labelled outcomes) was evaluated
        without: a warning if any (its alert resolves with the next window that has
        them all)."""
        waited = (
            "their labels of the window were not due"
            if labelled
            else "they had not passed the window's end"
        )
        explanation = (
            f"evaluated without partitions {', '.join(map(str, missing))}: {waited} "
            f"{self.timeout:g} s after its first partial came"
            if missing
            else f"merged from all {self.partitions} partitions"
        )
        return Finding(
            model=self.judge.model_id,
            detector="aggregation",
            subject="labelled_partitions" if labelled else "partitions",
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
            "labelled": [
                [index, partition, share.data()]
                for index, shares in sorted(self.labelled.items())
                for partition, share in sorted(shares.items())
            ],
            "clocks": sorted(self.clocks.items()),
            "outcomes": self.judge.outcomes.snapshot(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Restore; an aggregate saved before labels were merged has no outcomes."""
        self.pending = {}
        for index, partition, n, snapshot in state["pending"]:
            detectors = self.judge.new_state()
            detectors.restore(snapshot)
            self.pending.setdefault(int(index), {})[int(partition)] = (int(n), detectors)
        self.watermarks = {int(p): float(w) for p, w in state["watermarks"]}
        self.evaluated_through = float(state["evaluated_through"])
        self.labelled = {}
        for index, partition, data in state.get("labelled", ()):
            share = Share.of(data, self._new_labelled)
            self.labelled.setdefault(int(index), {})[int(partition)] = share
        self.clocks = {int(p): float(c) for p, c in state.get("clocks", ())}
        if "outcomes" in state:
            self.judge.outcomes.restore(state["outcomes"])


def due_at(settings: Settings, end: float, labelled: bool) -> float:
    """When one instance evaluates a window ending at ``end``, by its events' clock: as
    it closes (its end plus the allowed lateness), or, its labelled outcomes, as its
    labels are due (its end plus the label horizon, by the labels' clock, which lags
    by the lateness too: pipeline/outcomes.py); labelled first at a tie."""
    lateness = settings.window.allowed_lateness
    return end + lateness + (settings.labels.horizon if labelled else 0.0)


def _mergeable(
    pending: Mapping[int, T],
    first: dict[int, float],
    missing: Callable[[int], list[int]],
    timeout: float,
    now: float,
) -> Iterator[tuple[int, list[int]]]:
    """The pending windows that can be merged now, in order, with the partitions they
    go without: those no partition is missing, or that waited longer than ``timeout``
    since their first share came; up to the first that cannot."""
    for index in sorted(pending):
        left_out = missing(index)
        if left_out and now - first.setdefault(index, now) < timeout:
            return
        yield index, left_out
