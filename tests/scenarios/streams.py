"""Seeded, realistic streams of a binary classifier, with changes of stated size.

Shared by the scenario tests (``test_scenarios.py``) and the detection benchmark
(``bench/detection.py``). Every event is a JSON prediction event as
DESIGN.md describes it, and every prediction gets a label event some minutes later.
Windows are ten minutes of event time, so a day is 144 windows; the stream starts at
noon and the reference is its first day (``REFERENCE__SEASON=1d``), so it covers the
daily cycle:

- traffic cycles from about 200 events a window (at 02:00) to 6,000 (at 14:00), about
  2,000 on average;
- at night more traffic comes from phones, on which the model is less sure, and
  amounts are larger: the error rate moves between 0.20 (day) and 0.29 (night) through
  the covariates alone, and the score distribution and positive rate move with it;
- features: ``amount`` lognormal (cycling; whole amounts sent as JSON integers),
  ``balance`` Pareto, ``items`` integer counts with many ties (cycling),
  ``refunds_90d`` zero-inflated counts, ``utilization`` in [0, 1] with point masses at
  0 and 1, ``credit_score`` rounded to integers, ``income`` with 20% missing (half
  null, half absent), ``merchant`` 300 Zipf-distributed categories, ``channel`` five
  categories, ``device`` (cycling), ``is_new`` a boolean; segments ``region`` (LATAM
  is the 5% slice) and ``gender`` (protected); latency and an operational ``error``
  flag (1%).

A change of stated size starts at window ``CHANGE`` (12:20 on the second day, about
5,000 events a window) and lasts to the end of the stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import msgspec
import numpy as np
from numpy.typing import NDArray

MODEL = "fraud"
WINDOW = 600  # seconds
DAY = 144  # windows
START = 1_793_707_200  # 2026-11-03T12:00:00Z, a Tuesday noon
CHANGE = DAY + 2  # the window changes start at: 12:20 on the second day
NULL_WINDOWS = DAY + 156  # a reference day, then 156 windows evaluated
AFTER_CHANGE = 6  # windows a change scenario runs for after it starts
LABEL_DELAY = (60.0, 900.0)  # seconds after its prediction a label arrives

CHANNELS = np.array(["web", "app", "pos", "phone", "partner"], dtype=object)
CHANNEL_SHARES = np.array([0.40, 0.30, 0.15, 0.10, 0.05])
REGIONS = np.array(["EU", "NA", "APAC", "MEA", "LATAM"], dtype=object)
REGION_SHARES = np.array([0.45, 0.30, 0.15, 0.05, 0.05])
SLICE = "LATAM"
MERCHANTS = np.array([f"m{k:03d}" for k in range(300)], dtype=object)
MERCHANT_SHARES = 1.0 / np.arange(1, 301) ** 1.1
MERCHANT_SHARES /= MERCHANT_SHARES.sum()
CREDIT_SD = 60.0
MEAN_ACCURACY = 0.755  # over the day: what a slice offset in points is scaled by

# Every detector that can alert (besides any added later).
DETECTORS = (
    "feature_drift",
    "prediction_drift",
    "data_quality",
    "out_of_distribution",
    "operational",
    "performance",
    "concept_drift",
    "label_shift",
    "labels",
    "slice_performance",
    "fairness",
    "shadow",
)

ChangeKind = Literal["shift", "mix", "slice", "fairness", "wrong_type", "error_rate", "concept"]
Floats = NDArray[np.float64]
Objects = NDArray[np.object_]


@dataclass(frozen=True, slots=True)
class Change:
    """What changes from window ``start`` on, by how much:

    - ``shift``: ``credit_score`` moves by ``size`` standard deviations (p(y|x) stays);
    - ``mix``: ``size`` of all traffic moves from channel web to app;
    - ``slice``: the LATAM slice's accuracy drops by ``size`` (a share, 0.10 = 10 points);
    - ``fairness``: the model's log-odds for gender F drop by ``size``;
    - ``wrong_type``: ``size`` of ``balance`` values come as text ("1,234.50");
    - ``error_rate``: the operational error flag's rate becomes ``size`` (from 1%);
    - ``concept``: ``size`` of labels flip.
    """

    kind: ChangeKind
    size: float
    start: int = CHANGE


@dataclass(frozen=True, slots=True)
class Stream:
    """A seeded stream: its traffic cycle, its slice's accuracy against the rest of the
    traffic before any change (``slice_offset``, a share), and its change."""

    seed: int = 15
    slice_offset: float = 0.0
    change: Change | None = None
    trough: int = 200  # mean events in the quietest window of the day
    peak: int = 6000  # and in the busiest

    @property
    def unchanged(self) -> Stream:
        return replace(self, change=None)

    def changed(self, kind: ChangeKind, w: int) -> float | None:
        """The size of this stream's change of ``kind`` in window ``w``, if it is on."""
        c = self.change
        return c.size if c is not None and c.kind == kind and w >= c.start else None


