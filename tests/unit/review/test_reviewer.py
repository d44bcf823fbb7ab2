"""The reviewer on seeded loan applications: requests are exactly the events a plain
numpy reading of the rules and the per-event draws chooses; the hourly budget holds,
spent on the highest priorities (chance over draw), and paces the next hour; an event is
requested once, in a run and across a crash and restore; features only where allowed;
verdicts join their requests and never the realized performance; rules per model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from numpy.typing import NDArray

from streamwatch.alerting.outbox import Outbox
from streamwatch.batch import Schema
from streamwatch.config import (
    AlertSettings,
    LabelSettings,
    OutOfDistributionSettings,
    ReferenceSettings,
    ReviewRule,
    ReviewSettings,
    ReviewSinkSettings,
    Settings,
    WindowSettings,
    load_settings,
)
from streamwatch.detectors import Finding
from streamwatch.detectors.ood import Mahalanobis
from streamwatch.events import Event
from streamwatch.pipeline.monitor import ClosedWindow, ModelMonitor
from streamwatch.review.request import ReviewRequest, uniforms
from streamwatch.review.reviewer import Reviewer
from streamwatch.review.rules import Reference
from streamwatch.windows import LATE

MODEL = "loans"
TEN_MINUTES = 600
START = 1_793_707_200  # 2026-11-03T12:00:00Z, an hour's start
REGIONS = np.array(["EU", "NA", "LATAM"], dtype=object)
CHANNELS = np.array(["web", "app", "branch"], dtype=object)
RULES = {
    "unsure": ReviewRule(score_between=(0.4, 0.6), share=0.5),
    "large": ReviewRule(above={"amount": 20_000.0}, share=0.3),
    "latam_app": ReviewRule(segments={"region": "LATAM"}, features={"channel": "app"}, share=0.8),
    "young": ReviewRule(below={"age": 25.0}, share=0.25),
    "baseline": ReviewRule(share=0.02),
}
NO_REFERENCE = Reference(Mahalanobis(OutOfDistributionSettings()), {}, None)
Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]


@dataclass(frozen=True)
class Applications:
    """Loan applications as sent (``events``) and as plain columns (NaN, None: missing)."""

    ids: NDArray[np.object_]
    times: Floats
    score: Floats
    amount: Floats
    age: Floats
    channel: NDArray[np.object_]
    region: NDArray[np.object_]
    truth: list[str]  # the outcome a reviewer (or the label) reports
    events: list[Event]

    @property
    def predicted(self) -> list[str]:
        return ["yes" if s >= 0.5 else "no" for s in self.score.tolist()]


def applications(rng: np.random.Generator, start: float, n: int, prefix: str) -> Applications:
    """``n`` applications over ten minutes from ``start``; 10% of each feature missing.
    A calibrated score: the model is right with probability max(s, 1 - s)."""
    times = np.sort(rng.integers(int(start * 1000), int((start + TEN_MINUTES) * 1000), n)) / 1000
    score = rng.beta(0.7, 0.7, n)
    amount = rng.lognormal(9.0, 0.6, n)
    age = rng.normal(42.0, 13.0, n)
    channel = rng.choice(CHANNELS, n, p=[0.5, 0.35, 0.15])
    region = rng.choice(REGIONS, n, p=[0.5, 0.4, 0.1])
    amount[rng.random(n) < 0.1] = np.nan
    age[rng.random(n) < 0.1] = np.nan
    channel[rng.random(n) < 0.1] = None
    truth = np.where(rng.random(n) < score, "yes", "no").tolist()
    ids = np.array([f"{prefix}-{i}" for i in range(n)], dtype=object)
    events = [
        Event(
            event_id=ids[i],
            model_id=MODEL,
            timestamp=round(times[i] * 1000),
            features={"amount": _value(amount[i]), "age": _value(age[i]), "channel": channel[i]},
            score=float(score[i]),
            prediction="yes" if score[i] >= 0.5 else "no",
            segments={"region": region[i]},
        )
        for i in range(n)
    ]
    return Applications(ids, times, score, amount, age, channel, region, truth, events)


def _value(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def plain(a: Applications) -> tuple[dict[str, Bools], Floats]:
    """Which rule holds for each event, read off the columns, and its largest share."""
    holds = {
        "unsure": (a.score >= 0.4) & (a.score <= 0.6),
        "large": a.amount > 20_000.0,  # NaN: false
        "latam_app": (a.region == "LATAM") & (a.channel == "app"),
        "young": a.age < 25.0,
        "baseline": np.ones(len(a.ids), np.bool_),
    }
    return holds, np.max([RULES[k].share * v for k, v in holds.items()], axis=0)


def settings(tmp_path: Path, alerts: AlertSettings | None = None, **review: Any) -> Settings:
    return Settings(
        window=WindowSettings(size="10m", allowed_lateness=0.0),
        reference=ReferenceSettings(min_events=2000),
        labels=LabelSettings(horizon=1200.0),
        review=ReviewSettings(**{"rules": RULES, **review}),
        alerts=alerts or AlertSettings(),
        sinks={"reviews": ReviewSinkSettings(kind="review", path=tmp_path / "r.jsonl")},
    )


def select(reviewer: Reviewer, a: Applications, windows: NDArray[np.int64]) -> list[ReviewRequest]:
    batch = Schema().build(a.events)
    return reviewer.select(batch, windows, NO_REFERENCE, firing=None, regression=False)


def truths(*apps: Applications) -> dict[str, tuple[str, str]]:
    """Event id -> its prediction and the truth."""
    return {i: (p, t) for a in apps for i, p, t in zip(a.ids, a.predicted, a.truth, strict=True)}


def verdicts(
    truth: dict[str, tuple[str, str]], requests: list[ReviewRequest], at: float
) -> list[Event]:
    """The reviewer's answers to ``requests``, at ``at``: the truth."""
    stamp = round(at * 1000)
    return [
        Event(r.event_id, MODEL, stamp, label=truth[r.event_id][1], source="review")
        for r in requests
    ]


