"""The checks every registered detector passes, whatever its family, fed by its kind.

Parametrized over the whole registry (the built-in entries and any installed through the
``streamwatch.detectors`` entry-point group), each entry built with what it needs:

- where its kind merges, merging is associative and equals the whole: (a+b)+c, a+(b+c)
  and the state of the whole stream give the same findings;
- a snapshot round-trips through msgpack (the checkpoint's encoding) to the same findings;
- a snapshot holds no raw values, only aggregates and sketches: of a stream of distinct
  values (and a marker value), none is kept, or no more than the bounded sample its
  entry declares;
- findings are plain data (Python floats, ints and strings).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamwatch.batch import Batch
from streamwatch.config import (
    ConceptDriftSettings,
    DetectorSettings,
    DriftSettings,
    LabelShiftSettings,
    ShadowSettings,
    SliceSettings,
)
from streamwatch.detectors import Finding, ModelBinning, Severity
from streamwatch.detectors.base import LabelledBatch
from streamwatch.detectors.entry import Context, Entry
from streamwatch.detectors.performance import LabelledReference, Performance
from streamwatch.detectors.registry import BUILT_IN, build, default
from streamwatch.join import Joined
from streamwatch.windows import WindowBounds
from tests.unit.detectors.streams import (
    BOUNDS,
    MARK_NUMBER,
    MARK_TEXT,
    events,
    labels,
    pairs,
    raw_stream,
)

ENTRIES = list(default())
IDS = [f"{e.name}:{e.kind}" for e in ENTRIES]
MERGING = [e for e in ENTRIES if e.merges]
DIMENSIONS = ("region", "gender")
SETTINGS = DetectorSettings(
    slices=SliceSettings(protected=("gender",), min_support=30),
    label_shift=LabelShiftSettings(estimate=True, min_samples=100),
    concept_drift=ConceptDriftSettings(detector="adwin"),  # only the sequential entry reads it
)
# Small vocabularies and buffers, so that a bounded sample is reached and passed.
SMALL = DetectorSettings(
    feature_drift=DriftSettings(max_categories=8),
    prediction_drift=DriftSettings(max_categories=8),
    slices=SliceSettings(protected=("gender",), max_slices=4),
    shadow=ShadowSettings(max_waiting=8),
    label_shift=LabelShiftSettings(estimate=True),
    concept_drift=ConceptDriftSettings(detector="adwin"),
)
# Distinct raw values a state may keep at most per bounded sample: a window's
# categorical feature and output; a slice dimension; a regressor's latest errors; a
# waiting challenger's event id, prediction and score.
RAW_COLUMNS = {"window": 2, "outcome": 1, "sequential": 1, "pair": 3}


# -- an entry with what it needs, fed by its kind ----------------------------------------


def new_grid(small: bool = False) -> ModelBinning:
    """A model's binning, fixed on its first events; its vocabularies fill as windows
    come, so each test has its own."""
    binning = ModelBinning(SMALL if small else SETTINGS)
    binning.fit(events(100, 2048))
    return binning


@functools.cache
def labelled_reference() -> Performance:
    """The model's labelled reference, for label-shift estimation."""
    performance = Performance(SETTINGS.performance)
    performance.update(labels(101, 3000, window=0), regression=False)
    return performance


def with_needs(entry: Entry) -> list[Entry]:
    """``entry`` and what it needs, in registry order."""
    names = {entry.name}
    for e in reversed(ENTRIES):
        if e.kind == entry.kind and e.name in names:
            names.update(e.needs)
    return [e for e in ENTRIES if e.kind == entry.kind and (e.name in names)]


@dataclass
class Built:
    """One entry's detector and those it needs, fed and judged as its kind says."""

    entry: Entry
    grid: ModelBinning
    detectors: dict[str, Any]
    vocabulary: dict[str, set[str]]

    @classmethod
    def of(cls, entry: Entry, grid: ModelBinning, small: bool = False) -> Built:
        context = Context(
            SMALL if small else SETTINGS,
            grid,
            labelled=lambda _: LabelledReference(labelled_reference(), labelled_reference()),
        )
        return cls(entry, grid, build(with_needs(entry), context, every=True), {})

    @property
    def detector(self) -> Any:
        return self.detectors[self.entry.name]

    def feed(self, data: Any) -> Built:
        kind = self.entry.kind
        for detector in self.detectors.values():
            if kind == "window":
                detector.update(data)
            elif kind == "pair":
                for champion, challenger in data:
                    detector.pair(BOUNDS.index, "2", champion, challenger)
            else:
                joined, regression = data
                batch = LabelledBatch(joined, regression, DIMENSIONS, self.vocabulary)
                detector.observe(batch)
        return self

    def merge(self, other: Built) -> Built:
        for name, detector in self.detectors.items():
            detector.merge(other.detectors[name])
        return self

    def evaluate(self, reference: Built | None, window: WindowBounds = BOUNDS) -> list[Finding]:
        if self.entry.kind in ("sequential", "pair"):
            found: list[Finding] = self.detector.evaluate("m", window)
        else:
            assert reference is not None
            found = self.detector.evaluate("m", window, reference.detector)
        return found

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode({k: d.snapshot() for k, d in self.detectors.items()})

    def restored(self) -> Built:
        fresh = Built.of(self.entry, self.grid)
        fresh.vocabulary = {k: set(v) for k, v in self.vocabulary.items()}
        for name, state in msgspec.msgpack.decode(self.snapshot()).items():
            fresh.detectors[name].restore(state)
        return fresh


