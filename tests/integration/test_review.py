"""Human review end to end, against a real broker: requests on the review topic, keyed by
event id, exactly the events the rules and the per-event draw choose; a reviewer's
verdicts produced back as labels, joined, and the weighted accuracy in ``/metrics`` and
in the report once the windows' labels are due; and, the daemon SIGKILLed while it
requests, the same requests as an uninterrupted run, each event on the topic once."""

from __future__ import annotations

import functools
import json
import math
import random
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from threading import Thread
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamwatch.alerting.notification import isoformat
from tests.integration.helpers import (
    Daemon,
    committed,
    consume_all,
    create_topic,
    end_offset,
    env_file,
    expel_members,
    produce,
    wait_for,
)

pytestmark = pytest.mark.integration
Topics = Callable[[int], list[str]]

MODEL = "fraud"
T0 = 1_789_999_200.0  # epoch seconds, on the hour (2026-09-21T14:00:00Z)
WINDOW = 300.0
BAND = (0.35, 0.65)  # the rule "unsure"
SHARES = {"unsure": 0.5, "baseline": 0.05}
KILLS = 3
ESTIMATES = ("weighted", "weighted_low", "weighted_high", "observed")


@dataclass(frozen=True)
class Prediction:
    event_id: str
    time: float  # epoch seconds
    score: float
    amount: float
    country: str
    label: int  # the truth: drawn from the score, so the model errs most where unsure

    @property
    def predicted(self) -> int:
        return int(self.score > 0.5)

    @property
    def chance(self) -> float:
        """Its chance of a request: the largest share of the rules that select it."""
        unsure = BAND[0] <= self.score <= BAND[1]
        return SHARES["unsure"] if unsure else SHARES["baseline"]

    def message(self) -> bytes:
        return msgspec.json.encode(
            {
                "event_id": self.event_id,
                "model_id": MODEL,
                "model_version": "v7",
                "timestamp": int(self.time * 1000),
                "score": self.score,
                "prediction": self.predicted,
                "features": {"amount": self.amount, "country": self.country},
            }
        )

    def request(self, features: dict[str, float]) -> dict[str, Any]:
        """The review request of this prediction, as the review topic should carry it."""
        unsure = {"unsure": {"score": self.score}} if self.chance == SHARES["unsure"] else {}
        return {
            "id": f"review:{MODEL}:{self.event_id}",
            "event_id": self.event_id,
            "model": MODEL,
            "version": "v7",
            "time": isoformat(self.time),
            "rules": {**unsure, "baseline": {}},  # a rule of no condition selects all
            "probability": self.chance,
            "features": features,
        }

    def label_event(self, delay: float, source: str | None = None) -> bytes:
        """Its label, ``delay`` seconds on: a reviewer's verdict with source "review"."""
        return msgspec.json.encode(
            {
                "event_id": self.event_id,
                "model_id": MODEL,
                "label": self.label,
                "timestamp": int((self.time + delay) * 1000),
                **({"source": source} if source else {}),
            }
        )


def predictions(n: int, every: float, seed: int) -> list[Prediction]:
    rng = random.Random(seed)
    made = []
    for i in range(n):
        score = round(rng.random(), 4)
        made.append(
            Prediction(
                f"tx-{seed}-{i:06d}",
                T0 + i * every,
                score,
                round(rng.lognormvariate(3.5, 1.0), 2),
                rng.choice(["DE", "FR", "NL", "PL"]),
                int(rng.random() < score),
            )
        )
    return made


_MASK = (1 << 64) - 1


def draw(event_id: str) -> float:
    """The event's uniform draw as request.py documents it, one event at a time in plain
    Python: FNV-1a over the model then the id, then splitmix64's finaliser."""
    h = 0xCBF29CE484222325
    for byte in (MODEL + event_id).encode():
        h = ((h ^ byte) * 0x100000001B3) & _MASK
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _MASK
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _MASK
    h ^= h >> 31
    return (h >> 11) * 2.0**-53


