"""A synthetic stream with known drift, for ``streamwatch demo`` and for tests.

Two models over ten hours of hourly windows: ``fraud``, a classifier, and ``eta``, a
regression. At 06:20 some features shift (the ground truth below), the others do not;
the outputs that depend on shifted features shift with them. The stream also carries
label events, out-of-order events, a few very late events and a few garbage lines.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np

from streamwatch.alerting.policy import isoformat
from streamwatch.config import (
    LabelSettings,
    LogSinkSettings,
    ReviewSinkSettings,
    Settings,
    StateSettings,
    WindowSettings,
)
from streamwatch.pipeline.conclusion import Produced

START = 1_795_305_600.0  # 2026-11-22T00:00:00Z
HOURS = 10
SHIFT_AT = START + 6 * 3600 + 20 * 60  # 06:20, inside the 06:00 window

# Ground truth: (model, detector, subject) that must alert, and nothing else, with the
# windows (hours since START) where detection is expected (an escalation counts where it
# happens): drift where the shift starts or the next, with the values it pushes beyond
# the reference's range; fraud's performance (the shift sends many more transactions
# over the fixed review threshold: more false positives) as its labels come in, an hour
# late, in both regions, and estimated from the scores before them (their calibration
# holds). Not concept drift: p(y|x) stays the score, the errors follow the scores' cells.
DRIFT_WINDOWS = (6, 7)
LABELLED_WINDOWS = (6, 7, 8, 9)
EXPECTED: dict[tuple[str, str, str], tuple[int, ...]] = {
    ("fraud", "feature_drift", "amount"): DRIFT_WINDOWS,
    ("fraud", "feature_drift", "country"): DRIFT_WINDOWS,
    ("fraud", "data_quality", "amount"): DRIFT_WINDOWS,
    ("fraud", "prediction_drift", "score"): DRIFT_WINDOWS,
    ("fraud", "prediction_drift", "prediction"): DRIFT_WINDOWS,
    ("fraud", "out_of_distribution", "inputs"): DRIFT_WINDOWS,
    ("fraud", "estimated_performance", "accuracy"): DRIFT_WINDOWS,
    ("fraud", "performance", "accuracy"): LABELLED_WINDOWS,
    ("fraud", "slice_performance", "region=EU"): LABELLED_WINDOWS,
    ("fraud", "slice_performance", "region=NA"): LABELLED_WINDOWS,
    ("eta", "feature_drift", "traffic_index"): DRIFT_WINDOWS,
    ("eta", "data_quality", "traffic_index"): DRIFT_WINDOWS,
    ("eta", "prediction_drift", "prediction"): DRIFT_WINDOWS,
}
# Estimated where the labelled reference's labels have been read by the time the shifted
# windows close: in the file's order always; through Kafka, a consumer catching up may
# read the predictions' topic far ahead of the labels', and those windows then close
# before the reference is known (unestimated, as they would be with no labels at all).
BEFORE_LABELS = frozenset(k for k in EXPECTED if k[1] == "estimated_performance")


OUT = Path("streamwatch-demo")  # where ``streamwatch demo`` puts its state and report


REVIEW_AFTER = 1200.0  # seconds from a prediction to a reviewer's verdict on it
# fraud's predictions a person should look at: those near its decision threshold (0.08),
# those unlike the reference, a 2% sample of all, and 10% more while an alert fires.
REVIEW_RULES = {
    "uncertain": {"score_between": [0.06, 0.1], "share": 0.5},
    "unusual": {"mahalanobis": True, "share": 0.5},
    "baseline": {"share": 0.02},
    "drifting": {"while_alert": "warning", "share": 0.1},
}


def settings(state: Path = OUT / "state.sqlite", reviews: Path | None = None) -> Settings:
    """The demo's settings: hourly windows, five minutes of allowed lateness, log sink;
    with ``reviews``, fraud's predictions chosen by :data:`REVIEW_RULES` are requested
    for review (appended to that file), showing amount and country."""
    base = Settings(
        window=WindowSettings(size="1h", allowed_lateness=300.0),
        labels=LabelSettings(horizon=7200.0),  # labels come about an hour after predictions
        state=StateSettings(path=state),
    )
    if reviews is None:
        return base
    fraud = {"review": {"rules": REVIEW_RULES, "features": ["amount", "country"]}}
    sinks = {
        "log": LogSinkSettings(kind="log"),
        "reviews": ReviewSinkSettings(kind="review", path=reviews),
    }
    return Settings.model_validate(
        {**base.model_dump(), "models": {"fraud": fraud}, "sinks": sinks}
    )


_COUNTRIES = np.array(["DE", "FR", "US", "GB", "IT", "ES"])
_COUNTRY_BEFORE = np.array([0.3, 0.2, 0.15, 0.15, 0.1, 0.1])
_COUNTRY_AFTER = np.array([0.15, 0.1, 0.45, 0.1, 0.1, 0.1])


GARBAGE = (b"{not json", b"[1, 2, 3]", b'{"event_id": "x", "timestamp": 1}', b"\xff\xfe")

Timed = list[tuple[float, dict[str, object]]]  # (arrival time, event)


@dataclass(frozen=True)
class DemoStream:
    lines: list[bytes]
    keys: list[bytes | None]  # the model id, the Kafka key; None for garbage
    is_label: list[bool]
    arrivals: list[float]  # in order; a garbage line's is the next line's
    truth: dict[str, int]  # fraud's outcome of each prediction, labelled or not
    accuracy: dict[int, float]  # fraud's accuracy over all its predictions, by hour
    predictions: int
    labels: int
    late: int
    garbage: int


def generate(events_per_hour: int = 3000, seed: int = 42) -> DemoStream:
    """The demo stream as JSON lines in arrival order."""
    rng = np.random.default_rng(seed)
    n = events_per_hour * HOURS
    t = np.sort(START + rng.uniform(0, HOURS * 3600, n))
    after = t >= SHIFT_AT
    fraud, labels, outcome, right = _fraud(rng, t, after)
    eta = _eta(rng, t, after)
    late = _late(rng, t)
    timed = fraud + eta + labels + late
    order = np.argsort([arrival for arrival, _ in timed], kind="stable")
    events = [timed[i][1] for i in order]
    arrivals = [timed[i][0] for i in order]
    lines = [msgspec.json.encode(e) for e in events]
    keys: list[bytes | None] = [str(e["model_id"]).encode() for e in events]
    is_label = ["label" in e for e in events]
    for k, junk in enumerate(GARBAGE):
        at = (k + 1) * len(lines) // (len(GARBAGE) + 1)
        lines.insert(at, junk)
        keys.insert(at, None)
        is_label.insert(at, False)
        arrivals.insert(at, arrivals[at])
    truth = {f"f{i}": int(y) for i, y in enumerate(outcome.tolist())}
    hours = ((t - START) // 3600).astype(int)
    accuracy = {h: float(right[hours == h].mean()) for h in range(HOURS)}
    return DemoStream(
        lines,
        keys,
        is_label,
        arrivals,
        truth,
        accuracy,
        len(fraud) + len(eta),
        len(labels),
        len(late),
        len(GARBAGE),
    )


def with_verdicts(stream: DemoStream, requests: Iterable[Mapping[str, object]]) -> DemoStream:
    """The stream with a reviewer's verdict on each of fraud's review ``requests`` (as
    the sink wrote them): its true outcome, :data:`REVIEW_AFTER` after the prediction."""
    lines, keys, is_label, times = (
        list(stream.lines),
        list(stream.keys),
        list(stream.is_label),
        list(stream.arrivals),
    )
    verdicts = []
    for request in requests:
        event_id = str(request["event_id"])
        if request["model"] != "fraud" or event_id not in stream.truth:
            continue
        at = datetime.fromisoformat(str(request["time"])).timestamp() + REVIEW_AFTER
        verdict = {
            "event_id": event_id,
            "model_id": "fraud",
            "label": stream.truth[event_id],
            "timestamp": int(at * 1000),
            "source": "review",
        }
        verdicts.append((at, msgspec.json.encode(verdict)))
    for at, line in sorted(verdicts):
        i = bisect.bisect_right(times, at)
        lines.insert(i, line)
        keys.insert(i, b"fraud")
        is_label.insert(i, True)
        times.insert(i, at)
    verdict_count = stream.labels + len(verdicts)
    return replace(
        stream, lines=lines, keys=keys, is_label=is_label, arrivals=times, labels=verdict_count
    )


def reviewed(outcomes: Iterable[Produced], stream: DemoStream) -> list[str]:
    """Each window's accuracy of fraud from its verdicts, weighted and observed, beside
    its true accuracy over all the window's predictions."""
    rows = []
    for outcome in outcomes:
        for window in outcome.closed:
            for f in window.findings:
                if f.detector == "review":
                    d, hour = f.details, hour_of(window.bounds.start)
                    rows.append(
                        f"  {hour:02d}:00  {int(d['verdicts']):>4}  {d['weighted']:7.1%} "
                        f"({d['weighted_low']:.1%} to {d['weighted_high']:.1%})  "
                        f"{d['observed']:7.1%}  {stream.accuracy[hour]:7.1%}"
                    )
    return rows


