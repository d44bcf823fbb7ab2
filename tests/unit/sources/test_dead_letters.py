"""Dead letters: acknowledged before they count, sent again when they fail, stubbed when
the topic refuses them whole. Against a small fake producer (the real brokers are in
tests/integration/test_dead_letters.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from streamwatch.events import BadEvent, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.sources.dead_letters import (
    STUB_BYTES,
    DeadLetters,
    Delivery,
    Letter,
    settled,
)


class TooLargeError(Exception):
    """The fake's "record too large"."""


class DownError(Exception):
    """The fake's "broker not reachable"."""


Answer = Callable[[Letter, int], BaseException | None]  # (letter, index in its round)


@dataclass
class FakeProducer:
    """Answers at flush, each letter by ``answer``; keeps what it acknowledged."""

    answer: Answer = lambda letter, index: None
    limit: int = 1 << 30  # a letter larger raises in send, as a producer's own limit does
    down: int = 0  # the next sends raise DownError
    silent: bool = False  # flush gives no answer (a broker that does not reply)
    kept: list[Letter] = field(default_factory=list)
    round: list[tuple[Letter, Delivery]] = field(default_factory=list)
    sends: int = 0
    closed: bool = False

    def send(self, letter: Letter, delivery: Delivery) -> None:
        self.sends += 1
        if self.down:
            self.down -= 1
            raise DownError("connection refused")
        if letter.bytes > self.limit:
            raise TooLargeError(f"{letter.bytes} bytes")
        self.round.append((letter, delivery))

    def flush(self, timeout: float) -> None:
        if self.silent:
            return
        for index, (letter, delivery) in enumerate(self.round):
            error = self.answer(letter, index)
            if error is None:
                self.kept.append(letter)
                delivery.acknowledged()
            else:
                delivery.failed(error)
        self.round = []

    def refused(self, error: BaseException) -> bool:
        return isinstance(error, TooLargeError)

    def close(self, timeout: float) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def bad(offset: int, raw: bytes = b"not json", reason: str = "invalid_json") -> BadEvent:
    return BadEvent(reason, "why", raw, Origin("predictions", 3, offset))  # type: ignore[arg-type]


def dead_letters(producer: FakeProducer, limit: int = 1 << 20) -> tuple[DeadLetters, Metrics]:
    metrics = Metrics(CollectorRegistry())
    clock = Clock()
    return DeadLetters(producer, metrics, limit, clock=clock, sleep=clock.sleep), metrics


def counted(metrics: Metrics) -> int:
    return metrics.total("streamwatch_dead_letters")


def topic_limit(limit: int) -> Answer:
    """A topic that refuses letters larger than ``limit``."""
    return lambda letter, index: TooLargeError("topic") if letter.bytes > limit else None


def test_every_letter_is_counted_once_acknowledged_with_its_headers() -> None:
    producer = FakeProducer()
    letters, metrics = dead_letters(producer)
    letters.add([bad(7), bad(8, b"")])
    assert counted(metrics) == 0  # handed over is not acknowledged

    assert letters.settle(5.0)
    assert counted(metrics) == 2
    assert letters.pending == 0
    first = dict(producer.kept[0].headers)
    assert first["streamwatch-reason"] == b"invalid_json"
    assert first["streamwatch-source-topic"] == b"predictions"
    assert first["streamwatch-source-partition"] == b"3"
    assert first["streamwatch-source-offset"] == b"7"
    assert first["streamwatch-original-size"] == b"8"
    assert first["streamwatch-failed-at"].startswith(b"20")
    assert [letter.value for letter in producer.kept] == [b"not json", b""]


def test_a_letter_past_the_limit_goes_as_a_stub_without_a_try() -> None:
    producer = FakeProducer()
    letters, metrics = dead_letters(producer, limit=10_000)
    pill = b"{" + b"x" * 20_000
    letters.add([bad(1, pill, "too_large")])
    assert letters.settle(5.0)

    (stub,) = producer.kept
    assert producer.sends == 1
    assert stub.value == pill[:STUB_BYTES]
    headers = dict(stub.headers)
    assert headers["streamwatch-original-size"] == b"20001"
    assert headers["streamwatch-reason"] == b"too_large"
    assert headers["streamwatch-source-offset"] == b"1"
    assert counted(metrics) == 1


