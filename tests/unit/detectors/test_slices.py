"""Subgroup performance and fairness on seeded labelled windows."""

from __future__ import annotations

import numpy as np

from streamwatch.config import SliceSettings
from streamwatch.detectors import Severity
from streamwatch.detectors.slices import Slices, bucket_labels, quartile_cuts
from streamwatch.windows import WindowBounds

BOUNDS = WindowBounds(1, 0.0, 60.0)
REGIONS = np.array(["EU", "NA", "APAC", "LATAM", "MEA"])
SHARES = np.array([0.4, 0.3, 0.2, 0.05, 0.05])


def window(
    rng: np.random.Generator,
    n: int,
    settings: SliceSettings,
    accuracy: dict[str, float] | None = None,
    selection: dict[str, float] | None = None,
) -> Slices:
    """Labelled outcomes by region; ``accuracy`` and ``selection`` per region override
    0.85 and the base rate of positives."""
    region = rng.choice(REGIONS, n, p=SHARES)
    group = rng.choice(np.array(["f", "m"]), n)
    actual = rng.random(n) < 0.3
    right = rng.random(n) < np.array([(accuracy or {}).get(r, 0.85) for r in region])
    predicted = np.where(right, actual, ~actual)
    for g, rate in (selection or {}).items():
        chosen = group == g
        predicted[chosen] = rng.random(chosen.sum()) < rate
    slices = Slices(settings, positive="1")
    slices.update(
        ["region", "group"],
        list(zip(region.tolist(), group.tolist(), strict=True)),
        predicted.astype(int).astype(str).tolist(),
        actual.astype(int).astype(str).tolist(),
        {},
    )
    return slices


def alarms(slices: Slices) -> dict[tuple[str, str, str], Severity]:
    return {
        (f.detector, f.subject, f.statistic): f.severity
        for f in slices.evaluate("m", BOUNDS)
        if f.severity is not Severity.OK
    }


def test_equal_slices_never_alarm_over_200_windows() -> None:
    rng = np.random.default_rng(1)
    settings = SliceSettings(protected=("group",))
    assert sum(len(alarms(window(rng, 10_000, settings))) for _ in range(200)) == 0


def test_one_degraded_slice_of_5_percent_is_critical_in_every_window() -> None:
    # LATAM, 5% of the traffic, falls from 85% to 60% accuracy.
    rng = np.random.default_rng(2)
    settings = SliceSettings()
    for _ in range(20):
        found = alarms(window(rng, 10_000, settings, accuracy={"LATAM": 0.6}))
        assert found[("slice_performance", "region=LATAM", "accuracy")] is Severity.CRITICAL
        assert {subject for _, subject, _ in found} == {"region=LATAM"}


def test_unequal_selection_breaks_parity_and_the_four_fifths_rule() -> None:
    rng = np.random.default_rng(3)
    settings = SliceSettings(protected=("group",))
    found = alarms(window(rng, 10_000, settings, selection={"f": 0.2, "m": 0.32}))
    assert found[("fairness", "group", "demographic_parity_difference")] is Severity.WARNING
    assert found[("fairness", "group", "disparate_impact_ratio")] is Severity.WARNING


def test_windows_merge_by_adding_counts() -> None:
    rng = np.random.default_rng(4)
    settings = SliceSettings()
    a, b = window(rng, 1000, settings), window(rng, 1000, settings)
    total = {k: v.copy() for k, v in a.counts.items()}
    for k, v in b.counts.items():
        total[k] = total.get(k, 0) + v
    a.merge(b)
    assert {k: v.tolist() for k, v in a.counts.items()} == {k: v.tolist() for k, v in total.items()}


def test_numeric_features_are_bucketed_into_quartiles() -> None:
    edges = np.linspace(0.0, 100.0, 127)
    cuts = quartile_cuts(edges)
    assert cuts.tolist() == [edges[31], edges[63], edges[95]]
    assert bucket_labels([25.0, 50.0, 75.0]) == ["<25", "25..50", "50..75", ">=75"]
