"""Positions: what was processed, what changed since the last checkpoint, what is durable.

The next offset to process per (topic, partition), and the partitions processed (or
otherwise changed) since their state was last written. Offsets of unchanged partitions
are durable: safe to commit.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np

from streamwatch.events import Offsets, Polled


class Positions:
    def __init__(self) -> None:
        self.next: Offsets = {}  # (topic, partition) -> the next offset to process
        self.changed: set[int] = set()  # partitions changed since their last checkpoint

    def unseen(self, polled: Polled) -> Polled:
        """The messages not processed before (a restart or rebalance redelivers some);
        the positions move past the batch, and the partitions that moved are changed."""
        positions, before = self.next, dict(self.next)
        fresh = np.ones(len(polled), np.bool_)
        start = 0
        for topic, partition, end in zip(
            polled.topics, polled.partitions, polled.ends.tolist(), strict=True
        ):
            key, offsets = (topic, partition), polled.offsets[start:end]
            new = fresh[start:end] = offsets >= before.get(key, -1)
            if new.any():
                positions[key] = max(positions.get(key, -1), int(offsets[new].max()) + 1)
            start = end
        # Per partition, not per message.
        self.changed.update(p for (t, p), o in positions.items() if o != before.get((t, p)))
        return polled if fresh.all() else polled.take(fresh)

    def update(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Resume from restored offsets."""
        self.next.update(offsets)

    def of(self, partitions: Collection[int] | None) -> Offsets:
        """The positions of ``partitions`` (``None``: every one)."""
        if partitions is None:
            return dict(self.next)
        return {tp: o for tp, o in self.next.items() if tp[1] in partitions}

    def saved(self, partitions: Collection[int] | None) -> None:
        """``partitions`` (``None``: every one) are written as they are now."""
        if partitions is None:
            self.changed.clear()
        else:
            self.changed -= set(partitions)

    def durable(self) -> Offsets:
        """The positions of partitions unchanged since their last checkpoint: to commit."""
        return {tp: o for tp, o in self.next.items() if tp[1] not in self.changed}

    def held(self) -> set[int]:
        """The partitions with a position."""
        return {p for _, p in self.next}

    def forget(self, partitions: Collection[int]) -> None:
        for tp in [tp for tp in self.next if tp[1] in partitions]:
            del self.next[tp]
        self.changed -= set(partitions)
