"""Positions: what was processed, what changed since the last checkpoint, what is durable."""

from __future__ import annotations

from streamwatch.events import Message, Origin, Polled
from streamwatch.pipeline.positions import Positions


def messages(*offsets: tuple[int, int]) -> list[Message]:
    """Messages of topic "t" at (partition, offset)."""
    return [Message(b"{}", Origin("t", p, o)) for p, o in offsets]


def batch(*offsets: tuple[int, int]) -> Polled:
    return Polled.of(messages(*offsets))


def test_a_redelivered_message_is_skipped_and_the_positions_move_past_the_batch() -> None:
    positions = Positions()
    assert positions.unseen(batch((0, 0), (0, 1), (1, 5))).messages() == messages(
        (0, 0), (0, 1), (1, 5)
    )
    assert positions.next == {("t", 0): 2, ("t", 1): 6}
    # After a restart or rebalance, some come again: only what is past the positions stays.
    assert positions.unseen(batch((0, 1), (0, 2), (1, 4))).messages() == messages((0, 2))
    assert positions.next == {("t", 0): 3, ("t", 1): 6}


def test_only_changed_partitions_hold_back_their_offsets_from_the_commit() -> None:
    positions = Positions()
    positions.unseen(batch((0, 0), (1, 0)))
    assert positions.changed == {0, 1}
    assert positions.durable() == {}
    positions.saved([1])
    assert positions.durable() == {("t", 1): 1}
    positions.unseen(batch((1, 0)))  # nothing new on 1: it stays saved
    assert positions.changed == {0}
    positions.saved(None)  # the whole state written
    assert positions.durable() == {("t", 0): 1, ("t", 1): 1}


def test_restored_positions_are_resumed_and_forgotten_partitions_leave() -> None:
    positions = Positions()
    positions.update({("t", 0): 10, ("t", 1): 3, ("p", 1): 7})
    assert positions.unseen(batch((0, 9), (0, 10))).messages() == messages((0, 10))
    assert positions.held() == {0, 1}
    assert positions.of([1]) == {("t", 1): 3, ("p", 1): 7}
    positions.forget([1])
    assert positions.next == {("t", 0): 11}
    assert positions.changed == {0}
