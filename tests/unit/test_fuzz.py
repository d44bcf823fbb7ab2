"""Hostile input through ``Engine.process``: random bytes, deep nesting, megabyte strings,
numbers past any float, NaN literals, wrong types in every field, duplicate keys and
invalid UTF-8, interleaved with a seeded stream of good events.

Nothing raises; every message is windowed, late, a label or bad, each bad one with the
reason its construction implies and dead-lettered unchanged; and the garbage changes
nothing the good events make: the same windows, findings, alerts, metrics and state as
the good events alone, batched the same way.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streamwatch.config import (
    DataQualitySettings,
    DetectorSettings,
    DriftSettings,
    LabelSettings,
    ReferenceSettings,
    Settings,
    WindowSettings,
)
from streamwatch.events import BadEvent, Message, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.conclusion import Produced
from streamwatch.pipeline.engine import Engine
from tests.factories import event

T0 = 1_700_000_000_000  # epoch ms, November 2023
PREDICTIONS = 1200  # per example, of models "a" and "b", over 15 one-minute windows
# 60 examples x (180 seeded + at least 10 drawn) = 11,400 hostile messages at least.
EXAMPLES = 60
BULK = 180  # seeded hostile messages per example, besides hypothesis' own
MB = 1 << 20
MAX_BYTES = 4 * MB  # so that strings of a few MB are decoded, not refused unread

SETTINGS = Settings(
    window=WindowSettings(size="1m", allowed_lateness=20.0),
    reference=ReferenceSettings(min_events=150),
    detectors=DetectorSettings(
        grid_sample=256,
        feature_drift=DriftSettings(min_samples=30),
        data_quality=DataQualitySettings(min_samples=30),
    ),
    labels=LabelSettings(horizon=120.0),
    sinks={},
    max_models=2,  # "a" and "b": any third model is a dead letter
    max_message_bytes=MAX_BYTES,
)

Garbage = tuple[bytes, str | None]  # a message and the reason it is bad (None: any)
BASE: dict[str, Any] = {
    "event_id": "junk",
    "model_id": "a",
    "timestamp": T0 + 300_000,
    "score": 0.5,
    "features": {"x": 0.25},
}


# -- the good stream ----------------------------------------------------------------------


def good_stream(seed: int) -> list[bytes]:
    """Predictions of "a" and "b" (first one of each), slightly out of order (some late),
    feature x shifting by 4 sd three fifths in; labels for most, some before their
    prediction, some for predictions that never come. Odd but valid values included."""
    rng = random.Random(seed)
    keyed: list[tuple[float, bytes]] = []
    for i in range(PREDICTIONS):
        model = "ab"[i % 3 != 0]
        t = T0 + i * 750 - rng.randrange(30_000)
        if rng.random() < 0.02:
            t -= 180_000  # a straggler: late for its window
        shifted = i >= PREDICTIONS * 3 // 5
        x: object = rng.gauss(4.0 if shifted else 0.0, 1.0)
        odd = rng.random()
        if odd < 0.02:
            x = 1e300  # beyond any sensible magnitude: missing
        elif odd < 0.04:
            x = "n/a"  # text in a numeric feature: missing, of the wrong type
        elif odd < 0.06:
            x = None
        features = {
            "x": x,
            "colour": rng.choice(("red", "violet") if shifted else ("red", "green", "blue")),
            "n" * 300: 1.0,  # a name too long to track: ignored
        }
        score = rng.random()
        prediction = event(
            f"{model}-{i}",
            model,
            stamp(t, rng),
            score=score,
            prediction=str(int(score > 0.5)),
            features=features,
            latency_ms=rng.expovariate(0.05),
        )
        keyed.append((i, prediction))
        if rng.random() < 0.6:
            early = i >= 10 and rng.random() < 0.1  # the label comes first
            key = i - rng.uniform(0.5, 5) if early else i + rng.uniform(0.5, 40)
            label = event(f"{model}-{i}", model, t + rng.randrange(1000, 60_000), label="01"[i % 2])
            keyed.append((key, label))
    for j in range(20):  # labels whose predictions never come
        orphan = event(f"nobody-{j}", "ab"[j % 2], T0 + j * 40_000, label="1")
        keyed.append((rng.uniform(2, PREDICTIONS), orphan))
    keyed.sort(key=lambda pair: pair[0])
    return [raw for _, raw in keyed]


def stamp(ms: int, rng: random.Random) -> object:
    """An event time in one of the forms events may take: epoch ms, as an integer or a
    float, or RFC 3339 text with a UTC offset."""
    form = rng.randrange(3)
    if form == 0:
        return ms
    if form == 1:
        return ms + 0.25
    moment = datetime.fromtimestamp(ms / 1000, timezone(timedelta(hours=2)))
    return moment.isoformat()


# -- seeded hostile messages, each with the reason it must be refused for -------------------


def spliced(rng: random.Random, field: str, raw_value: bytes) -> bytes:
    """The base event with ``field`` set to ``raw_value`` (raw JSON text), first or last."""
    body = msgspec.json.encode({k: v for k, v in BASE.items() if k != field})
    pair = b'"' + field.encode() + b'":' + raw_value
    return b"{" + pair + b"," + body[1:] if rng.random() < 0.5 else body[:-1] + b"," + pair + b"}"


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b'{"a":' * depth + inner + b"}" * depth


INVALID_UTF8 = [
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xe2\x82",
    b"\xf8\x88\x80\x80",
]
HUGE_NUMBERS = [b"1e400", b"-1e400", b"1" + b"0" * 400, b"-" + b"9" * 400, b"1E+99999"]
TRAILERS = [b"}", b",", b"{}", b" x", b"\x00"]
NOT_OBJECTS = [b"null", b"true", b"1", b'"x"', b"[]", b"[1e400]", b"[NaN]"]
NOT_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"]
WRONG_TYPES = {
    "event_id": [b"null", b"true", b"1.5", b"[]", b'{"id":1}'],
    "model_id": [b"null", b"7", b"false", b'["a"]', b"{}"],
    "timestamp": [b"null", b"true", b"[1700000000000]", b"{}"],
    "model_version": [b"1.5", b"true", b"[1]", b"{}"],
    "features": [b"[]", b'"x=1"', b"42", b'{"x":[1,2]}', b'{"x":{"y":1}}'],
    "prediction": [b"[]", b'{"class":1}'],
    "score": [b'"0.5"', b"true", b"[0.5]", b"{}"],
    "probabilities": [b"[0.5]", b'"a"', b"1", b'{"a":"0.5"}'],
    "label": [b"[1]", b"{}"],
    "segments": [b"[]", b'"eu"', b'{"region":1.5}', b'{"r":["eu"]}'],
    "latency_ms": [b'"12ms"', b"true", b"[]"],
    "error": [b"1", b'"yes"', b"0.0", b"[]"],
}
OUT_OF_RANGE = {
    "event_id": [b'""', b'"' + b"e" * 257 + b'"', b"9223372036854775808"],
    "model_id": [b'""', b'"' + b"m" * 257 + b'"'],
    "timestamp": [b"-1", b"253402300800000", b'"yesterday"', b'"2024-01-01T00:00:00"'],
    "model_version": [b'""', b"-9223372036854775809"],
    "score": [b"1.5", b"-0.1", b"1e308"],
    "probabilities": [
        b'{"a":1.5}',
        b'{"":0.5}',
        b"{" + b",".join(b'"c%d":0' % i for i in range(257)) + b"}",
    ],
    "latency_ms": [b"-1", b"1e10"],
    "prediction": [b'"' + b"p" * 1025 + b'"', b"18446744073709551616"],
    "segments": [b'{"":"eu"}', b'{"r":"' + b"s" * 1025 + b'"}'],
    "features": [b"{" + b",".join(b'"f%d":1' % i for i in range(2049)) + b"}"],
}


def random_bytes(rng: random.Random) -> Garbage:
    return rng.randbytes(rng.randrange(2000)), None


def binary(rng: random.Random) -> Garbage:
    return b"\xff" + rng.randbytes(rng.randrange(2000)), "invalid_json"


def deep_objects(rng: random.Random) -> Garbage:
    return nested(10_000), "too_deep"


def deep_arrays(rng: random.Random) -> Garbage:
    return b"[" * 10_000 + b"]" * 10_000, "not_an_object"


def deep_unclosed(rng: random.Random) -> Garbage:
    return b'{"a":' * 200_000, "too_deep"


def deep_in_unknown_field(rng: random.Random) -> Garbage:
    return spliced(rng, "context", nested(10_000)), "too_deep"


def deep_in_feature(rng: random.Random) -> Garbage:
    return spliced(rng, "features", b'{"x":' + b"[" * 10_000 + b"]" * 10_000 + b"}"), "wrong_type"


def huge_string(rng: random.Random) -> Garbage:
    field = rng.choice(["event_id", "model_id", "model_version"])
    return spliced(rng, field, b'"' + b"x" * rng.randrange(MB, 3 * MB) + b'"'), "invalid_value"


def huge_timestamp_text(rng: random.Random) -> Garbage:
    return spliced(rng, "timestamp", b'"' + b"9" * (2 * MB) + b'"'), "invalid_value"


def huge_digits(rng: random.Random) -> Garbage:
    return spliced(rng, "features", b'{"x":' + b"9" * (2 * MB) + b"}"), "invalid_value"


def too_large(rng: random.Random) -> Garbage:
    return spliced(rng, "event_id", b'"' + b"y" * (MAX_BYTES + 1) + b'"'), "too_large"


def huge_number(rng: random.Random) -> Garbage:
    number = rng.choice(HUGE_NUMBERS)
    field = rng.choice(["features", "score", "timestamp", "latency_ms", "event_id", "label"])
    raw = b'{"x":' + number + b"}" if field == "features" else number
    return spliced(rng, field, raw), "invalid_value"


def not_a_number(rng: random.Random) -> Garbage:
    literal = rng.choice(NOT_NUMBERS)
    field = rng.choice(["features", "score", "timestamp", "latency_ms", "prediction"])
    raw = b'{"x":' + literal + b"}" if field == "features" else literal
    return spliced(rng, field, raw), "invalid_json"


def wrong_type(rng: random.Random) -> Garbage:
    field = rng.choice(sorted(WRONG_TYPES))
    return spliced(rng, field, rng.choice(WRONG_TYPES[field])), "wrong_type"


def out_of_range(rng: random.Random) -> Garbage:
    field = rng.choice(sorted(OUT_OF_RANGE))
    return spliced(rng, field, rng.choice(OUT_OF_RANGE[field])), "invalid_value"


def duplicate_key(rng: random.Random) -> Garbage:
    # A valid and an invalid copy of one key, in either order: refused either way.
    field = rng.choice(["event_id", "model_id", "timestamp", "score", "features"])
    good = msgspec.json.encode(BASE[field])
    bad = rng.choice(WRONG_TYPES[field])
    first, second = (good, bad) if rng.random() < 0.5 else (bad, good)
    raw = spliced(rng, field, first)
    return raw[:-1] + b',"' + field.encode() + b'":' + second + b"}", "wrong_type"


def invalid_utf8(rng: random.Random) -> Garbage:
    bad = rng.choice(INVALID_UTF8)
    where = rng.choice(["event_id", "model_id", "feature value", "feature name", "prediction"])
    if where == "feature value":
        return spliced(rng, "features", b'{"c":"r' + bad + b'd"}'), "invalid_json"
    if where == "feature name":
        return spliced(rng, "features", b'{"c' + bad + b'":1.0}'), "invalid_json"
    return spliced(rng, where, b'"v' + bad + b'"'), "invalid_json"


def control_character(rng: random.Random) -> Garbage:
    return spliced(rng, "event_id", b'"a' + bytes([rng.randrange(32)]) + b'b"'), "invalid_json"


def truncated(rng: random.Random) -> Garbage:
    raw = msgspec.json.encode(BASE)
    return raw[: rng.randrange(len(raw))], "invalid_json"


def trailing(rng: random.Random) -> Garbage:
    return msgspec.json.encode(BASE) + rng.choice(TRAILERS), "invalid_json"


def byte_order_mark(rng: random.Random) -> Garbage:
    return b"\xef\xbb\xbf" + msgspec.json.encode(BASE), "invalid_json"


def not_an_object(rng: random.Random) -> Garbage:
    return rng.choice(NOT_OBJECTS), "not_an_object"


def missing(rng: random.Random) -> Garbage:
    field = rng.choice(["event_id", "model_id", "timestamp"])
    return msgspec.json.encode({k: v for k, v in BASE.items() if k != field}), "missing_field"


def no_output(rng: random.Random) -> Garbage:
    return msgspec.json.encode({k: v for k, v in BASE.items() if k != "score"}), "invalid_value"


def third_model(rng: random.Random) -> Garbage:
    return event(f"i-{rng.randrange(10**6)}", "intruder", T0 + 60_000), "model_limit"


def from_the_future(rng: random.Random) -> Garbage:
    ahead = int(time.time() * 1000) + 10 * 86_400_000 + rng.randrange(10**9)
    return event(f"f-{rng.randrange(10**6)}", "a", ahead), "future_timestamp"


def empty(rng: random.Random) -> Garbage:
    return b"", "invalid_json"


Kind = Callable[[random.Random], Garbage]
HEAVY: list[Kind] = [huge_string, huge_timestamp_text, huge_digits, too_large, deep_unclosed]
LIGHT: list[Kind] = [
    random_bytes,
    binary,
    deep_objects,
    deep_arrays,
    deep_in_unknown_field,
    deep_in_feature,
    huge_number,
    not_a_number,
    wrong_type,
    out_of_range,
    duplicate_key,
    invalid_utf8,
    control_character,
    truncated,
    trailing,
    byte_order_mark,
    not_an_object,
    missing,
    no_output,
    third_model,
    from_the_future,
    empty,
]


def bulk(rng: random.Random) -> list[Garbage]:
    """Every kind once (the heavy ones only once), a wrong type and a wrong value in
    every field, then light kinds drawn at random."""
    made = [kind(rng) for kind in HEAVY + LIGHT]
    made += [(spliced(rng, f, rng.choice(v)), "wrong_type") for f, v in WRONG_TYPES.items()]
    made += [(spliced(rng, f, rng.choice(v)), "invalid_value") for f, v in OUT_OF_RANGE.items()]
    return made + [rng.choice(LIGHT)(rng) for _ in range(BULK - len(made))]


# -- hostile messages drawn by hypothesis ---------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
INT64 = st.integers(-(2**63), 2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
LEAVES = st.none() | st.booleans() | INT64 | FLOATS | TEXT
JSON = st.recursive(
    LEAVES,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3),
    max_leaves=10,
)
KINDS: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": INT64,
    "float": FLOATS,
    "str": TEXT,
    "array": st.lists(JSON, max_size=3),
    "object": st.dictionaries(TEXT, JSON, max_size=3),
}
# The JSON kinds each field takes (timestamp text is parsed as RFC 3339: a wrong value,
# not a wrong type; a number for a float is fine; null is absent wherever a field may
# be absent, "features" and the values of the mappings too).
ACCEPTS = {
    "event_id": {"str", "int"},
    "model_id": {"str"},
    "timestamp": {"int", "float", "str"},
    "model_version": {"str", "int", "null"},
    "features": {"object", "null"},
    "prediction": {"str", "int", "float", "bool", "null"},
    "score": {"int", "float", "null"},
    "probabilities": {"object", "null"},
    "label": {"str", "int", "float", "bool", "null"},
    "segments": {"object", "null"},
    "latency_ms": {"int", "float", "null"},
    "error": {"bool", "null"},
}
# The kinds each mapping field takes for its values.
ACCEPTS_IN = {
    "features": {"null", "bool", "int", "float", "str"},
    "probabilities": {"int", "float", "null"},
    "segments": {"bool", "int", "str", "null"},
}


def encode(body: object) -> bytes:
    return json.dumps(body).encode()  # Python's json writes integers of any size


@st.composite
def wrongly_typed(draw: st.DrawFn) -> Garbage:
    field = draw(st.sampled_from(sorted(ACCEPTS)))
    if field in ACCEPTS_IN and draw(st.booleans()):  # a wrong value inside the mapping
        kind = draw(st.sampled_from(sorted(set(KINDS) - ACCEPTS_IN[field])))
        value: object = {"k": draw(KINDS[kind])}
    else:
        value = draw(KINDS[draw(st.sampled_from(sorted(set(KINDS) - ACCEPTS[field])))])
    return encode({**BASE, field: value}), "wrong_type"


SOME_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=3)
LONG = SOME_TEXT.map(lambda s: s * 257)  # past the 256 characters of ids and names
LONGER = SOME_TEXT.map(lambda s: s * 1025)  # past the 1024 characters of a class
BEYOND_INT64 = st.integers(2**63, 2**80) | st.integers(-(2**80), -(2**63) - 1)
OUTSIDE = {
    "event_id": st.just("") | LONG | BEYOND_INT64,
    "model_id": st.just("") | LONG,
    "timestamp": (
        st.integers(max_value=-1)
        | st.integers(min_value=253_402_300_800_000)
        | st.floats(max_value=-1e-300, allow_infinity=False)
        | TEXT.filter(lambda s: not s[:1].isdigit())
    ),
    "score": (
        st.floats(min_value=1.0, exclude_min=True, allow_infinity=False)
        | st.floats(max_value=-1e-300, allow_infinity=False)
    ),
    "latency_ms": (
        st.floats(max_value=-1e-300, allow_infinity=False)
        | st.floats(min_value=1e9, exclude_min=True, allow_infinity=False)
    ),
    "prediction": LONGER | BEYOND_INT64,
    "model_version": st.just("") | LONG | BEYOND_INT64,
}


@st.composite
def out_of_bounds(draw: st.DrawFn) -> Garbage:
    field = draw(st.sampled_from(sorted(OUTSIDE)))
    return encode({**BASE, field: draw(OUTSIDE[field])}), "invalid_value"


@st.composite
def cut_short(draw: st.DrawFn) -> Garbage:
    raw = encode({**BASE, "features": draw(st.dictionaries(TEXT, FLOATS | TEXT, max_size=4))})
    return raw[: draw(st.integers(0, len(raw) - 1))], "invalid_json"


@st.composite
def nested_deep(draw: st.DrawFn) -> Garbage:
    depth = draw(st.integers(1, 20_000))
    return nested(depth) if draw(st.booleans()) else b"[" * depth, None  # too deep or not


HOSTILE: st.SearchStrategy[Garbage] = st.one_of(
    st.binary(max_size=300).map(lambda raw: (raw, None)),
    (LEAVES | st.lists(JSON, max_size=3)).map(lambda v: (encode(v), "not_an_object")),
    st.dictionaries(TEXT, JSON, max_size=4).map(lambda v: (encode(v), None)),
    wrongly_typed(),
    out_of_bounds(),
    st.sampled_from(["event_id", "model_id", "timestamp"]).map(
        lambda f: (encode({k: v for k, v in BASE.items() if k != f}), "missing_field")
    ),
    cut_short(),
    nested_deep(),
)


# -- running the engine ---------------------------------------------------------------------


class DeadLetters:
    """A source that only keeps what the engine dead-letters (``process`` uses no more)."""

    def __init__(self) -> None:
        self.letters: list[BadEvent] = []

    def poll(self, max_records: int) -> None:
        return None

    def dead_letter(self, bad: Sequence[BadEvent]) -> None:
        self.letters += bad

    def settle(self) -> bool:
        return True

    def commit(self, offsets: object) -> bool:
        """Nothing to commit."""
        return True

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class Run:
    metrics: Metrics
    outcomes: list[Produced]
    letters: list[BadEvent]
    state: bytes  # the engine's snapshot after the end of input


def run(batches: Sequence[Sequence[bytes]]) -> Run:
    metrics = Metrics(CollectorRegistry())
    engine = Engine(SETTINGS, [], metrics)
    source = DeadLetters()
    outcomes, offset = [], 0
    for batch in batches:
        messages = [Message(raw, Origin("fuzz", 0, offset + i)) for i, raw in enumerate(batch)]
        offset += len(batch)
        outcomes.append(engine.process(messages, source))
    outcomes.append(engine.finish())
    state = msgspec.msgpack.encode(engine.checkpointer.state(None))
    engine.outbox.close()
    return Run(metrics, outcomes, source.letters, state)


def windows(outcomes: list[Produced]) -> list[tuple[object, ...]]:
    return [
        (
            w.model,
            w.bounds,
            w.role,
            w.n,
            sorted(
                (f.detector, f.subject, f.statistic, repr(f.value), f.severity.value, f.n_current)
                for f in w.findings
            ),
        )
        for outcome in outcomes
        for w in outcome.closed
    ]


def notifications(outcomes: list[Produced]) -> list[tuple[object, ...]]:
    return [
        (
            n.id,
            n.model,
            n.window,
            [(a.fingerprint, a.status, a.labels["severity"]) for a in n.alerts],
        )
        for outcome in outcomes
        for n in outcome.notifications
    ]


# What the good events make, to compare between the runs with and without garbage.
COMPARED = {
    "streamwatch_events_total",
    "streamwatch_late_events_total",
    "streamwatch_label_events_total",
    "streamwatch_windows_closed_total",
    "streamwatch_outcomes_evaluated_total",
    "streamwatch_findings_total",
    "streamwatch_alerts_total",
    "streamwatch_statistic",
}


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], str]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): repr(s.value)
        for metric in metrics.registry.collect()
        for s in metric.samples
        if s.name in COMPARED
    }


def bad_by_reason(metrics: Metrics) -> Counter[str]:
    return Counter(
        {
            s.labels["reason"]: int(s.value)
            for metric in metrics.bad_events.collect()
            for s in metric.samples
            if s.name.endswith("_total") and s.value
        }
    )


def mixed(
    good: list[bytes], garbage: list[Garbage], positions: list[int], cuts: list[int]
) -> tuple[list[list[bytes]], list[list[bytes]], dict[int, Garbage]]:
    """The good events cut into batches, and the same batches with the garbage inserted
    (item k before good event ``positions[k]``); also the garbage by its offset."""
    bounds = sorted({0, len(good), *(c for c in cuts if 0 < c < len(good))})
    before: dict[int, list[Garbage]] = {}
    for item, position in zip(garbage, positions, strict=True):
        before.setdefault(position, []).append(item)
    clean, dirty, offsets = [], [], {}
    offset = 0
    for lo, hi in itertools.pairwise(bounds):
        batch: list[bytes] = []
        for i in range(lo, hi + (hi == len(good))):
            for item in before.get(i, []):
                batch.append(item[0])
                offsets[offset + len(batch) - 1] = item
            if i < hi:
                batch.append(good[i])
        clean.append(good[lo:hi])
        dirty.append(batch)
        offset += len(batch)
    return clean, dirty, offsets


@settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same examples on every run: CI stays stable
    database=None,
    deadline=None,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),  # explaining takes minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    drawn=st.lists(HOSTILE, min_size=10, max_size=60),
    cuts=st.lists(st.integers(1, PREDICTIONS), max_size=6),
)
def test_garbage_around_good_events_is_refused_with_its_reason_and_changes_nothing(
    seed: int, drawn: list[Garbage], cuts: list[int]
) -> None:
    rng = random.Random(seed)
    good = good_stream(seed)
    garbage = bulk(rng) + drawn
    rng.shuffle(garbage)
    # Never before the first events of "a" and "b", which take the two model slots.
    positions = [rng.randrange(2, len(good) + 1) for _ in garbage]
    clean_batches, dirty_batches, by_offset = mixed(good, garbage, positions, cuts)
    total = len(good) + len(garbage)
    assert sum(map(len, dirty_batches)) == total

    dirty = run(dirty_batches)  # never raises
    clean = run(clean_batches)

    summary = dirty.metrics.summary()
    assert summary["consumed"] == total
    assert summary["windowed"] + summary["late"] + summary["labels"] + summary["bad"] == total
    assert summary["bad"] == len(garbage)
    # Each bad message dead-lettered once, unchanged, for the reason it was made with.
    letters = {letter.origin.offset: letter for letter in dirty.letters}
    assert len(letters) == len(dirty.letters)
    assert letters.keys() == by_offset.keys()
    for offset, (raw, reason) in by_offset.items():
        assert letters[offset].raw == raw
        if reason is not None:
            assert letters[offset].reason == reason, (letters[offset].detail, raw[:120])
    assert bad_by_reason(dirty.metrics) == Counter(letter.reason for letter in dirty.letters)

    # The good events make exactly what they make alone.
    assert clean.metrics.summary()["bad"] == 0
    assert windows(dirty.outcomes) == windows(clean.outcomes)
    assert notifications(dirty.outcomes) == notifications(clean.outcomes)
    assert samples(dirty.metrics) == samples(clean.metrics)
    assert dirty.state == clean.state
    # ... and they make something worth comparing: evaluated windows, drift, late events.
    assert clean.metrics.total("streamwatch_windows_closed", role="evaluated") >= 10
    assert clean.metrics.total("streamwatch_alerts", status="firing") >= 1
    assert clean.metrics.total("streamwatch_late_events") >= 1
    assert clean.metrics.total("streamwatch_label_events", outcome="joined") >= 1
    assert clean.metrics.total("streamwatch_label_events", outcome="unknown") >= 20


@pytest.mark.parametrize(
    ("timestamp", "size"),
    [("0001-01-01T00:00:00+14:00", "1m"), ("0001-01-03T00:00:00Z", "7d")],
)
def test_an_event_stamped_before_year_one_in_utc_does_not_stop_the_engine(
    timestamp: str, size: str
) -> None:
    settings = Settings(window=WindowSettings(size=size, allowed_lateness=0.0), sinks={})
    engine = Engine(settings, [], Metrics(CollectorRegistry()))
    # The first event of the model opens its window; the next ones close it.
    good = [event(f"g{i}", timestamp=T0 + i * 1000) for i in range(100)]
    messages = [
        Message(raw, Origin("fuzz", 0, k))
        for k, raw in enumerate([event("y1", "m", timestamp), *good])
    ]
    try:
        engine.process(messages)
        engine.finish()
    finally:
        engine.outbox.close()
    summary = engine.metrics.summary()
    assert summary["windowed"] + summary["late"] + summary["bad"] == len(messages)
    assert engine.metrics.total("streamwatch_events", model="m") >= len(good)
