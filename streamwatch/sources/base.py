"""The Source protocol: batches of raw messages in; dead letters and commits out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from streamwatch.events import BadEvent, Origin

Message = tuple[bytes, Origin]
Offsets = Mapping[tuple[str, int], int]  # (topic, partition) -> next offset to process


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
