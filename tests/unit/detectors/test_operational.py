"""Latency, errors and volume: no alarm when steady, detection of stated changes."""

from __future__ import annotations

import numpy as np
import pytest

from streamwatch.batch import Batch, Columns
from streamwatch.config import OperationalSettings
from streamwatch.detectors import Severity
from streamwatch.detectors.operational import LatencySketch, Operational
from streamwatch.windows import WindowBounds

HOUR = WindowBounds(1, 0.0, 3600.0)


def window(
    rng: np.random.Generator,
    n: int,
    slow: float = 0.0,
    errors: float = 0.02,
    span: float = 3600.0,
    start: float = 0.0,
) -> Operational:
    """``n`` events over ``span`` seconds from ``start``; ``slow`` of them ten times slower."""
    latency = rng.gamma(4.0, 3.0, n)
    latency[rng.random(n) < slow] *= 10
    error = (rng.random(n) < errors).astype(np.float64)
    batch = Batch(
        np.sort(rng.uniform(start, start + span, n)),
        Columns(),
        Columns(),
        None,
        Columns({"latency_ms": latency, "error": error}),
    )
    state = Operational(OperationalSettings())
    state.update(batch)
    return state


def alarms(current: Operational, reference: Operational) -> dict[str, Severity]:
    return {
        f.subject: f.severity
        for f in current.evaluate("m", HOUR, reference)
        if f.severity is not Severity.OK
    }


def test_steady_traffic_never_alarms_over_200_windows() -> None:
    rng = np.random.default_rng(1)
    reference = window(rng, 5000)
    reference.merge(window(rng, 5000, start=3600.0))  # the reference pools two hours
    assert sum(len(alarms(window(rng, 5000), reference)) for _ in range(200)) == 0


def test_a_latency_spike_of_5_percent_slow_events_alarms_on_p99_every_window() -> None:
    rng = np.random.default_rng(2)
    reference = window(rng, 5000)
    for _ in range(20):
        found = alarms(window(rng, 5000, slow=0.05), reference)
        assert found["latency_p99"] is Severity.CRITICAL


def test_an_error_rate_from_2_to_5_percent_alarms_every_window() -> None:
    rng = np.random.default_rng(3)
    reference = window(rng, 5000)
    for _ in range(20):
        assert alarms(window(rng, 5000, errors=0.05), reference)["error_rate"] is Severity.WARNING


def test_a_traffic_drop_to_a_fifth_is_critical_and_a_cut_short_window_is_not_judged() -> None:
    rng = np.random.default_rng(4)
    reference = window(rng, 5000)
    assert alarms(window(rng, 1000), reference)["volume"] is Severity.CRITICAL
    cut_short = window(rng, 1000, span=600.0)  # the end of input, ten minutes in
    assert "volume" not in alarms(cut_short, reference)


def test_a_p99_limit_is_checked() -> None:
    rng = np.random.default_rng(5)
    settings = OperationalSettings(latency_p99_limit_ms=20.0)  # p99 here is about 30 ms
    reference = window(rng, 5000)
    current = window(rng, 5000)
    current.settings = settings
    (limit,) = [
        f for f in current.evaluate("m", HOUR, reference) if f.subject == "latency_p99_limit"
    ]
    assert limit.severity is Severity.WARNING
    assert "limit of 20 ms" in limit.explanation


def test_latency_quantiles_are_within_one_percent() -> None:
    rng = np.random.default_rng(6)
    values = rng.lognormal(3.0, 1.0, 100_000)
    sketch = LatencySketch()
    sketch.update(values)
    for q in (0.5, 0.95, 0.99):
        assert sketch.quantile(q) == pytest.approx(np.quantile(values, q), rel=0.01)
