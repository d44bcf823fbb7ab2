"""A spread model's labelled outcomes (spread.py), what a partition's labels give one
window and the owner merges.

Each partition joins the labels that come through it with its predictions, as one
model's monitor does (pipeline/outcomes.py), and once a window's labels are due there
publishes its :class:`Share`: the window's :class:`Labelled` state (performance, slices
and the other outcome detectors', which merge exactly), its label coverage, and, when
the model has sequential detectors, its joined labels in arrival order: the errors
those detectors read, at the owner. A partition keeps those in :class:`Errors`, which
stands in its detectors for the sequential ones (:func:`part_detectors`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np

from streamwatch.detectors import Finding
from streamwatch.detectors.base import LabelledBatch
from streamwatch.detectors.coverage import LabelCoverage
from streamwatch.detectors.entry import Entry, Registry
from streamwatch.errors import StateError
from streamwatch.join import Joined
from streamwatch.pipeline.labelled import Labelled
from streamwatch.pipeline.monitor import ModelMonitor
from streamwatch.state.store import ZLIB_LEVEL
from streamwatch.windows import WindowBounds


def regression(judge: ModelMonitor) -> bool:
    """Whether the model is a regressor, as its pinned schema says (as the monitor does)."""
    return judge.schema.outputs.get("prediction") == "numeric"


class Errors:
    """A partition's stand-in for a spread model's sequential detectors: each window's
    joined labels, in arrival order, until the window's share takes them. Labels of a
    window taken already are late and left out, as the window's outcomes leave them."""

    name = "spread_errors"

    def __init__(self) -> None:
        self.windows: dict[int, list[Joined]] = {}
        self.taken_through = -1  # window indexes up to this one are taken

    def observe(self, labels: LabelledBatch) -> None:
        joined = labels.joined
        for index in np.unique(joined.window).tolist():
            if index > self.taken_through:
                self.windows.setdefault(index, []).append(joined.take(joined.window == index))

    def take(self, index: int) -> Joined:
        self.taken_through = max(self.taken_through, index)
        return from_rows(rows(self.windows.pop(index, [])))

    def evaluate(self, model: str, window: WindowBounds) -> list[Finding]:
        """Nothing: the owner's sequential detectors judge these errors."""
        return []

    def snapshot(self) -> dict[str, Any]:
        return {
            "windows": [[index, rows(chunks)] for index, chunks in sorted(self.windows.items())],
            "taken_through": self.taken_through,
        }

    def restore(self, state: Any) -> None:
        self.windows = {int(index): [from_rows(data)] for index, data in state["windows"]}
        self.taken_through = int(state["taken_through"])


ERRORS = Entry(
    Errors.name,
    "sequential",
    lambda context: Errors(),
    "see the model's owner: its sequential detectors read these errors",
    "the owner's concept drift findings",
    compare="none",
)


def part_detectors(judge: ModelMonitor) -> Registry:
    """A partition's detectors of a spread model: the model's, but the sequential ones,
    which run at the owner; :class:`Errors` in their place if the model has any."""
    kept = [e for e in judge.detectors if e.kind != "sequential"]
    return Registry([*kept, ERRORS] if judge.outcomes.sequential else kept)


@dataclass(slots=True)
class Share:
    """One partition's labelled outcomes of one window. ``dimensions`` name the slice
    values of ``errors`` (the partition's, in the order it first saw them); ``errors``
    is None when the model has no sequential detectors."""

    state: Labelled
    coverage: LabelCoverage
    dimensions: list[str]
    errors: Joined | None = None

    def data(self) -> list[Any]:
        errors = None if self.errors is None else rows([self.errors])
        return [self.state.snapshot(), self.coverage.snapshot(), self.dimensions, errors]

    def pack(self) -> bytes:
        return zlib.compress(msgspec.msgpack.encode(self.data()), ZLIB_LEVEL)

    @classmethod
    def of(cls, data: Sequence[Any], new: Callable[[], Labelled]) -> Share:
        state, coverage, dimensions, errors = data
        share = cls(new(), LabelCoverage(), [str(d) for d in dimensions])
        share.state.restore(state)
        share.coverage.restore(coverage)
        share.errors = None if errors is None else from_rows(errors)
        return share

    @classmethod
    def unpack(cls, blob: bytes, new: Callable[[], Labelled]) -> Share:
        """A published share; :class:`StateError` if it is unreadable."""
        try:
            return cls.of(msgspec.msgpack.decode(zlib.decompress(blob)), new)
        except (msgspec.DecodeError, zlib.error, KeyError, TypeError, ValueError) as exc:
            raise StateError(f"a partial's labelled outcomes are unreadable: {exc!r}") from exc


def rows(chunks: Sequence[Joined]) -> list[Any]:
    """Joined labels as plain data, column by column, the chunks one after another (a
    probability column a chunk has not is NaN in it)."""
    names = list(dict.fromkeys(name for chunk in chunks for name in chunk.probabilities))
    missing = [np.full(chunk.n, np.nan) for chunk in chunks]
    return [
        [w for chunk in chunks for w in chunk.window.tolist()],
        [p for chunk in chunks for p in chunk.prediction.tolist()],
        [s for chunk in chunks for s in chunk.score.tolist()],
        [y for chunk in chunks for y in chunk.label.tolist()],
        [d for chunk in chunks for d in chunk.delay.tolist()],
        [list(s) for chunk in chunks for s in (chunk.slices or [()] * chunk.n)],
        {
            name: [
                v
                for chunk, nan in zip(chunks, missing, strict=True)
                for v in chunk.probabilities.get(name, nan).tolist()
            ]
            for name in names
        },
    ]


def from_rows(data: Sequence[Any]) -> Joined:
    """Joined labels from what :func:`rows` wrote."""
    window, prediction, score, label, delay, slices, probabilities = data
    return Joined(
        np.asarray(window, dtype=np.int64),
        _objects(prediction),
        np.asarray(score, dtype=np.float64),
        _objects(label),
        np.asarray(delay, dtype=np.float64),
        [tuple(s) for s in slices],
        {str(name): np.asarray(values, dtype=np.float64) for name, values in probabilities.items()},
    )


def _objects(values: Sequence[object]) -> np.ndarray:
    array = np.empty(len(values), dtype=np.object_)
    array[:] = list(values)
    return array
