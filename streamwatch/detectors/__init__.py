"""Detectors: one module per family, all behind the protocol in ``base``.

A :class:`DetectorSet` is the state of every enabled detector over one window of one
model; windows hold one each, and the reference is one too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamwatch.batch import Batch
from streamwatch.config import DetectorSettings
from streamwatch.detectors import quality
from streamwatch.detectors.base import Detector, Distribution, Finding
from streamwatch.detectors.drift import DriftDetector, FeatureDrift, PredictionDrift
from streamwatch.detectors.histogram import Binning
from streamwatch.detectors.ood import Mahalanobis, OutOfDistribution
from streamwatch.detectors.operational import Operational
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

__all__ = [
    "FAMILIES",
    "Detector",
    "DetectorSet",
    "Distribution",
    "Finding",
    "ModelBinning",
    "Severity",
]

# Every detector family, for the shared check suite (tests/unit/detectors/test_contract.py).
FAMILIES = (FeatureDrift, PredictionDrift, Operational, OutOfDistribution)


class ModelBinning:
    """How one model's features and outputs are binned, and where its inputs' centre
    lies: fixed on its first events, shared by all its windows."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.features = Binning(settings.feature_drift.max_categories)
        self.outputs = Binning(settings.prediction_drift.max_categories)
        self.inputs = Mahalanobis(settings.out_of_distribution)

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
    """Every enabled detector's state over one window of one model."""

    def __init__(self, settings: DetectorSettings, binning: ModelBinning) -> None:
        detectors: list[Detector] = []
        if settings.feature_drift.enabled:
            detectors.append(FeatureDrift(settings.feature_drift, binning.features))
        if settings.prediction_drift.enabled:
            detectors.append(PredictionDrift(settings.prediction_drift, binning.outputs))
        if settings.operational.enabled:
            detectors.append(Operational(settings.operational))
        if settings.out_of_distribution.enabled:
            detectors.append(OutOfDistribution(settings.out_of_distribution, binning.inputs))
        self.detectors: dict[str, Detector] = {d.name: d for d in detectors}
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
        findings = [
            finding
            for name, detector in self.detectors.items()
            for finding in detector.evaluate(model, window, reference.detectors[name])
        ]
        features, reference_features = (s.detectors.get("feature_drift") for s in (self, reference))
        if (
            self.settings.data_quality.enabled
            and isinstance(features, FeatureDrift)
            and isinstance(reference_features, FeatureDrift)
        ):
            # Data quality reads feature drift's aggregates rather than keeping its own.
            findings += quality.evaluate(
                model, window, features, reference_features, self.settings.data_quality
            )
        return findings

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

    def predicted_classes(self) -> Mapping[str, int] | None:
        """Counts of the predicted classes in this window, where prediction drift keeps
        them (the input of label-shift estimation)."""
        drift = self.detectors.get("prediction_drift")
        if not isinstance(drift, PredictionDrift) or "prediction" not in drift.categorical:
            return None
        return drift.categorical["prediction"].counts

    def snapshot(self) -> dict[str, Any]:
        return {"n": self.n, **{k: d.snapshot() for k, d in self.detectors.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.n = int(state["n"])
        for name, detector in self.detectors.items():
            detector.restore(state[name])
