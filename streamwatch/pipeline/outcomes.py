"""Labelled outcomes per window: labels join their predictions' windows, even closed ones.

A window's outcomes are evaluated once the labels' own event time has passed the
window's end plus the label horizon: labels may come on another topic, read at another
pace than the predictions, so only their own clock says which have come. A model whose
labels never come has its windows evaluated (label coverage 0%) once its predictions'
time is a label time-to-live past that, and all are evaluated at the end of input.
Labels for windows already evaluated are counted as late labels.

The first labelled windows make the outcome reference, whatever their drift role (a
pinned drift reference has no labels; labels may start late): a :class:`Labelled` state
(performance, slices, errors per calibration cell) pooled by a
:class:`~streamwatch.pipeline.reference.ReferencePool` until it holds ``REFERENCE__MIN_EVENTS``
labels and, with ``REFERENCE__SEASON``, covers a whole season, by phase too. A later
window's performance, slice performance and observed label shift are compared with the
reference at its phase; concept drift with the whole reference, whose calibration cells
follow a cycle of the inputs by themselves (and a phase holds too few labels to find a
change of p(y|x) at night). Fairness is absolute and label coverage a report: neither is
compared with the reference, and both are reported from the first labelled window on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamwatch.batch import Batch
from streamwatch.config import DetectorSettings, Settings
from streamwatch.detectors import Finding, label_shift
from streamwatch.detectors.concept import Residuals, Sequential, classes
from streamwatch.detectors.histogram import Binning
from streamwatch.detectors.performance import Performance
from streamwatch.detectors.slices import Slices, bucket_labels, quartile_cuts
from streamwatch.events import Event
from streamwatch.join import Joined, LabelJoin
from streamwatch.pipeline.reference import ReferencePool
from streamwatch.severity import Severity
from streamwatch.windows import IdArray, WindowBounds


class Labelled:
    """What labelled outcomes give one window, or the outcome reference: performance,
    slices and errors per calibration cell (concept drift). Pooled by a ReferencePool."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.performance = Performance(settings.performance)
        self.slices = Slices(settings.slices, settings.performance.positive_class)
        self.errors = Residuals(settings.concept_drift)

    @property
    def n(self) -> int:
        return self.performance.n

    def merge(self, other: Labelled) -> None:
        self.performance.merge(other.performance)
        self.slices.merge(other.slices)
        self.errors.merge(other.errors)

    def snapshot(self) -> dict[str, Any]:
        return {
            "performance": self.performance.snapshot(),
            "slices": self.slices.snapshot(),
            "errors": self.errors.snapshot(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.performance.restore(state["performance"])
        self.slices.restore(state["slices"])
        self.errors.restore(state["errors"])


@dataclass(slots=True)
class _Window:
    state: Labelled
    bounds: WindowBounds | None = None  # known once the window has closed
    predictions: int = 0
    labels: int = 0
    delay_total: float = 0.0


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
    def __init__(self, model_id: str, settings: Settings, binning: Binning) -> None:
        self.model_id = model_id
        self.settings = settings
        self.binning = binning  # the features', for bucketing numeric slice features
        self.dimensions: list[str] = []  # slice dimensions, in the order first seen
        self.vocabulary: dict[str, set[str]] = {}  # slice values per dimension
        labels = settings.labels
        self.join = LabelJoin(labels.max_pending, labels.ttl, settings.max_buffer_bytes)
        concept = settings.detectors.concept_drift
        # A river detector reads the errors in arrival order; the default reads windows.
        self.sequential = None if concept.detector == "reference" else Sequential(concept)
        self.windows: dict[int, _Window] = {}
        self.pool = ReferencePool(settings.reference, self._new)
        self.evaluated_through = -1  # window indexes up to this one are done
        self.latest = -math.inf  # the largest prediction time seen
        self.label_latest = -math.inf  # the largest label time seen
        self.joined = 0
        self.late = 0

    @property
    def reference(self) -> Performance | None:
        """The outcome reference's performance (its confusion serves BBSE), complete or
        still pooling."""
        return None if self.pool.state is None else self.pool.state.performance

    @property
    def counts(self) -> LabelCounts:
        """Labels so far: joined, unknown, late (the monitor reports the differences)."""
        return LabelCounts(self.joined, self.join.unknown, self.late)

    def expect(self, batch: Batch, windows: IdArray, regression: bool) -> None:
        """Remember a batch's windowed predictions for their labels."""
        if batch.event_ids is None or batch.n == 0:
            return
        self.latest = max(self.latest, float(batch.event_time.max()))
        kept = windows >= 0
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
        waiting = self.join.expect(
            batch.event_ids[kept],
            batch.event_time[kept],
            windows[kept],
            predictions,
            scores,
            slices,
        )
        if waiting is not None:
            self._apply(waiting, regression)

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
        if self.sequential is not None and self.settings.detectors.concept_drift.enabled:
            self.sequential.update(joined, regression)
        for index in np.unique(joined.window).tolist():
            part = joined.take(joined.window == index)
            if index <= self.evaluated_through:
                self.late += part.n
                continue
            window = self._window(index)
            state = window.state
            state.performance.update(part, regression)
            state.errors.update(part, regression)
            if not regression and part.slices:
                predicted, actual = classes(part.prediction, str), classes(part.label)
                state.slices.update(
                    self.dimensions, part.slices, predicted, actual, self.vocabulary
                )
            window.labels += part.n
            window.delay_total += float(part.delay.sum())
            self.joined += part.n

    def closed(self, bounds: WindowBounds, n: int) -> None:
        window = self._window(bounds.index)
        window.bounds, window.predictions = bounds, n

    def due(self, lateness: float, final: bool = False) -> list[Evaluated]:
        """Evaluate the closed windows whose labels have had their horizon."""
        horizon, ttl = self.settings.labels.horizon, self.settings.labels.ttl
        if final:  # the end of input: nothing waits any more
            self.join.expire(math.inf, math.inf)
        else:
            self.join.expire(self.latest - lateness, self.label_latest - lateness)
        until = max(self.label_latest - lateness, self.latest - lateness - ttl)
        ready = sorted(
            index
            for index, w in self.windows.items()
            if w.bounds is not None and (final or w.bounds.end + horizon <= until)
        )
        return [self._evaluate(index) for index in ready]

    def _evaluate(self, index: int) -> Evaluated:
        window = self.windows.pop(index)
        self.evaluated_through = max(self.evaluated_through, index)
        bounds, state = window.bounds, window.state
        assert bounds is not None
        detectors = self.settings.detectors
        findings = [_coverage(self.model_id, window)]
        sequential = None
        if self.sequential is not None:
            # Changes found among late labels of windows judged already: nowhere to report.
            for w in [w for w in self.sequential.changes if w < index]:
                del self.sequential.changes[w]
            sequential = self.sequential.evaluate(self.model_id, bounds)
        fairness = state.slices.fairness(self.model_id, bounds) if detectors.slices.enabled else []
        pool = self.pool
        if state.n and pool.add(bounds, state):  # pooled into the outcome reference
            return Evaluated(bounds, findings + fairness)
        if pool.complete:
            if sequential is not None and detectors.concept_drift.enabled:
                findings.append(sequential)
            findings += self._compare(bounds, state)
        return Evaluated(bounds, findings + fairness)

    def _compare(self, bounds: WindowBounds, state: Labelled) -> list[Finding]:
        """A window's findings against the outcome reference at its phase (not fairness,
        which is absolute, nor label coverage). Concept drift reads the whole reference:
        its cells follow the cycle already, and a phase's few labels would blunt it."""
        model, detectors = self.model_id, self.settings.detectors
        whole, reference = self.pool.state, self.pool.of(bounds)
        assert whole is not None
        findings = []
        if detectors.concept_drift.enabled and self.sequential is None:
            concept = state.errors.evaluate(model, bounds, whole.errors)
            findings += [concept] if concept else []
        if detectors.performance.enabled:
            findings += state.performance.evaluate(model, bounds, reference.performance)
        if detectors.slices.enabled:
            findings += state.slices.evaluate(model, bounds, reference.slices)
        if detectors.label_shift.enabled:
            shift = label_shift.observed(
                model,
                bounds,
                state.performance.confusion,
                reference.performance.confusion,
                detectors.label_shift,
            )
            findings += [shift] if shift else []
        return findings

    def _new(self) -> Labelled:
        return Labelled(self.settings.detectors)

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
                    w.predictions,
                    w.labels,
                    w.delay_total,
                    w.state.snapshot(),
                ]
                for index, w in sorted(self.windows.items())
            ],
            "pool": self.pool.snapshot(),
            "sequential": None if self.sequential is None else self.sequential.snapshot(),
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
            window.predictions = int(predictions)
            window.labels, window.delay_total = int(labels), float(delay)
            window.state.restore(outcomes)
        self.pool.restore(state["pool"])
        if self.sequential is not None and state["sequential"] is not None:
            self.sequential.restore(state["sequential"])
        self.dimensions = list(state["dimensions"])
        self.vocabulary = {k: set(v) for k, v in state["vocabulary"].items()}
        self.evaluated_through = int(state["evaluated_through"])
        self.latest = float(state["latest"])
        self.label_latest = float(state["label_latest"])
        self.joined, self.late = int(state["joined"]), int(state["late"])


def _coverage(model: str, window: _Window) -> Finding:
    """Label coverage and delay of a window: a report, never an alarm."""
    assert window.bounds is not None
    coverage = window.labels / window.predictions if window.predictions else 0.0
    delay = window.delay_total / window.labels if window.labels else math.nan
    late = f", {delay / 60:.0f} min after the prediction on average" if window.labels else ""
    return Finding(
        model=model,
        detector="labels",
        subject="coverage",
        statistic="label_coverage",
        value=coverage,
        threshold=0.0,
        severity=Severity.OK,
        n_reference=0,
        n_current=window.labels,
        window=window.bounds,
        explanation=f"model '{model}': {window.labels:,} of {window.predictions:,} predictions "
        f"labelled ({coverage:.0%}){late}.",
        details={
            "labels": window.labels,
            "predictions": window.predictions,
            "mean_delay_seconds": delay,
        },
    )