def chosen(stream: Sequence[Prediction]) -> list[Prediction]:
    """The events requested while the budget does not bind (the pace is 1)."""
    return [p for p in stream if draw(p.event_id) < p.chance]


def review_env(path: Path, kafka: str, topics: list[str], review: str, **more: object) -> Path:
    """A daemon's settings: rules "unsure" and "baseline", a sink of kind review."""
    return env_file(
        path,
        kafka__bootstrap_servers=kafka,
        kafka__topics=json.dumps(topics),
        window__size=f"{WINDOW:g}s",
        window__allowed_lateness="0s",
        labels__horizon="5m",
        review__horizon="3m",
        state__path=path.parent / "state.sqlite",
        state__checkpoint_interval="0.2s",
        server__port=0,
        review__rules__unsure__score_between=json.dumps(BAND),
        review__rules__unsure__share=SHARES["unsure"],
        review__rules__baseline__share=SHARES["baseline"],
        sinks__desk__kind="review",
        sinks__desk__topic=review,
        **more,
    )


def check_requests(records: Sequence[Any], expected: dict[str, Prediction], amount: bool) -> None:
    """Each record is the request of an expected prediction, keyed by its event id, with
    only the feature ``amount`` where allowed, else none."""
    for r in records:
        p = expected[r.key.decode()]
        assert json.loads(r.value) == p.request({"amount": p.amount} if amount else {})
        assert dict(r.headers)["streamwatch-review-id"] == f"review:{MODEL}:{p.event_id}".encode()


def scrape(daemon: Daemon) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The daemon's ``/metrics``: (sample name, labels) -> value."""
    (address,) = {line["address"] for line in daemon.logs() if "address" in line}
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(daemon: Daemon, name: str, **labels: str) -> float:
    """A sample of the model's; NaN where there is none (yet)."""
    if not any("address" in line for line in daemon.logs()):
        return math.nan
    return scrape(daemon).get((name, frozenset({"model": MODEL, **labels}.items())), math.nan)


def by_window(requested: Iterable[Prediction]) -> dict[int, tuple[int, float, float]]:
    """Window -> its verdicts (each the truth), their agreement with the model weighted
    by one over each request's chance (Hajek's ratio), and observed."""
    verdicts: dict[int, list[tuple[bool, float]]] = {}
    for p in requested:
        index = int((p.time - T0) // WINDOW)
        verdicts.setdefault(index, []).append((p.label == p.predicted, p.chance))
    found = {}
    for index, pairs in verdicts.items():
        weighted = sum(1 / c for agreed, c in pairs if agreed) / sum(1 / c for _, c in pairs)
        found[index] = (len(pairs), weighted, sum(a for a, _ in pairs) / len(pairs))
    return found


def review_rows(state: Path, out: Path) -> dict[str, list[str]]:
    """The human review table of ``streamwatch report``: window -> its other cells."""
    command = [sys.executable, "-m", "streamwatch", "report", "--state", str(state)]
    subprocess.run([*command, "-o", str(out)], check=True, capture_output=True, timeout=120)
    table = re.search(r'<table class="review">(.*?)</table>', out.read_text(), re.S)
    assert table is not None, "the report has no human review table"
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in table[1].split("<tr>")]
    return {cells[0]: cells[1:] for cells in rows if cells}


