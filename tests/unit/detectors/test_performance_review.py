"""Cases a review found wrong in the performance detector (detectors/performance.py),
kept from coming back. Apart from tests/unit/detectors/test_performance.py for now
(being edited); to be folded into it."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from streamwatch.config import PerformanceSettings, Settings, WindowSettings
from streamwatch.detectors import Severity
from streamwatch.detectors.performance import Performance
from streamwatch.events import Message, Origin
from streamwatch.join import Joined
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.windows import WindowBounds
from tests.factories import event


def engine() -> Engine:
    settings = Settings(window=WindowSettings(size="1m", allowed_lateness=0.0), sinks={})
    return Engine(settings, [], Metrics(CollectorRegistry()))


def feed(e: Engine, lines: list[bytes]) -> None:
    for k in range(0, len(lines), 500):
        e.process([Message(raw, Origin("t", 0, k + i)) for i, raw in enumerate(lines[k : k + 500])])
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
