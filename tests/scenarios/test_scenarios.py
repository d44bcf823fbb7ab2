"""Issue 15's realistic scenarios, end to end: seeded streams (``streams.py``)
through the engine, the alert policy, the durable outbox and a file sink, counting the
notifications the sink received.

The first tests check the streams themselves (fast): that they are as realistic as the
suite says and that each change has its stated size. The others run the daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.scenarios.runner import Run
from tests.scenarios.streams import (
    AFTER_CHANGE,
    CHANGE,
    CREDIT_SD,
    DAY,
    DETECTORS,
    LABEL_DELAY,
    SCENARIOS,
    SLICE,
    WIDE_NULL,
    Stream,
    Window,
    generate,
    mean_events,
)

# Scenario -> the most windows after the change its first notification may come.
WITHIN = {
    "shift 0.4 sd": 0,
    "mix 12 points": 0,
    "shift 0.2 sd": 2,
    "mix 8 points": 2,
    "slice -10 from +8": 2,
    "slice -10 from level": 2,
    "slice -10 from -7": 2,
    "concept: 1/5 of labels flip": 0,  # the first window whose labels have come
    "wrong type 3%": AFTER_CHANGE - 1,  # caught while the scenario runs
    "error rate 1% -> 3%": AFTER_CHANGE - 1,
    "fairness gap": AFTER_CHANGE - 1,
}


def windows(stream: Stream, first: int, last: int) -> list[Window]:
    return [generate(stream, w) for w in range(first, last)]


def accuracy(ws: list[Window], inside: bool) -> float:
    right = sum(int((w.label == w.prediction)[(w.region == SLICE) == inside].sum()) for w in ws)
    return right / sum(int(((w.region == SLICE) == inside).sum()) for w in ws)


# -- the streams ------------------------------------------------------------------


def test_the_null_stream_is_as_realistic_as_the_suite_says() -> None:
    day = windows(Stream(), 0, DAY)
    sizes = [w.n for w in day]
    assert 150 <= min(sizes) <= 260
    assert 5500 <= max(sizes) <= 6500
    assert 1900 <= np.mean(sizes) <= 2200

    def error_rate(hours: range) -> float:
        ws = [w for w in day if (12 + w.index // 6) % 24 in hours]
        return sum(int((w.label != w.prediction).sum()) for w in ws) / sum(w.n for w in ws)

    assert error_rate(range(13, 16)) == pytest.approx(0.20, abs=0.015)
    assert error_rate(range(1, 4)) == pytest.approx(0.29, abs=0.025)
    f = {k: np.concatenate([w.features[k] for w in day]) for k in day[0].features}
    n = len(f["credit_score"])
    assert len(np.unique(f["credit_score"])) < 0.002 * n  # integers: ties everywhere
    assert np.mean(f["refunds_90d"] == 0) == pytest.approx(0.85, abs=0.01)
    assert np.mean(f["utilization"] == 0) == pytest.approx(0.15, abs=0.01)
    assert np.mean(f["utilization"] == 1) == pytest.approx(0.08, abs=0.01)
    balance = f["balance"].astype(float)
    assert balance.max() > 100 * np.median(balance)  # Pareto: a heavy tail
    absent = np.concatenate([w.absent for w in day])
    assert np.mean((f["income"] == None) | absent) == pytest.approx(0.2, abs=0.01)  # noqa: E711
    assert len(set(f["merchant"].tolist())) == 300
    assert {type(v) for v in f["amount"].tolist()} == {int, float}
    assert not any(isinstance(v, str) for v in f["balance"].tolist())
    regions = np.concatenate([w.region for w in day])
    assert np.mean(regions == SLICE) == pytest.approx(0.05, abs=0.003)
    delays = np.concatenate([w.label_time - w.time for w in day])
    assert delays.min() >= LABEL_DELAY[0]
    assert delays.max() <= LABEL_DELAY[1]
    errors = np.concatenate([w.error for w in day])
    assert np.mean(errors) == pytest.approx(0.01, abs=0.002)


def test_every_change_has_its_stated_size() -> None:
    after = range(CHANGE, CHANGE + AFTER_CHANGE)
    base = [generate(Stream(), w) for w in after]

    def changed(name: str) -> list[Window]:
        return [generate(SCENARIOS[name].stream, w) for w in after]

    for name, sd in (("shift 0.4 sd", 0.4), ("shift 0.2 sd", 0.2)):
        for old, new in zip(base, changed(name), strict=True):
            moved = new.features["credit_score"] - old.features["credit_score"]
            assert np.allclose(moved, sd * CREDIT_SD)
    for name, points in (("mix 12 points", 0.12), ("mix 8 points", 0.08)):
        web = [np.mean(w.features["channel"] == "web") for w in changed(name)]
        assert np.mean(web) == pytest.approx(0.40 - points, abs=0.01)
    for name, offset in (("slice -10 from +8", 0.08), ("slice -10 from level", 0.0)):
        stream = SCENARIOS[name].stream
        day = windows(stream, 0, DAY)
        assert accuracy(day, True) - accuracy(day, False) == pytest.approx(offset, abs=0.015)
        ws = changed(name)
        assert accuracy(ws, True) - accuracy(ws, False) == pytest.approx(offset - 0.1, abs=0.03)
    day = windows(SCENARIOS["chronic slice gap"].stream, 0, DAY)
    assert accuracy(day, True) - accuracy(day, False) == pytest.approx(-0.07, abs=0.015)
    flipped = changed("concept: 1/5 of labels flip")
    share = np.mean(
        np.concatenate([o.label != n.label for o, n in zip(base, flipped, strict=True)])
    )
    assert share == pytest.approx(0.2, abs=0.01)
    text = np.concatenate(
        [[isinstance(v, str) for v in w.features["balance"]] for w in changed("wrong type 3%")]
    )
    assert np.mean(text) == pytest.approx(0.03, abs=0.005)
    failing = np.concatenate([w.error for w in changed("error rate 1% -> 3%")])
    assert np.mean(failing) == pytest.approx(0.03, abs=0.005)
    biased = changed("fairness gap")
    selected = {
        g: np.mean(np.concatenate([w.prediction[w.gender == g] for w in biased])) for g in "FM"
    }
    assert selected["M"] - selected["F"] > 0.08
    assert mean_events(Stream(), CHANGE) > 4500  # changes start in a busy window


# -- through the daemon --------------------------------------------------------------


@pytest.mark.scenario
@pytest.mark.parametrize("stream", ["null", WIDE_NULL])
@pytest.mark.parametrize("detector", [*DETECTORS, "other"])
def test_a_null_stream_notifies_nothing(
    run: Callable[[str], Run], stream: str, detector: str
) -> None:
    """A day of reference and 156 windows of the same stream: no firing notification."""
    null = run(stream)
    assert null.evaluated >= 150
    alerts = [
        a
        for a in null.alerts
        if a["labels"]["detector"] == detector
        or (detector == "other" and a["labels"]["detector"] not in DETECTORS)
    ]
    firing = [a for a in alerts if a["status"] == "firing" and not a["repeated"]]
    assert not firing, (
        f"{len(firing)} firing notifications of {detector} over {null.evaluated} null windows:\n"
        + null.describe_alerts(firing[:30])
    )


@pytest.mark.scenario
@pytest.mark.parametrize("name", list(WITHIN))
def test_a_change_is_notified_in_time(run: Callable[[str], Run], name: str) -> None:
    result = run(name)
    scenario = result.scenario
    delay = result.delay()
    late = delay is None or delay > WITHIN[name]
    assert not late, (
        f"{name}: {' or '.join(scenario.expect)} on {scenario.subject or 'any subject'} "
        f"notified {'never' if delay is None else f'{delay} windows after the change'}, "
        f"expected within {WITHIN[name]}. Its findings:\n"
        + "\n".join(
            result.trace(d, scenario.subject, CHANGE - 1, CHANGE + AFTER_CHANGE)
            for d in scenario.expect
        )
    )


@pytest.mark.scenario
def test_a_chronic_slice_gap_alerts_at_most_once(run: Callable[[str], Run]) -> None:
    """The slice is 7 points worse in the reference and throughout: nothing changes."""
    chronic = run("chronic slice gap")
    assert chronic.evaluated >= 150
    count = chronic.firing()["slice_performance", f"region={SLICE}"]
    assert count <= 1, chronic.describe_alerts(
        a for a in chronic.alerts if a["labels"]["subject"] == f"region={SLICE}"
    )


@pytest.mark.scenario
def test_resuming_from_the_reference_days_checkpoint_changes_nothing(
    run: Callable[[str], Run], straight: Run
) -> None:
    """The suite runs each reference day once and resumes every scenario from its
    checkpoint, as a restarted daemon would: the same notifications as in one run. (The
    values agree to rounding: float sums over differently cut batches.)"""
    resumed = run(straight.scenario.name).alerts
    assert len(straight.alerts) == len(resumed)
    for one, other in zip(straight.alerts, resumed, strict=True):
        assert _exact(one) == _exact(other)
        assert one["value"] == pytest.approx(other["value"], rel=1e-9)
        assert one["threshold"] == pytest.approx(other["threshold"], rel=1e-9)


def _exact(alert: dict[str, Any]) -> dict[str, Any]:
    """An alert less its value and threshold (agreeing to rounding), in its annotations too."""
    rounded = ("value", "threshold")
    notes = {k: v for k, v in alert["annotations"].items() if k not in rounded}
    return {k: v for k, v in alert.items() if k not in rounded} | {"annotations": notes}
