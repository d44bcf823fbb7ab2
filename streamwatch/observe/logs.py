"""JSON log lines, and a rate limit for messages that could repeat by the thousand.

Every line is masked on the way out (``redact.text``): URLs keep their host but not their
credentials, query values or webhook path, and ``token=...`` pairs lose their value,
wherever they are (the message, ``extra`` fields, an exception's text).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec

from streamwatch.observe import redact

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(_masked(line), enc_hook=_masked_str).decode()


def _masked(value: Any) -> Any:
    """``value`` with the secrets in its text masked, through lists and mappings."""
    if isinstance(value, str):
        return redact.text(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    return value


def _masked_str(value: Any) -> str:
    return redact.text(str(value))  # what msgspec cannot encode, as masked text


class FirstOnly(logging.Filter):
    """Lets the first record whose message holds ``marker`` through, and no later one."""

    def __init__(self, marker: str, note: str) -> None:
        super().__init__()
        self.marker = marker
        self.note = note
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.marker not in record.getMessage():
            return True
        if self.seen:
            return False
        self.seen = True
        record.msg, record.args = f"{record.getMessage()} ({self.note})", None
        return True


# kafka-python 3 warns each time one step of a task on its IO loop runs over 0.1 s, which
# on a busy machine is all day long, and its threshold is not a consumer setting. Once
# tells an operator what they need to know.
SLOW_TASK_LOGGER = "kafka.net.selector"
_SLOW_TASK = FirstOnly("is blocking the event loop", "logged once per process")


def configure(level: str = "INFO", stream: TextIO = sys.stderr) -> None:
    """JSON lines for streamwatch at ``level``, and for libraries (kafka-python, ...)
    at warning and above, so that every line on the stream parses."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("streamwatch").setLevel(level)
    logging.getLogger(SLOW_TASK_LOGGER).addFilter(_SLOW_TASK)  # added once, however often


class RateLimited:
    """Lets one message per key through every ``interval`` seconds; counts the rest."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """``None`` to stay quiet, else how many were suppressed since the last one."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)
