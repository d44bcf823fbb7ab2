"""Labels through the engine: joined to closed windows, evaluated after the horizon; and
through the Outcomes class alone: the outcome reference and the detectors it serves."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry

from streamwatch.batch import Batch, Columns, Schema
from streamwatch.config import (
    ConceptDriftSettings,
    DetectorSettings,
    LabelSettings,
    ReferenceSettings,
    Settings,
    SliceSettings,
    WindowSettings,
)
from streamwatch.detectors import Severity
from streamwatch.detectors.histogram import Binning
from streamwatch.events import Event, Message, Origin, decode
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.pipeline.monitor import ModelMonitor
from streamwatch.pipeline.outcomes import Evaluated, Outcomes
from streamwatch.pipeline.reference import Pinned
from streamwatch.windows import WindowBounds
from tests.factories import event

MINUTE = 60_000


def stream(minutes: int, per_minute: int, flip_from: int, seed: int = 0) -> list[bytes]:
    """Predictions each minute; each one's label a minute later; from minute
    ``flip_from`` on, a quarter of the labels contradict the (calibrated) scores."""
    rng = np.random.default_rng(seed)
    lines: list[bytes] = []
    labels: list[tuple[int, bytes]] = []
    for minute in range(minutes):
        for i in range(per_minute):
            t = minute * MINUTE + i * (MINUTE // per_minute)
            score = float(rng.uniform(0.05, 0.95))
            outcome = rng.random() < score
            if minute >= flip_from and rng.random() < 0.25:
                outcome = not outcome
            eid = f"{minute}-{i}"
            prediction = int(score > 0.5)
            lines.append(event(eid, timestamp=t, prediction=prediction, score=round(score, 4)))
            labels.append((t + MINUTE, event(eid, timestamp=t + MINUTE, label=int(outcome))))
        # Labels stamped up to this minute's end arrive now.
        due = [raw for when, raw in labels if when <= (minute + 1) * MINUTE]
        labels = [(when, raw) for when, raw in labels if when > (minute + 1) * MINUTE]
        lines += due
    return lines + [raw for _, raw in labels]


def run(lines: list[bytes], horizon: float = 90.0) -> Engine:
    settings = Settings(
        window=WindowSettings(size="1m", allowed_lateness=0.0),
        labels=LabelSettings(horizon=horizon),
        sinks={},
    )
    engine = Engine(settings, [], Metrics(CollectorRegistry()))
    messages = [Message(raw, Origin("t", 0, i)) for i, raw in enumerate(lines)]
    for k in range(0, len(messages), 700):
        engine.process(messages[k : k + 700])
    engine.finish()
    return engine


def test_labels_join_closed_windows_and_are_evaluated_after_the_horizon() -> None:
    engine = run(stream(minutes=12, per_minute=400, flip_from=99))
    metrics = engine.metrics
    assert metrics.total("streamwatch_label_events", outcome="joined") == 12 * 400
    assert metrics.total("streamwatch_outcomes_evaluated") == 12
    assert metrics.total("streamwatch_alerts", status="firing") == 0


def test_a_concept_drift_alerts_once_its_labels_are_in() -> None:
    engine = run(stream(minutes=12, per_minute=400, flip_from=8))
    firing = engine.metrics.total("streamwatch_alerts", status="firing", detector="performance")
    assert firing >= 1
    assert engine.conclusion.policy.firing  # still firing at the end
    labels = engine.processor.models["m"].outcomes
    assert labels.evaluated_through == 11


def test_labels_after_their_window_was_evaluated_are_counted_late() -> None:
    lines = stream(minutes=6, per_minute=200, flip_from=99)
    predictions = [line for line in lines if b'"label"' not in line]
    labels = [line for line in lines if b'"label"' in line]
    # Minute 0's labels come last, after labels stamped up to minute 6 have moved the
    # label clock past minute 0's window (horizon 0): by then it has been evaluated.
    engine = run(predictions + labels[200:] + labels[:200], horizon=0.0)
    metrics = engine.metrics
    assert metrics.total("streamwatch_label_events", outcome="joined") == 5 * 200
    assert metrics.total("streamwatch_label_events", outcome="late") == 200


# -- the Outcomes class alone: the outcome reference and its detectors ----------------

HOUR = 3600.0
REGIONS = np.array(["EU", "NA", "APAC", "LATAM", "MEA"], dtype=object)
SHARES = np.array([0.4, 0.3, 0.2, 0.05, 0.05])


def hourly(season: float = 86400.0, **slices: Any) -> Settings:
    return Settings(
        labels=LabelSettings(horizon=0.0),
        reference=ReferenceSettings(season=season),
        detectors=DetectorSettings(slices=SliceSettings(**slices)),
        sinks={},
    )


def size(hour: int) -> int:
    """Predictions an hour: 200 at 02:00, 20,000 at 14:00, geometrically in between."""
    return round(200 * math.pow(100, (1 - math.cos(2 * math.pi * (hour - 2) / 24)) / 2))


def feed(
    outcomes: Outcomes,
    rng: np.random.Generator,
    index: int,
    n: int | None = None,
    flip: float = 0.0,
    selection: dict[str, float] | None = None,
) -> list[Evaluated]:
    """One hour of a binary classifier's predictions, labelled at the hour's end, then
    the outcomes due. At night most traffic is hard: the error rate cycles between 0.20
    and 0.29 through the inputs alone. ``flip``: that share of labels inverted;
    ``selection``: the predicted-positive rate of a gender (a feature only)."""
    hour = index % 24
    n = size(hour) if n is None else n
    hard = 0.525 + 0.375 * math.cos(2 * math.pi * (hour - 2) / 24)
    z = rng.normal(0.0, np.where(rng.random(n) < hard, 1.2, 2.6))
    score = 1 / (1 + np.exp(-(0.9 * z + 0.1)))
    label = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    label = np.where(rng.random(n) < flip, 1 - label, label)
    gender = rng.choice(np.array(["f", "m"], dtype=object), n)
    prediction = (score > 0.5).astype(np.int64)
    for g, rate in (selection or {}).items():
        chosen = gender == g
        prediction[chosen] = rng.random(int(chosen.sum())) < rate
    ids = np.array([f"{index}-{i}" for i in range(n)], dtype=object)
    batch = Batch(
        index * HOUR + np.sort(rng.uniform(0, HOUR, n)),
        Columns({}, {"gender": gender}),
        Columns({"score": score}, {"prediction": prediction.astype(object)}),
        ids,
        segments=Columns({}, {"region": rng.choice(REGIONS, n, p=SHARES)}),
    )
    outcomes.expect(batch, np.full(n, index, dtype=np.int64), regression=False)
    bounds = WindowBounds(index, index * HOUR, (index + 1) * HOUR)
    outcomes.closed(bounds, n)
    stamp = int(bounds.end * 1000)
    outcomes.label(
        [
            Event(event_id=i, model_id="m", timestamp=stamp, label=y)
            for i, y in zip(ids.tolist(), label.tolist(), strict=True)
        ],
        regression=False,
    )
    return outcomes.due(0.0)


def breaches(evaluated: list[Evaluated]) -> list[tuple[int, str, str, str]]:
    return [
        (e.bounds.index, f.detector, f.subject, f.statistic)
        for e in evaluated
        for f in e.findings
        if f.severity is not Severity.OK
    ]


def test_the_outcome_reference_pools_a_season_of_labelled_windows_then_compares() -> None:
    outcomes = Outcomes("m", hourly(), Binning(50))
    rng = np.random.default_rng(1)
    pooled = [e for index in range(24) for e in feed(outcomes, rng, index)]
    assert [{f.detector for f in e.findings} for e in pooled] == [{"labels"}] * 24
    assert not outcomes.pool.complete
    assert outcomes.reference is not None  # BBSE reads it while it pools
    compared = feed(outcomes, rng, 24)
    assert outcomes.pool.complete
    assert len(outcomes.pool.phases) == 24
    detectors = {f.detector for f in compared[0].findings}
    assert {"labels", "concept_drift", "performance", "slice_performance"} <= detectors


def test_a_cycle_the_reference_covers_is_quiet_and_a_fifth_of_labels_flipping_is_not() -> None:
    outcomes = Outcomes("m", hourly(), Binning(50))
    rng = np.random.default_rng(2)
    for index in range(24):
        feed(outcomes, rng, index)
    quiet = [e for index in range(24, 24 * 3) for e in feed(outcomes, rng, index)]
    assert len(quiet) == 48
    assert [b for b in breaches(quiet) if b[1] in ("concept_drift", "slice_performance")] == []
    flipped = feed(outcomes, rng, 24 * 3 + 9, flip=0.2)  # 09:00, 3,600 predictions
    assert (24 * 3 + 9, "concept_drift", "errors", "excess_error_rate") in breaches(flipped)


def test_a_protected_attribute_that_is_only_a_feature_is_judged_for_fairness() -> None:
    # "gender" is neither a segment nor a slice feature: protected is enough.
    outcomes = Outcomes("m", hourly(season=0.0, protected=("gender",)), Binning(50))
    rng = np.random.default_rng(3)
    fair = feed(outcomes, rng, 12, n=5000)
    unfair = feed(outcomes, rng, 13, n=5000, selection={"f": 0.2, "m": 0.35})
    assert {f.statistic for f in fair[0].findings if f.detector == "fairness"} == {
        "demographic_parity_difference",
        "disparate_impact_ratio",
        "equal_opportunity_difference",
        "equalized_odds_difference",
    }
    assert (13, "fairness", "gender", "disparate_impact_ratio") in breaches(unfair)
    assert "gender" in outcomes.dimensions


def test_a_snapshot_taken_while_the_reference_pools_resumes_exactly() -> None:
    settings = hourly(season=43200.0)
    whole = Outcomes("m", settings, Binning(50))
    rng = np.random.default_rng(4)
    for index in range(6):
        feed(whole, rng, index, n=400)
    resumed = Outcomes("m", settings, Binning(50))
    resumed.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(whole.snapshot())))
    assert resumed.snapshot() == whole.snapshot()
    seeds = np.random.default_rng(5).integers(0, 2**32, 14)
    results = [
        [feed(o, np.random.default_rng(seed), 6 + k, n=400) for k, seed in enumerate(seeds)]
        for o in (whole, resumed)
    ]
    assert whole.pool.complete
    assert results[0] == results[1]
    assert resumed.snapshot() == whole.snapshot()


def test_a_river_detector_reads_the_errors_in_arrival_order_when_chosen() -> None:
    settings = Settings(
        labels=LabelSettings(horizon=0.0),
        detectors=DetectorSettings(concept_drift=ConceptDriftSettings(detector="adwin")),
        sinks={},
    )
    outcomes = Outcomes("m", settings, Binning(50))
    rng = np.random.default_rng(6)
    # Two windows of 600 labels make the outcome reference (1,000 labels), then four.
    evaluated = [e for index in range(6) for e in feed(outcomes, rng, index, n=600)]
    concept = [
        (e.bounds.index, f.statistic)
        for e in evaluated
        for f in e.findings
        if f.detector == "concept_drift"
    ]
    assert concept == [(2, "adwin"), (3, "adwin"), (4, "adwin"), (5, "adwin")]
    assert outcomes.snapshot()["sequential"] is not None


def test_a_pinned_reference_still_gets_label_based_detectors() -> None:
    rng = np.random.default_rng(2)
    settings = Settings(
        window=WindowSettings(size="1m", allowed_lateness=0.0),
        labels=LabelSettings(horizon=0.0),
        reference=ReferenceSettings(min_events=500),
    )

    def decoded(raws: list[bytes]) -> list[Event]:
        out = [decode(r, Origin("t", 0, 0), 1 << 20) for r in raws]
        return [e for e in out if isinstance(e, Event)]

    schema = Schema()
    pinned = Pinned(
        schema,
        schema.build(
            decoded(
                [
                    event(f"r{i}", features={"x": float(rng.normal())}, prediction=1, score=0.6)
                    for i in range(1000)
                ]
            )
        ),
    )
    monitor = ModelMonitor("m", settings, pinned)
    findings = []
    for minute in range(6):
        preds, labels = [], []
        for i in range(600):
            eid, t = f"{minute}-{i}", minute * 60_000 + i * 100
            right = rng.random() < (0.9 if minute < 3 else 0.5)
            preds.append(
                event(
                    eid, timestamp=t, features={"x": float(rng.normal())}, prediction=1, score=0.6
                )
            )
            labels.append(event(eid, timestamp=t + 60_000, label=1 if right else 0))
        processed = monitor.process(decoded(preds), decoded(labels))
        findings += [f for w in processed.closed for f in w.findings]
    findings += [f for w in monitor.flush().closed for f in w.findings]
    accuracy = [f for f in findings if f.detector == "performance" and f.subject == "accuracy"]
    assert accuracy
    assert accuracy[-1].severity is Severity.CRITICAL  # 90% -> 50%
