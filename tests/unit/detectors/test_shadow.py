"""Shadow comparison through the engine: challengers paired with the champion by event id."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as hst
from prometheus_client import CollectorRegistry

from streamwatch.config import DetectorSettings, Settings, ShadowSettings, WindowSettings
from streamwatch.detectors import Severity
from streamwatch.detectors.shadow import Shadow
from streamwatch.events import Message, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from tests.factories import event


def stream(
    rng: np.random.Generator, minutes: int, flip: float, challenger_first: bool
) -> list[bytes]:
    """Version 1 (the champion) and version 2 score every event; version 2 flips
    ``flip`` of the predicted classes."""
    lines = []
    for minute in range(minutes):
        for i in range(300):
            t = minute * 60_000 + i * 200
            score = float(rng.uniform())
            prediction = int(score > 0.5)
            other = 1 - prediction if rng.random() < flip else prediction
            pair = [
                event(
                    f"{minute}-{i}",
                    timestamp=t,
                    model_version="1",
                    prediction=prediction,
                    score=round(score, 4),
                ),
                event(
                    f"{minute}-{i}",
                    timestamp=t,
                    model_version="2",
                    prediction=other,
                    score=round(score, 4),
                ),
            ]
            lines += pair[::-1] if challenger_first else pair
    return lines


def run(lines: list[bytes]) -> tuple[Engine, dict[int, dict[str, Severity]]]:
    settings = Settings(
        window=WindowSettings(size="1m", allowed_lateness=0.0),
        detectors=DetectorSettings(shadow=ShadowSettings(champions={"m": "1"})),
        sinks={},
    )
    engine = Engine(settings, [], Metrics(CollectorRegistry()))
    outcomes = [
        engine.process(
            [Message(raw, Origin("t", 0, k + i)) for i, raw in enumerate(lines[k : k + 1000])]
        )
        for k in range(0, len(lines), 1000)
    ] + [engine.finish()]
    verdicts: dict[int, dict[str, Severity]] = {}
    for outcome in outcomes:
        for window in outcome.closed:
            for f in window.findings:
                if f.detector == "shadow":
                    verdicts.setdefault(window.bounds.index, {})[f.statistic] = f.severity
    return engine, verdicts


def test_a_challenger_agreeing_98_percent_never_alarms() -> None:
    engine, verdicts = run(stream(np.random.default_rng(1), 100, flip=0.02, challenger_first=False))
    assert len(verdicts) == 100
    assert {s for v in verdicts.values() for s in v.values()} == {Severity.OK}
    # Only the champion's predictions are windowed: the challenger's are compared only.
    assert engine.metrics.total("streamwatch_events") == 100 * 300


def test_a_challenger_flipping_20_percent_alarms_every_window_and_30_is_critical() -> None:
    for challenger_first in (False, True):  # pairing works whichever version comes first
        rng = np.random.default_rng(2)
        _, verdicts = run(stream(rng, 10, flip=0.2, challenger_first=challenger_first))
        assert len(verdicts) == 10
        assert all(v["disagreement"] is not Severity.OK for v in verdicts.values())
        assert all(v["score_difference"] is Severity.OK for v in verdicts.values())
    _, verdicts = run(stream(np.random.default_rng(3), 10, flip=0.3, challenger_first=False))
    assert all(v["disagreement"] is Severity.CRITICAL for v in verdicts.values())


def test_regression_versions_agreeing_within_a_tenth_of_a_percent_do_not_alarm() -> None:
    lines = []
    for minute in range(5):
        for i in range(300):
            t, value = minute * 60_000 + i * 200, float(20 + i % 13)
            lines.append(event(f"{minute}-{i}", timestamp=t, model_version="1", prediction=value))
            # Whole numbers sent as ints by the challenger, a hair off as floats otherwise.
            other = int(value) if i % 2 else value * (1 + 1e-5)
            lines.append(event(f"{minute}-{i}", timestamp=t, model_version="2", prediction=other))
    _, verdicts = run(lines)
    assert len(verdicts) == 5
    assert {s for v in verdicts.values() for s in v.values()} == {Severity.OK}


def test_a_challenger_waiting_while_the_label_came_first_is_still_paired() -> None:
    lines = []
    for minute in range(5):
        for i in range(300):
            t, eid = minute * 60_000 + i * 200, f"{minute}-{i}"
            lines.append(event(eid, timestamp=t, model_version="2", prediction=0, score=0.1))
            lines.append(event(eid, timestamp=t, label=1))
            lines.append(event(eid, timestamp=t, model_version="1", prediction=1, score=0.9))
    _, verdicts = run(lines)
    assert len(verdicts) == 5
    assert all(v["disagreement"] is Severity.CRITICAL for v in verdicts.values())


@given(
    pairs=hst.lists(
        hst.tuples(
            hst.integers(0, 3),
            hst.sampled_from(["2", "3"]),
            hst.integers(0, 1),
            hst.integers(0, 1),
            hst.floats(0, 1),
            hst.floats(0, 1),
        ),
        max_size=60,
    ),
    cut=hst.integers(0, 60),
)
def test_merge_of_parts_equals_pairing_the_whole(
    pairs: list[tuple[int, str, int, int, float, float]], cut: int
) -> None:
    def paired(part: list[tuple[int, str, int, int, float, float]]) -> Shadow:
        shadow = Shadow(ShadowSettings())
        for window, version, champion, challenger, a, b in part:
            shadow.pair(window, version, (champion, a), (challenger, b))
        return shadow

    whole, merged = paired(pairs), paired(pairs[:cut])
    merged.merge(paired(pairs[cut:]))
    got, expected = sorted(merged.snapshot()["windows"]), sorted(whole.snapshot()["windows"])
    assert [row[:5] for row in got] == [row[:5] for row in expected]  # window, version, counts
    assert np.allclose([row[5:] for row in got], [row[5:] for row in expected])  # float sums
