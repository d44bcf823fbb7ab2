"""Replay JSONL files (plain or gzip), one event per line, through the same engine."""

from __future__ import annotations

import gzip
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import IO

from streamwatch.errors import SourceError
from streamwatch.events import BadEvent, Origin
from streamwatch.sources.base import Message, Offsets


def open_lines(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]  # it is an IO[bytes]
    return path.open("rb")


class ReplaySource:
    """Messages from files in order; the origin is (file path, 0, line number)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise SourceError(f"no such file: {', '.join(missing)}")
        self.paths = list(paths)
        self._messages = self._read()
        self.done = False

    def _read(self) -> Generator[Message]:
        for path in self.paths:
            with open_lines(path) as lines:
                for number, raw in enumerate(lines, start=1):
                    if raw.strip():
                        yield Message(raw.rstrip(b"\r\n"), Origin(str(path), 0, number))

    def poll(self, max_records: int) -> list[Message] | None:
        if self.done:
            return None
        batch: list[Message] = []
        try:
            for message in self._messages:
                batch.append(message)
                if len(batch) == max_records:
                    break
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise SourceError(f"cannot read {self.paths}: {exc}") from exc
        if len(batch) < max_records:
            self.done = True
        return batch if batch or not self.done else None

    def dead_letter(self, bad: Sequence[BadEvent]) -> None:
        """A replay reports bad lines in its summary; the file itself keeps them."""

    def settle(self) -> bool:
        """Nothing is sent anywhere."""
        return True

    def commit(self, offsets: Offsets) -> bool:
        """A file needs no commit: a replay always starts from the beginning."""
        return True

    def close(self) -> None:
        self._messages.close()
