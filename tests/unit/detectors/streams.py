"""Seeded realistic streams for the contract suite, one for each kind of detector, and
streams of distinct raw values to look for in snapshots."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamwatch.batch import Batch, Columns
from streamwatch.join import Joined
from streamwatch.windows import WindowBounds

BOUNDS = WindowBounds(3, 0.0, 600.0)
MARK_NUMBER, MARK_TEXT = 12345.678901, "zq-unique-category"


def events(seed: int, n: int, shift: float = 0.0) -> Batch:
    """One window of a model's events: a heavy tail with zeros, integer ties, missing
    values, Zipf categories, scores and predicted classes, latency and errors."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.0 + shift, 1.2, n)
    amount[rng.random(n) < 0.2] = 0.0
    balance = rng.normal(1000.0, 300.0, n)
    balance[rng.random(n) < 0.05] = np.nan
    country = np.array([f"c{k}" for k in np.minimum(rng.zipf(1.3, n), 300)], dtype=object)
    country[rng.random(n) < 0.03] = None
    score = np.clip(rng.beta(2.0, 5.0, n) + shift / 4, 0.0, 1.0)
    features = Columns(
        {"amount": amount, "age": rng.integers(18, 90, n).astype(np.float64), "balance": balance},
        {"country": country},
    )
    outputs = Columns({"score": score}, {"prediction": np.where(score > 0.5, "1", "0")})
    outputs.categorical["prediction"] = outputs.categorical["prediction"].astype(object)
    operational = Columns(
        {
            "latency_ms": rng.gamma(4.0, 3.0 * (1 + shift), n),
            "error": (rng.random(n) < 0.02 + shift / 20).astype(np.float64),
        }
    )
    time = np.sort(rng.uniform(BOUNDS.start, BOUNDS.end, n))
    return Batch(time, features, outputs, None, operational)


def labels(seed: int, n: int, window: int = BOUNDS.index, flip: float = 0.0) -> Joined:
    """A classifier's joined labels, calibrated but for ``flip`` of them, by slice."""
    rng = np.random.default_rng(seed)
    score = rng.beta(2.0, 5.0, n)  # as the events' scores
    label = (rng.random(n) < score) ^ (rng.random(n) < flip)
    region = rng.choice(["EU", "NA", "APAC", "LATAM"], n, p=[0.4, 0.3, 0.2, 0.1]).tolist()
    gender = rng.choice(["f", "m"], n).tolist()
    return Joined(
        np.full(n, window, dtype=np.int64),
        np.where(score > 0.5, "1", "0").astype(object),
        score,
        label.astype(int).astype(object),
        rng.exponential(600.0, n),
        list(zip(region, gender, strict=True)),
    )


Pair = tuple[object, float]


def pairs(seed: int, n: int, flip: float) -> list[tuple[Pair, Pair]]:
    """Champion and challenger predictions of ``n`` events; ``flip`` of classes differ."""
    rng = np.random.default_rng(seed)
    score = rng.uniform(0.0, 1.0, n)
    other = np.clip(score + rng.normal(0.0, 0.05, n), 0.0, 1.0)
    flipped = rng.random(n) < flip
    champion = (score > 0.5).astype(int)
    challenger = np.where(flipped, 1 - champion, champion)
    return [
        ((int(a), float(s)), (int(b), float(o)))
        for a, s, b, o in zip(champion, score, challenger, other, strict=True)
    ]


def raw_stream(kind: str, n: int = 400) -> tuple[Any, list[float | str]]:
    """Data of distinct values for ``kind``, and those values. A marker comes where a
    bounded sample lets it go: last where the sample is a vocabulary of the first values
    (full by then), first where it is of the latest."""
    rng = np.random.default_rng(11)
    numbers = rng.uniform(1000.0, 2000.0, n)
    numbers[0] = MARK_NUMBER
    texts = [f"raw-{i}" for i in range(n - 1)]
    texts = [MARK_TEXT, *texts] if kind == "pair" else [*texts, MARK_TEXT]
    column = np.array(texts, dtype=object)
    if kind == "window":
        batch = events(12, n)
        batch.features.numeric["amount"] = numbers
        batch.operational.numeric["latency_ms"] = numbers[::-1].copy()
        batch.features.categorical["country"] = column
        batch.outputs.categorical["prediction"] = column.copy()
        return batch, [*numbers.tolist(), *texts]
    if kind == "pair":
        return [(f"id-{i}", texts[i], float(numbers[i])) for i in range(n)], [
            *numbers.tolist(),
            *texts,
            *(f"id-{i}" for i in range(n)),
        ]
    joined = labels(13, n)
    joined.slices[:] = [(t, g) for t, (_, g) in zip(texts, joined.slices, strict=True)]
    regressor = Joined(  # a regressor predicting 0: its errors are the labels themselves
        joined.window,
        np.zeros(n).astype(object),
        joined.score,
        numbers.astype(object),
        joined.delay,
    )
    return [(joined, False), (regressor, True)], [*numbers.tolist(), *texts]