def stream(kind: str, seed: int) -> tuple[Any, Any, Callable[[Any, int, int], Any], int]:
    """The reference's data, a window's, how to cut the window's into [lo, hi), its size."""
    if kind == "window":
        return events(seed, 3000), events(seed + 1, 1500, shift=0.3), _take_batch, 1500
    if kind == "pair":
        return None, pairs(seed, 600, flip=0.1), lambda d, lo, hi: d[lo:hi], 600
    reference = (labels(seed, 3000), False)
    return reference, (labels(seed + 1, 1500, flip=0.15), False), _take_labels, 1500


def _take_batch(batch: Batch, lo: int, hi: int) -> Batch:
    return batch.take(np.arange(lo, hi))


def _take_labels(data: tuple[Joined, bool], lo: int, hi: int) -> tuple[Joined, bool]:
    return data[0].take(np.arange(lo, hi)), data[1]


def reference_of(entry: Entry, grid: ModelBinning, data: Any) -> Built | None:
    return None if data is None else Built.of(entry, grid).feed(data)


@functools.cache
def judged(index: int) -> list[Finding]:
    """The findings of entry ``index`` on the suite's realistic streams."""
    entry, grid = ENTRIES[index], new_grid()
    if entry.kind == "sequential":
        return [f for b in sequential_windows(entry) for f in b]
    ref, current, _, _ = stream(entry.kind, 1)
    return Built.of(entry, grid).feed(current).evaluate(reference_of(entry, grid, ref))


def sequential_windows(
    entry: Entry, restore_after: int | None = None, rise: float = 0.3
) -> Iterator[list[Finding]]:
    """Six windows of labels whose error rate rises by ``rise`` in the fourth, fed and
    judged in order; with ``restore_after``, the detector is restored from its snapshot
    then."""
    built = Built.of(entry, new_grid())
    for index in range(6):
        built.feed((labels(200 + index, 500, window=index, flip=rise * (index >= 3)), False))
        if index == restore_after:
            built = built.restored()
        yield built.evaluate(None, WindowBounds(index, index * 600.0, (index + 1) * 600.0))


# -- the checks ------------------------------------------------------------------------


def same(a: Sequence[Finding], b: Sequence[Finding], rel: float = 0.0) -> None:
    """The same findings: labels exactly, numbers within ``rel`` (NaN equals NaN)."""

    def close(x: float, y: float) -> bool:
        return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=rel, abs_tol=rel)

    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        key = ("detector", "subject", "statistic", "severity", "n_reference", "n_current")
        assert [getattr(x, k) for k in key] == [getattr(y, k) for k in key]
        assert x.window == y.window
        assert close(x.value, y.value), (x, y)
        assert close(x.threshold, y.threshold)
        assert x.details.keys() == y.details.keys()
        assert all(close(x.details[k], y.details[k]) for k in x.details), (x, y)
        if rel == 0.0:
            assert x.explanation == y.explanation


def test_the_suite_covers_every_kind_and_every_built_in_family() -> None:
    assert {e.kind for e in ENTRIES} == {"window", "outcome", "sequential", "pair"}
    assert set(BUILT_IN) <= set(ENTRIES)
    assert len(BUILT_IN.names()) == 13  # the 12 families and label coverage


