"""The Source protocol: batches of raw messages in, commits of what was processed out."""

from __future__ import annotations

from typing import Protocol

from streamwatch.events import Origin

Message = tuple[bytes, Origin]


class Source(Protocol):
    def poll(self, max_records: int) -> list[Message] | None:
        """Up to ``max_records`` messages; an empty list if none yet; ``None`` at the end."""
        ...

    def commit(self) -> None:
        """Everything polled so far is processed and may be skipped after a restart."""
        ...

    def close(self) -> None: ...
