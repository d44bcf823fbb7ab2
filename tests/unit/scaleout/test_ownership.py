"""Ownership: alone everything is home and the state is one scope; scaled out a model is
kept with the first partition its events come through."""

from __future__ import annotations

from streamwatch.events import BadEvent, Decoded, Message, Origin, decode_batch
from streamwatch.scaleout.ownership import Alone, Ownership, Partitioned
from tests.factories import event, origins_of


def decoded(*events: tuple[str, int]) -> Decoded:
    """Events of (model, partition), in that order."""
    messages = [
        Message(event(f"e{k}", model_id=model), Origin("t", partition, k))
        for k, (model, partition) in enumerate(events)
    ]
    return decode_batch(messages, 1 << 20)


def test_alone_every_event_is_home_and_the_state_is_one_scope() -> None:
    alone: Ownership = Alone()
    bad: list[BadEvent] = []
    batch = decoded(("a", 0), ("a", 1), ("b", 2))
    assert alone.admit(batch, bad) is batch
    assert bad == []
    assert alone.due({0, 1}, None) is None  # the whole state
    assert alone.models([0]) is None  # every model
    assert alone.partitions(["a"]) == set()


def test_scaled_out_a_model_stays_with_its_first_partition_and_others_are_dead_letters() -> None:
    owned, bad = Partitioned(spread=frozenset({"s"}), limit=10), list[BadEvent]()
    kept = owned.admit(decoded(("a", 0), ("b", 1), ("a", 1), ("s", 0), ("s", 2)), bad)
    events, origins = kept.columns.events(), origins_of(kept.columns)
    assert [(e.model_id, o.partition) for e, o in zip(events, origins, strict=True)] == [
        ("a", 0),
        ("b", 1),
        ("s", 0),
        ("s", 2),
    ]
    assert [(b.reason, b.origin.partition) for b in bad] == [("model_spread", 1)]
    assert "kept with partition 0" in bad[0].detail
    assert owned.homes == {"a": 0, "b": 1}  # a spread model has no home of its own
    assert owned.models([1]) == ["b"]
    assert owned.partitions(["a", "b", "gone"]) == {0, 1}


def test_scaled_out_only_changed_partitions_are_due() -> None:
    owned = Partitioned(spread=frozenset(), limit=10)
    assert owned.due({3, 1}, None) == [1, 3]
    assert owned.due({3, 1}, [1, 2]) == [1]


def test_past_the_model_limit_no_home_is_taken() -> None:
    owned, bad = Partitioned(spread=frozenset(), limit=1), list[BadEvent]()
    kept = owned.admit(decoded(("a", 0), ("b", 1)), bad)
    assert kept.columns.n == 2  # b is refused later, as model_limit
    assert owned.homes == {"a": 0}
