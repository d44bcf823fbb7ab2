"""Dead letters that are never lost: sent, acknowledged, sent again, or stubbed.

Both Kafka clients share this; each wraps its producer in a small :class:`Producer`.
A dead letter counts (``streamwatch_dead_letters_total``) once the broker has
acknowledged it, and :meth:`DeadLetters.settle` says whether every one so far has been,
so that a source commits no offset a lost dead letter would be skipped by.

A letter the topic refuses whole (larger than its ``max.message.bytes``, or than the
producer's request limit) is sent as a stub instead: the same headers, the original
size, and the first :data:`STUB_BYTES` of the value. A client may fail what was sent
along with a refused record with the same size error (kafka-python's idempotent
producer fails everything queued behind it): a size error is taken as the letter's own
only when it was sent alone; the others are sent again whole, the largest alone first
(the likely culprit). Any other failure is sent again, with backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from streamwatch.config import KafkaSettings
from streamwatch.events import BadEvent
from streamwatch.observe.logs import RateLimited
from streamwatch.observe.metrics import Metrics

log = logging.getLogger("streamwatch.kafka")

DETAIL_CHARS = 1000
STUB_BYTES = 4096  # of a refused message's value, kept in its stub
# What a letter's producer takes beyond the value: headers and the batch's framing.
HEADER_ROOM = 64 << 10
RETRY_FIRST, RETRY_MAX = 0.1, 2.0  # seconds between rounds of sending failures again


@dataclass(slots=True)
class Letter:
    """One dead letter: the message (or its stub) and the headers saying why."""

    value: bytes
    headers: list[tuple[str, bytes]]
    size: int  # of the message as it came
    origin: str  # topic:partition:offset, for logs

    @property
    def stub(self) -> bool:
        return len(self.value) < self.size

    @property
    def bytes(self) -> int:
        return len(self.value) + sum(len(k) + len(v) for k, v in self.headers)

    def stubbed(self) -> Letter:
        return Letter(self.value[:STUB_BYTES], self.headers, self.size, self.origin)


@dataclass(slots=True)
class Delivery:
    """The broker's answer about one letter, filled in by the client (any thread)."""

    letter: Letter
    alone: bool  # nothing else was in flight: a size error is the letter's own
    done: bool = False
    error: BaseException | None = None

    def acknowledged(self, _: object = None) -> None:
        self.done = True

    def failed(self, error: BaseException) -> None:
        self.error = error  # before done: a reader that sees done sees the error
        self.done = True


