"""Review rules on seeded loan applications: each rule selects exactly the events a plain
per-event reading of it selects, for a binary and a three-class model, with missing
values, absent columns and no reference yet; and the binning keeps the range its edges
were fitted on."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from streamwatch.batch import Batch, Columns, Schema
from streamwatch.config import OutOfDistributionSettings, ReviewRule
from streamwatch.detectors.histogram import Binning
from streamwatch.detectors.ood import Mahalanobis
from streamwatch.events import Event, decode
from streamwatch.review.rules import Matched, Reference, match, measured, ranges_of
from streamwatch.severity import Severity
from tests.factories import event, origin

Row = dict[str, Any]  # one event's fields, as sent: the plain check reads these
CLASSES = ("low", "mid", "high")
COUNTRIES = ("DE", "FR", "NL", "PL")
CHANNELS = ("web", "app", "branch")
RULES = {
    "sample": ReviewRule(share=0.02),
    "uncertain_score": ReviewRule(score_between=(0.4, 0.6), share=0.5),
    "close_call": ReviewRule(margin_below=0.1, share=0.3),
    "confused": ReviewRule(entropy_above=0.95, share=0.25),
    "far": ReviewRule(mahalanobis=True, share=0.9),
    "out_of_range": ReviewRule(out_of_range=True, share=0.8),
    "unseen": ReviewRule(unseen=True, share=0.7),
    "web": ReviewRule(segments={"channel": "web"}, share=0.1),
    "german": ReviewRule(features={"country": "DE"}, share=0.15),
    "large": ReviewRule(above={"amount": 8000.0}, share=0.2),
    "young": ReviewRule(below={"age": 35.0}, share=0.4),
    "large_young_german_web": ReviewRule(
        above={"amount": 8000.0},
        below={"age": 35.0},
        features={"country": "DE"},
        segments={"channel": "web"},
        share=0.6,
    ),
    "uncertain_far": ReviewRule(margin_below=0.5, mahalanobis=True, share=0.65),
    "critical": ReviewRule(while_alert=Severity.CRITICAL, share=0.05),
    "warning_uncertain": ReviewRule(while_alert=Severity.WARNING, margin_below=0.2, share=0.6),
}


def applications(rng: np.random.Generator, n: int, model: str, drift: float = 0.0) -> list[Row]:
    """Loan applications: the amount grows with income; 10% of each feature missing; a
    share ``drift`` of applicants earn four times as much and come from a new country.
    A binary model sends a score (5% none), a three-class one probabilities (a class
    missing in 10%, all of them in 5%); both send their prediction."""
    rows = []
    for _ in range(n):
        income = float(rng.lognormal(10.0, 0.4))
        country = COUNTRIES[rng.integers(len(COUNTRIES))]
        if rng.random() < drift:
            income, country = 4.0 * income, "LU"
        features: dict[str, Any] = {
            "income": income,
            "amount": income * float(rng.uniform(0.1, 0.6)),
            "age": float(rng.normal(40.0, 12.0)),
            "country": country,
        }
        for name in features:
            if rng.random() < 0.1:
                features[name] = None
        row: Row = {"features": features}
        if rng.random() < 0.9:
            row["segments"] = {"channel": CHANNELS[rng.integers(len(CHANNELS))]}
        if model == "binary":
            score = float(rng.beta(2.0, 2.0))
            row["prediction"] = "yes" if score >= 0.5 else "no"
            if rng.random() >= 0.05:
                row["score"] = score
        else:
            p = rng.dirichlet([2.0, 2.0, 2.0]).tolist()
            row["prediction"] = CLASSES[int(np.argmax(p))]
            probabilities = dict(zip(CLASSES, p, strict=True))
            if rng.random() < 0.1:
                probabilities[CLASSES[rng.integers(3)]] = None
            if rng.random() >= 0.05:
                row["probabilities"] = probabilities
        rows.append(row)
    return rows


def build(schema: Schema, rows: list[Row]) -> Batch:
    """The rows decoded and built into a batch, as the daemon does."""
    decoded = [decode(event(f"e{i}", **row), origin(i), 1 << 20) for i, row in enumerate(rows)]
    assert all(isinstance(e, Event) for e in decoded)
    return schema.build(decoded)  # type: ignore[arg-type]


def setting(seed: int, model: str) -> tuple[list[Row], Batch, Reference]:
    """A reference of 2,000 applications fitting the binning and the Mahalanobis
    distance, and a drifted batch of 3,000 to review."""
    rng = np.random.default_rng(seed)
    schema = Schema()
    first = build(schema, applications(rng, 2000, model))
    binning, inputs = Binning(200), Mahalanobis(OutOfDistributionSettings())
    binning.fit(first.features)
    inputs.fit(first.features)
    seen = {k: set(v.tolist()) - {None} for k, v in first.features.categorical.items()}
    rows = applications(rng, 3000, model, drift=0.05)
    return rows, build(schema, rows), Reference(inputs, ranges_of(binning.edges), seen)


def plain_measures(row: Row, reference: Reference) -> dict[str, float]:
    """Every measure of one event, read off its fields in plain Python."""
    features = row["features"]
    classes = [p for p in (row.get("probabilities") or {}).values() if p is not None]
    score = row.get("score")
    if len(classes) < 2 and score is not None:
        classes = [score, 1.0 - score]
    margin = entropy = math.nan
    if len(classes) >= 2:
        first, second = sorted(classes, reverse=True)[:2]
        margin = first - second
        entropy = -sum(p * math.log2(p) for p in classes if p > 0)
    numeric = {k: v for k, v in features.items() if isinstance(v, float)}
    d2 = math.nan
    if reference.inputs.fitted:
        one = {k: np.array([numeric.get(k, math.nan)]) for k in reference.inputs.names}
        d2 = float(reference.inputs.distances(Columns(one))[0])
    outside = sum(
        1
        for k, (low, high) in reference.ranges.items()
        if k in numeric and not low <= numeric[k] < high
    )
    unseen = math.nan
    if reference.seen is not None:
        unseen = sum(
            1
            for k, seen in reference.seen.items()
            if isinstance(features.get(k), str) and features[k] not in seen
        )
    return {
        "score": math.nan if score is None else score,
        "margin": margin,
        "entropy": entropy,
        "mahalanobis": d2,
        "out_of_range": outside,
        "unseen": unseen,
    }


def plain_selects(
    rule: ReviewRule, row: Row, m: dict[str, float], reference: Reference, firing: Severity | None
) -> bool:
    """Whether every condition the rule sets holds for one event (NaN compares false)."""
    features, segments = row["features"], row.get("segments") or {}
    numeric = {k: v for k, v in features.items() if isinstance(v, float)}
    band = rule.score_between
    alert = rule.while_alert
    return all(
        [
            alert is None or (firing is not None and firing.rank >= alert.rank),
            band is None or band[0] <= m["score"] <= band[1],
            rule.margin_below is None or m["margin"] < rule.margin_below,
            rule.entropy_above is None or m["entropy"] > rule.entropy_above,
            not rule.mahalanobis or m["mahalanobis"] > reference.inputs.threshold,
            not rule.out_of_range or m["out_of_range"] >= 1,
            not rule.unseen or m["unseen"] >= 1,
            all(segments.get(k) == v for k, v in rule.segments.items()),
            all(features.get(k) == v for k, v in rule.features.items()),
            all(k in numeric and numeric[k] > x for k, x in rule.above.items()),
            all(k in numeric and numeric[k] < x for k, x in rule.below.items()),
        ]
    )


def checked(
    rules: dict[str, ReviewRule],
    rows: list[Row],
    batch: Batch,
    reference: Reference,
    firing: Severity | None,
) -> Matched:
    """``match`` of the batch, asserted equal to the plain per-event reading: each rule's
    events, each event's largest share, and the measures the rules read."""
    matched = match(rules, batch, reference, firing)
    plain = [plain_measures(row, reference) for row in rows]
    selected = {
        name: [
            plain_selects(rule, row, m, reference, firing)
            for row, m in zip(rows, plain, strict=True)
        ]
        for name, rule in rules.items()
    }
    for name in rules:
        assert matched.selected_by[name].tolist() == selected[name], name
    shares = [
        max((rule.share for name, rule in rules.items() if selected[name][i]), default=0.0)
        for i in range(len(rows))
    ]
    assert matched.probability.tolist() == shares
    assert set(matched.measures) == {m for rule in rules.values() for m in measured(rule)}
    for name, values in matched.measures.items():
        np.testing.assert_allclose(values, [m[name] for m in plain], rtol=1e-12, err_msg=name)
    return matched