@pytest.mark.parametrize("entry", MERGING, ids=[f"{e.name}:{e.kind}" for e in MERGING])
@settings(max_examples=4)
@given(seed=st.integers(0, 1000), cuts=st.tuples(st.floats(0.05, 0.95), st.floats(0.05, 0.95)))
def test_merge_is_associative_and_equals_the_whole(
    entry: Entry, seed: int, cuts: tuple[float, float]
) -> None:
    ref, current, take, n = stream(entry.kind, seed)
    grid = new_grid()
    reference = reference_of(entry, grid, ref)
    lo, hi = sorted(round(c * n) for c in cuts)

    def part(k: int) -> Built:
        bounds = [0, lo, hi, n]
        return Built.of(entry, grid).feed(take(current, bounds[k], bounds[k + 1]))

    left = part(0).merge(part(1)).merge(part(2))  # (a + b) + c
    right = part(0).merge(part(1).merge(part(2)))  # a + (b + c)
    whole = Built.of(entry, grid).feed(current)
    expected = whole.evaluate(reference)
    same(left.evaluate(reference), expected, rel=1e-9)
    same(right.evaluate(reference), expected, rel=1e-9)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_a_snapshot_restores_to_the_same_findings(entry: Entry) -> None:
    if entry.kind == "sequential":  # restored mid-stream, then fed on
        expected = [f for w in sequential_windows(entry) for f in w]
        for after in (0, 3):
            same([f for w in sequential_windows(entry, after) for f in w], expected)
        return
    ref, current, _, _ = stream(entry.kind, 2)
    grid = new_grid()
    reference = reference_of(entry, grid, ref)
    built = Built.of(entry, grid).feed(current)
    restored = built.restored()
    decode = msgspec.msgpack.decode
    assert decode(restored.snapshot()) == decode(built.snapshot())
    same(restored.evaluate(reference), built.evaluate(reference))


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_a_snapshot_holds_no_raw_values_beyond_its_declared_sample(entry: Entry) -> None:
    data, raw = raw_stream(entry.kind)
    built = Built.of(entry, new_grid(small=True), small=True)
    if entry.kind == "pair":
        for event_id, prediction, score in data:
            built.detector.wait(event_id, "2", prediction, score)
    elif entry.kind == "window":
        built.feed(data)
    else:
        for part in data:
            built.feed(part)
    stored = msgspec.json.encode(built.detector.snapshot())  # what it needs: checked apart
    kept = [v for v in raw if msgspec.json.encode(v) in stored]
    assert MARK_NUMBER not in kept
    assert MARK_TEXT not in kept
    sample = entry.sample
    # Class names are a sample too (unbounded): the suite sends a handful as usual.
    bound = 0 if sample is None or sample.most is None else sample.most(SMALL)
    assert len(kept) <= bound * RAW_COLUMNS[entry.kind], (sample, kept[:10])


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_findings_are_plain_data(entry: Entry) -> None:
    findings = judged(ENTRIES.index(entry))
    if entry in BUILT_IN.entries:
        assert findings, "the suite's streams give every built-in family a verdict"
    for f in findings:
        assert f.detector == entry.name
        assert isinstance(f.severity, Severity)
        for name in ("model", "detector", "subject", "statistic", "explanation"):
            assert type(getattr(f, name)) is str
        assert type(f.value) is float
        assert type(f.threshold) is float
        assert type(f.n_reference) is int
        assert type(f.n_current) is int
        assert {type(k) for k in f.details} <= {str}
        assert {type(v) for v in f.details.values()} <= {float}
        assert (type(f.window.index), type(f.window.start)) == (int, float)
        msgspec.json.encode(f)  # as a notification and a log line encode it


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_a_window_like_its_reference_is_all_clear(entry: Entry) -> None:
    if entry.kind == "sequential":
        findings = [f for w in sequential_windows(entry, rise=0.0) for f in w]
    elif entry.kind == "pair":
        findings = Built.of(entry, new_grid()).feed(pairs(3, 600, flip=0.0)).evaluate(None)
    else:
        ref, _, _, _ = stream(entry.kind, 3)
        grid = new_grid()
        findings = Built.of(entry, grid).feed(ref).evaluate(reference_of(entry, grid, ref))
    if entry in BUILT_IN.entries:
        assert findings
    assert [f for f in findings if f.severity is not Severity.OK] == []


def test_a_finding_holds_plain_numbers_whatever_it_was_given() -> None:
    # numpy scalars, as detectors compute them (not what the annotations say: the point)
    f = Finding(
        "m", "slice_performance", "region=EU", "accuracy", np.float64(0.2), np.float32(0.05),  # type: ignore[arg-type]
        Severity.WARNING, np.int64(10), np.int32(5), WindowBounds(0, 0.0, 60.0), "why",  # type: ignore[arg-type]
        {"rate": np.float64(0.7)},
    )  # fmt: skip
    assert type(f.value) is float
    assert type(f.threshold) is float
    assert type(f.n_reference) is int
    assert type(f.details["rate"]) is float
    with pytest.raises(TypeError, match="value must be a number"):
        replace(f, value="high")  # type: ignore[arg-type]
