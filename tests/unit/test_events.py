from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamwatch.events import BadEvent, Event, Message, decode, decode_batch
from tests.factories import event, origin, origins_of

LIMIT = 1_048_576


def good(raw: bytes) -> Event:
    result = decode(raw, origin(), LIMIT)
    assert isinstance(result, Event), result
    return result


def bad(raw: bytes, limit: int = LIMIT) -> BadEvent:
    result = decode(raw, origin(7), limit)
    assert isinstance(result, BadEvent), result
    assert result.raw == raw
    assert result.origin == origin(7)
    return result


def test_prediction_event_of_the_design() -> None:
    raw = json.dumps(
        {
            "event_id": "7f3a",
            "model_id": "fraud",
            "model_version": "3",
            "timestamp": "2026-11-22T10:00:00Z",
            "features": {"amount": 12.5, "country": "DE", "n": 3, "vip": True, "gone": None},
            "prediction": 1,
            "score": 0.82,
            "segments": {"region": "EU"},
            "latency_ms": 12.3,
        }
    ).encode()
    e = good(raw)
    assert e.epoch_seconds == datetime(2026, 11, 22, 10, tzinfo=UTC).timestamp()
    assert e.features == {"amount": 12.5, "country": "DE", "n": 3.0, "vip": True, "gone": None}
    assert not e.is_label


@pytest.mark.parametrize(
    ("timestamp", "seconds"),
    [
        ("2026-11-22T10:00:00Z", 1795341600.0),
        ("2026-11-22T12:00:00+02:00", 1795341600.0),
        ("2026-11-22T10:00:00.250Z", 1795341600.25),
        (1795341600000, 1795341600.0),
        (1795341600250.0, 1795341600.25),
    ],
)
def test_timestamps_rfc3339_or_epoch_milliseconds(timestamp: object, seconds: float) -> None:
    assert good(event(timestamp=timestamp)).epoch_seconds == pytest.approx(seconds)


def test_label_event_has_a_label_and_no_prediction() -> None:
    e = good(event(label=1))
    assert e.is_label
    assert not good(event(label=1, prediction=0)).is_label


def test_multiclass_probabilities_and_regression_outputs() -> None:
    assert good(event(probabilities={"a": 0.2, "b": 0.8})).probabilities == {"a": 0.2, "b": 0.8}
    assert good(event(prediction=17.25)).prediction == 17.25


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b'{"event_id": "a", "model_id": "m", "timestamp": 1, "score": 0.5', "invalid_json"),
        (b'{"event_id": "\xff", "model_id": "m", "timestamp": 1, "score": 0.5}', "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (b'{"model_id": "m", "timestamp": 1, "score": 0.5}', "missing_field"),
        (b'{"event_id": "a", "timestamp": 1, "score": 0.5}', "missing_field"),
        (event(model_id=5), "wrong_type"),  # type: ignore[arg-type]
        (event(features=[1, 2]), "wrong_type"),
        (event(features={"x": {"nested": 1}}), "wrong_type"),
        (event(score="high"), "wrong_type"),
        (event(score=1.5), "invalid_value"),
        (event(latency_ms=-1.0), "invalid_value"),
        (event(timestamp="2026-11-22T10:00:00"), "invalid_value"),  # no offset
        (event(timestamp=-5), "invalid_value"),
        (event(timestamp=10**20), "invalid_value"),
        (event(prediction=10**30), "invalid_value"),
        (event(event_id=""), "invalid_value"),
        (b'{"event_id": "a", "model_id": "m", "timestamp": 1}', "invalid_value"),
        (b'{"event_id": "a", "model_id": "m", "timestamp": 1, "score": NaN}', "invalid_json"),
        (b'{"event_id": "a", "model_id": "m", "timestamp": 1, "score": 1e999}', "invalid_value"),
        (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too_deep"),
    ],
)
def test_bad_messages_become_bad_events_with_a_reason(raw: bytes, reason: str) -> None:
    assert bad(raw).reason == reason


def test_absurd_sizes_are_bad_before_decoding() -> None:
    huge = event(features={"blob": "x" * 2000})
    assert bad(huge, limit=1024).reason == "too_large"
    many = event(features={f"f{i}": 1.0 for i in range(3000)})
    assert bad(many).reason == "invalid_value"


def test_decode_batch_keeps_order_and_origins() -> None:
    messages = [
        Message(event("a"), origin(0)),
        Message(b"junk", origin(1)),
        Message(event("b"), origin(2)),
    ]
    decoded = decode_batch(messages, LIMIT)
    assert [e.event_id for e in decoded.columns.events()] == ["a", "b"]
    assert [o.offset for o in origins_of(decoded.columns)] == [0, 2]
    assert [(b.reason, b.origin.offset) for b in decoded.bad] == [("invalid_json", 1)]


@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    assert isinstance(decode(raw, origin(), LIMIT), Event | BadEvent)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "model_id",
                "timestamp",
                "features",
                "prediction",
                "score",
                "label",
                "probabilities",
                "segments",
                "latency_ms",
                "error",
                "other",
            ]
        ),
        json_values,
    )
)
def test_arbitrary_json_objects_never_raise(body: dict[str, object]) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    result = decode(raw, origin(), LIMIT)
    if isinstance(result, Event):
        # Whatever was accepted is well-formed: finite times and probabilities.
        assert math.isfinite(result.epoch_seconds)
        assert result.score is None or 0.0 <= result.score <= 1.0