@dataclass(frozen=True, slots=True)
class Scenario:
    """A stream, how many windows of it to run, and which detectors (any of them) should
    catch its change, on which subject (``None``: any)."""

    name: str
    stream: Stream
    windows: int
    expect: tuple[str, ...] = ()
    subject: str | None = None


def _change(name: str, kind: ChangeKind, size: float, expect: str, subject: str) -> Scenario:
    return Scenario(
        name, Stream(change=Change(kind, size)), CHANGE + AFTER_CHANGE, (expect,), subject
    )


def _slice(name: str, offset: float) -> Scenario:
    stream = Stream(slice_offset=offset, change=Change("slice", 0.10))
    return Scenario(name, stream, CHANGE + AFTER_CHANGE, ("slice_performance",), f"region={SLICE}")


WIDE_NULL = "null, 200 to 20,000 a window"
SCENARIOS = {
    s.name: s
    for s in [
        Scenario("null", Stream(), NULL_WINDOWS),
        # Windows from about 200 to 20,000 events: a hundredfold between night and day.
        Scenario(WIDE_NULL, Stream(seed=16, peak=20_000), NULL_WINDOWS),
        _change("shift 0.4 sd", "shift", 0.4, "feature_drift", "credit_score"),
        _change("shift 0.2 sd", "shift", 0.2, "feature_drift", "credit_score"),
        _change("mix 12 points", "mix", 0.12, "feature_drift", "channel"),
        _change("mix 8 points", "mix", 0.08, "feature_drift", "channel"),
        _slice("slice -10 from +8", 0.08),
        _slice("slice -10 from level", 0.0),
        _slice("slice -10 from -7", -0.07),
        _change("fairness gap", "fairness", 1.0, "fairness", "gender"),
        _change("wrong type 3%", "wrong_type", 0.03, "data_quality", "balance"),
        _change("error rate 1% -> 3%", "error_rate", 0.03, "operational", "error_rate"),
        Scenario(
            "concept: 1/5 of labels flip",
            Stream(change=Change("concept", 0.2)),
            CHANGE + AFTER_CHANGE,
            ("performance", "concept_drift"),
        ),
        Scenario(
            "chronic slice gap",
            Stream(slice_offset=-0.07),
            NULL_WINDOWS,
            ("slice_performance",),
            f"region={SLICE}",
        ),
    ]
}


def night(seconds: Floats | float) -> Floats:
    """0 at 14:00, 1 at 02:00, following a cosine through the day."""
    hours = (np.asarray(seconds, dtype=np.float64) % 86400.0) / 3600.0
    return np.asarray((1 - np.cos(2 * np.pi * (hours - 14.0) / 24.0)) / 2)


def mean_events(stream: Stream, w: int) -> float:
    """Mean events of window ``w``: log-linear in the cycle, ``trough`` to ``peak``."""
    day = 1 - 2 * float(night(START + (w + 0.5) * WINDOW))
    ratio: float = (stream.peak / stream.trough) ** (day / 2)
    return math.sqrt(stream.trough * stream.peak) * ratio


@dataclass(slots=True)
class Window:
    """One window's predictions as columns (and their labels, with arrival times)."""

    index: int
    time: Floats  # epoch seconds
    features: dict[str, Any]  # numpy columns; object columns may mix types and None
    absent: NDArray[np.bool_]  # events whose ``income`` key is left out
    region: Objects
    gender: Objects
    score: Floats
    prediction: NDArray[np.int64]
    label: NDArray[np.int64]
    latency: Floats
    error: NDArray[np.bool_]
    label_time: Floats

    @property
    def n(self) -> int:
        return len(self.time)