@pytest.mark.parametrize("model", ["binary", "multiclass"])
@pytest.mark.parametrize("seed", [1, 2])
def test_every_condition_selects_what_a_plain_reading_of_each_event_does(
    model: str, seed: int
) -> None:
    rows, batch, reference = setting(seed, model)
    assert reference.inputs.fitted
    matched = checked(RULES, rows, batch, reference, Severity.CRITICAL)
    counts = {name: int(s.sum()) for name, s in matched.selected_by.items()}
    everything = {"sample", "critical"}
    nothing = {"uncertain_score"} if model == "multiclass" else set()
    assert {k for k, c in counts.items() if c == batch.n} == everything
    assert {k for k, c in counts.items() if c == 0} == nothing
    # Conditions of one rule all hold: the slice is the intersection of its parts.
    parts = ["large", "young", "german", "web"]
    both = np.logical_and.reduce([matched.selected_by[k] for k in parts])
    assert matched.selected_by["large_young_german_web"].tolist() == both.tolist()
    # An event several rules select gets the largest of their shares.
    overlap = matched.selected_by["far"] & matched.selected_by["out_of_range"]
    assert overlap.any()
    assert (matched.probability[overlap] == 0.9).all()


def test_a_binary_score_and_class_probabilities_give_margin_and_entropy() -> None:
    score = np.array([0.5, 0.9, np.nan, 0.0, 0.3])
    p = {  # the last event has one class only: it is read by its score
        "probability[a]": np.array([0.2, 0.6, np.nan, 1.0, 0.7]),
        "probability[b]": np.array([0.3, 0.3, np.nan, 0.0, np.nan]),
        "probability[c]": np.array([0.5, np.nan, np.nan, 0.0, np.nan]),
    }
    rules = {
        "any": ReviewRule(margin_below=1.0, entropy_above=0.0),
        "band": ReviewRule(score_between=(0.3, 0.5)),  # both ends in the band
    }
    no_reference = Reference(Mahalanobis(OutOfDistributionSettings()), {}, None)
    binary = match(
        rules, Batch(np.zeros(5), Columns(), Columns({"score": score})), no_reference, None
    )
    np.testing.assert_allclose(binary.measures["margin"], [0.0, 0.8, np.nan, 1.0, 0.4])
    h = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    h3 = -(0.3 * math.log2(0.3) + 0.7 * math.log2(0.7))
    np.testing.assert_allclose(binary.measures["entropy"], [1.0, h, np.nan, 0.0, h3])
    assert binary.selected_by["any"].tolist() == [True, True, False, False, True]
    assert binary.selected_by["band"].tolist() == [True, False, False, False, True]
    outputs = Columns({**p, "score": score})
    classes = match(rules, Batch(np.zeros(5), Columns(), outputs), no_reference, None)
    np.testing.assert_allclose(classes.measures["margin"], [0.2, 0.3, np.nan, 1.0, 0.4])
    h = -(0.2 * math.log2(0.2) + 0.3 * math.log2(0.3) + 0.5 * math.log2(0.5))
    h2 = -(0.6 * math.log2(0.6) + 0.3 * math.log2(0.3))
    np.testing.assert_allclose(classes.measures["entropy"], [h, h2, np.nan, 0.0, h3])


