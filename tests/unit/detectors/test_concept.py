"""Concept drift on the error stream: quiet when steady, a stated jump found at once."""

from __future__ import annotations

import msgspec
import numpy as np

from streamwatch.config import ConceptDriftSettings
from streamwatch.detectors import Severity
from streamwatch.detectors.concept import ConceptDrift
from streamwatch.join import Joined
from streamwatch.windows import WindowBounds


def labels(rng: np.random.Generator, n: int, error_rate: float, window: int) -> Joined:
    label = rng.integers(0, 2, n)
    wrong = rng.random(n) < error_rate
    prediction = np.where(wrong, 1 - label, label).astype(str).astype(object)
    return Joined(
        np.full(n, window, dtype=np.int64),
        prediction,
        np.full(n, np.nan),
        label.astype(object),
        np.zeros(n),
    )


def bounds(index: int) -> WindowBounds:
    return WindowBounds(index, index * 60.0, (index + 1) * 60.0)


def test_a_steady_error_rate_gives_no_change_over_200_windows() -> None:
    rng = np.random.default_rng(1)
    detector = ConceptDrift(ConceptDriftSettings())
    verdicts = []
    for index in range(200):
        detector.update(labels(rng, 500, 0.2, index), regression=False)
        verdicts.append(detector.evaluate("m", bounds(index)).severity)
    assert set(verdicts) == {Severity.OK}


def test_an_error_rate_from_20_to_35_percent_is_found_in_the_window_it_starts() -> None:
    for seed in range(10):
        detector = ConceptDrift(ConceptDriftSettings())
        rng = np.random.default_rng(seed)
        for index in range(20):
            detector.update(labels(rng, 500, 0.35 if index >= 10 else 0.2, index), False)
        found = [
            i for i in range(20) if detector.evaluate("m", bounds(i)).severity is Severity.WARNING
        ]
        assert found[0] == 10


def test_snapshot_restores_the_detector() -> None:
    rng = np.random.default_rng(3)
    detector = ConceptDrift(ConceptDriftSettings())
    detector.update(labels(rng, 2000, 0.2, 0), regression=False)
    restored = ConceptDrift(ConceptDriftSettings())
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(detector.snapshot())))
    jump = labels(rng, 1000, 0.5, 1)
    detector.update(jump, regression=False)
    restored.update(jump, regression=False)
    assert restored.changes == detector.changes
    assert detector.changes  # the jump was found by both
