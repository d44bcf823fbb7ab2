"""Data quality from feature drift's aggregates: quiet when steady, stated changes seen."""

from __future__ import annotations

import numpy as np

from streamwatch.batch import Batch, Columns
from streamwatch.config import DataQualitySettings, DriftSettings
from streamwatch.detectors import Severity, quality
from streamwatch.detectors.drift import FeatureDrift
from streamwatch.detectors.histogram import Binning
from streamwatch.windows import WindowBounds

BOUNDS = WindowBounds(1, 0.0, 60.0)


def batch(
    rng: np.random.Generator,
    n: int,
    missing: float = 0.02,
    scale: float = 1.0,
    new_category: float = 0.0,
    drop: str | None = None,
) -> Batch:
    x = rng.normal(0.0, scale, n)
    x[rng.random(n) < missing] = np.nan
    k = rng.choice(np.array(["a", "b", "c"]), n).astype(object)
    k[rng.random(n) < new_category] = "z"
    numeric = {"x": x, "y": rng.exponential(1.0, n)}
    categorical = {"k": k}
    if drop:
        numeric.pop(drop, None)
    return Batch(np.zeros(n), Columns(numeric, categorical), Columns())


def state(b: Batch, binning: Binning) -> FeatureDrift:
    drift = FeatureDrift(DriftSettings(), binning)
    drift.update(b)
    return drift


def alarms(current: FeatureDrift, reference: FeatureDrift) -> dict[tuple[str, str], Severity]:
    return {
        (f.subject, f.statistic): f.severity
        for f in quality.evaluate("m", BOUNDS, current, reference, DataQualitySettings())
        if f.severity is not Severity.OK
    }


def setup(seed: int) -> tuple[np.random.Generator, Binning, FeatureDrift]:
    rng = np.random.default_rng(seed)
    binning = Binning(max_categories=200)
    return rng, binning, state(batch(rng, 3000), binning)


def test_steady_data_never_alarms_over_200_windows() -> None:
    rng, binning, reference = setup(1)
    assert sum(len(alarms(state(batch(rng, 3000), binning), reference)) for _ in range(200)) == 0


def test_missing_values_up_by_10_points_warn_every_window() -> None:
    rng, binning, reference = setup(2)
    for _ in range(20):
        found = alarms(state(batch(rng, 3000, missing=0.12), binning), reference)
        assert found == {("x", "missing"): Severity.WARNING}


def test_values_outside_the_reference_range_are_seen() -> None:
    # Three times the spread: about 40% of values fall outside the reference's grid.
    rng, binning, reference = setup(3)
    found = alarms(state(batch(rng, 3000, scale=3.0), binning), reference)
    assert found[("x", "out_of_range")] is Severity.CRITICAL


def test_unseen_categories_are_seen() -> None:
    rng, binning, reference = setup(4)
    found = alarms(state(batch(rng, 3000, new_category=0.1), binning), reference)
    assert found == {("k", "unseen"): Severity.WARNING}


def test_a_feature_that_disappears_is_critical_and_one_that_appears_warns() -> None:
    rng, binning, reference = setup(5)
    gone = alarms(state(batch(rng, 3000, drop="x"), binning), reference)
    assert gone == {("x", "schema"): Severity.CRITICAL}
    extra = batch(rng, 3000)
    extra.features.numeric["w"] = rng.normal(0, 1, 3000)
    assert alarms(state(extra, binning), reference) == {("w", "schema"): Severity.WARNING}


def test_values_of_the_wrong_type_are_told_apart_from_missing_ones() -> None:
    from streamwatch.batch import Schema
    from streamwatch.events import Event, decode
    from tests.factories import event, origin

    def events(wrong: float, rng: np.random.Generator) -> list[Event]:
        out = []
        for i in range(3000):
            value: object = float(rng.normal()) if rng.random() >= wrong else "n/a"
            decoded = decode(event(f"e{i}", features={"x": value, "k": "a"}), origin(), 1 << 20)
            assert isinstance(decoded, Event)
            out.append(decoded)
        return out

    rng = np.random.default_rng(6)
    schema, binning = Schema(), Binning(max_categories=200)
    reference = state(schema.build(events(0.0, rng)), binning)
    current = state(schema.build(events(0.1, rng)), binning)
    assert (current.numeric["x"].wrong_type, reference.numeric["x"].wrong_type) == (
        current.numeric["x"].missing,
        0,
    )
    found = alarms(current, reference)
    assert found[("x", "wrong_type")] is Severity.WARNING
    assert found[("x", "missing")] is Severity.WARNING  # wrong types are missing as well
