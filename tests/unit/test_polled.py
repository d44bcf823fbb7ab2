"""A source's batch as columns (events/polled.py): runs of one partition, origins made
on demand, empty polls, tombstones, and taking some messages keeps their runs apart."""

from __future__ import annotations

import numpy as np

from streamwatch.events import Message, Origin, Polled


def test_a_client_batch_becomes_runs_of_one_partition_with_each_message_origin() -> None:
    polled = Polled.of_columns(
        [b"a", None, b"c", b"d", b"e"], ["t", "t", "u", "t", "t"], [0, 0, 0, 1, 1], [5, 6, 7, 8, 9]
    )
    assert polled.values == [b"a", b"", b"c", b"d", b"e"]  # a tombstone is an empty message
    assert (polled.topics, polled.partitions, polled.ends.tolist()) == (
        ["t", "u", "t"],
        [0, 0, 1],
        [2, 3, 5],
    )
    assert polled.origin(2) == Origin("u", 0, 7)
    assert polled.by_topic() == {"t": 4, "u": 1}
    assert polled.partition_of().tolist() == [0, 0, 0, 1, 1]


def test_an_empty_poll_has_no_runs() -> None:
    for empty in (Polled.of_columns([], [], [], []), Polled.of([]), Polled.of_runs([])):
        assert len(empty) == 0
        assert (empty.topics, empty.ends.tolist(), empty.messages()) == ([], [], [])


def test_messages_of_one_partition_in_a_row_are_one_run_and_taking_keeps_runs_apart() -> None:
    messages = [Message(b"x%d" % i, Origin("t", i // 3, i)) for i in range(7)]
    polled = Polled.of(messages)
    assert polled.ends.tolist() == [3, 6, 7]
    assert polled.messages() == messages
    taken = polled.take(np.array([0, 2, 5, 6]))
    assert taken.messages() == [messages[i] for i in (0, 2, 5, 6)]
    assert taken.ends.tolist() == [2, 3, 4]
    assert polled.take(np.ones(7, np.bool_)) is polled
