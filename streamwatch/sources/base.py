"""The Source protocol: batches of raw messages in; dead letters and commits out."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streamwatch.events import BadEvent, Message, Offsets, Polled
from streamwatch.observe.logs import RateLimited

log = logging.getLogger("streamwatch.kafka")

__all__ = ["Hooks", "Message", "Offsets", "Outage", "Source"]


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
    def poll(self, max_records: int) -> Polled | Sequence[Message] | None:
        """Up to ``max_records`` messages; an empty list if none yet; ``None`` at the end."""
        ...

    def dead_letter(self, bad: Sequence[BadEvent]) -> None:
        """Keep bad messages where they can be inspected (a dead-letter topic)."""
        ...

    def settle(self) -> bool:
        """Whether every dead letter sent so far is durable (sent again for a while if
        not): a checkpoint may then cover the bad messages."""
        ...

    def commit(self, offsets: Offsets) -> bool:
        """Everything before these offsets is processed (and checkpointed): skip it after
        a restart. Dead letters sent so far must be durable before this returns. False
        if the commit failed (it is tried again at the next checkpoint)."""
        ...

    def close(self) -> None: ...


@dataclass
class Outage:
    """Connection errors of a Kafka client (the broker gone, or restarting): each waited
    out with a pause that doubles up to ``longest`` seconds, so that the loop goes on
    (and ``/livez`` with it: a restart would not bring the broker back), and logged at
    most once per operation every 10 s; one line more when the cluster answers again.
    Errors that are not about reaching the cluster are raised, not retried."""

    stopping: threading.Event
    first: float = 0.5
    longest: float = 5.0  # well below SERVER__LIVENESS_TIMEOUT
    since: float | None = None
    failures: int = 0
    pause: float = 0.0
    _log: RateLimited = field(default_factory=RateLimited)

    def failed(self, operation: str, error: BaseException, wait: bool = True) -> None:
        """Log the error; with ``wait``, pause before the next attempt."""
        if self.since is None:
            self.since, self.pause = time.monotonic(), self.first
        self.failures += 1
        suppressed = self._log.allow(operation)
        if suppressed is not None:
            log.warning(
                "Kafka request failed; retrying",
                extra={
                    "operation": operation,
                    "error": str(error),
                    "retry_in_seconds": self.pause if wait else None,
                    "suppressed_since_last": suppressed,
                },
            )
        if wait:
            self.stopping.wait(self.pause)
            self.pause = min(self.pause * 2, self.longest)

    def over(self) -> None:
        """The cluster answered."""
        if self.since is None:
            return
        log.info(
            "Kafka reachable again",
            extra={
                "failures": self.failures,
                "seconds": round(time.monotonic() - self.since, 3),
            },
        )
        self.since, self.failures = None, 0
