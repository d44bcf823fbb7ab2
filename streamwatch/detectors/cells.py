"""A classifier's probability outputs, counted: what calibration, performance estimation
(CBPE) and maximum likelihood label shift read, kept as aggregates that merge exactly.

Each event's probabilities (its ``score``, the positive class's probability, or its
``probability[c]`` columns) are rounded to 1/RESOLUTION and counted with its class: the
predicted class in a window, the actual class among labelled events. Rounding moves a
probability by at most 1/(2 RESOLUTION), a quarter of a point, and unbiasedly: an
estimated accuracy moves by far less. The cells are as many as the distinct vectors:
for a binary model at most 2 x 201, for more classes at most the events counted.

>>> import numpy as np
>>> cells = Cells()
>>> cells.add(np.array(["1", "0", "1"], dtype=object), {"score": np.array([0.9, 0.2, 0.9])})
>>> probabilities, classes, counts = cells.arrays()
>>> probabilities.tolist(), classes, counts.tolist()
([[0.2], [0.9]], ['0', '1'], [1.0, 2.0])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamwatch.batch import FloatArray, ObjectArray

RESOLUTION = 200
PACKED = 7  # columns of a vector packed into one int64 with its class (201^8 > 2^63)
IntArray = NDArray[np.intp]
SCORE = "score"


def probability_columns(names: Sequence[str] | Mapping[str, object]) -> list[str]:
    """The output columns that are probabilities: ``score`` alone, else ``probability[c]``
    in their order (a model sending both is read by its class probabilities)."""
    classes = [n for n in names if n.startswith("probability[")]
    return classes or ([SCORE] if SCORE in names else [])


def class_of(column: str) -> str:
    """The class a probability column is of (``score``: the positive class, unnamed)."""
    return column[len("probability[") : -1] if column.startswith("probability[") else column


class Cells:
    """Counts of (class, rounded probability vector) over ``columns``, which only grow:
    a vector counted before a column came has 0 for it (every key is as long as the
    columns, so that equal vectors are one cell). Past ``max_classes`` class
    names, further ones are counted as the empty class (a bound on raw text kept)."""

    def __init__(self, max_classes: int | None = None) -> None:
        self.max_classes = max_classes
        self.columns: list[str] = []
        self.counts: Counter[tuple[str, tuple[int, ...]]] = Counter()

    @property
    def n(self) -> int:
        return self.counts.total()

    def add(self, classes: ObjectArray, outputs: Mapping[str, FloatArray]) -> None:
        """Count the events with any probability; ``classes`` holds each event's class
        (None: unknown, counted as the empty class)."""
        columns = probability_columns(outputs)
        if not columns:
            return
        self._grow(columns)
        values = np.column_stack(
            [outputs.get(c, np.full(len(classes), np.nan)) for c in self.columns]
        )
        present = ~np.isnan(values).all(axis=1)
        if not present.any():
            return
        rounded = np.rint(np.nan_to_num(values[present]) * RESOLUTION).astype(np.int64)
        names = self._bounded(["" if c is None else str(c) for c in classes[present].tolist()])
        if rounded.shape[1] <= PACKED:
            # Few distinct cells (a binary model's): counted in C, each (class, vector)
            # packed into one integer.
            index: dict[str, int] = {}
            packed = np.fromiter((index.setdefault(n, len(index)) for n in names), np.int64)
            for column in rounded.T:
                packed = packed * (RESOLUTION + 1) + column
            _, first, counts = np.unique(packed, return_index=True, return_counts=True)
            if 4 * len(first) < len(names):
                for i, count in zip(first.tolist(), counts.tolist(), strict=True):
                    self.counts[(names[i], tuple(rounded[i].tolist()))] += count
                return
        self.counts.update(zip(names, map(tuple, rounded.tolist()), strict=True))

    def _grow(self, columns: Sequence[str]) -> None:
        """Add the new ``columns``, padding the vectors counted so far with 0."""
        new = [c for c in columns if c not in self.columns]
        if not new:
            return
        self.columns += new
        pad = (0,) * len(new)
        self.counts = Counter({(name, v + pad): n for (name, v), n in self.counts.items()})

    def _bounded(self, names: list[str]) -> list[str]:
        if self.max_classes is None:
            return names
        known = {name for name, _ in self.counts}
        for name in dict.fromkeys(names):
            if name not in known and len(known) < self.max_classes:
                known.add(name)
        return [name if name in known else "" for name in names]

    def arrays(
        self, columns: Sequence[str] | None = None
    ) -> tuple[FloatArray, list[str], FloatArray]:
        """The distinct cells as (probabilities: cells x columns, classes, counts), the
        columns ``columns`` (default: all) in that order, sorted by class then vector."""
        columns = self.columns if columns is None else columns
        where = [self.columns.index(c) if c in self.columns else -1 for c in columns]
        keys = sorted(self.counts)
        probabilities = np.zeros((len(keys), len(columns)))
        for row, (_, vector) in enumerate(keys):
            for j, i in enumerate(where):
                if 0 <= i < len(vector):
                    probabilities[row, j] = vector[i]
        counts = np.array([self.counts[k] for k in keys], dtype=np.float64)
        return probabilities / RESOLUTION, [k[0] for k in keys], counts

    def merge(self, other: Cells) -> None:
        self._grow(other.columns)
        where = [self.columns.index(c) for c in other.columns]
        names = self._bounded([name for name, _ in other.counts])
        for name, ((_, vector), count) in zip(names, other.counts.items(), strict=True):
            aligned = [0] * len(self.columns)
            for i, value in zip(where, vector, strict=False):
                aligned[i] = value
            self.counts[(name, tuple(aligned))] += count

    def snapshot(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "cells": [[name, list(vector), count] for (name, vector), count in self.counts.items()],
        }

    @classmethod
    def restore(cls, state: Mapping[str, Any], max_classes: int | None = None) -> Cells:
        cells = cls(max_classes)
        cells.columns = [str(c) for c in state["columns"]]
        cells.counts = Counter(
            {
                (str(name), tuple(int(v) for v in vector)): int(count)
                for name, vector, count in state["cells"]
            }
        )
        return cells


def distributions(
    cells: Cells, classes: Sequence[str], positive: str
) -> tuple[FloatArray, IntArray, FloatArray] | None:
    """The cells as full distributions over ``classes`` (cells x classes, rows summing
    to 1), each cell's class as an index into ``classes`` (-1: another or unknown), and
    the counts; None when the probabilities cannot be read over these classes. A score
    is the probability of ``positive`` in a binary model (the other class has the rest);
    class probabilities are renormalised over ``classes`` (a class without a column: 0)."""
    if not cells.columns or len(classes) < 2:
        return None
    probabilities, names, counts = cells.arrays()
    if cells.columns == [SCORE]:
        if len(classes) != 2 or positive not in classes:
            return None
        p = probabilities[:, 0]
        full = np.column_stack([1 - p, p] if classes.index(positive) == 1 else [p, 1 - p])
    else:
        where = {class_of(c): i for i, c in enumerate(cells.columns)}
        full = np.column_stack(
            [probabilities[:, where[c]] if c in where else np.zeros(len(names)) for c in classes]
        )
        total = full.sum(axis=1, keepdims=True)
        kept = total[:, 0] > 0
        full, counts, names = (
            full[kept] / total[kept],
            counts[kept],
            np.array(names, dtype=object)[kept].tolist(),
        )
    index = {c: i for i, c in enumerate(classes)}
    return full, np.array([index.get(n, -1) for n in names], dtype=np.intp), counts
