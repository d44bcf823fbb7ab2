"""Aggregate state of one column: counts on a fine grid, moments, or category counts.

No raw value is kept. A numeric column is counted on a fine grid of about 128 bins whose
edges are quantiles of the model's first events (rounded, so that an edge is not a
stored data value); coarse quantile bins of the reference, KS and Wasserstein are all
derived from these counts at window close.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamwatch.batch import FloatArray, ObjectArray

GRID_RESOLUTION = 128
OTHER = "__other__"


def fit_edges(values: FloatArray, resolution: int = GRID_RESOLUTION) -> FloatArray:
    """Fine bin edges from a sample: its inner quantiles, rounded to 1/10,000 of their span.

    The sample's extremes are not edges: a bin out to the maximum of a heavy tail is
    too wide to treat as uniform, and an extreme is one person's value. What lies
    beyond the outer edges is counted in two open-ended bins.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.empty(0)
    edges = np.quantile(finite, np.linspace(0.0, 1.0, resolution + 1)[1:-1])
    span = float(edges[-1] - edges[0])
    if span > 0:
        step = 10.0 ** math.floor(math.log10(span) - 4)
        edges = np.round(edges / step) * step
    return np.unique(edges)


class Grid:
    """The fine edges of each numeric column of one model, fixed on first values."""

    def __init__(self, edges: Mapping[str, FloatArray] | None = None) -> None:
        self.edges: dict[str, FloatArray] = dict(edges or {})

    def edges_for(self, name: str, values: FloatArray) -> FloatArray | None:
        edges = self.edges.get(name)
        if edges is None:
            fitted = fit_edges(values)
            if fitted.size == 0:
                return None  # nothing but missing values so far
            self.edges[name] = edges = fitted
        return edges


class NumericHistogram:
    """Counts on the fine grid (bin ``i`` is ``edges[i-1] <= x < edges[i]``) and moments."""

    __slots__ = ("counts", "m2", "mean", "missing", "n")

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.int64)
        self.missing = 0
        self.n = 0  # moments of the non-missing values (Chan et al. for merging)
        self.mean = 0.0
        self.m2 = 0.0

    def update(self, values: FloatArray, edges: FloatArray | None) -> None:
        present = values[~np.isnan(values)]
        self.missing += len(values) - len(present)
        if present.size == 0 or edges is None:
            return
        if self.counts.size == 0:
            self.counts = np.zeros(len(edges) + 1, dtype=np.int64)
        index = np.searchsorted(edges, present, side="right")
        self.counts += np.bincount(index, minlength=len(self.counts))
        mean = float(present.mean())
        self._add_moments(present.size, mean, float(np.square(present - mean).sum()))

    def merge(self, other: NumericHistogram) -> None:
        if other.counts.size:
            self.counts = self.counts + other.counts if self.counts.size else other.counts.copy()
        self.missing += other.missing
        self._add_moments(other.n, other.mean, other.m2)

    def _add_moments(self, n: int, mean: float, m2: float) -> None:
        if n == 0:
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "counts": self.counts.tolist(),
            "missing": self.missing,
            "n": self.n,
            "mean": self.mean,
            "m2": self.m2,
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> NumericHistogram:
        hist = cls()
        hist.counts = np.asarray(state["counts"], dtype=np.int64)
        hist.missing, hist.n = int(state["missing"]), int(state["n"])
        hist.mean, hist.m2 = float(state["mean"]), float(state["m2"])
        return hist


class CategoryCounts:
    """Counts per category, at most ``limit`` of them (the rare rest as ``__other__``)."""

    __slots__ = ("counts", "limit", "missing")

    def __init__(self, limit: int) -> None:
        self.counts: Counter[str] = Counter()
        self.missing = 0
        self.limit = limit

    @property
    def n(self) -> int:
        return self.counts.total()

    def update(self, values: ObjectArray) -> None:
        counted = Counter(values.tolist())
        self.missing += counted.pop(None, 0)
        self.counts.update(counted)
        self._bound()

    def merge(self, other: CategoryCounts) -> None:
        self.counts.update(other.counts)
        self.missing += other.missing
        self._bound()

    def _bound(self) -> None:
        if len(self.counts) <= self.limit:
            return
        keep = dict(self.counts.most_common(self.limit - 1))
        rest = self.counts.total() - sum(keep.values())
        self.counts = Counter(keep)
        self.counts[OTHER] += rest

    def snapshot(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "missing": self.missing}

    @classmethod
    def restore(cls, state: Mapping[str, Any], limit: int) -> CategoryCounts:
        counts = cls(limit)
        counts.counts = Counter({str(k): int(v) for k, v in state["counts"].items()})
        counts.missing = int(state["missing"])
        return counts
