from __future__ import annotations

import numpy as np

from streamwatch.batch import Batch, Schema
from streamwatch.config import DetectorSettings, PerformanceSettings, Settings
from streamwatch.events import Event, decode
from tests.factories import event, origin


def events(*raws: bytes) -> list[Event]:
    decoded = [decode(raw, origin(), 1 << 20) for raw in raws]
    assert all(isinstance(e, Event) for e in decoded)
    return decoded  # type: ignore[return-value]


def test_columns_by_kind_with_missing_values() -> None:
    schema = Schema()
    batch = schema.build(
        events(
            event(
                "a", features={"amount": 1.5, "country": "DE", "vip": True}, prediction=1, score=0.9
            ),
            event("b", features={"amount": None, "country": "FR"}, prediction=0, score=0.2),
            event("c", features={"amount": 3, "vip": False}, prediction=1.0, score=0.7),
        )
    )
    assert schema.features == {"amount": "numeric", "country": "categorical", "vip": "categorical"}
    np.testing.assert_array_equal(batch.features.numeric["amount"], [1.5, np.nan, 3.0])
    assert batch.features.categorical["country"].tolist() == ["DE", "FR", None]
    assert batch.features.categorical["vip"].tolist() == ["true", None, "false"]
    assert batch.outputs.categorical["prediction"].tolist() == ["1", "0", "1"]
    np.testing.assert_array_equal(batch.outputs.numeric["score"], [0.9, 0.2, 0.7])


def test_a_value_of_the_other_kind_counts_as_missing() -> None:
    schema = Schema()
    schema.build(events(event(features={"x": 1.0, "c": "a"})))
    batch = schema.build(
        events(event(features={"x": "oops", "c": 2.5}), event(features={"x": 2.0}))
    )
    np.testing.assert_array_equal(batch.features.numeric["x"], [np.nan, 2.0])
    assert batch.features.categorical["c"].tolist() == [None, None]


def test_numbers_without_scores_are_a_regression_output_even_when_whole() -> None:
    schema = Schema()
    first = schema.build(events(event(prediction=20), event(prediction=21)))
    later = schema.build(events(event(prediction=20.5), event(prediction="oops")))
    assert schema.outputs["prediction"] == "numeric"
    np.testing.assert_array_equal(first.outputs.numeric["prediction"], [20.0, 21.0])
    np.testing.assert_array_equal(later.outputs.numeric["prediction"], [20.5, np.nan])


def test_a_configured_task_overrides_the_guess_per_model() -> None:
    settings = Settings(
        detectors=DetectorSettings(
            performance=PerformanceSettings(task="regression", tasks={"churn": "classification"})
        )
    )
    churn, eta = Schema.of("churn", settings), Schema.of("eta", settings)
    classes = churn.build(events(event(prediction=1), event(prediction=0)))
    values = eta.build(events(event(prediction="7", score=0.5)))
    assert churn.outputs["prediction"] == "categorical"
    assert classes.outputs.categorical["prediction"].tolist() == ["1", "0"]
    assert eta.outputs["prediction"] == "numeric"
    np.testing.assert_array_equal(values.outputs.numeric["prediction"], [np.nan])


def test_classes_with_probabilities_and_string_labels() -> None:
    schema = Schema()
    batch = schema.build(events(event(prediction="y", probabilities={"x": 0.1, "y": 0.9})))
    assert schema.outputs["prediction"] == "categorical"
    np.testing.assert_array_equal(batch.outputs.numeric["probability[y]"], [0.9])


def test_numeric_columns_do_not_depend_on_batching() -> None:
    # A bool or a numeric string in a numeric column is missing, whatever else is batched.
    schema = Schema()
    schema.build(events(event(features={"x": 1.0})))
    alone = schema.build(events(event(features={"x": True}), event(features={"x": "3.5"})))
    mixed = schema.build(
        events(
            event(features={"x": True}), event(features={"x": "3.5"}), event(features={"x": "oops"})
        )
    )
    np.testing.assert_array_equal(alone.features.numeric["x"], [np.nan, np.nan])
    np.testing.assert_array_equal(mixed.features.numeric["x"], [np.nan, np.nan, np.nan])


def test_absurd_magnitudes_are_missing() -> None:
    schema = Schema()
    batch = schema.build(
        events(
            event(features={"x": 1.5e308}),
            event(features={"x": -2e100}),
            event(features={"x": 5.0}),
        )
    )
    np.testing.assert_array_equal(batch.features.numeric["x"], [np.nan, np.nan, 5.0])


def test_event_time_and_concat() -> None:
    schema = Schema()
    first = schema.build(events(event(timestamp=1000, features={"x": 1.0})))
    second = schema.build(events(event(timestamp="1970-01-01T00:00:02Z", features={"c": "k"})))
    both = Batch.concat([first, second])
    np.testing.assert_array_equal(both.event_time, [1.0, 2.0])
    np.testing.assert_array_equal(both.features.numeric["x"], [1.0, np.nan])
    assert both.features.categorical["c"].tolist() == [None, "k"]
    assert both.take(np.array([1])).n == 1


def test_columns_are_capped() -> None:
    schema = Schema(max_columns=3)
    schema.build(events(event(features={"c": "x", "n" * 300: 1.0, "a": 1.0})))
    assert schema.ignored == 1  # a name over 256 characters
    batch = schema.build(events(event(features={"b": 1.0, "z": 2.0, "a": 3.0})))
    assert set(schema.features) == {"a", "b", "c"}
    assert schema.ignored == 2  # counted, not kept: ever-new names cannot grow the state
    assert set(batch.features.numeric) == {"a", "b"}
