"""Label coverage: how many of a window's predictions got their label, and how late.

A report, never an alarm (its severity is always ok): it says whether the outcome
detectors of a window had labels to judge by. It compares with nothing, so it is kept
per window (in the window's row of the checkpoint) and never pooled into the outcome
reference.
"""

from __future__ import annotations

import math
from typing import Any, Self

from streamwatch.detectors.base import Finding, LabelledBatch
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

NAME = "labels"


class LabelCoverage:
    """Predictions, labels and the labels' total delay (seconds) of one window."""

    name = NAME

    def __init__(self) -> None:
        self.predictions = 0  # the window's, known once it closed
        self.labels = 0
        self.delay_total = 0.0

    def observe(self, labels: LabelledBatch) -> None:
        self.labels += labels.joined.n
        self.delay_total += float(labels.joined.delay.sum())

    def merge(self, other: Self) -> None:
        self.predictions += other.predictions
        self.labels += other.labels
        self.delay_total += other.delay_total

    def snapshot(self) -> list[Any]:
        return [self.predictions, self.labels, self.delay_total]

    def restore(self, state: Any) -> None:
        predictions, labels, delay = state
        self.predictions, self.labels, self.delay_total = (
            int(predictions),
            int(labels),
            float(delay),
        )

    def evaluate(
        self, model: str, window: WindowBounds, reference: Self | None = None
    ) -> list[Finding]:
        """The window's coverage and mean delay (absolute: ``reference`` is not read)."""
        coverage = self.labels / self.predictions if self.predictions else 0.0
        delay = self.delay_total / self.labels if self.labels else math.nan
        late = f", {delay / 60:.0f} min after the prediction on average" if self.labels else ""
        finding = Finding(
            model=model,
            detector=NAME,
            subject="coverage",
            statistic="label_coverage",
            value=coverage,
            threshold=0.0,
            severity=Severity.OK,
            n_reference=0,
            n_current=self.labels,
            window=window,
            explanation=f"model '{model}': {self.labels:,} of {self.predictions:,} predictions "
            f"labelled ({coverage:.0%}){late}.",
            details={
                "labels": self.labels,
                "predictions": self.predictions,
                "mean_delay_seconds": delay,
            },
        )
        return [finding]