class Producer(Protocol):
    """A client's producer to the dead-letter topic, made on first use (and made again
    after a fatal error)."""

    def send(self, letter: Letter, delivery: Delivery) -> None:
        """Hand the letter over; ``delivery`` is completed once the broker answers.
        May raise (the letter is then not sent)."""
        ...

    def flush(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the answers to what was sent. May raise."""
        ...

    def refused(self, error: BaseException) -> bool:
        """Whether ``error`` says a record is too large (for the producer or the topic)."""
        ...

    def close(self, timeout: float) -> None: ...


def dead_letter_headers(event: BadEvent, failed_at: str) -> list[tuple[str, bytes]]:
    """Why and where from: a dead letter's headers (its value is the message, unchanged,
    unless it is a stub: then shorter than ``streamwatch-original-size``)."""
    return [
        ("streamwatch-reason", event.reason.encode()),
        ("streamwatch-detail", event.detail[:DETAIL_CHARS].encode()),
        ("streamwatch-source-topic", event.origin.topic.encode()),
        ("streamwatch-source-partition", str(event.origin.partition).encode()),
        ("streamwatch-source-offset", str(event.origin.offset).encode()),
        ("streamwatch-failed-at", failed_at.encode()),
        ("streamwatch-original-size", str(len(event.raw)).encode()),
    ]


@dataclass
class DeadLetters:
    """Dead letters on their way to the topic, until each is acknowledged.

    ``limit`` is the largest letter sent whole (value and headers); larger ones go as
    stubs at once. It starts at what the source fetches, and comes down to below the
    first letter the topic refuses, so that later ones do not make the same round trip.
    """

    producer: Producer
    metrics: Metrics
    limit: int
    unsent: list[Letter] = field(default_factory=list)
    suspects: list[Letter] = field(default_factory=list)  # refused in company: whose fault?
    sent: list[Delivery] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], object] = time.sleep
    _log: RateLimited = field(default_factory=RateLimited)

    @property
    def pending(self) -> int:
        return len(self.unsent) + len(self.suspects) + len(self.sent)

    def add(self, bad: Sequence[BadEvent]) -> None:
        now = datetime.now(UTC).isoformat()
        self.unsent += [
            Letter(e.raw, dead_letter_headers(e, now), len(e.raw), _origin(e)) for e in bad
        ]

    def send(self, bad: Sequence[BadEvent], wait: float) -> None:
        """Add them, and wait up to ``wait`` seconds until every letter is acknowledged:
        the next checkpoint covers their offsets, and a restart resumes from it."""
        self.add(bad)
        self.settle(wait)

    def settle(self, timeout: float) -> bool:
        """Send what is not yet acknowledged and wait for the answers, sending failures
        again with backoff, until every letter is acknowledged (True) or ``timeout``
        seconds have passed (False: the rest stay pending). Never raises."""
        deadline = self.clock() + timeout
        pause = RETRY_FIRST
        while True:
            self._send()
            flushed = self._flush(deadline)
            failures = self._answers()
            if not self.pending:
                return True
            left = deadline - self.clock()
            if left <= 0:
                return False
            if failures or not flushed:  # the broker or the network: give it a moment
                self.sleep(min(pause, left))
                pause = min(pause * 2, RETRY_MAX)

    def _send(self) -> None:
        if self.suspects:
            if self.sent:  # answers outstanding: the suspect would not be alone
                return
            largest = max(self.suspects, key=lambda letter: letter.bytes)
            self.suspects.remove(largest)
            self.unsent += self.suspects  # sent together once it is answered
            self.suspects = []
            batch = [largest]
        else:
            batch, self.unsent = self.unsent, []
        alone = len(batch) == 1 and not self.sent
        for letter in batch:
            whole = letter.bytes <= self.limit or letter.stub
            self._hand_over(letter if whole else letter.stubbed(), alone)

    def _hand_over(self, letter: Letter, alone: bool) -> None:
        delivery = Delivery(letter, alone)
        try:
            self.producer.send(letter, delivery)
        except Exception as exc:  # raised before it left: as if the broker had said so
            delivery.failed(exc)
            delivery.alone = True  # the producer judged this letter, not a batch
        self.sent.append(delivery)

    def _flush(self, deadline: float) -> bool:
        """Wait for the answers; False if the producer gave up before they all came."""
        if all(d.done for d in self.sent):
            return True
        try:
            self.producer.flush(max(deadline - self.clock(), 0.0))
        except Exception as exc:  # a timeout: the letters still out are looked at again
            self._warn("flush", "dead letters not acknowledged yet", exc)
            return False
        return all(d.done for d in self.sent)

    def _answers(self) -> int:
        """Take in the answers: count the acknowledged, stub what the topic refuses, keep
        the rest to send again. Return how many failed for other reasons."""
        acknowledged, failures, waiting = 0, 0, []
        for delivery in self.sent:
            letter, error = delivery.letter, delivery.error
            if not delivery.done:
                waiting.append(delivery)
            elif error is None:
                acknowledged += 1
            elif self.producer.refused(error) and len(letter.value) > STUB_BYTES:
                if delivery.alone:
                    self._stub(letter, error)
                else:
                    self.suspects.append(letter)
            else:
                failures += 1
                self.unsent.append(letter)
                self._warn("retry", "dead letter not acknowledged; sending it again", error)
        self.sent = waiting
        self.metrics.dead_letters.inc(acknowledged)
        return failures

    def _stub(self, letter: Letter, error: BaseException) -> None:
        self.limit = min(self.limit, letter.bytes - 1)
        self.unsent.append(letter.stubbed())
        suppressed = self._log.allow("stub")
        if suppressed is not None:
            log.warning(
                "dead letter refused whole; sent as a stub",
                extra={
                    "error": str(error),
                    "bytes": letter.size,
                    "origin": letter.origin,
                    "suppressed_since_last": suppressed,
                },
            )

    def _warn(self, key: str, message: str, error: BaseException) -> None:
        suppressed = self._log.allow(key)
        if suppressed is not None:
            log.warning(
                message,
                extra={
                    "error": str(error),
                    "pending": self.pending,
                    "suppressed_since_last": suppressed,
                },
            )

    def close(self, timeout: float) -> None:
        """Settle what is pending within ``timeout`` seconds, then close the producer."""
        started = self.clock()
        if self.pending and not self.settle(timeout):
            log.error(
                "dead letters not acknowledged at exit",
                extra={"pending": self.pending},
            )
        try:
            self.producer.close(max(timeout - (self.clock() - started), 0.0))
        except Exception as exc:  # closing: nothing more to do about it
            log.warning("dead-letter producer not closed cleanly", extra={"error": str(exc)})


def dead_letters_of(
    settings: KafkaSettings, producer: Callable[[KafkaSettings, str], Producer], metrics: Metrics
) -> DeadLetters | None:
    """The dead letters of ``settings.dlq_topic``, through a client's ``producer``."""
    if settings.dlq_topic is None:
        return None
    return DeadLetters(producer(settings, settings.dlq_topic), metrics, settings.max_fetch_bytes)


def settled(dead_letters: DeadLetters | None, timeout: float) -> bool:
    """Whether every dead letter is acknowledged, after up to ``timeout`` seconds of
    sending them again; if not, it says so (a source then commits no offset)."""
    if dead_letters is None or dead_letters.settle(timeout):
        return True
    suppressed = dead_letters._log.allow("commit")
    if suppressed is not None:
        log.error(
            "dead letters not acknowledged; offsets not committed",
            extra={"pending": dead_letters.pending, "suppressed_since_last": suppressed},
        )
    return False


def _origin(event: BadEvent) -> str:
    return f"{event.origin.topic}:{event.origin.partition}:{event.origin.offset}"