def generate(stream: Stream, w: int) -> Window:
    """Window ``w`` of ``stream``; the same for every stream with the same seed, traffic
    and slice offset, up to where their changes start."""
    d = _draw(stream, w)
    n = len(d["time"])
    change = np.random.default_rng([stream.seed, w, 1])  # only changes draw from here
    credit = d["credit"] + (stream.changed("shift", w) or 0.0) * CREDIT_SD
    # The truth: a fixed p(y|x); phones blur it, so the night's mix errs more.
    logit = (
        -1.0
        - (credit - 680) / CREDIT_SD
        + 0.6 * (np.log(d["amount"]) - 3.7)
        + (d["utilization"] - 0.45) / 0.3
        + 0.5 * (d["refunds"] > 0)
        + 0.4 * d["new"]
    )
    truth = 1 / (1 + np.exp(-np.where(d["desktop"], 2.5, 0.5) * logit))
    label = (d["noise"] < truth).astype(np.int64)
    score = truth
    bias = stream.changed("fairness", w)
    if bias is not None:  # the model's log-odds for F drop; the truth stays
        odds = np.log(truth / (1 - truth))
        score = np.where(d["gender"] == "F", 1 / (1 + np.exp(bias - odds)), truth)
    score = np.clip(np.round(score, 4), 0.0, 1.0)
    prediction = (score >= 0.5).astype(np.int64)
    label = _slice_labels(stream, w, d["region"], score, prediction, label)
    flip = stream.changed("concept", w)
    if flip is not None:
        label = np.where(change.random(n) < flip, 1 - label, label)
    channel = d["channel"]
    mix = stream.changed("mix", w)
    if mix is not None:
        moved = (channel == "web") & (change.random(n) < mix / CHANNEL_SHARES[0])
        channel = np.where(moved, "app", channel)
    balances: Objects = d["balance"].astype(object)
    wrong = stream.changed("wrong_type", w)
    if wrong is not None:
        text = np.flatnonzero(change.random(n) < wrong)
        balances[text] = [f"{v:,.2f}" for v in d["balance"][text].tolist()]
    amounts: Objects = d["amount"].astype(object)
    whole = d["whole"]
    amounts[whole] = d["amount"][whole].astype(np.int64).astype(object)  # JSON integers
    incomes: Objects = d["income"].astype(np.int64).astype(object)
    incomes[d["missing"] < 0.1] = None
    features = {
        "amount": amounts,
        "balance": balances,
        "items": d["items"],
        "refunds_90d": d["refunds"],
        "utilization": d["utilization"],
        "credit_score": credit.astype(np.int64),
        "income": incomes,
        "merchant": d["merchant"],
        "channel": channel.astype(object),
        "device": np.where(d["desktop"], "desktop", d["phone"]).astype(object),
        "is_new": d["new"],
    }
    rate = stream.changed("error_rate", w) or 0.01
    return Window(
        index=w,
        time=d["time"],
        features=features,
        absent=(d["missing"] >= 0.1) & (d["missing"] < 0.2),
        region=d["region"],
        gender=d["gender"],
        score=score,
        prediction=prediction,
        label=label,
        latency=d["latency"],
        error=d["failing"] < rate,
        label_time=d["label_time"],
    )


def _draw(stream: Stream, w: int) -> dict[str, Any]:
    """Everything random about window ``w`` before any change."""
    rng = np.random.default_rng([stream.seed, w])
    n = int(rng.poisson(mean_events(stream, w)))
    t = START + w * WINDOW + np.sort(rng.uniform(0, WINDOW, n))
    dark = night(t)
    mass = rng.random(n)
    utilization = np.where(mass < 0.15, 0.0, np.where(mass > 0.92, 1.0, rng.beta(2, 3, n)))
    return {
        "time": t,
        "credit": np.clip(np.round(rng.normal(680, CREDIT_SD, n)), 300, 850),
        "amount": np.round(np.exp(rng.normal(3.5 + 0.4 * dark, 1.0)), 2),
        "whole": rng.random(n) < 0.3,
        "balance": np.round(500 * (1 + rng.pareto(2.2, n)), 2),
        "items": 1 + rng.poisson(1.0 + 1.5 * (1 - dark)),
        "refunds": np.where(rng.random(n) < 0.85, 0, 1 + rng.poisson(2.0, n)),
        "utilization": np.round(utilization, 4),
        "income": np.round(np.exp(rng.normal(10.8, 0.6, n)), -2),
        "missing": rng.random(n),
        "merchant": MERCHANTS[rng.choice(300, n, p=MERCHANT_SHARES)],
        "channel": CHANNELS[rng.choice(5, n, p=CHANNEL_SHARES)],
        "desktop": rng.random(n) < 0.55 - 0.35 * dark,
        "phone": np.where(rng.random(n) < 0.5, "ios", "android"),
        "new": rng.random(n) < 0.15,
        "region": REGIONS[rng.choice(5, n, p=REGION_SHARES)],
        "gender": np.where(rng.random(n) < 0.48, "F", "M").astype(object),
        "noise": rng.random(n),  # the label's draw
        "latency": np.round(np.exp(rng.normal(np.log(25) + 0.15 * (1 - dark), 0.35)), 2),
        "failing": rng.random(n),
        "label_time": t + rng.uniform(*LABEL_DELAY, n),
    }