def test_a_regressor_has_no_uncertainty_and_only_its_features_select() -> None:
    rng = np.random.default_rng(5)
    age = rng.normal(40.0, 12.0, 500)
    age[rng.random(500) < 0.1] = np.nan
    batch = Batch(np.zeros(500), Columns({"age": age}), Columns({"prediction": rng.random(500)}))
    rules = {
        "close_call": ReviewRule(margin_below=0.5),
        "confused": ReviewRule(entropy_above=0.0),
        "uncertain": ReviewRule(score_between=(0.0, 1.0)),
        "young": ReviewRule(below={"age": 30.0}, share=0.5),
    }
    matched = match(
        rules, batch, Reference(Mahalanobis(OutOfDistributionSettings()), {}, None), None
    )
    assert np.isnan(matched.measures["margin"]).all()
    assert not any(matched.selected_by[k].any() for k in ("close_call", "confused", "uncertain"))
    with np.errstate(invalid="ignore"):
        assert matched.selected_by["young"].tolist() == (age < 30.0).tolist()
    assert matched.probability.tolist() == np.where(age < 30.0, 0.5, 0.0).tolist()


@pytest.mark.parametrize("model", ["binary", "multiclass"])
def test_missing_values_and_absent_columns_select_nothing(model: str) -> None:
    rows, batch, reference = setting(3, model)
    rules = {
        "tier": ReviewRule(segments={"tier": "gold"}),
        "zip": ReviewRule(features={"zip": "10115"}),
        "debt": ReviewRule(above={"debt": -1.0}),
        "no_debt": ReviewRule(below={"debt": 1.0}),
        "amount_as_category": ReviewRule(features={"amount": "1000"}),
        "any_age": ReviewRule(above={"age": -1e9}),
        "any_channel_but_none": ReviewRule(segments={"channel": "web"}),
        "far": ReviewRule(mahalanobis=True),
        "out_of_range": ReviewRule(out_of_range=True),
        "unseen": ReviewRule(unseen=True),
    }
    matched = checked(rules, rows, batch, reference, None)
    for name in ("tier", "zip", "debt", "no_debt", "amount_as_category"):
        assert not matched.selected_by[name].any(), name
    age = batch.features.numeric["age"]
    assert matched.selected_by["any_age"].tolist() == (~np.isnan(age)).tolist()
    assert 0 < np.isnan(age).sum() < batch.n
    no_inputs = [
        all(row["features"][k] is None for k in ("income", "amount", "age")) for row in rows
    ]
    assert not (matched.selected_by["far"] | matched.selected_by["out_of_range"])[no_inputs].any()
    no_country = np.array([row["features"]["country"] is None for row in rows])
    assert no_country.any()
    assert not matched.selected_by["unseen"][no_country].any()
    empty = match(rules, batch.take(np.zeros(batch.n, np.bool_)), reference, None)
    assert empty.probability.size == 0
    assert all(s.size == 0 for s in empty.selected_by.values())


