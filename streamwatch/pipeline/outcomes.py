"""Labelled outcomes per window: labels join their predictions' windows, even closed ones.

A window's outcomes are evaluated once the labels' own event time has passed the
window's end plus the label horizon: labels may come on another topic, read at another
pace than the predictions, so only their own clock says which have come. A model whose
labels never come has its windows evaluated (label coverage 0%) once its predictions'
time is a label time-to-live past that, and all are evaluated at the end of input.
Labels for windows already evaluated are counted as late labels.

The labelled events of a pinned reference file make the outcome reference, when they
are ``REFERENCE__MIN_EVENTS`` or more; else the first labelled windows do, whatever their
drift role (labels may start late): a :class:`Labelled` state
(the registry's outcome detectors: performance, slices, errors per calibration cell,
and those that read them) pooled by a
:class:`~streamwatch.pipeline.reference.ReferencePool` until it holds ``REFERENCE__MIN_EVENTS``
labels and, with ``REFERENCE__SEASON``, covers a whole season, by phase too. A later
window's performance, slice performance and observed label shift are compared with the
reference at its phase; concept drift with the whole reference, whose calibration cells
follow a cycle of the inputs by themselves (and a phase holds too few labels to find a
change of p(y|x) at night). Fairness is absolute and label coverage a report: neither is
compared with the reference, and both are reported from the first labelled window on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamwatch.batch import Batch
from streamwatch.config import Settings
from streamwatch.detectors import Finding, registry
from streamwatch.detectors.base import LabelledBatch, SequentialDetector
from streamwatch.detectors.coverage import LabelCoverage
from streamwatch.detectors.entry import Context, Registry, build
from streamwatch.detectors.histogram import Binning
from streamwatch.detectors.performance import LabelledReference, Performance
from streamwatch.detectors.slices import bucket_labels, quartile_cuts
from streamwatch.events import Event
from streamwatch.join import Joined, LabelJoin
from streamwatch.pipeline.labelled import Labelled, pooled
from streamwatch.pipeline.reference import ReferencePool
from streamwatch.windows import IdArray, WindowBounds

log = logging.getLogger("streamwatch.outcomes")

_SEQUENTIAL_STORED_AS = {"concept_drift": "sequential"}


@dataclass(slots=True)
class _Window:
    state: Labelled
    # Label coverage compares with nothing: kept per window (in its row), never pooled.
    coverage: LabelCoverage = field(default_factory=LabelCoverage)
    bounds: WindowBounds | None = None  # known once the window has closed


Ready = tuple[WindowBounds, Labelled, LabelCoverage]  # a window whose labels are due


@dataclass(frozen=True, slots=True)
class Evaluated:
    bounds: WindowBounds
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LabelCounts:
    joined: int
    unknown: int  # waited for a prediction in vain: never seen, evicted or expired
    late: int  # the prediction's window was evaluated already

    def __sub__(self, before: LabelCounts) -> LabelCounts:
        return LabelCounts(
            self.joined - before.joined, self.unknown - before.unknown, self.late - before.late
        )

    def __add__(self, more: LabelCounts) -> LabelCounts:
        return LabelCounts(
            self.joined + more.joined, self.unknown + more.unknown, self.late + more.late
        )


class Outcomes:
    def __init__(
        self,
        model_id: str,
        settings: Settings,
        binning: Binning,
        detectors: Registry | None = None,
    ) -> None:
        self.model_id = model_id
        self.settings = settings
        detectors = registry.default() if detectors is None else detectors
        self.entries = pooled(detectors)
        self.enabled = {e.name for e in self.entries if e.enabled(settings.detectors)}
        self.binning = binning  # the features', for bucketing numeric slice features
        self.dimensions: list[str] = []  # slice dimensions, in the order first seen
        self.vocabulary: dict[str, set[str]] = {}  # slice values per dimension
        labels = settings.labels
        self.join = LabelJoin(labels.max_pending, labels.ttl, settings.max_buffer_bytes)
        # E.g. a river detector of concept drift, reading the errors in arrival order.
        sequential = detectors.of_kind("sequential")
        self.sequential: dict[str, SequentialDetector] = build(
            sequential, Context(settings.detectors)
        )
        self.windows: dict[int, _Window] = {}
        self.pool = ReferencePool(settings.reference, self._new)
        self.evaluated_through = -1  # window indexes up to this one are done
        self.latest = -math.inf  # the largest prediction time seen
        self.label_latest = -math.inf  # the largest label time seen
        self.joined = 0
        self.late = 0

    @property
    def reference(self) -> Performance | None:
        """The outcome reference's performance, complete or still pooling."""
        return None if self.pool.state is None else self.pool.state.performance

    def labelled(self, bounds: WindowBounds) -> LabelledReference | None:
        """The outcome reference for estimation in a window closing now: once it holds all
        it will, and was due by the window's close in event time. Its last window is due
        when the labels' clock (which lags by the lateness, as the watermark does) passes
        that window's end plus the label horizon; the window closes when the watermark
        passes its end: so at or before the window's end. Whether a window is estimated
        then depends on the events, not on how the labels' and the predictions' batches
        interleaved."""
        pool = self.pool
        due = pool.end + self.settings.labels.horizon <= bounds.end
        if pool.state is None or not pool.full or not due:
            return None
        return LabelledReference(pool.state.performance, pool.of(bounds).performance)

    @property
    def counts(self) -> LabelCounts:
        """Labels so far: joined, unknown, late (the monitor reports the differences)."""
        return LabelCounts(self.joined, self.join.unknown, self.late)

    def pin(self, batch: Batch, labels: Sequence[Event], regression: bool) -> None:
        """Make the labelled events of a pinned reference the outcome reference, complete
        as it is (by phase too, with a season), if they are enough."""
        if batch.event_ids is None or not labels:
            return
        join = LabelJoin(max(batch.n, 1), math.inf, 1 << 62)
        phases = self.pool.phases_of(batch.event_time)  # the join's "windows"
        join.expect(*self._expected(batch, np.ones(batch.n, dtype=np.bool_), regression, phases))
        joined = join.match(
            [str(e.event_id) for e in labels],
            [e.label for e in labels],
            [e.epoch_seconds for e in labels],
        )
        if joined.n < self.settings.reference.min_events:
            log.warning(
                "the reference file's labels are too few to be the outcome reference",
                extra={"model": self.model_id, "labelled": joined.n},
            )
            return
        whole, by_phase = self._new(), {}
        whole.observe(LabelledBatch(joined, regression, self.dimensions, self.vocabulary))
        if self.settings.reference.season:
            for phase in np.unique(joined.window).tolist():
                part = joined.take(joined.window == phase)
                by_phase[phase] = self._new()
                by_phase[phase].observe(
                    LabelledBatch(part, regression, self.dimensions, self.vocabulary)
                )
        self.pool.pin(whole, by_phase)

    def expect(self, batch: Batch, windows: IdArray, regression: bool) -> None:
        """Remember a batch's windowed predictions for their labels."""
        if batch.event_ids is None or batch.n == 0:
            return
        self.latest = max(self.latest, float(batch.event_time.max()))
        waiting = self.join.expect(*self._expected(batch, windows >= 0, regression, windows))
        if waiting is not None:
            self._apply(waiting, regression)

    def _expected(
        self, batch: Batch, kept: np.ndarray, regression: bool, windows: IdArray
    ) -> tuple[Any, ...]:
        """What the join keeps of the ``kept`` predictions of a batch: its arguments."""
        assert batch.event_ids is not None
        outputs = batch.outputs
        if regression:
            column = outputs.numeric.get("prediction", np.full(batch.n, np.nan))
            predictions: Sequence[object] = column[kept].tolist()
        else:
            predictions = outputs.categorical.get("prediction", np.full(batch.n, None, np.object_))[
                kept
            ].tolist()
        scores = outputs.numeric.get("score", np.full(batch.n, np.nan))[kept]
        slices = self._slice_values(batch, kept)
        probabilities = {
            name: values[kept]
            for name, values in outputs.numeric.items()
            if name.startswith("probability[")
        }
        return (
            batch.event_ids[kept],
            batch.event_time[kept],
            windows[kept],
            predictions,
            scores,
            slices,
            probabilities,
        )

    def _slice_values(self, batch: Batch, kept: np.ndarray) -> list[tuple[str | None, ...]]:
        """Each kept prediction's value of every slice dimension (None where it has none).
        Protected attributes are dimensions too, named as slice features or not."""
        slices = self.settings.detectors.slices
        for name in [*slices.features, *slices.protected, *sorted(batch.segments.categorical)]:
            if name not in self.dimensions:
                self.dimensions.append(name)  # append only: stored tuples stay aligned
        columns = [self._slice_column(batch, name)[kept].tolist() for name in self.dimensions]
        return list(zip(*columns, strict=True)) if columns else [()] * int(kept.sum())

    def _slice_column(self, batch: Batch, name: str) -> np.ndarray:
        for group in (batch.segments.categorical, batch.features.categorical):
            if name in group:
                return group[name]
        values = batch.features.numeric.get(name)
        edges = self.binning.edges.get(name)
        column = np.full(batch.n, None, dtype=np.object_)
        if values is not None and edges is not None and edges.size >= 4:
            cuts = quartile_cuts(edges)
            labels = np.array(bucket_labels(cuts.tolist()), dtype=np.object_)
            present = ~np.isnan(values)
            column[present] = labels[np.searchsorted(cuts, values[present], side="right")]
        return column

    def label(self, events: Sequence[Event], regression: bool) -> None:
        if not events:
            return
        ids = [str(e.event_id) for e in events]
        times = [e.epoch_seconds for e in events]
        self.label_latest = max(self.label_latest, *times)
        self._apply(self.join.match(ids, [e.label for e in events], times), regression)

    def _apply(self, joined: Joined, regression: bool) -> None:
        for detector in self.sequential.values():
            detector.observe(LabelledBatch(joined, regression, self.dimensions, self.vocabulary))
        for index in np.unique(joined.window).tolist():
            part = joined.take(joined.window == index)
            if index <= self.evaluated_through:
                self.late += part.n
                continue
            window = self._window(index)
            labels = LabelledBatch(part, regression, self.dimensions, self.vocabulary)
            window.state.observe(labels)
            window.coverage.observe(labels)
            self.joined += part.n

    def closed(self, bounds: WindowBounds, n: int) -> None:
        window = self._window(bounds.index)
        window.bounds, window.coverage.predictions = bounds, n

    def due(self, lateness: float, final: bool = False) -> list[Evaluated]:
        """Evaluate the closed windows whose labels have had their horizon."""
        return [self.evaluate(*window) for window in self.ready(lateness, final)]

    def clock(self, lateness: float) -> float:
        """A closed window is due once its end plus the label horizon is at or before this."""
        return max(self.label_latest - lateness, self.latest - lateness - self.settings.labels.ttl)

    def ready(self, lateness: float, final: bool = False) -> list[Ready]:
        """Take those windows out, in order (a spread model's partition publishes them)."""
        if final:  # the end of input: nothing waits any more
            self.join.expire(math.inf, math.inf)
        else:
            self.join.expire(self.latest - lateness, self.label_latest - lateness)
        until, horizon, taken = self.clock(lateness), self.settings.labels.horizon, []
        for index, w in sorted(self.windows.items()):
            if w.bounds is not None and (final or w.bounds.end + horizon <= until):
                del self.windows[index]
                self.evaluated_through = max(self.evaluated_through, index)
                taken.append((w.bounds, w.state, w.coverage))
        return taken

    def evaluate(self, bounds: WindowBounds, state: Labelled, coverage: LabelCoverage) -> Evaluated:
        """A due window's findings (a spread model's owner evaluates its merge here)."""
        model = self.model_id
        findings = coverage.evaluate(model, bounds)
        # Evaluated whatever becomes of the window: each forgets what it found for it.
        sequential = [f for d in self.sequential.values() for f in d.evaluate(model, bounds)]
        # Fairness has no reference: judged from the first labelled window on.
        absolute = self._absolute(state, bounds)
        pool = self.pool
        if state.n and pool.add(bounds, state):  # pooled into the outcome reference
            return Evaluated(bounds, findings + absolute)
        if pool.complete:
            findings += sequential
            findings += self._compare(bounds, state)
        return Evaluated(bounds, findings + absolute)

    def _absolute(self, state: Labelled, bounds: WindowBounds) -> list[Finding]:
        """The findings of the detectors that compare with nothing (each is passed
        itself as the reference, which it does not read)."""
        findings = []
        for e in self.entries:
            if e.compare == "none" and e.name in self.enabled:
                detector = state.detectors[e.name]
                findings += detector.evaluate(self.model_id, bounds, detector)
        return findings

    def _compare(self, bounds: WindowBounds, state: Labelled) -> list[Finding]:
        """A window's findings against the outcome reference: at its phase, or the whole
        reference for those that say so (concept drift)."""
        whole, phase = self.pool.state, self.pool.of(bounds)
        assert whole is not None
        findings = []
        for e in self.entries:
            if e.compare != "none" and e.name in self.enabled:
                reference = (whole if e.compare == "whole" else phase).detectors[e.name]
                findings += state.detectors[e.name].evaluate(self.model_id, bounds, reference)
        return findings

    def _new(self) -> Labelled:
        return Labelled(self.settings.detectors, self.entries)

    def _window(self, index: int) -> _Window:
        window = self.windows.get(index)
        if window is None:
            window = self.windows[index] = _Window(self._new())
        return window

    def snapshot(self) -> dict[str, Any]:
        return {
            "join": self.join.snapshot(),
            "windows": [
                [
                    index,
                    None if w.bounds is None else [w.bounds.index, w.bounds.start, w.bounds.end],
                    *w.coverage.snapshot(),  # predictions, labels, their total delay
                    w.state.snapshot(),
                ]
                for index, w in sorted(self.windows.items())
            ],
            "pool": self.pool.snapshot(),
            **self._sequential(),
            "dimensions": self.dimensions,
            "vocabulary": {k: sorted(v) for k, v in self.vocabulary.items()},
            "evaluated_through": self.evaluated_through,
            "latest": self.latest,
            "label_latest": self.label_latest,
            "joined": self.joined,
            "late": self.late,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.join.restore(state["join"])
        self.windows = {}
        for index, bounds, predictions, labels, delay, outcomes in state["windows"]:
            window = self._window(int(index))
            window.bounds = None if bounds is None else WindowBounds(*bounds)
            window.coverage.restore([predictions, labels, delay])
            window.state.restore(outcomes)
        self.pool.restore(state["pool"])
        for name, detector in self.sequential.items():
            saved = state.get(_SEQUENTIAL_STORED_AS.get(name, f"sequential:{name}"))
            if saved is not None:
                detector.restore(saved)
        self.dimensions = list(state["dimensions"])
        self.vocabulary = {k: set(v) for k, v in state["vocabulary"].items()}
        self.evaluated_through = int(state["evaluated_through"])
        self.latest = float(state["latest"])
        self.label_latest = float(state["label_latest"])
        self.joined, self.late = int(state["joined"]), int(state["late"])

    def _sequential(self) -> dict[str, Any]:
        """The sequential detectors' states: concept drift's under "sequential" (None
        when it is not built), as before the registry; others under "sequential:<name>"."""
        stored: dict[str, Any] = {"sequential": None}
        for name, detector in self.sequential.items():
            stored[_SEQUENTIAL_STORED_AS.get(name, f"sequential:{name}")] = detector.snapshot()
        return stored
