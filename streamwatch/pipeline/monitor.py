"""Everything streamwatch keeps about one model: schema, binning, open windows, reference.

The first ``grid_sample`` events of a model are held back briefly, so that the fine
numeric grid is fitted on all of them (a representative sample) rather than on whatever
a first small poll happened to bring; then they are windowed like all later events. The
sample is bounded in bytes too (``MAX_SAMPLE_BYTES``): at the limit the grid is fitted
on the events held so far, still the model's first, so the grid is a smaller sample
fixed before any window is judged (noisier edges, the same for the reference and every
window: the tests stay valid). Held events keep only the feature names the model can
track (``MAX_COLUMNS``), and held labels only what the join needs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

from streamwatch.batch import MAX_NAME_CHARS, Batch, Schema
from streamwatch.config import Settings
from streamwatch.detectors import DetectorSet, Distribution, Finding, ModelBinning, registry
from streamwatch.detectors.base import PairDetector
from streamwatch.detectors.drift import FeatureDrift
from streamwatch.detectors.entry import Context, Registry
from streamwatch.detectors.performance import LabelledReference
from streamwatch.events import Event, EventColumns
from streamwatch.pipeline.challengers import champion_only, pair_waiting
from streamwatch.pipeline.outcomes import LabelCounts, Outcomes
from streamwatch.pipeline.reference import Pinned, ReferencePool
from streamwatch.review.request import ReviewRequest
from streamwatch.review.reviewer import Counts, Reviewer
from streamwatch.review.rules import Reference, ranges_of
from streamwatch.severity import Severity
from streamwatch.windows import LATE, CountWindows, TimeWindows, WindowBounds, Windows

log = logging.getLogger("streamwatch.model")
_EPOCH = attrgetter("epoch_seconds")
Closing = tuple[WindowBounds, DetectorSet, int]  # a window that closed: bounds, state, events
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Event).decode


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A window that closed: pooled into the reference, or evaluated against it."""

    model: str
    bounds: WindowBounds
    n: int
    role: str  # "reference" or "evaluated"; later "outcomes" (its labels), "review" (verdicts)
    findings: list[Finding] = field(default_factory=list)
    distributions: list[Distribution] = field(default_factory=list)  # of breached columns


@dataclass(frozen=True, slots=True)
class Processed:
    """Events put into windows, events dropped as late, what became of labels, and the
    windows that closed (or whose labels were evaluated)."""

    windowed: int
    late: int
    closed: list[ClosedWindow]
    labels: LabelCounts = field(default_factory=lambda: LabelCounts(0, 0, 0))
    requests: list[ReviewRequest] = field(default_factory=list)  # for human review
    reviewed: Counts | None = None