def test_the_requests_are_exactly_the_events_the_rules_and_their_draws_choose(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(21)
    a = applications(rng, START, 6000, "a")
    windows = np.where(rng.random(6000) < 0.05, LATE, 3).astype(np.int64)  # 5% late
    reviewer = Reviewer(MODEL, settings(tmp_path, max_per_hour=100_000))
    requests = select(reviewer, a, windows)

    holds, chance = plain(a)
    drawn = uniforms(MODEL, a.ids) < chance
    expected = np.flatnonzero(drawn & (windows >= 0))
    assert np.count_nonzero(drawn & (windows < 0)) > 0  # late ones that would have been
    assert [r.event_id for r in requests] == a.ids[expected].tolist()
    assert len(requests) > 500
    assert [r.probability for r in requests] == chance[expected].tolist()
    assert [set(r.rules) for r in requests] == [
        {k for k, v in holds.items() if v[i]} for i in expected.tolist()
    ]
    assert [r.window for r in requests] == [3] * len(requests)
    assert [r.time for r in requests] == a.times[expected].tolist()
    unsure = [
        (r.rules["unsure"]["score"], a.score[i])
        for r, i in zip(requests, expected, strict=True)
        if "unsure" in r.rules
    ]
    assert unsure
    assert all(x == y for x, y in unsure)


def test_the_budget_holds_each_hour_for_the_highest_priorities_and_paces_the_next(
    tmp_path: Path,
) -> None:
    budget, rng = 40, np.random.default_rng(7)
    aim = budget - 2 * math.sqrt(budget)  # the pace aims two sd below the budget
    reviewer = Reviewer(MODEL, settings(tmp_path, max_per_hour=budget))
    demand: dict[int, float] = {}
    used: dict[int, int] = {}
    bound = paced = 0
    for k in range(48):  # eight hours of ten-minute batches; the load cycles
        hour = k // 6
        a = applications(rng, START + k * TEN_MINUTES, [300, 600, 150, 900][hour % 4], f"b{k}")
        requests = select(reviewer, a, np.full(len(a.ids), k, np.int64))
        _, share = plain(a)
        before = demand.get(hour - 1, 0.0)
        pace = min(1.0, aim / before) if before else 1.0
        demand[hour] = demand.get(hour, 0.0) + float(share.sum())
        chance = share * pace
        priority = chance / uniforms(MODEL, a.ids)  # above 1: the draw fell below the chance
        room = budget - used.get(hour, 0)
        threshold = 1.0
        if np.count_nonzero(priority > 1.0) > room:  # it binds: the highest priorities
            threshold = np.sort(priority)[::-1][room]
            bound += 1
        expected = np.flatnonzero(priority > threshold)
        assert [r.event_id for r in requests] == a.ids[expected].tolist()
        assert [r.probability for r in requests] == (chance[expected] / threshold).tolist()
        paced += pace < 1.0
        used[hour] = used.get(hour, 0) + len(requests)
    assert max(used.values()) <= budget
    assert used[0] == budget  # the first hour has no pace: its first batches spend it all
    assert bound > 0
    assert paced == 42  # every batch after the first hour is paced


def test_an_event_is_requested_once_and_its_verdict_counted_once(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a = applications(rng, START, 3000, "c")
    reviewer = Reviewer(MODEL, settings(tmp_path, max_per_hour=100_000))
    windows = np.zeros(3000, np.int64)
    first = select(reviewer, a, windows)
    assert len(first) > 100
    assert select(reviewer, a, windows) == []  # at-least-once: the same batch again
    again = applications(np.random.default_rng(3), START, 3000, "c")  # the same, redelivered
    assert select(reviewer, again, windows) == []
    # Answered (each verdict twice in one poll, at least once too), then delivered once
    # more, as a replay from an earlier offset would: still not requested.
    answers = verdicts(truths(a), first, START + TEN_MINUTES)
    reviewer.verdicts([*answers, *answers])
    reviewer.verdicts(answers[:10])
    assert select(reviewer, again, windows) == []
    assert (reviewer.counts.joined, reviewer.counts.unsolicited) == (len(first), len(first) + 10)


def labelled(seed: int, hours: int) -> list[tuple[Applications, list[Event]]]:
    """Ten-minute batches of 800 applications, each with the labels of the previous one."""
    rng = np.random.default_rng(seed)
    apps = [applications(rng, START + k * TEN_MINUTES, 800, f"d{k}") for k in range(hours * 6)]
    labels: list[list[Event]] = [[]]
    for a in apps[:-1]:
        stamp = round(a.times[-1] * 1000)
        labels.append(
            [Event(i, MODEL, stamp, label=y) for i, y in zip(a.ids, a.truth, strict=True)]
        )
    return list(zip(apps, labels, strict=True))


def run(
    monitor: ModelMonitor, inputs: list[tuple[Applications, list[Event]]]
) -> tuple[list[list[ReviewRequest]], list[ClosedWindow]]:
    requests, closed = [], []
    for a, labels in inputs:
        processed = monitor.process(a.events, labels)
        requests.append(processed.requests)
        closed += processed.closed
    return requests, closed


def test_a_restored_monitor_requests_the_same_events_and_the_outbox_stores_them_once(
    tmp_path: Path,
) -> None:
    config = settings(tmp_path, max_per_hour=200)
    base, k, m = labelled(5, 3), 6, 10
    # The reviewer answers each batch's requests two batches later, all in the input.
    monitor, outbox = ModelMonitor(MODEL, config), Outbox()
    inputs: list[tuple[Applications, list[Event]]] = []
    made: list[list[ReviewRequest]] = []
    truth, reported = truths(*(a for a, _ in base)), list[Finding]()
    for j, (a, labels) in enumerate(base[: k + m + 1]):
        fed = [*labels, *verdicts(truth, made[j - 2], a.times[0])] if j >= 2 else labels
        inputs.append((a, fed))
        processed = monitor.process(a.events, fed)
        made.append(processed.requests)
        assert all(outbox.add(r, "reviews") for r in made[-1])  # none stored before
        if j > k:
            reported += [f for w in processed.closed for f in w.findings if f.detector == "review"]
        if j == k:  # the checkpoint, as written and read
            state = msgspec.msgpack.decode(msgspec.msgpack.encode(monitor.snapshot()))
    assert sum(map(len, made[k + 1 :])) > 150
    restored = ModelMonitor(MODEL, config)  # killed after batch k + m; restarted
    restored.restore(state)
    again, closed = run(restored, inputs[k + 1 :])
    assert [[r.id for r in b] for b in again] == [[r.id for r in b] for b in made[k + 1 :]]
    assert not any(outbox.add(r, "reviews") for b in again for r in b)
    assert reported  # and the verdicts weigh the same
    assert [f for w in closed for f in w.findings if f.detector == "review"] == reported
    ids = [r.event_id for b in made for r in b]
    assert len(ids) == len(set(ids))


def test_a_request_carries_only_the_features_allowed_and_never_a_redacted_one(
    tmp_path: Path,
) -> None:
    a = applications(np.random.default_rng(11), START, 2000, "f")
    windows = np.zeros(2000, np.int64)
    default = select(Reviewer(MODEL, settings(tmp_path)), a, windows)
    assert default
    assert all(r.features == {} and r.to_dict()["features"] == {} for r in default)

    allowed = settings(
        tmp_path,
        features=["amount", "channel", "age"],
        alerts=AlertSettings(redact=("age",)),
    )
    requests = select(Reviewer(MODEL, allowed), a, windows)
    where = {e: i for i, e in enumerate(a.ids.tolist())}
    assert [r.event_id for r in requests] == [r.event_id for r in default]
    for r in requests:
        i = where[r.event_id]
        assert r.features == {"amount": _value(a.amount[i]), "channel": a.channel[i]}
        assert "age" not in r.encode().decode()


def test_verdicts_join_their_requests_and_never_the_realized_performance(
    tmp_path: Path,
) -> None:
    config = settings(tmp_path, max_per_hour=10_000)
    config = config.model_copy(update={"labels": LabelSettings(horizon=1200.0, ttl=7200.0)})
    inputs = labelled(13, 3)
    _, closed = run(ModelMonitor(MODEL, config), inputs)  # the same, without verdicts
    truth = truths(*(a for a, _ in inputs))
    monitor = ModelMonitor(MODEL, config)
    made: list[list[ReviewRequest]] = []
    held: ReviewRequest | None = None  # answered only after its window was reported
    counts, reviewed = np.zeros(3, np.int64), list[ClosedWindow]()
    for j, (a, labels) in enumerate(inputs):
        answer = made[j - 1] if j else []  # the previous batch's requests
        if held is None and answer:
            held, answer = answer[0], answer[1:]
        if j == 8 and held is not None:  # 40 minutes on or more: after its window's report
            answer = [*answer, held]
        extra = verdicts(truth, answer, a.times[0])
        if j == 0:  # unknown: it waits for its request, a label time-to-live, in vain
            extra.append(
                Event("never-asked", MODEL, round(a.times[0] * 1000), label="no", source="review")
            )
        processed = monitor.process(a.events, [*labels, *extra])
        made.append(processed.requests)
        reviewed += processed.closed
        if processed.reviewed is not None:  # None while warming up: counted on later
            r = processed.reviewed
            counts += (r.joined, r.unsolicited, r.late)
    assert held is not None
    # joined: every request answered (the last batch's are not) but the held one
    assert counts.tolist() == [sum(map(len, made[:-1])) - 1, 1, 1]

    def performance(windows: list[ClosedWindow]) -> list[tuple[Any, ...]]:
        return [
            (w.bounds.index, f.detector, f.subject, f.statistic, f.value, f.severity)
            for w in windows
            if w.role == "outcomes"
            for f in w.findings
            if f.detector != "review"
        ]

    assert performance(reviewed) == performance(closed)
    assert any(f[1] == "performance" for f in performance(closed))
    findings = [f for w in reviewed for f in w.findings if f.detector == "review"]
    assert len(findings) > 10
    for f in findings:
        pairs = [
            truth[r.event_id] for b in made for r in b if r.window == f.window.index and r != held
        ]
        assert f.details["verdicts"] == len(pairs)
        assert f.details["observed"] == sum(p == t for p, t in pairs) / len(pairs)


def test_review_rules_of_one_model_leave_another_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = {
        "SINKS__REVIEWS__KIND": "review",
        "SINKS__REVIEWS__PATH": str(tmp_path / "r.jsonl"),
        "MODELS__LOANS__REVIEW__RULES": '{"unsure": {"score_between": [0.4, 0.6], "share": 0.5}}',
        "MODELS__LOANS__REVIEW__MAX_PER_HOUR": "30",
    }
    for name, value in variables.items():
        monkeypatch.setenv("STREAMWATCH_" + name, value)
    config = load_settings()
    assert config.review.rules == {}
    assert config.for_model("churn").review.rules == {}
    loans = config.for_model(MODEL).review
    assert set(loans.rules) == {"unsure"}
    assert loans.max_per_hour == 30
    a = applications(np.random.default_rng(17), START, 3000, "g")
    windows = np.zeros(3000, np.int64)
    requests = select(Reviewer(MODEL, config.for_model(MODEL)), a, windows)
    assert len(requests) == 30  # the budget binds
    assert all(set(r.rules) == {"unsure"} for r in requests)
    assert select(Reviewer("churn", config.for_model("churn")), a, windows) == []
