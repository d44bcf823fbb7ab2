"""Cases a review found wrong, kept from coming back."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from streamwatch.batch import Schema
from streamwatch.config import (
    LabelSettings,
    PerformanceSettings,
    ReferenceSettings,
    Settings,
    WindowSettings,
)
from streamwatch.detectors import Severity
from streamwatch.detectors.performance import Performance
from streamwatch.events import Event, Origin, decode
from streamwatch.join import Joined
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.pipeline.monitor import ModelMonitor
from streamwatch.pipeline.reference import Pinned
from streamwatch.windows import WindowBounds
from tests.factories import event


def engine(**settings: object) -> Engine:
    base = Settings(window=WindowSettings(size="1m", allowed_lateness=0.0), sinks={})
    return Engine(base.model_copy(update=settings), [], Metrics(CollectorRegistry()))


def feed(e: Engine, lines: list[bytes]) -> None:
    for k in range(0, len(lines), 500):
        e.process([(raw, Origin("t", 0, k + i)) for i, raw in enumerate(lines[k : k + 500])])
    e.finish()


def test_absurd_regression_values_do_not_raise() -> None:
    lines = []
    for i in range(3000):
        value = 1e80 if i == 1500 else 20.0 + (i % 7)
        lines.append(
            event(f"e{i}", timestamp=i * 100, prediction=value, label=20.0 if i != 10 else 1e150)
        )
    e = engine()
    feed(e, lines)
    assert e.metrics.total("streamwatch_events") == 3000


def test_labels_carried_on_prediction_events_are_joined() -> None:
    lines = [
        event(f"e{i}", timestamp=i * 100, prediction=1, score=0.7, label=1) for i in range(1000)
    ]
    e = engine()
    feed(e, lines)
    assert e.metrics.total("streamwatch_label_events", outcome="joined") == 1000


def test_boolean_labels_and_predictions_are_the_positive_class_one() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    label = rng.random(n) < 0.4
    joined = Joined(
        np.zeros(n, dtype=np.int64),
        label.astype(int).astype(str).astype(object),
        rng.uniform(0, 1, n),
        label.astype(object),
        np.zeros(n),
    )
    performance = Performance(PerformanceSettings())
    performance.update(joined, regression=False)
    assert performance.score_counts[1].sum() == label.sum()  # True counted as positive


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


def test_ece_does_not_alarm_on_small_steady_windows() -> None:
    rng = np.random.default_rng(3)

    def window(n: int) -> Performance:
        score = rng.uniform(0, 1, n)
        label = (rng.random(n) < score).astype(int)
        joined = Joined(
            np.zeros(n, dtype=np.int64),
            (score > 0.5).astype(int).astype(str).astype(object),
            score,
            label.astype(object),
            np.zeros(n),
        )
        p = Performance(PerformanceSettings())
        p.update(joined, regression=False)
        return p

    reference = window(1000)
    bounds = WindowBounds(1, 0.0, 60.0)
    alarms = sum(
        any(
            f.subject == "ece" and f.severity is not Severity.OK
            for f in window(150).evaluate("m", bounds, reference)
        )
        for _ in range(200)
    )
    assert alarms <= 2
