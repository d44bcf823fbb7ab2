"""Aggregate state of one column: counts on a fine grid, moments, or category counts.

No event is kept. A numeric column is counted on a fine grid of about 128 bins whose
edges lie between quantiles of the model's first events (never on a value of that
sample); coarse quantile bins of the reference, KS and Wasserstein are all derived from
these counts at window close. A categorical column is counted over a vocabulary of at
most ``limit`` categories, the first seen; later newcomers count as ``__other__``. Edges
and vocabularies are fixed per model (a :class:`Binning`), so every window of the model,
its reference included, counts on the same bins and states merge exactly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamwatch.batch import Columns, FloatArray, ObjectArray

GRID_RESOLUTION = 128
OTHER = "__other__"
MAX_CATEGORY_CHARS = 1024  # a longer "category" is free text or an error: missing
# Offsets of the grid around a constant sample: 1e-6 to 1e9 either side, 4 per decade.
_AROUND = 10.0 ** np.arange(-6.0, 9.01, 0.25)


def fit_edges(values: FloatArray, resolution: int = GRID_RESOLUTION) -> FloatArray:
    """Fine bin edges from a sample: its inner quantiles, each moved halfway up to the
    next distinct value, so that bins separate what the quantiles separated and no edge
    is a value of the sample. The extremes are not edges: a bin out to the maximum of a
    heavy tail is too wide to treat as uniform (and an extreme is one person's value).
    A constant sample gets log-spaced edges around its value, so that any later move
    away from it is measured rather than lost in one open-ended bin.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.empty(0)
    distinct = np.unique(finite)
    if distinct.size == 1:
        (c,) = distinct
        return np.unique(np.concatenate([c - _AROUND[::-1], c + _AROUND]))
    probabilities = np.linspace(0.0, 1.0, resolution + 1)[1:-1]
    quantiles = np.quantile(finite, probabilities, method="inverted_cdf")
    above = np.searchsorted(distinct, quantiles, side="right")
    inside = above < distinct.size
    return np.unique((quantiles[inside] + distinct[above[inside]]) / 2)


class Binning:
    """How one group of columns (features, or outputs) of one model is binned."""

    def __init__(self, max_categories: int) -> None:
        self.edges: dict[str, FloatArray] = {}
        self.vocabulary: dict[str, dict[str, None]] = {}  # ordered sets
        self.max_categories = max_categories

    def edges_for(self, name: str, values: FloatArray) -> FloatArray | None:
        edges = self.edges.get(name)
        if edges is None:
            fitted = fit_edges(values)
            if fitted.size == 0:
                return None  # nothing but missing values so far
            self.edges[name] = edges = fitted
        return edges

    def fit(self, columns: Columns) -> None:
        """Fix the edges of every numeric column on this (warm-up) sample."""
        for name, values in columns.numeric.items():
            self.edges_for(name, values)

    def admit(self, name: str, counted: Counter[str]) -> tuple[Counter[str], int]:
        """Counts over the vocabulary: newcomers join while there is room, the rest are
        counted as ``__other__``; overlong categories are missing (returned apart)."""
        known = self.vocabulary.setdefault(name, {})
        folded = overlong = 0
        for category in list(counted):
            if category in known:
                continue
            if len(category) > MAX_CATEGORY_CHARS:
                overlong += counted.pop(category)
            elif len(known) < self.max_categories - 1:
                known[category] = None
            else:
                folded += counted.pop(category)
        if folded:
            counted[OTHER] += folded
        return counted, overlong

    def snapshot(self) -> dict[str, Any]:
        return {
            "edges": {k: v.tolist() for k, v in self.edges.items()},
            "vocabulary": {k: list(v) for k, v in self.vocabulary.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self.edges = {k: np.asarray(v, dtype=np.float64) for k, v in state["edges"].items()}
        self.vocabulary = {k: dict.fromkeys(v) for k, v in state["vocabulary"].items()}


class NumericHistogram:
    """Counts on the fine grid (bin ``i`` is ``edges[i-1] <= x < edges[i]``) and moments."""

    __slots__ = ("counts", "m2", "mean", "missing", "n", "wrong_type")

    def __init__(self) -> None:
        self.counts = np.zeros(0, dtype=np.int64)
        self.missing = 0  # absent, or there with the wrong type (counted in both)
        self.wrong_type = 0
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
        # Sorted first: the search then walks the edges in order (twice as fast).
        index = np.searchsorted(edges, np.sort(present), side="right")
        self.counts += np.bincount(index, minlength=len(self.counts))
        mean = float(present.mean())
        self._add_moments(present.size, mean, float(np.square(present - mean).sum()))

    def merge(self, other: NumericHistogram) -> None:
        if other.counts.size:
            self.counts = self.counts + other.counts if self.counts.size else other.counts.copy()
        self.missing += other.missing
        self.wrong_type += other.wrong_type
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
            "wrong_type": self.wrong_type,
            "n": self.n,
            "mean": self.mean,
            "m2": self.m2,
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> NumericHistogram:
        hist = cls()
        hist.counts = np.asarray(state["counts"], dtype=np.int64)
        hist.missing, hist.n = int(state["missing"]), int(state["n"])
        hist.wrong_type = int(state["wrong_type"])
        hist.mean, hist.m2 = float(state["mean"]), float(state["m2"])
        return hist


class CategoryCounts:
    """Counts per category of the model's vocabulary for one column."""

    __slots__ = ("counts", "missing", "wrong_type")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.missing = 0  # absent, of the wrong type, or overlong (counted in both)
        self.wrong_type = 0

    @property
    def n(self) -> int:
        return self.counts.total()

    def update(self, values: ObjectArray, name: str, binning: Binning) -> None:
        counted: Counter[str] = Counter(values.tolist())  # counts in C, not a Python loop
        self.missing += counted.pop(None, 0)  # type: ignore[call-overload]
        admitted, overlong = binning.admit(name, counted)
        self.counts.update(admitted)
        self.missing += overlong

    def merge(self, other: CategoryCounts) -> None:
        self.counts.update(other.counts)
        self.missing += other.missing
        self.wrong_type += other.wrong_type

    def snapshot(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "missing": self.missing, "wrong_type": self.wrong_type}

    @classmethod
    def restore(cls, state: Mapping[str, Any]) -> CategoryCounts:
        counts = cls()
        counts.counts = Counter({str(k): int(v) for k, v in state["counts"].items()})
        counts.missing = int(state["missing"])
        counts.wrong_type = int(state["wrong_type"])
        return counts
