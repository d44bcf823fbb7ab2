"""Data quality from feature drift's aggregates: quiet when steady, stated changes seen."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamwatch.batch import Batch, Columns, Schema
from streamwatch.config import DataQualitySettings, DriftSettings
from streamwatch.detectors import Severity, quality
from streamwatch.detectors.drift import FeatureDrift
from streamwatch.detectors.histogram import Binning
from streamwatch.events import Event, decode
from streamwatch.windows import WindowBounds
from tests.factories import event, origin

BOUNDS = WindowBounds(1, 0.0, 60.0)


def batch(
    rng: np.random.Generator,
    n: int,
    missing: float = 0.02,
    scale: float = 1.0,
    new_category: float = 0.0,
    drop: str | None = None,
    missing_category: float = 0.0,
) -> Batch:
    x = rng.normal(0.0, scale, n)
    x[rng.random(n) < missing] = np.nan
    k = rng.choice(np.array(["a", "b", "c"]), n).astype(object)
    k[rng.random(n) < new_category] = "z"
    if missing_category:
        k[rng.random(n) < missing_category] = None
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


def draws(rng: np.random.Generator, n: int, wrong: float, text: str = "n/a") -> list[object]:
    """Values of the numeric feature x: a number, or with chance ``wrong`` a text."""
    return [float(rng.normal()) if rng.random() >= wrong else text for _ in range(n)]


def decoded(values: Sequence[object]) -> list[Event]:
    """Decoded events carrying these values of x (and k = "a"), as a source gives them."""
    out = []
    for i, value in enumerate(values):
        e = decode(event(f"e{i}", features={"x": value, "k": "a"}), origin(), 1 << 20)
        assert isinstance(e, Event)
        out.append(e)
    return out


def test_values_of_the_wrong_type_are_told_apart_from_missing_ones() -> None:
    rng = np.random.default_rng(6)
    schema, binning = Schema(), Binning(max_categories=200)
    reference = state(schema.build(decoded(draws(rng, 3000, 0.0))), binning)
    current = state(schema.build(decoded(draws(rng, 3000, 0.1))), binning)
    assert (current.numeric["x"].wrong_type, reference.numeric["x"].wrong_type) == (
        current.numeric["x"].missing,
        0,
    )
    found = alarms(current, reference)
    assert found[("x", "wrong_type")] is Severity.WARNING
    assert found[("x", "missing")] is Severity.WARNING  # wrong types are missing as well


def test_3_percent_of_the_wrong_type_where_there_were_none_warn_at_3000_events() -> None:
    rng = np.random.default_rng(7)
    schema, binning = Schema(), Binning(max_categories=200)
    reference = state(schema.build(decoded(draws(rng, 3000, 0.0))), binning)
    for _ in range(10):
        current = state(schema.build(decoded(draws(rng, 3000, 0.03))), binning)
        assert alarms(current, reference) == {
            ("x", "wrong_type"): Severity.WARNING,
            ("x", "missing"): Severity.WARNING,
        }


def test_one_value_of_the_wrong_type_in_a_tiny_window_is_chance() -> None:
    # A rise of 1 point, the floor; but with one such value in 3,100 events, that it
    # falls in the 100 of the window has chance 100/3100: not significant. Five have
    # chance 3e-8.
    rng = np.random.default_rng(8)
    schema, binning = Schema(), Binning(max_categories=200)
    reference = state(schema.build(decoded(draws(rng, 3000, 0.0))), binning)
    one, five = draws(rng, 100, 0.0), draws(rng, 100, 0.0)
    one[17] = "n/a"
    five[:5] = ["n/a"] * 5
    assert alarms(state(schema.build(decoded(one)), binning), reference) == {}
    assert alarms(state(schema.build(decoded(five)), binning), reference) == {
        ("x", "wrong_type"): Severity.WARNING,
        ("x", "missing"): Severity.WARNING,
    }


def test_a_numeric_feature_sent_as_text_is_of_the_wrong_type_not_gone() -> None:
    rng = np.random.default_rng(9)
    schema, binning = Schema(), Binning(max_categories=200)
    reference = state(schema.build(decoded(draws(rng, 3000, 0.0))), binning)
    as_text = [f"{rng.normal():.3f}" for _ in range(3000)]  # "0.417": a number, as text
    current = state(schema.build(decoded(as_text)), binning)
    assert alarms(current, reference) == {
        ("x", "wrong_type"): Severity.CRITICAL,
        ("x", "missing"): Severity.CRITICAL,
    }
    findings = quality.evaluate("m", BOUNDS, current, reference, DataQualitySettings())
    (schema_x,) = [f for f in findings if f.statistic == "schema" and f.subject == "x"]
    assert schema_x.severity is Severity.OK
    assert "is present as in the reference" in schema_x.explanation


def window_size(rng: np.random.Generator) -> int:
    """200 to 20,000 events, as many windows of each tenfold range."""
    return round(float(np.exp(rng.uniform(np.log(200), np.log(20_000)))))


def test_20_percent_missing_values_throughout_breach_at_the_false_discovery_rate() -> None:
    rng = np.random.default_rng(10)
    binning = Binning(max_categories=200)
    reference = state(batch(rng, 5000, missing=0.2, missing_category=0.2), binning)
    breaches = sum(
        len(
            alarms(
                state(batch(rng, window_size(rng), 0.2, missing_category=0.2), binning), reference
            )
        )
        for _ in range(200)
    )
    assert breaches <= 2  # 1% of 200 windows


def long_tail(rng: np.random.Generator, n: int, new: float = 0.0) -> Batch:
    """A categorical of 300 Zipf values, ``new`` of it a value never seen before."""
    weights = np.arange(1, 301) ** -1.3
    values = rng.choice(np.array([f"v{i}" for i in range(300)]), n, p=weights / weights.sum())
    labels = values.astype(object)
    labels[rng.random(n) < new] = "brand new"
    return Batch(np.zeros(n), Columns({}, {"k": labels}), Columns())


def test_categories_a_small_reference_missed_by_chance_are_expected() -> None:
    # 1,000 reference events see about 130 of the 300 values; the rest, 7% of events,
    # turn up later without any change. The baseline is the reference's share of
    # values it saw once (6%); a new value taking 5% more is still seen.
    rng = np.random.default_rng(11)
    binning = Binning(max_categories=200)
    reference = state(long_tail(rng, 1000), binning)
    breaches = sum(
        len(alarms(state(long_tail(rng, window_size(rng)), binning), reference)) for _ in range(200)
    )
    assert breaches <= 2  # 1% of 200 windows
    assert alarms(state(long_tail(rng, 5000, new=0.05), binning), reference) == {
        ("k", "unseen"): Severity.WARNING
    }
