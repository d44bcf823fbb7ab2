"""Everything streamwatch keeps about one model: schema, binning, open windows, reference.

The first ``grid_sample`` events of a model are held back briefly, so that the fine
numeric grid is fitted on all of them (a representative sample) rather than on whatever
a first small poll happened to bring; then they are windowed like all later events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamwatch.batch import Batch, Schema
from streamwatch.config import Settings
from streamwatch.detectors import DetectorSet, Finding, ModelBinning
from streamwatch.events import Event
from streamwatch.reference import Pinned
from streamwatch.windows import CountWindows, TimeWindows, WindowBounds, Windows


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A window that closed: pooled into the reference, or evaluated against it."""

    model: str
    bounds: WindowBounds
    n: int
    role: str  # "reference" or "evaluated"
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Processed:
    """Events put into windows, events dropped as late, and the windows that closed."""

    windowed: int
    late: int
    closed: list[ClosedWindow]


class ModelMonitor:
    def __init__(self, model_id: str, settings: Settings, pinned: Pinned | None = None) -> None:
        self.model_id = model_id
        self.settings = settings
        self.schema = pinned.schema if pinned else Schema(settings.max_columns)
        self.binning = ModelBinning(settings.detectors)
        self.windows: Windows[DetectorSet] = self._windows()
        self.reference: DetectorSet | None = None
        self.pinned = pinned is not None
        self._pending: list[Batch] = []
        self._warming_up = pinned is None
        if pinned is not None:
            # A pinned reference fits the grid on all of itself, then is frozen.
            self._fit(pinned.batch)
            self.reference = self._new_state()
            self.reference.update(pinned.batch)

    def process(self, events: Sequence[Event]) -> Processed:
        """Window a batch of this model's prediction events; evaluate what closes."""
        batch = self.schema.build(events)
        if self._warming_up:
            self._pending.append(batch)
            return self.settle() if self._warmed_up() else Processed(0, 0, [])
        late = self.windows.add(batch)
        return Processed(batch.n - late, late, self._close(final=False))

    def settle(self) -> Processed:
        """End the warm-up now: fit the grid on what is held back and window it (before
        a snapshot, or at the end), so that no raw value waits outside a window."""
        self._warming_up = False
        if not self._pending:
            return Processed(0, 0, [])
        batch, self._pending = Batch.concat(self._pending), []
        self._fit(batch)
        late = self.windows.add(batch)
        return Processed(batch.n - late, late, self._close(final=False))

    def flush(self) -> Processed:
        """End of input: window what is held back, then close every open window."""
        settled = self.settle()
        return Processed(settled.windowed, settled.late, settled.closed + self._close(final=True))

    def snapshot(self) -> dict[str, Any]:
        """The model's whole state as plain data; call :meth:`settle` first."""
        if self._pending:
            raise RuntimeError("settle() the model before taking a snapshot")
        return {
            "schema": {
                "features": self.schema.features,
                "outputs": self.schema.outputs,
                "ignored": sorted(self.schema.ignored),
            },
            "binning": {
                "features": self.binning.features.snapshot(),
                "outputs": self.binning.outputs.snapshot(),
            },
            "reference": None if self.reference is None else self.reference.snapshot(),
            "pinned": self.pinned,
            "windows": self.windows.snapshot(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.schema.features = dict(state["schema"]["features"])
        self.schema.outputs = dict(state["schema"]["outputs"])
        self.schema.ignored = set(state["schema"]["ignored"])
        self.binning.features.restore(state["binning"]["features"])
        self.binning.outputs.restore(state["binning"]["outputs"])
        self.reference = None
        if state["reference"] is not None:
            self.reference = self._new_state()
            self.reference.restore(state["reference"])
        self.pinned = bool(state["pinned"])
        self._warming_up = False
        self._pending = []
        self.windows.restore(state["windows"])

    def _fit(self, batch: Batch) -> None:
        self.binning.features.fit(batch.features)
        self.binning.outputs.fit(batch.outputs)

    def _warmed_up(self) -> bool:
        held = sum(b.n for b in self._pending)
        if held >= self.settings.detectors.grid_sample:
            return True
        # Never hold back more than a window's worth, so no window close is delayed.
        window = self.settings.window
        if window.mode == "count":
            return held >= window.events
        first = min(float(b.event_time.min()) for b in self._pending if b.n)
        last = max(float(b.event_time.max()) for b in self._pending if b.n)
        return last - first >= window.seconds

    def _close(self, final: bool) -> list[ClosedWindow]:
        return [self._evaluate(b, s, n) for b, s, n in self.windows.pop_closed(final)]

    def _evaluate(self, bounds: WindowBounds, state: DetectorSet, n: int) -> ClosedWindow:
        reference = self.reference
        if reference is None:
            self.reference = state
            return ClosedWindow(self.model_id, bounds, n, "reference")
        if not self.pinned and reference.n < self.settings.reference.min_events:
            reference.merge(state)  # still pooling the first windows into the reference
            return ClosedWindow(self.model_id, bounds, n, "reference")
        findings = state.evaluate(self.model_id, bounds, reference)
        return ClosedWindow(self.model_id, bounds, n, "evaluated", findings)

    def _new_state(self) -> DetectorSet:
        return DetectorSet(self.settings.detectors, self.binning)

    def _windows(self) -> Windows[DetectorSet]:
        window = self.settings.window
        if window.mode == "count":
            return CountWindows(self._new_state, window.events)
        return TimeWindows(self._new_state, window.seconds, window.allowed_lateness)
