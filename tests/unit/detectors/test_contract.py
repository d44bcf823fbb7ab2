"""The checks every detector family must pass: merge, snapshot/restore, no change."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwatch.batch import Batch, Columns
from streamwatch.config import DetectorSettings, DriftSettings, OperationalSettings
from streamwatch.detectors import FAMILIES, Finding, ModelBinning, Severity
from streamwatch.detectors.drift import DriftDetector, FeatureDrift, PredictionDrift
from streamwatch.detectors.histogram import Binning
from streamwatch.detectors.ood import OutOfDistribution
from streamwatch.detectors.operational import Operational
from streamwatch.windows import WindowBounds

Family = type[DriftDetector] | type[Operational] | type[OutOfDistribution]
BOUNDS = WindowBounds(0, 0.0, 600.0)
SETTINGS = DetectorSettings()


def build(family: Family, binning: ModelBinning) -> Any:
    """A fresh state of ``family``, sharing ``binning`` where it bins."""
    if issubclass(family, Operational):
        return Operational(OperationalSettings())
    if issubclass(family, OutOfDistribution):
        return OutOfDistribution(SETTINGS.out_of_distribution, binning.inputs)
    return family(DriftSettings(), binning.features)


def test_every_family_is_checked() -> None:
    assert set(FAMILIES) == {FeatureDrift, PredictionDrift, Operational, OutOfDistribution}


def stream(seed: int, n: int) -> Batch:
    """Numeric and categorical columns with missing values, in features and outputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    x[rng.random(n) < 0.1] = np.nan
    k = rng.choice(np.array(["a", "b", "c", None], dtype=object), n)
    columns = Columns({"x": x, "y": rng.exponential(1.0, n)}, {"k": k})
    latency = rng.gamma(4.0, 3.0, n)
    error = (rng.random(n) < 0.02).astype(np.float64)
    operational = Columns({"latency_ms": latency, "error": error})
    return Batch(np.arange(n, dtype=np.float64), columns, columns, None, operational)


def fitted(seed: int, n: int = 600) -> tuple[ModelBinning, Batch]:
    """A grid fixed on a first sample, and a stream to count on it."""
    grid = ModelBinning(SETTINGS)
    grid.fit(stream(seed + 1, 300))
    assert grid.inputs.fitted
    return grid, stream(seed, n)


@pytest.mark.parametrize("family", FAMILIES)
@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(0, 600), max_size=5))
def test_merge_of_parts_equals_update_on_the_whole(
    family: Family, seed: int, cuts: list[int]
) -> None:
    grid, batch = fitted(seed)
    whole = build(family, grid)
    whole.update(batch)
    bounds = sorted({0, batch.n, *cuts})
    merged = build(family, grid)
    for lo, hi in itertools.pairwise(bounds):
        part = build(family, grid)
        part.update(batch.take(np.arange(lo, hi)))
        merged.merge(part)
    a, b = whole.snapshot(), merged.snapshot()
    if family in (Operational, OutOfDistribution):
        assert a == b
        return
    for name, hist in a["numeric"].items():
        other = b["numeric"][name]
        assert (hist["counts"], hist["missing"], hist["n"]) == (
            other["counts"],
            other["missing"],
            other["n"],
        )
        assert other["mean"] == pytest.approx(hist["mean"], abs=1e-9)
        assert other["m2"] == pytest.approx(hist["m2"], rel=1e-9, abs=1e-9)
    assert a["categorical"] == b["categorical"]


@pytest.mark.parametrize("family", FAMILIES)
def test_snapshot_restores_through_json_to_the_same_verdicts(family: Family) -> None:
    grid, batch = fitted(1)
    reference = build(family, grid)
    reference.update(batch)
    current = build(family, grid)
    current.update(stream(2, 600))
    restored = build(family, grid)
    restored.restore(msgspec.json.decode(msgspec.json.encode(current.snapshot())))
    assert restored.snapshot() == current.snapshot()
    assert restored.evaluate("m", BOUNDS, reference) == current.evaluate("m", BOUNDS, reference)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_window_equal_to_its_reference_is_all_clear(family: Family) -> None:
    grid, batch = fitted(3)
    reference, current = build(family, grid), build(family, grid)
    reference.update(batch)
    current.update(batch)
    findings = current.evaluate("m", BOUNDS, reference)
    assert findings
    assert all(f.severity is Severity.OK for f in findings)
    if family is OutOfDistribution:
        assert {f.subject for f in findings} == {"inputs"}
        assert all(f.value == 0.0 for f in findings)
    elif family is not Operational:
        assert {f.subject for f in findings} == {"x", "y", "k"}
        assert all(f.value == 0.0 for f in findings)


@pytest.mark.parametrize("family", FAMILIES)
def test_state_holds_no_raw_values(family: Family) -> None:
    grid, batch = fitted(4)
    detector = build(family, grid)
    detector.update(batch)
    stored = msgspec.json.encode([detector.snapshot(), grid.snapshot()])
    for value in batch.features.numeric["x"][:50]:
        if np.isfinite(value):
            assert repr(float(value)).encode() not in stored


@given(seed=st.integers(0, 1000), cuts=st.lists(st.integers(0, 600), max_size=5))
def test_merge_is_exact_beyond_the_category_limit(seed: int, cuts: list[int]) -> None:
    rng = np.random.default_rng(seed)
    values = rng.choice(np.array([f"c{i}" for i in range(40)]), 600).astype(object)
    batch = Batch(np.zeros(600), Columns({}, {"k": values}), Columns())
    settings = DriftSettings(max_categories=8)

    def counted(parts: list[Batch]) -> dict[str, object]:
        binning = Binning(settings.max_categories)
        total = FeatureDrift(settings, binning)
        for part in parts:
            state = FeatureDrift(settings, binning)
            state.update(part)
            total.merge(state)
        return total.snapshot()

    bounds = sorted({0, 600, *cuts})
    parts = [batch.take(np.arange(lo, hi)) for lo, hi in itertools.pairwise(bounds)]
    assert counted(parts) == counted([batch])


def test_overlong_categories_count_as_missing() -> None:
    values = np.array(["a", "x" * 2000, "b", None], dtype=np.object_)
    detector = FeatureDrift(DriftSettings(), Binning(max_categories=200))
    detector.update(Batch(np.zeros(4), Columns({}, {"k": values}), Columns()))
    assert dict(detector.categorical["k"].counts) == {"a": 1, "b": 1}
    assert detector.categorical["k"].missing == 2


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
