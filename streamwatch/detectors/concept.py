"""Concept drift within the stream: a river change detector on the model's errors.

Every joined label gives an error (a miss, 0 or 1, for a classifier; the absolute
error for a regressor), fed in arrival order to one detector per model: ADWIN by
default (measured here: no false alarm on 200,000 stationary errors, a jump of the
error rate from 0.20 to 0.35 found within 63 labels), or Page-Hinkley, DDM or EDDM. A
change found between window boundaries is reported with the window its label's
prediction belonged to, when that window's outcomes are evaluated. Page-Hinkley, DDM
and EDDM at their default settings alarm often on long streams (BENCHMARKS.md):
calibrate them before use. A sequential test reads errors in their order, so its
state has no merge: there is one detector per model, checkpointed whole.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

from river import drift
from river.drift import binary

from streamwatch.config import ConceptDriftSettings
from streamwatch.detectors.base import Finding
from streamwatch.detectors.performance import class_label
from streamwatch.join import Joined
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

_DETECTORS: dict[str, Any] = {
    "adwin": drift.ADWIN,
    "page_hinkley": drift.PageHinkley,
    "ddm": binary.DDM,
    "eddm": binary.EDDM,
}


class ConceptDrift:
    name = "concept_drift"

    def __init__(self, settings: ConceptDriftSettings) -> None:
        self.settings = settings
        self.detector: Any = _DETECTORS[settings.detector]()  # river is untyped
        self.changes: dict[int, int] = {}  # window index -> changes found in its labels

    def update(self, joined: Joined, regression: bool) -> None:
        """Feed errors in arrival order; remember in which windows changes were found.
        DDM and EDDM take misses (0 or 1) only: a regressor's errors go to ADWIN or
        Page-Hinkley, or nowhere."""
        if regression and self.settings.detector in {"ddm", "eddm"}:
            return
        if regression:
            errors = [
                abs(float(p) - float(y))
                if isinstance(p, int | float) and isinstance(y, int | float)
                else None
                for p, y in zip(joined.prediction.tolist(), joined.label.tolist(), strict=True)
            ]
        else:
            errors = [
                int(str(p) != class_label(y))
                for p, y in zip(joined.prediction.tolist(), joined.label.tolist(), strict=True)
            ]
        detector = self.detector
        for window, error in zip(joined.window.tolist(), errors, strict=True):
            if error is None:
                continue
            detector.update(error)
            if detector.drift_detected:
                self.changes[window] = self.changes.get(window, 0) + 1

    def evaluate(self, model: str, window: WindowBounds) -> Finding:
        found = self.changes.pop(window.index, 0)
        severity = Severity.WARNING if found else Severity.OK
        what = (
            f"{self.settings.detector} found {found} change(s) in the error rate among this "
            "window's labels"
            if found
            else f"{self.settings.detector} found no change in the error rate"
        )
        return Finding(
            model=model,
            detector=self.name,
            subject="errors",
            statistic=self.settings.detector,
            value=float(found),
            threshold=1.0,
            severity=severity,
            n_reference=0,
            n_current=0,
            window=window,
            explanation=f"model '{model}': {what}.",
        )

    def snapshot(self) -> dict[str, Any]:
        # river's detectors are plain objects with no exchange format of their own; the
        # state file is streamwatch's own, so pickling them is safe here.
        return {"detector": pickle.dumps(self.detector), "changes": list(self.changes.items())}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.detector = pickle.loads(state["detector"])
        self.changes = {int(w): int(c) for w, c in state["changes"]}