def test_requests_go_out_verdicts_come_back_and_the_weighted_accuracy_is_reported(
    kafka: str, topics: Topics, tmp_path: Path
) -> None:
    source, labels, review = topics(3)
    stream = predictions(1200, 1.0, seed=21)  # windows 0 to 3 of 300 events, one hour
    expected = {p.event_id: p for p in chosen(stream)}
    assert 150 < len(expected) < 300  # the budget (1,000 an hour) does not bind
    produce(kafka, source, [p.message() for p in stream])
    group = f"g-{uuid.uuid4().hex[:12]}"
    env = review_env(
        tmp_path / "daemon.env",
        kafka,
        [source, labels],
        review,
        kafka__group_id=group,
        review__max_per_hour=1000,
        review__features=json.dumps(["amount", "country", "nowhere"]),
        alerts__redact=json.dumps(["country"]),  # never in a request, though listed
    )
    daemon = Daemon(env, tmp_path / "daemon.log").start()
    metric = functools.partial(sample, daemon)
    try:
        records = consume_all(kafka, review, len(expected), timeout=60)
        assert Counter(r.key.decode() for r in records) == Counter(list(expected))
        check_requests(records, expected, amount=True)  # listed and not redacted
        unsure = sum(p.chance == SHARES["unsure"] for p in expected.values())
        assert metric("streamwatch_review_requests_total", rule="unsure") == unsure
        assert metric("streamwatch_review_requests_total", rule="baseline") == len(expected)
        used = metric("streamwatch_review_budget_used_ratio")
        assert used == pytest.approx(len(expected) / 1000)

        # The reviewer: each verdict the truth, two minutes after the prediction.
        produce(kafka, labels, [p.label_event(120.0, "review") for p in expected.values()])
        verdicts = "streamwatch_review_verdicts_total"
        wait_for(lambda: metric(verdicts, fate="joined") == len(expected), 30, "the verdicts")
        assert metric(verdicts, fate="unsolicited") == metric(verdicts, fate="late") == 0
        # With no ordinary label yet, each window is reported by the verdicts' own clock,
        # REVIEW__HORIZON (3 min) after its end: windows 0 to 2 (window 3 is still open).
        estimates = by_window(expected.values())
        _, weighted, observed = estimates[2]  # the gauges hold the last window reported
        accuracy = functools.partial(metric, "streamwatch_review_accuracy")
        wait_for(lambda: accuracy(estimate="observed") == observed, 30, "window 2 reported")
        gauges = {e: accuracy(estimate=e) for e in ESTIMATES}
        assert gauges["weighted"] == pytest.approx(weighted)
        assert gauges["observed"] == pytest.approx(observed)
        assert gauges["weighted_low"] < weighted < gauges["weighted_high"]
        # The truth of every prediction, two minutes on: the label clock passes windows
        # 0 to 2's horizon.
        produce(kafka, labels, [p.label_event(120.0) for p in stream])
        evaluated = "streamwatch_outcomes_evaluated_total"
        wait_for(lambda: metric(evaluated) == 3, 30, "windows 0 to 2 evaluated")
        ends = {t: end_offset(kafka, t) for t in (source, labels)}
        wait_for(
            lambda: all(committed(kafka, group, t) == e for t, e in ends.items()),
            30,
            "everything committed",
        )
        # Verdicts stay out of the label join: only the 1,200 true labels joined.
        assert metric("streamwatch_label_events_total", outcome="joined") == len(stream)
    finally:
        assert daemon.stop() == 0
    assert end_offset(kafka, review) == len(expected)  # nothing more was requested

    rows = review_rows(tmp_path / "state.sqlite", tmp_path / "report.html")
    assert set(rows) == {isoformat(T0 + index * WINDOW) for index in (0, 1, 2)}
    for index in (0, 1, 2):
        n, weighted, observed = estimates[index]
        cells = rows[isoformat(T0 + index * WINDOW)]
        assert cells[:3] == [str(n), "300", f"{100 * weighted:.1f}%"]
        assert cells[4] == f"{100 * observed:.1f}%"
        assert observed < weighted  # sampled for doubt, the reviewed are the worse ones