def _slice_labels(
    stream: Stream,
    w: int,
    region: Objects,
    score: Floats,
    prediction: NDArray[np.int64],
    label: NDArray[np.int64],
) -> NDArray[np.int64]:
    """The slice's labels redrawn so that its accuracy is ``slice_offset`` (less a
    slice change) away from what the model gets right elsewhere: where it is better,
    some labels are made right, where worse, some made wrong."""
    offset = stream.slice_offset - (stream.changed("slice", w) or 0.0)
    if offset == 0.0:
        return label
    rng = np.random.default_rng([stream.seed, w, 2])
    inside = np.flatnonzero(region == SLICE)
    expected = np.maximum(score[inside], 1 - score[inside])  # its chance to be right
    if offset > 0:
        right = expected + (1 - expected) * offset / (1 - MEAN_ACCURACY)
    else:
        right = expected * (1 + offset / MEAN_ACCURACY)
    correct = rng.random(inside.size) < right
    label = label.copy()
    label[inside] = np.where(correct, prediction[inside], 1 - prediction[inside])
    return label


def encode(window: Window) -> tuple[list[tuple[float, bytes]], list[tuple[float, bytes]]]:
    """The window's prediction and label events as JSON, each with its arrival time."""
    names = list(window.features)
    columns = [window.features[k].tolist() for k in names]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    for i in np.flatnonzero(window.absent).tolist():
        del rows[i]["income"]
    to_json = msgspec.json.Encoder().encode
    w = window.index
    ms = (window.time * 1000).astype(np.int64).tolist()
    predictions = [
        (
            t / 1000,
            to_json(
                {
                    "event_id": f"{w}-{i}",
                    "model_id": MODEL,
                    "timestamp": t,
                    "features": row,
                    "prediction": p,
                    "score": s,
                    "segments": {"region": r, "gender": g},
                    "latency_ms": lat,
                    "error": e,
                }
            ),
        )
        for i, (t, row, p, s, r, g, lat, e) in enumerate(
            zip(
                ms,
                rows,
                window.prediction.tolist(),
                window.score.tolist(),
                window.region.tolist(),
                window.gender.tolist(),
                window.latency.tolist(),
                window.error.tolist(),
                strict=True,
            )
        )
    ]
    label_ms = (window.label_time * 1000).astype(np.int64).tolist()
    labels = [
        (
            t / 1000,
            b'{"event_id":"%d-%d","model_id":"%s","label":%d,"timestamp":%d}'
            % (w, i, MODEL.encode(), y, t),
        )
        for i, (t, y) in enumerate(zip(label_ms, window.label.tolist(), strict=True))
    ]
    return predictions, labels


def messages(stream: Stream, first: int, last: int, final: bool = True) -> list[bytes]:
    """Events as they arrive from window ``first``'s start to window ``last``'s (to the
    end of all labels if ``final``): predictions of those windows, and every label
    arriving then, earlier windows' too."""
    begin, end = START + first * WINDOW, math.inf if final else START + last * WINDOW
    timed: list[tuple[float, int, bytes]] = []
    lag = math.ceil(LABEL_DELAY[1] / WINDOW)
    for w in range(max(0, first - lag), last):
        predictions, labels = encode(generate(stream, w))
        if w >= first:
            timed += [(t, 0, raw) for t, raw in predictions]
        timed += [(t, 1, raw) for t, raw in labels if begin <= t < end]
    timed.sort(key=lambda m: (m[0], m[1]))
    return [raw for _, _, raw in timed]


def clock(w: int) -> str:
    """Window ``w``'s start as the stream's day and time of day."""
    t = w * WINDOW + 12 * 3600
    return f"day {t // 86400 + 1} {t % 86400 // 3600:02d}:{t % 3600 // 60:02d}"
