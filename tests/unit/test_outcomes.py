"""Labels through the engine: joined to closed windows, evaluated after the horizon."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry

from streamwatch.config import LabelSettings, Settings, WindowSettings
from streamwatch.engine import Engine
from streamwatch.events import Origin
from streamwatch.metrics import Metrics
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
    messages = [(raw, Origin("t", 0, i)) for i, raw in enumerate(lines)]
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
    assert engine.policy.firing  # still firing at the end
    labels = engine.models["m"].outcomes
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