def test_without_a_reference_out_of_distribution_never_holds() -> None:
    rows, batch, fitted = setting(4, "binary")
    unfitted = Reference(Mahalanobis(OutOfDistributionSettings()), {}, None)
    rules = {k: RULES[k] for k in ("far", "out_of_range", "unseen", "uncertain_far", "young")}
    matched = checked(rules, rows, batch, unfitted, None)
    for name in ("far", "out_of_range", "unseen", "uncertain_far"):
        assert not matched.selected_by[name].any(), name
    assert matched.selected_by["young"].any()
    assert np.isnan(matched.measures["mahalanobis"]).all()
    assert np.isnan(matched.measures["unseen"]).all()
    assert (matched.measures["out_of_range"] == 0).all()
    # Whereas with the reference each of them holds for some events.
    against = match(rules, batch, fitted, None)
    assert all(against.selected_by[k].any() for k in ("far", "out_of_range", "unseen"))


@pytest.mark.parametrize(
    ("firing", "critical", "warning"),
    [
        (None, False, False),
        (Severity.OK, False, False),
        (Severity.WARNING, False, True),
        (Severity.CRITICAL, True, True),
    ],
)
def test_rules_for_an_alert_select_while_one_as_bad_fires(
    firing: Severity | None, critical: bool, warning: bool
) -> None:
    rows, batch, reference = setting(6, "binary")
    rules = {k: RULES[k] for k in ("critical", "warning_uncertain", "sample")}
    matched = checked(rules, rows, batch, reference, firing)
    assert matched.selected_by["critical"].tolist() == [critical] * batch.n
    assert matched.selected_by["sample"].all()
    close = matched.measures["margin"] < 0.2
    assert 0 < close.sum() < batch.n
    assert matched.selected_by["warning_uncertain"].tolist() == (close & warning).tolist()


def test_the_measures_a_rule_reads() -> None:
    rule = ReviewRule(score_between=(0.4, 0.6), unseen=True, above={"amount": 1.0})
    assert measured(rule) == ["score", "unseen"]
    assert measured(RULES["uncertain_far"]) == ["margin", "mahalanobis"]
    assert measured(ReviewRule()) == []
    everything = ReviewRule(
        score_between=(0.0, 1.0),
        margin_below=0.5,
        entropy_above=0.5,
        mahalanobis=True,
        out_of_range=True,
        unseen=True,
    )
    names = ["score", "margin", "entropy", "mahalanobis", "out_of_range", "unseen"]
    assert measured(everything) == names  # always in this order


def test_a_range_is_the_outer_edges_of_the_grid_as_data_quality_reads_it() -> None:
    rng = np.random.default_rng(7)
    amount = rng.lognormal(8.0, 1.0, 12_800)
    binning = Binning(200)
    binning.fit(Columns({"amount": amount, "empty": np.full(12_800, np.nan)}))
    ((name, (low, high)),) = ranges_of(binning.edges).items()
    assert name == "amount"
    assert (low, high) == (binning.edges["amount"][0], binning.edges["amount"][-1])
    batch = Batch(np.zeros(len(amount)), Columns({"amount": amount}), Columns())
    reference = Reference(Mahalanobis(OutOfDistributionSettings()), {"amount": (low, high)}, None)
    matched = match({"outside": ReviewRule(out_of_range=True)}, batch, reference, None)
    # The reference's own share beyond them: 1/128 each side, as data quality counts.
    assert matched.measures["out_of_range"].mean() == pytest.approx(2 / 128, abs=0.002)
    assert amount.min() < low < high < amount.max()  # the extremes themselves: kept nowhere
