"""What labelled outcomes give one window, or the outcome reference: the state of every
outcome detector, as one :class:`Labelled` that merges, checkpoints and is pooled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from streamwatch.config import DetectorSettings
from streamwatch.detectors import registry
from streamwatch.detectors.base import LabelledBatch, OutcomeDetector
from streamwatch.detectors.coverage import NAME as COVERAGE
from streamwatch.detectors.entry import Context, Entry, Registry, build
from streamwatch.detectors.performance import Performance

# Keys of states in the checkpoint from before the registry (format 6); others: by name.
_STORED_AS = {"slice_performance": "slices", "concept_drift": "errors"}


class Labelled:
    """What labelled outcomes give one window, or the outcome reference: the state of
    every outcome detector of ``entries`` (by default the registry's) but label coverage
    (kept per window), enabled or not: the reference pools by performance's count of
    labels, and label-shift estimation reads its confusion matrix. Pooled by a
    ReferencePool."""

    def __init__(self, settings: DetectorSettings, entries: Sequence[Entry] | None = None) -> None:
        if entries is None:
            entries = pooled(registry.default())
        self.detectors: dict[str, OutcomeDetector] = build(entries, Context(settings), every=True)
        self._stored = {_STORED_AS.get(e.name, e.name): e.name for e in entries if e.stateful}

    @property
    def performance(self) -> Performance:
        performance = self.detectors["performance"]
        assert isinstance(performance, Performance)
        return performance

    @property
    def n(self) -> int:
        return self.performance.n

    def observe(self, labels: LabelledBatch) -> None:
        for detector in self.detectors.values():
            detector.observe(labels)

    def merge(self, other: Labelled) -> None:
        for name, detector in self.detectors.items():
            detector.merge(other.detectors[name])

    def snapshot(self) -> dict[str, Any]:
        return {key: self.detectors[name].snapshot() for key, name in self._stored.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        for key, name in self._stored.items():
            self.detectors[name].restore(state[key])


def pooled(detectors: Registry) -> list[Entry]:
    """The outcome entries a Labelled state holds: all but label coverage (per window)."""
    return [e for e in detectors.of_kind("outcome") if e.name != COVERAGE]
