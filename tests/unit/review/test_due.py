"""When a window's verdicts are reported: once ``REVIEW__HORIZON`` has passed its end by
the verdicts' own clock, whether or not its labels ever come (a model reviewed because
it has no labels gets its estimate within the hour, not a label time-to-live later);
verdicts after that count as late."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamwatch.events import Event
from streamwatch.pipeline.monitor import ClosedWindow, ModelMonitor
from streamwatch.review.request import ReviewRequest
from tests.unit.review.test_reviewer import (
    MODEL,
    START,
    TEN_MINUTES,
    applications,
    settings,
    truths,
    verdicts,
)

HORIZON = 1800.0


def test_verdicts_alone_report_each_window_a_horizon_after_its_end(tmp_path: Path) -> None:
    monitor = ModelMonitor(MODEL, settings(tmp_path, horizon=HORIZON))
    rng = np.random.default_rng(5)
    answered_at, reported, asked = -np.inf, list[ClosedWindow](), list[ReviewRequest]()
    truth: dict[str, tuple[str, str]] = {}
    late_counted = 0
    for k in range(36):  # six hours of ten-minute batches, no ordinary label at all
        a = applications(rng, START + k * TEN_MINUTES, 600, f"b{k}")
        truth |= truths(a)
        at = START + (k + 1) * TEN_MINUTES  # the previous batch's requests, answered now
        answers: list[Event] = verdicts(truth, asked, at) if asked else []
        answered_at = max(answered_at, at) if asked else answered_at
        processed = monitor.process(a.events, answers)
        asked = processed.requests
        if processed.reviewed is not None:
            late_counted += processed.reviewed.late
        for w in processed.closed:
            if w.role == "review":
                assert w.bounds.end + HORIZON <= answered_at  # due by the verdicts' clock
                reported.append(w)
    indexes = [w.bounds.index for w in reported]
    assert indexes == sorted(set(indexes))  # each window once, in order
    assert len(reported) >= 25  # of the run's 36 windows, before the end of input
    for w in reported:
        (finding,) = w.findings
        assert finding.detector == "review"
        assert finding.details["verdicts"] >= 5
    assert late_counted == 0  # answered within ten minutes: none after its window's report


def test_a_verdict_after_its_windows_report_is_late(tmp_path: Path) -> None:
    monitor = ModelMonitor(MODEL, settings(tmp_path, horizon=HORIZON))
    rng = np.random.default_rng(6)
    first = applications(rng, START, 3000, "first")
    held = monitor.process(first.events).requests
    truth = truths(first)
    later = START + TEN_MINUTES
    for k in range(1, 12):  # two hours more, their requests answered at once
        a = applications(rng, later, 600, f"b{k}")
        truth |= truths(a)
        asked = monitor.process(a.events).requests
        monitor.process([], verdicts(truth, asked, later + 60))
        later += TEN_MINUTES
    processed = monitor.process([], verdicts(truth, held, later))
    assert held
    assert processed.reviewed is not None
    assert processed.reviewed.late == len(held)
