from __future__ import annotations

import msgspec
import numpy as np
import pytest

from streamwatch.join import Joined, LabelJoin


def expect(join: LabelJoin, ids: list[str], times: list[float], window: int = 0) -> Joined | None:
    n = len(ids)
    return join.expect(
        np.array(ids, dtype=np.object_),
        np.array(times, dtype=np.float64),
        np.full(n, window, dtype=np.int64),
        ["1"] * n,
        np.full(n, 0.7),
        [("EU",)] * n,
    )


def test_labels_join_their_predictions_once() -> None:
    join = LabelJoin(capacity=10, ttl=3600)
    expect(join, ["a", "b", "c"], [0.0, 1.0, 2.0], window=4)
    joined = join.match(["b", "a", "b"], ["0", "1", "1"], [61.0, 30.0, 9.0])
    assert joined.window.tolist() == [4, 4]
    assert joined.label.tolist() == ["0", "1"]
    assert joined.prediction.tolist() == ["1", "1"]
    assert joined.delay.tolist() == [60.0, 30.0]
    assert len(join) == 1  # "c" still waits


def test_a_label_that_comes_first_waits_for_its_prediction() -> None:
    join = LabelJoin(capacity=10, ttl=100)
    assert join.match(["x", "y"], ["1", "0"], [50.0, 60.0]).n == 0
    joined = expect(join, ["y", "z"], [40.0, 41.0], window=7)
    assert joined is not None
    assert (joined.window.tolist(), joined.label.tolist(), joined.delay.tolist()) == (
        [7],
        ["0"],
        [20.0],
    )
    join.expire(predicted_until=0.0, labelled_until=200.0)  # "x" waited past its TTL
    assert join.unknown == 1


def test_capacity_evicts_the_oldest_and_ttl_expires_in_event_time() -> None:
    join = LabelJoin(capacity=3, ttl=100)
    expect(join, ["a", "b", "c", "d"], [0.0, 10.0, 20.0, 30.0])
    assert (len(join), join.evicted) == (3, 1)
    assert join.match(["a"], ["1"], [0.0]).n == 0  # evicted: the label now waits
    join.expire(predicted_until=125.0, labelled_until=0.0)  # b (10) and c (20) < 25
    assert join.expired == 2
    assert join.match(["d"], ["1"], [0.0]).n == 1


def test_snapshot_round_trips_through_msgpack() -> None:
    join = LabelJoin(capacity=10, ttl=3600)
    expect(join, ["a", "b"], [0.0, 1.0], window=2)
    join.match(["early"], ["1"], [5.0])
    restored = LabelJoin(capacity=10, ttl=3600)
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(join.snapshot())))
    assert restored.snapshot() == join.snapshot()
    assert restored.match(["b"], ["0"], [2.0]).window.tolist() == [2]


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        LabelJoin(capacity=0, ttl=1)


def test_class_probabilities_join_with_their_labels_as_their_columns_grow() -> None:
    join = LabelJoin(capacity=10, ttl=3600)
    ids = np.array(["a", "b"], dtype=np.object_)
    two = {"probability[x]": np.array([0.9, 0.2]), "probability[y]": np.array([0.1, 0.8])}
    join.expect(
        ids, np.zeros(2), np.zeros(2, dtype=np.int64), ["x", "y"], np.full(2, np.nan), [(), ()], two
    )
    three = {"probability[z]": np.array([0.7])}  # a class first seen later
    join.expect(
        np.array(["c"], dtype=np.object_),
        np.zeros(1),
        np.zeros(1, dtype=np.int64),
        ["z"],
        np.full(1, np.nan),
        [()],
        three,
    )
    restored = LabelJoin(capacity=10, ttl=3600)
    restored.restore(msgspec.msgpack.decode(msgspec.msgpack.encode(join.snapshot())))
    joined = restored.match(["c", "a"], ["z", "x"], [1.0, 1.0])
    assert list(joined.probabilities) == ["probability[x]", "probability[y]", "probability[z]"]
    rows = np.column_stack(list(joined.probabilities.values()))
    np.testing.assert_array_equal(rows, [[np.nan, np.nan, 0.7], [0.9, 0.1, np.nan]])


def test_a_checkpoint_from_before_probabilities_restores_without_them() -> None:
    join = LabelJoin(capacity=10, ttl=3600)
    expect(join, ["a"], [0.0], window=3)
    state = join.snapshot()
    state["pending"] = state["pending"][:6]  # keys and the five columns of old
    del state["columns"]
    restored = LabelJoin(capacity=10, ttl=3600)
    restored.restore(state)
    joined = restored.match(["a"], ["1"], [1.0])
    assert (joined.window.tolist(), joined.probabilities) == ([3], {})
