"""The columnar path against the exact one (events/): over hypothesis-drawn batches of
good and bad messages, decoding a batch at once gives the same bad messages (same
reasons, details, bytes and origins), the same good events in the same order, and the
same batches for every model as decoding message by message. Batches mostly share one
shape (as a real topic's do), so that Arrow reads them; the deviations, mutations and
garbage among them send it splitting and handing messages to the exact path."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamwatch.batch import Batch, Columns, Schema
from streamwatch.events import (
    BadEvent,
    Event,
    EventColumns,
    Message,
    Origin,
    Polled,
    columnar,
    decode,
    decode_batch,
)
from streamwatch.events.reader import Reader

LIMIT = 4096
LATEST = 1_900_000_000.0  # epoch seconds: later timestamps are from the future
T0 = 1_800_000_000_000
READER = Reader()  # one for every batch, as a daemon's: it learns their shapes


def exact(messages: list[Message]) -> tuple[EventColumns, list[BadEvent]]:
    results = [decode(raw, origin, LIMIT, LATEST) for raw, origin in messages]
    good = [i for i, r in enumerate(results) if isinstance(r, Event)]
    events = [r for r in results if isinstance(r, Event)]
    return (
        EventColumns.of_events(events, Polled.of(messages), np.array(good, np.intp)),
        [r for r in results if isinstance(r, BadEvent)],
    )


def typed(values: Any) -> list[tuple[type, Any]]:
    """Values with their types, NaN made comparable."""
    return [(type(v), "NaN" if isinstance(v, float) and math.isnan(v) else v) for v in values]


def same_columns(a: Columns, b: Columns) -> None:
    assert a.numeric.keys() == b.numeric.keys()
    for name in a.numeric:
        np.testing.assert_array_equal(a.numeric[name], b.numeric[name])
    assert a.categorical.keys() == b.categorical.keys()
    for name in a.categorical:
        assert typed(a.categorical[name]) == typed(b.categorical[name]), name
    assert a.wrong_type.keys() == b.wrong_type.keys()
    for name in a.wrong_type:
        np.testing.assert_array_equal(a.wrong_type[name], b.wrong_type[name])


def same_batch(a: Batch, b: Batch) -> None:
    np.testing.assert_array_equal(a.event_time, b.event_time)
    assert a.event_ids is not None
    assert b.event_ids is not None
    assert a.event_ids.tolist() == b.event_ids.tolist()
    for group in ("features", "outputs", "operational", "segments"):
        same_columns(getattr(a, group), getattr(b, group))


def assert_same(messages: list[Message]) -> EventColumns:
    expected, bad = exact(messages)
    decoded = decode_batch(messages, LIMIT, LATEST, READER)
    assert sorted(decoded.bad, key=lambda b: b.origin.offset) == bad
    got = decoded.columns
    assert got.raw == expected.raw
    np.testing.assert_array_equal(got.at, expected.at)
    assert [got.models[c] for c in got.model] == [expected.models[c] for c in expected.model]
    for name in ("event_id", "version", "is_label", "labelled", "classifier"):
        assert typed(getattr(got, name)) == typed(getattr(expected, name)), name
    for name in ("event_time", "latency_ms", "error"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    assert got.events() == expected.events()
    for model_id, rows in expected.rows_by_model().items():
        np.testing.assert_array_equal(got.rows_by_model()[model_id], rows)
        ours, theirs = Schema(max_columns=6), Schema(max_columns=6)
        predictions = rows[~expected.is_label[rows]]
        same_batch(ours.build(got.take(predictions)), theirs.build(expected.take(predictions)))
        assert (ours.features, ours.outputs, ours.ignored, ours.segments) == (
            theirs.features,
            theirs.outputs,
            theirs.ignored,
            theirs.segments,
        )
    return got


# Values of every JSON type, the edges of every limit among them.
texts = st.one_of(st.text(max_size=4), st.sampled_from(["", "x" * 256, "x" * 257, "é" * 256]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)

# The shape a batch mostly shares: each field's type.
shapes = st.fixed_dictionaries(
    {
        "event_id": st.sampled_from(["text", "int"]),
        "timestamp": st.sampled_from(["int", "int", "float", "iso"]),
        "prediction": st.sampled_from(["int", "float", "text", "bool", None]),
        "score": st.booleans(),
        "probabilities": st.booleans(),
        "features": st.dictionaries(
            st.sampled_from(["x", "y", "z", "c", "d", "", "n" * 300, "w1", "w2", "w3"]),
            st.sampled_from(["float", "int", "text", "bool"]),
            max_size=8,
        ),
        "segments": st.booleans(),
        "version": st.sampled_from([None, "text", "int"]),
        "label": st.floats(0, 1),
    }
)


@st.composite
def conforming(draw: st.DrawFn, shape: dict[str, Any], i: int) -> dict[str, Any]:
    value = {
        "float": st.floats(-1e6, 1e6),
        "int": st.integers(-5, 5),
        "text": st.sampled_from("abc"),
        "bool": st.booleans(),
    }
    event: dict[str, Any] = {
        "event_id": f"e{i}" if shape["event_id"] == "text" else i,
        "model_id": draw(st.sampled_from(["a", "a", "a", "b"])),
    }
    stamp = T0 + draw(st.integers(0, 10**8))
    event["timestamp"] = {"int": stamp, "float": stamp + 0.5, "iso": "2027-01-15T08:00:00Z"}[
        shape["timestamp"]
    ]
    if draw(st.floats(0, 1)) < shape["label"] / 2:
        event["label"] = draw(st.integers(0, 2))
        if draw(st.booleans()):
            return event  # a label event
    if shape["prediction"] is not None:
        kind = shape["prediction"]
        event["prediction"] = draw(value[kind]) if kind != "float" else draw(st.floats(-10, 10))
    if shape["score"] or shape["prediction"] is None:
        event["score"] = draw(st.floats(0, 1))
    if shape["probabilities"]:
        event["probabilities"] = {
            "p": draw(st.floats(0, 1)),
            "q": draw(st.none() | st.floats(0, 1)),
        }
    event["features"] = {
        name: draw(st.none() | value[kind]) for name, kind in shape["features"].items()
    }
    if shape["segments"]:
        event["segments"] = {
            "region": draw(st.sampled_from(["eu", "us"])),
            "tier": draw(st.integers(0, 3)),
        }
    if shape["version"] is not None:
        event["model_version"] = "v1" if shape["version"] == "text" else draw(st.integers(1, 2))
    if draw(st.booleans()):
        event["latency_ms"] = draw(st.floats(0, 100) | st.integers(0, 100))
    if draw(st.booleans()):
        event["error"] = draw(st.booleans())
    return event


@st.composite
def deviating(draw: st.DrawFn, event: dict[str, Any]) -> dict[str, Any]:
    """One field of the event changed, dropped, or set to anything."""
    field = draw(
        st.sampled_from(
            [
                "event_id",
                "model_id",
                "timestamp",
                "prediction",
                "score",
                "probabilities",
                "label",
                "features",
                "segments",
                "model_version",
                "latency_ms",
                "error",
                "extra",
            ]
        )
    )
    changed = dict(event)
    if draw(st.booleans()):
        changed.pop(field, None)
    elif field == "features" and draw(st.booleans()):
        changed["features"] = {**event.get("features", {}), draw(texts): draw(anything)}
    else:
        changed[field] = draw(anything)
    return changed


MUTATIONS = [
    lambda raw: raw[: len(raw) // 2],
    lambda raw: b"",
    lambda raw: b"   ",
    lambda raw: raw.replace(b":", b":\n", 1),
    lambda raw: raw.replace(b'"score":0', b'"score":NaN', 1).replace(
        b'"x":', b'"x":Infinity,"x0":', 1
    ),
    lambda raw: raw + b" " + raw,
    lambda raw: raw.replace(b"{", b'{"model_id":"a",', 1),
    lambda raw: b"[" * 600 + b"]" * 600,
    lambda raw: raw.replace(b"}", b',"deep":' + b"[" * 300 + b"]" * 300 + b"}", 1),
    lambda raw: b"\xff" + raw,
    lambda raw: raw.replace(b'"a"', b'"\\ud800"', 1),
    lambda raw: raw.replace(b'"a"', b'"\xc3\xa9"', 1),
    lambda raw: b"null",
    lambda raw: b'"text"',
    lambda raw: raw.replace(b'"features":{', b'"features":null,"f":{', 1),
    lambda raw: raw.replace(b"}", b',"x" : 1e400}', 1),
    lambda raw: raw + b"x" * LIMIT,
    lambda raw: raw.replace(b'"a"', b'"a\tb"', 1),
]


@st.composite
def batches(draw: st.DrawFn) -> list[Message]:
    shape = draw(shapes)
    n = draw(st.integers(1, 70))
    messages = []
    for i in range(n):
        event = draw(conforming(shape, i))
        roll = draw(st.integers(0, 19))
        if roll == 0:
            event = draw(deviating(event))
        raw = msgspec.json.encode(event)
        if roll == 1:
            raw = draw(st.sampled_from(MUTATIONS))(raw)
        messages.append(Message(raw, Origin("t", 0, i)))
    return messages


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches())
def test_a_batch_decodes_as_its_messages_do_one_by_one(messages: list[Message]) -> None:
    assert_same(messages)


def test_a_clean_batch_is_read_by_arrow_whole_with_nothing_left_to_the_exact_path() -> None:
    raws = [
        msgspec.json.encode(
            {
                "event_id": f"e{i}",
                "model_id": "m",
                "timestamp": T0 + i,
                "score": 0.5,
                "features": {"x": i / 7, "c": "k"},
                "segments": {"r": "eu"},
            }
        )
        for i in range(2000)
    ]
    messages = [Message(r, Origin("t", 0, i)) for i, r in enumerate(raws)]
    reader = Reader()
    decode_batch(messages[:16], LIMIT, LATEST, reader)  # a small batch teaches the shape
    rows = reader.read(raws)
    assert rows is not None
    _, refused = columnar.columns(rows, Polled.of(messages), np.arange(2000), LATEST)
    assert not refused.any()
    got = assert_same(messages)
    assert got.features is not None
    assert got.features["x"].dtype == np.float64


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"event_id":"e","model_id":"m","timestamp":1,"score":NaN}', "invalid_json"),
        (
            b'{"event_id":"e","model_id":"m","timestamp":1,"score":0.5,"u":[1,Infinity]}',
            "invalid_json",
        ),
        (b'{"event_id":"e","model_id":"m","timestamp":1}', "invalid_value"),
        (b'{"event_id":"","model_id":"m","timestamp":1,"score":1}', "invalid_value"),
        (
            b'{"event_id":"e","model_id":"m","timestamp":1,"score":1,"probabilities":{"":0.1}}',
            "invalid_value",
        ),
        (
            b'{"event_id":"e","model_id":"m","timestamp":1,"score":1,"segments":{"r":1.5}}',
            "wrong_type",
        ),
        (b'{"event_id":"e","model_id":"m","timestamp":1,"score":1,"error":1}', "wrong_type"),
        (
            b'{"event_id":"e","model_id":"m","timestamp":"2027-01-01T00:00:00","score":1}',
            "invalid_value",
        ),
        (
            b'{"event_id":"e","model_id":"m","timestamp":1,"score":1,"x":'
            + b"[" * 2000
            + b"]" * 2000
            + b"}",
            "too_deep",
        ),
        (
            b'{"event_id":"e","model_id":"m","timestamp":99999999999999999999,"score":1}',
            "invalid_value",
        ),
        (b'{"event_id":"e","model_id":"m","timestamp":1,"label":1,"source":5}', "wrong_type"),
        (b'{"event_id":"e","model_id":"m","timestamp":1,"label":1,"source":""}', "invalid_value"),
    ],
)
def test_what_arrow_reads_but_json_forbids_is_refused_as_one_by_one(
    raw: bytes, reason: str
) -> None:
    good = msgspec.json.encode({"event_id": "g", "model_id": "m", "timestamp": T0, "score": 0.5})
    messages = [Message(good, Origin("t", 0, 0)), Message(raw, Origin("t", 0, 1))] * 20
    messages = [Message(m.value, Origin("t", 0, i)) for i, m in enumerate(messages)]
    assert_same(messages)
    (first, *_) = decode_batch(messages, 10**6, LATEST, READER).bad
    assert first.reason == reason


def test_null_means_absent_in_both_paths() -> None:
    raws = [
        b'{"event_id":"e","model_id":"m","timestamp":1,"score":0.5,"features":null}',
        b'{"event_id":"f","model_id":"m","timestamp":1,"probabilities":{"a":null,"b":0.2}}',
        b'{"event_id":"g","model_id":"m","timestamp":1,"score":0.1,"segments":{"r":null}}',
    ]
    got = assert_same([Message(r, Origin("t", 0, i)) for i, r in enumerate(raws)])
    assert got.n == 3
    batch = Schema().build(got.take(~got.is_label))
    assert set(batch.outputs.numeric) == {"score", "probability[b]"}
    assert batch.features == Columns()
    assert batch.segments == Columns()


def test_a_reviewers_verdict_keeps_its_source_in_both_paths() -> None:
    raws = [
        b'{"event_id":"e%d","model_id":"m","timestamp":1,"label":1,"source":"review"}' % i
        for i in range(40)
    ]
    messages = [Message(r, Origin("t", 0, i)) for i, r in enumerate(raws)]
    got = assert_same(messages)
    assert {e.source for e in got.events()} == {"review"}
