from __future__ import annotations

import numpy as np

from streamwatch.batch import Schema
from streamwatch.config import ReferenceSettings, Settings, WindowSettings
from streamwatch.detectors import Severity
from streamwatch.detectors.histogram import fit_edges
from streamwatch.events import Event, decode
from streamwatch.model import ModelMonitor
from streamwatch.reference import Pinned
from tests.factories import event, origin

HOUR = 3_600_000


def hour_of_events(rng: np.random.Generator, hour: int, n: int, shift: float = 0.0) -> list[Event]:
    stamps = np.sort(rng.uniform(hour * HOUR, (hour + 1) * HOUR, n)).astype(int)
    xs = rng.normal(shift, 1.0, n)
    out = []
    for i, (t, x) in enumerate(zip(stamps, xs, strict=True)):
        e = decode(
            event(f"{hour}-{i}", timestamp=int(t), features={"x": float(x)}), origin(), 1 << 20
        )
        assert isinstance(e, Event)
        out.append(e)
    return out


def settings(min_events: int = 1000) -> Settings:
    return Settings(
        window=WindowSettings(size="1h", allowed_lateness=60.0),
        reference=ReferenceSettings(min_events=min_events),
    )


def test_first_windows_pool_into_the_reference_then_windows_are_evaluated() -> None:
    rng = np.random.default_rng(0)
    monitor = ModelMonitor("m", settings(min_events=1000))
    closed = []
    for hour in range(5):
        closed += monitor.process(
            hour_of_events(rng, hour, 600, shift=1.0 if hour == 4 else 0.0)
        ).closed
    closed += monitor.flush().closed
    closed = [w for w in closed if w.role != "outcomes"]  # no labels in this stream
    assert [w.role for w in closed] == [
        "reference",
        "reference",
        "evaluated",
        "evaluated",
        "evaluated",
    ]
    assert monitor.reference is not None
    assert monitor.reference.n == 1200
    severities = [
        [f.severity for f in w.findings if f.detector == "feature_drift"] for w in closed[2:]
    ]
    assert severities == [[Severity.OK], [Severity.OK], [Severity.CRITICAL]]


def test_events_are_held_back_until_the_grid_is_fitted_on_all_of_them() -> None:
    rng = np.random.default_rng(1)
    monitor = ModelMonitor("m", settings())
    # The stream starts just before a window boundary: the first window gets 5 events.
    events = [e for e in hour_of_events(rng, 0, 3000) if e.epoch_seconds > 3599.0]
    events += hour_of_events(rng, 1, 2300)
    assert monitor.process(events[:100]).windowed == 0  # warming up: 100 < grid_sample
    assert monitor.binning.features.edges == {}
    processed = monitor.process(events[100:])
    assert processed.windowed == len(events)
    values = np.array([e.features["x"] for e in events], dtype=np.float64)
    np.testing.assert_array_equal(monitor.binning.features.edges["x"], fit_edges(values))


def test_a_pinned_reference_is_used_from_the_first_window() -> None:
    rng = np.random.default_rng(2)
    schema = Schema()
    pinned = Pinned(schema, schema.build(hour_of_events(rng, 0, 3000)))
    monitor = ModelMonitor("m", settings(), pinned)
    closed = monitor.process(hour_of_events(rng, 5, 800, shift=0.5)).closed + monitor.flush().closed
    closed = [w for w in closed if w.role != "outcomes"]  # no labels in this stream
    assert [w.role for w in closed] == ["evaluated"]
    drift = {
        (f.detector, f.subject): f.severity
        for f in closed[0].findings
        if f.detector != "data_quality"
    }
    assert drift == {
        ("feature_drift", "x"): Severity.CRITICAL,
        ("prediction_drift", "score"): Severity.OK,  # the factory's constant score
        ("operational", "volume"): Severity.WARNING,  # 800 events an hour, not 3,000
    }