def _jitter(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Arrival times: up to two minutes behind event time, so arrival is out of order."""
    return t + rng.uniform(0, 120, len(t))


def _fraud(
    rng: np.random.Generator, t: np.ndarray, after: np.ndarray
) -> tuple[Timed, Timed, np.ndarray, np.ndarray]:
    n = len(t)
    amount = np.exp(rng.normal(3.5 + 0.5 * after, 0.8))  # the shifted feature
    age = rng.normal(41, 12, n).clip(18, 95).round()
    items = rng.poisson(2.5, n).astype(float)
    account_days = rng.gamma(2.0, 300.0, n)
    country = np.where(
        after,
        rng.choice(_COUNTRIES, n, p=_COUNTRY_AFTER),
        rng.choice(_COUNTRIES, n, p=_COUNTRY_BEFORE),
    )
    channel = rng.choice(np.array(["web", "app", "pos"]), n, p=[0.5, 0.35, 0.15])
    device = rng.choice(np.array(["ios", "android", "desktop"]), n, p=[0.4, 0.4, 0.2])
    logit = -3.0 + 0.9 * (np.log(amount) - 3.5) - 0.0005 * account_days + 0.1 * items
    score = 1 / (1 + np.exp(-logit))
    prediction = (score > 0.08).astype(int)  # flag for review
    arrival = _jitter(rng, t)
    events: Timed = [
        (
            float(arrival[i]),
            {
                "event_id": f"f{i}",
                "model_id": "fraud",
                "model_version": "3",
                "timestamp": int(t[i] * 1000),
                "features": {
                    "amount": round(float(amount[i]), 2),
                    "age": float(age[i]),
                    "n_items": float(items[i]),
                    "account_age_days": round(float(account_days[i]), 1),
                    "country": str(country[i]),
                    "channel": str(channel[i]),
                    "device": str(device[i]),
                },
                "score": round(float(score[i]), 5),
                "prediction": int(prediction[i]),
                "segments": {"region": "EU" if country[i] != "US" else "NA"},
                "latency_ms": round(float(rng.gamma(4, 3)), 2),
            },
        )
        for i in range(n)
    ]
    # A fifth of the outcomes become known about an hour later.
    known = np.sort(rng.choice(n, n // 5, replace=False))
    outcome = rng.random(n) < score
    labels: Timed = [
        (
            float(arrival[i] + 3600),
            {
                "event_id": f"f{i}",
                "model_id": "fraud",
                "label": int(outcome[i]),
                "timestamp": int((t[i] + 3600) * 1000),
            },
        )
        for i in known
    ]
    return events, labels, outcome, prediction == outcome


def _eta(rng: np.random.Generator, t: np.ndarray, after: np.ndarray) -> Timed:
    n = len(t)
    distance = rng.gamma(3.0, 2.0, n)
    traffic = rng.normal(0.4 + 0.12 * after, 0.15, n).clip(0, 1)  # shifted by 0.8 sd
    stops = rng.poisson(1.0, n).astype(float)
    weather = rng.choice(np.array(["clear", "rain", "snow"]), n, p=[0.7, 0.25, 0.05])
    vehicle = rng.choice(np.array(["bike", "car", "van"]), n, p=[0.3, 0.6, 0.1])
    minutes = 3 + 2.2 * distance * (1 + 1.5 * traffic) + 2 * stops + rng.normal(0, 2, n)
    arrival = _jitter(rng, t)
    return [
        (
            float(arrival[i]),
            {
                "event_id": f"e{i}",
                "model_id": "eta",
                "timestamp": isoformat(float(t[i])),
                "features": {
                    "distance_km": round(float(distance[i]), 3),
                    "traffic_index": round(float(traffic[i]), 4),
                    "stops": float(stops[i]),
                    "weather": str(weather[i]),
                    "vehicle": str(vehicle[i]),
                },
                "prediction": round(float(minutes[i]), 2),
            },
        )
        for i in range(n)
    ]


def _late(rng: np.random.Generator, t: np.ndarray) -> Timed:
    """Events arriving at the end but stamped three hours earlier: their window closed."""
    stamps = t[-1] - 3 * 3600 - rng.uniform(0, 600, 20)
    return [
        (
            float(t[-1]),
            {
                "event_id": f"late{i}",
                "model_id": "eta",
                "timestamp": isoformat(float(stamp)),
                "features": {"distance_km": 5.0, "traffic_index": 0.4},
                "prediction": 20.0,
            },
        )
        for i, stamp in enumerate(stamps)
    ]


def hour_of(epoch: float) -> int:
    """Hours since the demo's start: the index of its hourly window."""
    return int((epoch - START) // 3600)


def fired(outcomes: Iterable[Produced]) -> dict[tuple[str, str, str], int]:
    """(model, detector, subject) of every firing alert -> the hour of its window."""
    return {
        (a.labels["model"], a.labels["detector"], a.labels["subject"]): hour_of(n.window.start)
        for outcome in outcomes
        for n in outcome.notifications
        for a in n.alerts
        if a.status == "firing"
    }


def check(
    alerts: Mapping[tuple[str, str, str], int],
    optional: frozenset[tuple[str, str, str]] = frozenset(),
) -> list[str]:
    """What differs from the ground truth: missing (but ``optional``), unexpected or late
    alerts."""
    problems = [f"missing {k}" for k in sorted(EXPECTED.keys() - alerts.keys() - optional)]
    problems += [f"unexpected {k}" for k in sorted(alerts.keys() - EXPECTED.keys())]
    problems += [
        f"late {k} at {hour:02d}:00"
        for k, hour in sorted(alerts.items())
        if k in EXPECTED and hour not in EXPECTED[k]
    ]
    return problems


def produce(stream: DemoStream, bootstrap: str, topic: str, labels_topic: str) -> int:
    """Publish the stream to Kafka, label events to their own topic, keyed by model."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    try:
        # Keyed by model, so that one model's events keep their order in a partition.
        for line, key, is_label in zip(stream.lines, stream.keys, stream.is_label, strict=True):
            producer.send(labels_topic if is_label else topic, value=line, key=key)
        producer.flush()
    finally:
        producer.close()
    return len(stream.lines)
