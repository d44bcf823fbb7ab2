"""The kafka-python source without a broker: connection errors from poll waited out,
no commit past an unacknowledged dead letter, the producer's answers mapped."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import (
    IllegalStateError,
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnsupportedVersionError,
)
from kafka.future import Future
from prometheus_client import CollectorRegistry

from streamwatch.config import KafkaSettings
from streamwatch.observe.metrics import Metrics
from streamwatch.sources.base import Hooks
from streamwatch.sources.dead_letters import Delivery, Letter
from streamwatch.sources.kafka import KafkaSource, _DeadLetterProducer


class FakeConsumer:
    def __init__(self, polls: list[BaseException | dict[Any, Any]]) -> None:
        self.polls = polls
        self.commits: list[Any] = []

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        answer = self.polls.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", 0)}

    def highwater(self, tp: TopicPartition) -> int | None:
        return None

    def commit(self, offsets: Any, timeout_ms: int) -> None:
        self.commits.append(offsets)


class Waits(threading.Event):
    """A stopping event that records the pauses asked of it, without pausing."""

    def __init__(self) -> None:
        super().__init__()
        self.waited: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.append(timeout or 0.0)
        return False


def source(monkeypatch: pytest.MonkeyPatch, consumer: FakeConsumer, **settings: Any) -> KafkaSource:
    monkeypatch.setattr(KafkaSource, "_connect", lambda self: consumer)
    return KafkaSource(KafkaSettings(**settings), Metrics(CollectorRegistry()), Waits(), Hooks())


def test_connection_errors_from_poll_are_waited_out_with_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = KafkaConnectionError("111 ECONNREFUSED")
    consumer = FakeConsumer([refused, refused, KafkaTimeoutError(), refused, {}])
    kafka = source(monkeypatch, consumer)
    assert [kafka.poll(10).messages() for _ in range(5)] == [[], [], [], [], []]
    assert kafka.stopping.waited == [0.5, 1.0, 2.0, 4.0]  # type: ignore[attr-defined]
    assert kafka.outage.failures == 4


def test_an_error_that_is_not_about_reaching_kafka_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kafka = source(monkeypatch, FakeConsumer([UnsupportedVersionError("no")]))
    with pytest.raises(UnsupportedVersionError):
        kafka.poll(10)


def test_no_commit_while_a_dead_letter_is_unacknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FakeConsumer([])
    kafka = source(monkeypatch, consumer, dlq_topic="dead")
    assert kafka.dead_letters is not None
    unanswered = Delivery(Letter(b"x", [], 1, "t:0:1"), alone=True)
    kafka.dead_letters.sent.append(unanswered)
    kafka.dead_letters.clock = iter(range(100)).__next__  # each look: a second later
    kafka.dead_letters.sleep = lambda seconds: None
    monkeypatch.setattr(_DeadLetterProducer, "flush", lambda self, timeout: None)

    assert not kafka.commit({("t", 0): 5})
    assert consumer.commits == []

    unanswered.acknowledged()
    assert kafka.commit({("t", 0): 5})
    ((committed,),) = [list(c.items()) for c in consumer.commits]
    assert (committed[0], committed[1].offset) == (TopicPartition("t", 0), 5)
    assert kafka.metrics.total("streamwatch_dead_letters") == 1


class FakeKafkaProducer:
    def __init__(self, raises: BaseException | None = None) -> None:
        self.raises = raises
        self.futures: list[Future] = []
        self.closed = False

    def send(self, topic: str, value: bytes, headers: list[tuple[str, bytes]]) -> Future:
        if self.raises is not None:
            raise self.raises
        self.futures.append(Future())
        return self.futures[-1]

    def close(self, timeout: float) -> None:
        self.closed = True


def test_the_producers_answers_complete_the_deliveries() -> None:
    producer = _DeadLetterProducer(KafkaSettings(), "dead")
    fake = producer._producer = FakeKafkaProducer()
    letter = Letter(b"x", [], 1, "t:0:1")
    ok, refused = Delivery(letter, alone=True), Delivery(letter, alone=True)
    producer.send(letter, ok)
    producer.send(letter, refused)
    assert not ok.done
    fake.futures[0].success(None)
    fake.futures[1].failure(MessageSizeTooLargeError())
    assert (ok.done, ok.error) == (True, None)
    assert refused.done
    assert refused.error is not None
    assert producer.refused(refused.error)
    assert producer.refused(RecordListTooLargeError())
    assert not producer.refused(KafkaTimeoutError())


def test_a_producer_that_refuses_everything_is_replaced() -> None:
    producer = _DeadLetterProducer(KafkaSettings(), "dead")
    broken = FakeKafkaProducer(raises=IllegalStateError("closed"))
    producer._producer = broken
    with pytest.raises(IllegalStateError):
        producer.send(Letter(b"x", [], 1, "t:0:1"), Delivery(Letter(b"x", [], 1, ""), True))
    assert broken.closed
    assert producer._producer is None  # a new one at the next send