class ModelMonitor:
    """One model's state, its detectors built by kind from ``detectors`` (the registry's)."""

    def __init__(
        self,
        model_id: str,
        settings: Settings,
        pinned: Pinned | None = None,
        detectors: Registry | None = None,
    ) -> None:
        self.model_id = model_id
        self.settings = settings
        self.detectors = registry.default() if detectors is None else detectors
        self.schema = pinned.schema if pinned else Schema.of(model_id, settings)
        self.binning = ModelBinning(settings.detectors)
        self.windows: Windows[DetectorSet] = self._windows()
        self.reference = ReferencePool(settings.reference, self.new_state)
        self.outcomes = Outcomes(model_id, settings, self.binning.features, self.detectors)
        self.reviewer = Reviewer(model_id, settings)
        self.firing: Severity | None = None  # the model's worst alert firing now
        self._requests: list[ReviewRequest] = []  # chosen since the last batch returned
        (pair,) = self.detectors.of_kind("pair")  # holds the challengers waiting: always kept
        context = Context(settings.detectors, max_bytes=settings.max_buffer_bytes)
        self.shadow: PairDetector = pair.factory(context)
        self._pairing = pair.enabled(settings.detectors)
        self.champion: str | None = settings.detectors.shadow.champions.get(model_id)
        # While warming up: predictions held back until the grid's sample is complete, and
        # labels (their predictions may be among them); part of the checkpoint. Predictions
        # are held encoded: compact, and pinning no memory of the decoded batch.
        self._pending: list[bytes] = []
        self._pending_labels: list[Event] = []
        self._sizes: list[int] = []  # of the held predictions
        self._times: list[float] = []
        self._label_sizes: list[int] = []
        self._names: set[str] = set()  # the feature names held predictions keep
        self._warming_up = pinned is None
        self._told = False  # that feature names are ignored (logged once)
        self.last_event = -math.inf  # the newest event time of the model
        if pinned is not None:
            # A pinned reference fits the grid on all of itself, then is frozen.
            self.binning.fit(pinned.batch)
            self.reference.pin(*self._pinned_states(pinned.batch))
            self.outcomes.pin(pinned.batch, pinned.labels, self._regression)

    def process(
        self, predictions: EventColumns | Sequence[Event], labels: Sequence[Event] = ()
    ) -> Processed:
        """Window a batch of this model's predictions, join its labels, then evaluate what
        closed and whose labels are due: labels first joined, then judged. Predictions of
        other versions than the champion are only compared with the champion's. Reviewers'
        verdicts join their requests only."""
        verdicts = [e for e in labels if e.source == "review"]
        if verdicts:
            self.reviewer.verdicts(verdicts)
            labels = [e for e in labels if e.source != "review"]
        if not isinstance(predictions, EventColumns):
            predictions = EventColumns.of_events(predictions)
        newest = [float(predictions.event_time.max(initial=-math.inf)), *map(_EPOCH, labels)]
        self.last_event = max(*newest, self.last_event)
        predictions = champion_only(
            predictions, self.champion, self.shadow, self._pairing, self.outcomes.join
        )
        if self._warming_up:
            self._hold(predictions.events(), labels)
            sample = self._sample_size()
            return Processed(0, 0, []) if sample is None else self.settle(sample)
        before = self.outcomes.counts
        windowed, late, closing = 0, 0, list[Closing]()
        if predictions.n:
            batch = self.schema.build(predictions)
            windowed, late, closing = self._window(batch, predictions.version.tolist())
        self.outcomes.label(labels, self._regression)
        outcomes = self._outcomes(final=False)
        # Judged after the batch's labels: so that estimation does not read where it ended.
        closed = [self._evaluate(*window) for window in closing] + outcomes
        self._tell_ignored()
        return self._processed(windowed, late, closed, self.outcomes.counts - before)

    def _processed(
        self, windowed: int, late: int, closed: list[ClosedWindow], labels: LabelCounts
    ) -> Processed:
        requests, self._requests = self._requests, []
        return Processed(windowed, late, closed, labels, requests, self.reviewer.taken())

    def _hold(self, predictions: Sequence[Event], labels: Sequence[Event]) -> None:
        """Hold back a batch during warm-up, within the model's columns and bytes."""
        if predictions:
            kept = self._within_columns(predictions)
            encoded = list(map(_encode, kept))
            self._pending += encoded
            self._sizes += map(len, encoded)
            self._times += map(_EPOCH, kept)
        if labels:  # their predictions may be held back too; only the join's fields kept
            model = self.model_id
            held = [Event(e.event_id, model, e.timestamp, label=e.label) for e in labels]
            self._pending_labels += held
            self._label_sizes += map(len, map(_encode, held))
            # Bounded like the join: the oldest go, counted as unknown.
            total, limit = sum(self._label_sizes), self.settings.max_buffer_bytes
            overflow = max(len(self._pending_labels) - self.settings.labels.max_pending, 0)
            total -= sum(self._label_sizes[:overflow])
            while total > limit and overflow < len(self._pending_labels):
                total -= self._label_sizes[overflow]
                overflow += 1
            if overflow:
                del self._pending_labels[:overflow], self._label_sizes[:overflow]
                self.outcomes.join.unknown += overflow
        self._tell_ignored()

    def _within_columns(self, predictions: Sequence[Event]) -> list[Event]:
        """The predictions with only the feature names the model can track: those held
        already, then new ones in sorted order while ``max_columns`` leaves room (as the
        schema admits them); the others are counted as ignored, not kept."""
        names, held = set().union(*(e.features or {} for e in predictions)), self._names
        new = sorted(names - held)
        room = self.schema.max_columns - len(held)
        for name in new:
            if len(name) <= MAX_NAME_CHARS and room > 0:
                held.add(name)
                room -= 1
        self.schema.ignored += len(names - held)
        if names <= held:
            return list(predictions)
        return [
            e
            if (e.features or {}).keys() <= held
            else msgspec.structs.replace(
                e, features={k: v for k, v in (e.features or {}).items() if k in held}
            )
            for e in predictions
        ]

    def _tell_ignored(self) -> None:
        if self.schema.ignored and not self._told:
            self._told = True
            log.warning(
                "model has more feature names than MAX_COLUMNS; the rest are ignored",
                extra={"model": self.model_id, "max_columns": self.schema.max_columns},
            )

    def settle(self, sample: int | None = None) -> Processed:
        """End the warm-up: fit the grid on the first ``sample`` held-back events (all of
        them at the end of input), then window everything held back."""
        self._warming_up = False
        before = self.outcomes.counts
        labels, self._pending_labels, self._label_sizes = self._pending_labels, [], []
        windowed, late, closing = 0, 0, list[Closing]()
        self._sizes, self._times, self._names = [], [], set()
        if self._pending:
            held, self._pending = list(map(_decode, self._pending)), []
            batch = self.schema.build(held)
            self.binning.fit(batch if sample is None else batch.take(np.arange(sample)))
            windowed, late, closing = self._window(batch, [e.model_version for e in held])
        self.outcomes.label(labels, self._regression)
        outcomes = self._outcomes(final=False)
        closed = [self._evaluate(*window) for window in closing] + outcomes
        return self._processed(windowed, late, closed, self.outcomes.counts - before)

    def flush(self) -> Processed:
        """End of input: window what is held back, then close every open window and
        evaluate the labels of every closed one."""
        settled = self.settle()
        before = self.outcomes.counts
        judged = [self._evaluate(*window) for window in self._closing(final=True)]
        closed = settled.closed + judged + self._outcomes(final=True)
        labels = settled.labels + (self.outcomes.counts - before)
        return self._processed(settled.windowed, settled.late, closed, labels)

    def let_go(self) -> Processed:
        """The model went idle and is let go: with a reference to judge them by, its
        open windows are closed and evaluated (and its labels' windows, with the labels
        that came); without one they would only be pooled into a reference that goes
        with the model, so they are dropped."""
        return self.flush() if self.reference.full else Processed(0, 0, [])

    @property
    def _regression(self) -> bool:
        return self.schema.outputs.get("prediction") == "numeric"

    def snapshot(self) -> dict[str, Any]:
        """The model's whole state as plain data (held-back events too, during warm-up)."""
        return {
            "last_event": self.last_event,
            "warming_up": self._warming_up,
            "pending": self._pending,
            "pending_labels": msgspec.to_builtins(self._pending_labels),
            "schema": {
                "features": self.schema.features,
                "outputs": self.schema.outputs,
                "ignored": self.schema.ignored,
                "segments": sorted(self.schema.segments),
            },
            "binning": self.binning.snapshot(),
            "reference": self.reference.snapshot(),
            "windows": self.windows.snapshot(),
            "outcomes": self.outcomes.snapshot(),
            "shadow": self.shadow.snapshot(),
            "champion": self.champion,
            "review": self.reviewer.snapshot(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.schema.features = dict(state["schema"]["features"])
        self.schema.outputs = dict(state["schema"]["outputs"])
        self.schema.ignored = int(state["schema"]["ignored"])
        self.last_event = float(state["last_event"])
        self.schema.segments = set(state["schema"]["segments"])
        self.binning.restore(state["binning"])
        self.reference.restore(state["reference"])
        self._warming_up = bool(state["warming_up"])
        self._pending = list(state["pending"])
        held = list(map(_decode, self._pending))
        self._times = list(map(_EPOCH, held))
        self._pending_labels = msgspec.convert(state["pending_labels"], list[Event])
        self._sizes = list(map(len, self._pending))
        self._label_sizes = [len(_encode(e)) for e in self._pending_labels]
        self._names = set().union(*(e.features or {} for e in held))
        self.windows.restore(state["windows"])
        self.outcomes.restore(state["outcomes"])
        self.shadow.restore(state["shadow"])
        self.champion = state["champion"]
        if "review" in state:  # a state written before human review has none
            self.reviewer.restore(state["review"])

    def _window(self, batch: Batch, versions: Sequence[object]) -> tuple[int, int, list[Closing]]:
        ids = self.windows.add(batch)
        pair_waiting(self.shadow, batch, ids, self._regression)  # before the join takes them
        self.outcomes.expect(batch, ids, self._regression)
        if self.reviewer.enabled:
            ranges = ranges_of(self.binning.features.edges)
            reference = Reference(self.binning.inputs, ranges, self._seen())
            self._requests += self.reviewer.select(
                batch, ids, reference, self.firing, self._regression, versions
            )
        late = int((ids == LATE).sum())
        return batch.n - late, late, self._closing(final=False)

    def _outcomes(self, final: bool) -> list[ClosedWindow]:
        """The windows whose labels, and those whose reviewers' verdicts, are due."""
        model, due = self.model_id, self.reviewer.due(self._lateness, self._regression, final)
        return [
            ClosedWindow(model, e.bounds, 0, "outcomes", e.findings)
            for e in self.outcomes.due(self._lateness, final)
        ] + [ClosedWindow(model, bounds, 0, "review", found) for bounds, found in due if found]

    def _seen(self) -> dict[str, set[str]] | None:
        """The categories of each feature the reference has, once it is complete."""
        if not self.reference.full or self.reference.state is None:
            return None
        drift = self.reference.state.detectors.get("feature_drift")
        if not isinstance(drift, FeatureDrift):
            return None
        return {k: set(v.counts) for k, v in drift.categorical.items()}

    def _sample_size(self) -> int | None:
        """How many of the first held-back events make the grid's sample, once they are
        all here: ``grid_sample`` events, or fewer where they span a whole window (no
        window close waits for the warm-up) or reach ``max_sample_bytes``. Counted in
        arrival order, so that the sample, and every statistic after it, does not depend
        on how input is batched."""
        if not self._pending:
            return None
        window = self.settings.window
        size = self.settings.detectors.grid_sample
        held = np.flatnonzero(np.cumsum(self._sizes) >= self.settings.max_sample_bytes)
        if held.size:  # the bytes held reach the limit at this event
            size = min(size, int(held[0]) + 1)
        if window.mode == "count":
            size = min(size, window.events)
        else:
            times = np.array(self._times, np.float64)
            span = np.maximum.accumulate(times) - np.minimum.accumulate(times)
            spanned = np.flatnonzero(span >= window.seconds)
            if spanned.size:
                size = min(size, int(spanned[0]) + 1)
        return size if len(self._pending) >= size else None

    def _closing(self, final: bool) -> list[Closing]:  # to judge; their labels' know their bounds
        closing = self.windows.pop_closed(final)
        for bounds, _, n in closing:
            self.outcomes.closed(bounds, n)
            self.reviewer.closed(bounds, n)
        return closing

    def _evaluate(self, bounds: WindowBounds, state: DetectorSet, n: int) -> ClosedWindow:
        closed = self.compare(bounds, state, n)
        closed.findings.extend(self.shadow.evaluate(self.model_id, bounds))  # needs no reference
        return closed

    def compare(self, bounds: WindowBounds, state: DetectorSet, n: int) -> ClosedWindow:
        pool = self.reference
        if pool.add(bounds, state):  # still pooling the first windows into the reference
            return ClosedWindow(self.model_id, bounds, n, "reference")
        reference = pool.of(bounds)
        findings = state.evaluate(self.model_id, bounds, reference)
        distributions = state.distributions(reference, findings)
        return ClosedWindow(self.model_id, bounds, n, "evaluated", findings, distributions)

    def _labelled(self, bounds: WindowBounds) -> LabelledReference | None:  # a classifier's
        return None if self._regression else self.outcomes.labelled(bounds)

    @property
    def _lateness(self) -> float:
        return self.settings.window.allowed_lateness if self.settings.window.mode == "time" else 0

    def _pinned_states(self, batch: Batch) -> tuple[DetectorSet, dict[int, DetectorSet]]:
        """A pinned reference as a whole and, with a season, by phase."""
        whole = self.new_state()
        whole.update(batch)
        phases = {}
        if self.settings.reference.season:
            of = self.reference.phases_of(batch.event_time)
            for phase in np.unique(of).tolist():
                phases[phase] = self.new_state()
                phases[phase].update(batch.take(np.flatnonzero(of == phase)))
        return whole, phases

    def new_state(self) -> DetectorSet:
        return DetectorSet(self.settings.detectors, self.binning, self._labelled, self.detectors)

    def _windows(self) -> Windows[DetectorSet]:
        window = self.settings.window
        if window.mode == "count":
            return CountWindows(self.new_state, window.events)
        return TimeWindows(self.new_state, window.seconds, window.allowed_lateness)