@dataclass
class Desk:
    """A daemon's env, state and review topic over the predictions of ``source``, and
    the runs started with them."""

    kafka: str
    source: str
    directory: Path
    runs: list[Daemon] = field(default_factory=list)
    group: str = field(default_factory=lambda: f"g-{uuid.uuid4().hex[:12]}")

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True)
        self.review = create_topic(self.kafka)
        # A budget that never binds: within a batch it keeps the most uncertain, so where
        # it binds the events chosen depend on how the input was batched.
        self.env = review_env(
            self.directory / "daemon.env",
            self.kafka,
            [self.source],
            self.review,
            kafka__group_id=self.group,
            review__max_per_hour=1_000_000,
        )

    def start(self) -> Daemon:
        daemon = Daemon(self.env, self.directory / f"run{len(self.runs)}.log").start()
        self.runs.append(daemon)
        return daemon

    def committed(self) -> int:
        return committed(self.kafka, self.group, self.source) or 0

    def requested(self) -> int:
        """Records on the review topic."""
        return end_offset(self.kafka, self.review)

    def sent_past(self, n: int) -> bool:
        return self.requested() > n

    def finish(self, end: int, expected: int) -> list[Any]:
        """Once everything is committed and requested, stop the last run (it drains its
        outbox); the records of the review topic."""
        done = f"{expected} requests from {self.directory.name}"
        wait_for(lambda: self.committed() == end and self.requested() >= expected, 60, done)
        assert self.runs[-1].stop() == 0
        return consume_all(self.kafka, self.review, self.requested(), timeout=30)


def feed(kafka: str, topic: str, messages: list[bytes], size: int, every: float) -> Thread:
    """Produce ``messages`` ``size`` at a time, every ``every`` seconds: a stream that goes
    on arriving while the daemons select, checkpoint and deliver."""

    def run() -> None:
        for start in range(0, len(messages), size):
            produce(kafka, topic, messages[start : start + size])
            time.sleep(every)

    thread = Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_killed_while_requesting_the_daemon_requests_each_event_once_as_if_never_killed(
    kafka: str, topics: Topics, tmp_path: Path
) -> None:
    (source,) = topics(1)
    stream = predictions(7200, 1.0, seed=2026)  # two hours, 24 windows
    expected = {p.event_id: p for p in chosen(stream)}
    uninterrupted = Desk(kafka, source, tmp_path / "uninterrupted")
    killed = Desk(kafka, source, tmp_path / "killed")
    try:
        uninterrupted.start()  # alongside: the two share nothing but the input
        started = time.monotonic()
        feeding = feed(kafka, source, [p.message() for p in stream], size=200, every=0.4)
        rng = random.Random(21)
        for k in range(KILLS):
            daemon, before = killed.start(), killed.requested()
            # Killed at a random point once this run has sent requests of its own, while
            # the stream arrives (15 s of it): as it selects, checkpoints and delivers.
            wait_for(functools.partial(killed.sent_past, before), 60, "a request", every=0.05)
            time.sleep(rng.uniform(0, 1.0))
            daemon.kill()
            print(f"kill {k} at {time.monotonic() - started:.1f} s: {killed.requested()} sent")
            expel_members(kafka, killed.group)
        killed.start()
        feeding.join()
        once = uninterrupted.finish(len(stream), len(expected))
        again = killed.finish(len(stream), len(expected))
        print(f"{len(expected)} requests, {len(again)} sent; {time.monotonic() - started:.1f} s")
    finally:
        for daemon in uninterrupted.runs + killed.runs:
            if daemon.process is not None:
                daemon.kill()

    check_requests(once + again, expected, amount=False)  # no feature unless allowed
    assert Counter(r.key.decode() for r in once) == Counter(list(expected))
    sent = Counter(r.key.decode() for r in again)
    assert set(sent) == set(expected)
    # Each duplicate seen so far was the last request sent before a kill, sent again
    # first by the next run: on the topic already, not yet marked sent in the outbox.
    twice = {k: [r.offset for r in again if r.key.decode() == k] for k, n in sent.items() if n > 1}
    assert not twice, f"{len(twice)} of {len(sent)} sent twice (at offsets), {KILLS} kills"
