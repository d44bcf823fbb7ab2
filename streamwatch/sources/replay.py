"""Replay JSONL files (plain or gzip), one event per line, through the same engine."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Generator, Sequence
from operator import methodcaller
from pathlib import Path
from typing import IO

from streamwatch.errors import SourceError
from streamwatch.events import BadEvent, Polled
from streamwatch.sources.base import Offsets

_STRIP = methodcaller("rstrip", b"\r\n")


def open_lines(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]  # it is an IO[bytes]
    return path.open("rb")


class Files:
    """What every source of files does with bad events, dead letters and commits."""

    def dead_letter(self, bad: Sequence[BadEvent]) -> None:
        """A replay reports bad events in its summary; the file itself keeps them."""

    def settle(self) -> bool:
        """Nothing is sent anywhere."""
        return True

    def commit(self, offsets: Offsets) -> bool:
        """A file needs no commit: a replay always starts from the beginning."""
        return True


class ReplaySource(Files):
    """Messages from files in order; the origin is (file path, 0, line number)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise SourceError(f"no such file: {', '.join(missing)}")
        self.paths = list(paths)
        self._messages = self._read()
        next(self._messages)
        self.done = False

    def _read(self) -> Generator[tuple[str, int, list[bytes], list[int]], int]:
        """Runs of lines (file, 0, lines, line numbers), blank lines left out; sent how
        many lines the next run may hold at most."""
        most = yield ("", 0, [], [])
        for path in self.paths:
            with open_lines(path) as lines:
                number = 0
                while chunk := list(itertools.islice(lines, most)):
                    numbers = list(range(number + 1, number + 1 + len(chunk)))
                    number += len(chunk)
                    stripped = list(map(_STRIP, chunk))
                    blank = list(map(bytes.strip, stripped))
                    if b"" in blank:
                        numbers = [k for k, b in zip(numbers, blank, strict=True) if b]
                        stripped = [raw for raw, b in zip(stripped, blank, strict=True) if b]
                    most = yield (str(path), 0, stripped, numbers)

    def poll(self, max_records: int) -> Polled | None:
        if self.done:
            return None
        runs: list[tuple[str, int, list[bytes], list[int]]] = []
        count = 0
        try:
            while count < max_records:
                run = self._messages.send(max_records - count)
                runs.append(run)
                count += len(run[2])
        except StopIteration:
            self.done = True
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise SourceError(f"cannot read {self.paths}: {exc}") from exc
        return Polled.of_runs(runs) if count or not self.done else None

    def close(self) -> None:
        self._messages.close()
