"""The confluent-kafka source without a broker: librdkafka's delivery reports mapped to
acknowledgements and refusals, a producer failed for good replaced, no commit past an
unacknowledged dead letter."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry

from streamwatch.config import KafkaSettings
from streamwatch.observe.metrics import Metrics
from streamwatch.sources.base import Hooks
from streamwatch.sources.confluent import ConfluentSource, _DeadLetterProducer
from streamwatch.sources.dead_letters import Delivery, Letter

Report = Callable[[KafkaError | None, object], None]


class FakeProducer:
    """librdkafka's producer: delivery reports are served by poll and flush."""

    def __init__(self, raises: KafkaException | None = None) -> None:
        self.raises = raises
        self.reports: list[Report] = []
        self.answers: list[KafkaError | None] = []
        self.purged = False

    def produce(self, topic: str, value: bytes, headers: Any, on_delivery: Report) -> None:
        if self.raises is not None:
            raise self.raises
        self.reports.append(on_delivery)

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        while self.reports and self.answers:
            self.reports.pop(0)(self.answers.pop(0), None)
        return len(self.reports)

    def purge(self) -> None:
        self.purged = True


def letter() -> Letter:
    return Letter(b"x", [("streamwatch-reason", b"invalid_json")], 1, "t:0:1")


def producer_with(fake: FakeProducer) -> _DeadLetterProducer:
    producer = _DeadLetterProducer(KafkaSettings(client="confluent"), "dead")
    producer._producer = fake  # type: ignore[assignment]
    return producer


def test_delivery_reports_complete_the_deliveries() -> None:
    fake = FakeProducer()
    producer = producer_with(fake)
    ok, refused = Delivery(letter(), alone=True), Delivery(letter(), alone=True)
    producer.send(letter(), ok)
    producer.send(letter(), refused)
    fake.answers = [None, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)]
    producer.flush(1.0)
    assert (ok.done, ok.error) == (True, None)
    assert refused.done
    assert refused.error is not None
    assert producer.refused(refused.error)
    assert not producer.refused(KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT)))


def test_a_size_refusal_raised_by_produce_is_a_refusal() -> None:
    too_large = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    producer = producer_with(FakeProducer(raises=too_large))
    with pytest.raises(KafkaException) as raised:
        producer.send(letter(), Delivery(letter(), alone=True))
    assert producer.refused(raised.value)


def test_after_a_fatal_error_the_producer_is_purged_and_made_again() -> None:
    fake = FakeProducer()
    producer = producer_with(fake)
    lost = Delivery(letter(), alone=True)
    producer.send(letter(), lost)
    fake.answers = [KafkaError(KafkaError._FATAL, fatal=True)]
    producer.flush(1.0)
    assert lost.error is not None  # sent again by the dead letters, by a new producer
    assert fake.purged
    assert producer._producer is None


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[list[TopicPartition]] = []

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition("t", 0)]

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> list[TopicPartition]:
        self.commits.append(offsets)
        return offsets

    def close(self) -> None:
        pass


def test_no_commit_while_a_dead_letter_is_unacknowledged() -> None:
    settings = KafkaSettings(client="confluent", dlq_topic="dead")
    source = ConfluentSource(settings, Metrics(CollectorRegistry()), threading.Event(), Hooks())
    source.consumer.close()
    consumer = source.consumer = FakeConsumer()  # type: ignore[assignment]
    assert source.dead_letters is not None
    fake = FakeProducer()
    source.dead_letters.producer = producer_with(fake)
    source.dead_letters.clock = iter(range(100)).__next__  # each look: a second later
    source.dead_letters.sleep = lambda seconds: None
    delivery = Delivery(letter(), alone=True)
    source.dead_letters.producer.send(letter(), delivery)
    source.dead_letters.sent.append(delivery)  # sent, not answered yet

    assert not source.commit({("t", 0): 5})
    assert consumer.commits == []

    fake.answers = [None]
    assert source.commit({("t", 0): 5})
    ((committed,),) = consumer.commits
    assert (committed.topic, committed.partition, committed.offset) == ("t", 0, 5)
    assert source.metrics.total("streamwatch_dead_letters") == 1
