"""Detectors: one module per family, each registered in ``registry`` with its kind.

A :class:`DetectorSet` is the state of every enabled ``window`` detector over one window
of one model; windows hold one each, and the reference is one too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from streamwatch.batch import Batch
from streamwatch.config import DetectorSettings
from streamwatch.detectors import registry
from streamwatch.detectors.base import Detector, Distribution, Finding
from streamwatch.detectors.drift import DriftDetector
from streamwatch.detectors.entry import Context, Registry, build, no_labels
from streamwatch.detectors.histogram import Binning
from streamwatch.detectors.ood import Mahalanobis
from streamwatch.detectors.performance import LabelledReference
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

__all__ = [
    "Detector",
    "DetectorSet",
    "Distribution",
    "Finding",
    "ModelBinning",
    "Severity",
]


class ModelBinning:
    """How one model's features and outputs are binned, and where its inputs' centre
    lies: fixed on its first events, shared by all its windows."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.features: Binning = Binning(settings.feature_drift.max_categories)
        self.outputs: Binning = Binning(settings.prediction_drift.max_categories)
        self.inputs: Mahalanobis = Mahalanobis(settings.out_of_distribution)

    def fit(self, batch: Batch) -> None:
        self.features.fit(batch.features)
        self.outputs.fit(batch.outputs)
        self.inputs.fit(batch.features)

    def snapshot(self) -> dict[str, Any]:
        return {
            "features": self.features.snapshot(),
            "outputs": self.outputs.snapshot(),
            "inputs": self.inputs.snapshot(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.features.restore(state["features"])
        self.outputs.restore(state["outputs"])
        self.inputs.restore(state["inputs"])


class DetectorSet:
    """Every enabled window detector's state over one window of one model, in the
    registry's order. ``labelled`` gives the model's labelled reference (label-shift
    estimation reads it); ``detectors`` defaults to the process's registry."""

    def __init__(
        self,
        settings: DetectorSettings,
        binning: ModelBinning,
        labelled: Callable[[WindowBounds], LabelledReference | None] = no_labels,
        detectors: Registry | None = None,
    ) -> None:
        entries = (registry.default() if detectors is None else detectors).of_kind("window")
        context = Context(settings, binning, labelled=labelled)
        self.detectors: dict[str, Detector] = build(entries, context)
        # Detectors that only read others' state have nothing to checkpoint.
        self.stateful = [e.name for e in entries if e.stateful and e.name in self.detectors]
        self.settings = settings
        self.n = 0

    def update(self, batch: Batch) -> None:
        self.n += batch.n
        for detector in self.detectors.values():
            detector.update(batch)

    def merge(self, other: DetectorSet) -> None:
        self.n += other.n
        for name, detector in self.detectors.items():
            detector.merge(other.detectors[name])

    def evaluate(self, model: str, window: WindowBounds, reference: DetectorSet) -> list[Finding]:
        return [
            finding
            for name, detector in self.detectors.items()
            for finding in detector.evaluate(model, window, reference.detectors[name])
        ]

    def distributions(self, reference: DetectorSet, findings: list[Finding]) -> list[Distribution]:
        """Reference and current distributions of every column whose drift breached."""
        shown = []
        for f in findings:
            detector = self.detectors.get(f.detector)
            if f.severity is not Severity.OK and isinstance(detector, DriftDetector):
                other = reference.detectors[f.detector]
                assert isinstance(other, DriftDetector)
                distribution = detector.distribution(f.subject, other)
                if distribution is not None:
                    shown.append(distribution)
        return shown

    def snapshot(self) -> dict[str, Any]:
        return {"n": self.n, **{k: self.detectors[k].snapshot() for k in self.stateful}}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.n = int(state["n"])
        for name in self.stateful:
            self.detectors[name].restore(state[name])