def test_a_letter_the_producer_refuses_when_sent_is_stubbed_not_raised() -> None:
    producer = FakeProducer(limit=10_000)  # smaller than the dead letters' own limit
    letters, metrics = dead_letters(producer)
    letters.add([bad(1, b"y" * 50_000), bad(2)])
    assert letters.settle(5.0)
    assert sorted(len(letter.value) for letter in producer.kept) == [8, STUB_BYTES]
    assert counted(metrics) == 2


def test_refused_in_company_each_is_sent_again_and_only_the_culprit_is_stubbed() -> None:
    """As kafka-python's idempotent producer does: everything sent with a refused record
    fails with the same size error."""
    limit = 100_000

    def batch_aborted(letter: Letter, index: int) -> BaseException | None:
        return TooLargeError("batch") if any(x.bytes > limit for x, _ in producer.round) else None

    producer = FakeProducer(answer=batch_aborted)
    letters, metrics = dead_letters(producer)
    big = b"[" + b"1," * 1_000_000 + b"1]"
    junk = [bad(k, b"x" * (5000 + k)) for k in range(1, 51)]  # larger than a stub, too
    letters.add([bad(0, big, "too_large"), *junk, *[bad(k) for k in range(51, 1001)]])
    assert letters.settle(30.0)

    assert len(producer.kept) == 1001  # every one, once
    by_offset = {dict(x.headers)["streamwatch-source-offset"]: x for x in producer.kept}
    assert len(by_offset) == 1001
    assert by_offset[b"0"].value == big[:STUB_BYTES]
    assert all(by_offset[str(k).encode()].value == b"x" * (5000 + k) for k in range(1, 51))
    assert counted(metrics) == 1001
    assert letters.limit < len(big)  # learnt: the next one this large is not tried whole


def test_after_a_refusal_larger_letters_go_as_stubs_at_once() -> None:
    producer = FakeProducer(answer=topic_limit(1_000_000))
    letters, _ = dead_letters(producer, limit=16 << 20)
    letters.add([bad(1, b"a" * 2_000_000)])
    assert letters.settle(5.0)
    sends = producer.sends
    letters.add([bad(2, b"b" * 3_000_000)])
    assert letters.settle(5.0)
    assert producer.sends == sends + 1  # straight to the stub
    assert [len(x.value) for x in producer.kept] == [STUB_BYTES, STUB_BYTES]


def test_failures_are_sent_again_with_backoff_until_acknowledged() -> None:
    failures = {"left": 3}

    def flaky(letter: Letter, index: int) -> BaseException | None:
        if failures["left"]:
            failures["left"] -= 1
            return DownError("not enough replicas")
        return None

    producer = FakeProducer(answer=flaky, down=2)  # and the first two sends raise
    letters, metrics = dead_letters(producer)
    letters.add([bad(1)])
    assert letters.settle(60.0)
    assert len(producer.kept) == 1
    assert counted(metrics) == 1
    clock = letters.sleep.__self__  # type: ignore[attr-defined]
    assert clock.slept == [0.1, 0.2, 0.4, 0.8, 1.6]  # doubling, up to 2 s


def test_unacknowledged_letters_stay_pending_and_are_not_counted() -> None:
    producer = FakeProducer(silent=True)
    letters, metrics = dead_letters(producer)
    letters.add([bad(1), bad(2)])
    assert not letters.settle(3.0)
    assert letters.pending == 2
    assert counted(metrics) == 0
    assert not settled(letters, 1.0)  # what a source asks before it commits

    producer.silent = False  # the broker answers again
    assert settled(letters, 1.0)
    assert counted(metrics) == 2
    assert len(producer.kept) == 2  # not sent twice


def test_a_topic_that_refuses_even_a_stub_keeps_it_pending_without_spinning() -> None:
    producer = FakeProducer(answer=topic_limit(10))
    letters, metrics = dead_letters(producer)
    letters.add([bad(1, b"z" * 100)])
    assert not letters.settle(10.0)
    assert letters.pending == 1
    assert counted(metrics) == 0
    clock = letters.sleep.__self__  # type: ignore[attr-defined]
    assert sum(clock.slept) == pytest.approx(10.0)  # backed off, not a busy loop


def test_close_settles_what_is_pending_then_closes_the_producer() -> None:
    producer = FakeProducer()
    letters, metrics = dead_letters(producer)
    letters.add([bad(1)])
    letters.close(3.0)
    assert producer.closed
    assert counted(metrics) == 1


def test_no_dead_letter_topic_is_settled() -> None:
    assert settled(None, 0.0)
