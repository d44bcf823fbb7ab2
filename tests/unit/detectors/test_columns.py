"""A feature's own settings in feature drift and data quality: ignored, its own statistic
and thresholds, matched in any case."""

from __future__ import annotations

import numpy as np

from streamwatch.batch import Batch, Columns
from streamwatch.config import DataQualitySettings, DriftSettings
from streamwatch.detectors import Finding, Severity, quality
from streamwatch.detectors.drift import FeatureDrift
from streamwatch.detectors.histogram import Binning
from streamwatch.windows import WindowBounds

BOUNDS = WindowBounds(1, 0.0, 60.0)


def window(seed: int, shift: float = 0.0, n: int = 5000, missing: float = 0.0) -> Batch:
    """Three features; ``User_ID``, ``Amount`` and ``kind`` move with ``shift`` (an
    identifier's values always do), ``User_ID`` is missing in ``missing`` of events."""
    rng = np.random.default_rng(seed)
    user = rng.normal(shift * 10, 1.0, n)
    user[rng.random(n) < missing] = np.nan
    kinds = np.array(["a", "b", "c"], dtype=object)
    kind = rng.choice(kinds, n, p=[0.5, 0.3, 0.2] if shift else [1 / 3] * 3)
    numeric = {"User_ID": user, "Amount": rng.normal(shift, 1.0, n)}
    return Batch(np.zeros(n), Columns(numeric, {"kind": kind}), Columns())


def judged(settings: DriftSettings, shift: float, missing: float = 0.0) -> dict[str, Finding]:
    binning = Binning(max_categories=200)
    reference, current = FeatureDrift(settings, binning), FeatureDrift(settings, binning)
    reference.update(window(1))
    current.update(window(2, shift, missing=missing))
    return {f.subject: f for f in current.evaluate("fraud", BOUNDS, reference)}


def test_an_ignored_feature_yields_no_finding_however_far_it_moved() -> None:
    plain = judged(DriftSettings(), 0.2)
    assert plain["User_ID"].severity is Severity.CRITICAL  # moved 2 sd
    ignoring = judged(DriftSettings(columns={"user_id": {"ignore": True}}), 0.2)
    assert sorted(ignoring) == ["Amount", "kind"]
    # The others are judged as before: the ignored one took no part in their adjustment.
    assert ignoring["Amount"].severity is plain["Amount"].severity


def test_a_features_own_statistic_and_thresholds_decide_its_severity() -> None:
    columns = {
        "amount": {"statistic": "ks", "warning": 0.05, "critical": 0.5},
        "KIND": {"statistic": "psi"},
    }
    found = judged(DriftSettings(columns=columns), 0.2)
    amount, kind = found["Amount"], found["kind"]
    assert (amount.statistic, amount.severity, amount.threshold) == ("ks", Severity.WARNING, 0.05)
    assert amount.value == amount.details["ks"]
    assert kind.statistic == "psi"
    assert kind.value == kind.details["psi"]
    assert kind.threshold == (0.25 if kind.severity is Severity.CRITICAL else 0.1)
    # Without its own settings, Amount's 0.2 sd is a Wasserstein warning.
    plain = judged(DriftSettings(), 0.2)["Amount"]
    assert (plain.statistic, plain.severity) == ("wasserstein", Severity.WARNING)


def test_a_statistic_the_columns_kind_lacks_leaves_the_detectors() -> None:
    found = judged(DriftSettings(columns={"kind": {"statistic": "ks"}}), 0.2)
    assert found["kind"].statistic == "total_variation"


def test_data_quality_ignores_a_feature_and_judges_one_by_its_own_thresholds() -> None:
    binning = Binning(max_categories=200)
    reference, current = (
        FeatureDrift(DriftSettings(), binning),
        FeatureDrift(DriftSettings(), binning),
    )
    reference.update(window(1))
    current.update(window(2, 0.0, missing=0.05))  # User_ID: 5% missing, none before

    def missing(settings: DataQualitySettings) -> dict[str, Finding]:
        findings = quality.evaluate("fraud", BOUNDS, current, reference, settings)
        return {f.subject: f for f in findings if f.statistic == "missing"}

    assert missing(DataQualitySettings())["User_ID"].severity is Severity.WARNING
    strict = DataQualitySettings(columns={"user_id": {"critical": 0.04}})
    assert missing(strict)["User_ID"].severity is Severity.CRITICAL
    assert missing(strict)["User_ID"].threshold == 0.04
    ignoring = DataQualitySettings(columns={"USER_ID": {"ignore": True}})
    findings = quality.evaluate("fraud", BOUNDS, current, reference, ignoring)
    assert {f.subject for f in findings} == {"Amount", "kind"}
