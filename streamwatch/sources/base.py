"""The Source protocol: batches of raw messages in; dead letters and commits out."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from streamwatch.events import BadEvent, Origin

Message = tuple[bytes, Origin]
Offsets = Mapping[tuple[str, int], int]  # (topic, partition) -> next offset to process


def _nothing(partitions: Collection[int]) -> Offsets:
    return {}


@dataclass(frozen=True, slots=True)
class Hooks:
    """What a Kafka source asks of the engine when partitions move. ``revoked``,
    ``assigned`` and ``lost`` take the partition numbers that move and return the
    offsets to commit, or to resume from (``assigned`` unset: the known positions)."""

    positions: Callable[[], Offsets] = dict  # the next offset to process, per partition
    revoked: Callable[[Collection[int]], Offsets] = _nothing
    assigned: Callable[[Collection[int]], Offsets] | None = None
    lost: Callable[[Collection[int]], Offsets] = _nothing
    partitioned: bool = False  # scaled out (kafka-python only): cooperative rebalancing

    def resume(self, partitions: Collection[int]) -> Offsets:
        return self.positions() if self.assigned is None else self.assigned(partitions)


class Source(Protocol):
    def poll(self, max_records: int) -> list[Message] | None:
        """Up to ``max_records`` messages; an empty list if none yet; ``None`` at the end."""
        ...

    def dead_letter(self, bad: Sequence[BadEvent]) -> None:
        """Keep bad messages where they can be inspected (a dead-letter topic)."""
        ...

    def commit(self, offsets: Offsets) -> bool:
        """Everything before these offsets is processed (and checkpointed): skip it after
        a restart. Dead letters sent so far must be durable before this returns. False
        if the commit failed (it is tried again at the next checkpoint)."""
        ...

    def close(self) -> None: ...
