"""Multivariate out-of-distribution inputs: the share of events far from the reference.

Each feature can look ordinary while the combination is not (a large loan to a
16-year-old). A :class:`Mahalanobis` fit on the model's first events (the sample that
fixes the bin grid) standardises the numeric features, whitens them along the
principal axes of their correlation, and takes as its threshold the sample's own
``quantile`` (99%) of squared distances; a missing value sits at the mean, an infinite
one is always outside. Each window counts the events beyond the threshold. The fit is
fixed per model, so counts merge exactly and the reference's share is measured, not
assumed: the threshold is an in-sample quantile, and features with heavy tails make
the share above it drift from 1% in either direction.

The share alarms when it rose by an absolute margin over the reference's and the rise
is significant (one-sided two-proportion test).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from streamwatch.batch import Batch, Columns, FloatArray
from streamwatch.config import OutOfDistributionSettings
from streamwatch.detectors import statistics as st
from streamwatch.detectors.base import Finding
from streamwatch.severity import Severity
from streamwatch.windows import WindowBounds

NAME = "out_of_distribution"
SUBJECT = "inputs"
MIN_PRESENT = 0.5  # a feature takes part when at least half the sample has a value
RELATIVE_RANK = 1e-8  # principal axes with less variance than this (relative) are noise


class Mahalanobis:
    """Squared Mahalanobis distances to one model's first sample, and the threshold."""

    def __init__(self, settings: OutOfDistributionSettings) -> None:
        self.settings = settings
        self.names: list[str] = []
        self.mean = self.scale = np.empty(0)
        self.whiten = np.empty((0, 0))
        self.threshold = np.inf

    @property
    def fitted(self) -> bool:
        return bool(self.names)

    def fit(self, features: Columns) -> None:
        """Fit on this sample, once; too few events or features leave it unfitted."""
        if self.fitted:
            return
        n = len(next(iter(features.numeric.values()), ()))
        present = {k: int(np.isfinite(v).sum()) for k, v in features.numeric.items()}
        candidates = [k for k, count in present.items() if count >= MIN_PRESENT * n]
        most_present = sorted(candidates, key=lambda k: (-present[k], k))
        names = sorted(most_present[: self.settings.max_features])
        if len(names) < 2 or n < max(self.settings.min_samples, 10 * len(names)):
            return  # one feature is data quality's range check; few events, a poor fit
        x = np.column_stack([features.numeric[k] for k in names])
        x[~np.isfinite(x)] = np.nan
        mean, scale = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
        keep = scale > 0  # a constant feature has no spread to measure a distance by
        if keep.sum() < 2:
            return
        z = np.nan_to_num((x[:, keep] - mean[keep]) / scale[keep])
        variances, axes = np.linalg.eigh(np.cov(z, rowvar=False))
        rank = variances > RELATIVE_RANK * variances.max()
        self.names = [k for k, kept in zip(names, keep, strict=True) if kept]
        self.mean, self.scale = mean[keep], scale[keep]
        self.whiten = axes[:, rank] / np.sqrt(variances[rank])
        self.threshold = float(np.nanquantile(self.distances(features), self.settings.quantile))

    def distances(self, features: Columns) -> FloatArray:
        """Squared distances of a batch's events; NaN where an event has no value of any
        fitted feature (nothing to place it by)."""
        n = len(next(iter(features.numeric.values()), ()))
        x = np.full((n, len(self.names)), np.nan)
        for j, name in enumerate(self.names):
            column = features.numeric.get(name)
            if column is not None:
                x[:, j] = column
        z = (x - self.mean) / self.scale
        infinite = np.isinf(z).any(axis=1)
        empty = np.isnan(z).all(axis=1)
        whitened: FloatArray = np.nan_to_num(z, posinf=0.0, neginf=0.0) @ self.whiten
        d2: FloatArray = np.square(whitened).sum(axis=1)
        d2[infinite] = np.inf
        d2[empty] = np.nan
        return d2

    def snapshot(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "whiten": self.whiten.tolist(),
            "threshold": self.threshold if self.fitted else None,  # inf is not JSON
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.names = list(state["names"])
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.scale = np.asarray(state["scale"], dtype=np.float64)
        whiten = np.asarray(state["whiten"], dtype=np.float64)
        self.whiten = whiten.reshape(len(self.names), -1) if self.names else np.empty((0, 0))
        self.threshold = np.inf if state["threshold"] is None else float(state["threshold"])


class OutOfDistribution:
    """Events placed by the model's :class:`Mahalanobis`, and how many fell outside."""

    name = NAME

    def __init__(self, settings: OutOfDistributionSettings, fit: Mahalanobis) -> None:
        self.settings = settings
        self.fit = fit
        self.n = 0
        self.outside = 0

    def update(self, batch: Batch) -> None:
        if not self.fit.fitted or batch.n == 0:
            return
        d2 = self.fit.distances(batch.features)
        placed = ~np.isnan(d2)
        self.n += int(placed.sum())
        self.outside += int((d2[placed] > self.fit.threshold).sum())

    def merge(self, other: OutOfDistribution) -> None:
        self.n += other.n
        self.outside += other.outside

    def evaluate(
        self, model: str, window: WindowBounds, reference: OutOfDistribution
    ) -> list[Finding]:
        s = self.settings
        if min(self.n, reference.n) < s.min_samples:
            return []
        share, ref_share = self.outside / self.n, reference.outside / reference.n
        rise = share - ref_share
        pvalue = st.higher_rate_pvalue(self.outside, self.n, reference.outside, reference.n)
        severity = Severity.of(rise, s.warning, s.critical) if pvalue <= s.alpha else Severity.OK
        features = ", ".join(self.fit.names)
        return [
            Finding(
                model=model,
                detector=NAME,
                subject=SUBJECT,
                statistic="outlier_share",
                value=rise,
                threshold=severity.threshold(s.warning, s.critical),
                severity=severity,
                n_reference=reference.n,
                n_current=self.n,
                window=window,
                explanation=f"model '{model}': {share:.1%} of events lie beyond the "
                f"reference's {s.quantile:.0%} Mahalanobis distance over ({features}), "
                f"against {ref_share:.1%} in the reference"
                + severity.note(f"p = {pvalue:.2g}")
                + ".",
                details={"share": share, "reference_share": ref_share, "p_value": pvalue},
            )
        ]

    def snapshot(self) -> dict[str, Any]:
        return {"n": self.n, "outside": self.outside}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.n, self.outside = int(state["n"]), int(state["outside"])
