"""``kind=review``: review requests, on a Kafka topic keyed by event id or appended to a
file (for replays), each request once. Alerts are not for these sinks: the router gives
them none, and one sent by hand fails without a retry.

The outbox records a delivery after the sink returns, so a process killed between the
broker's acknowledgement (or the file's append) and that record would send the request
again after its restart. A file sink finds the id among the file's last lines; a topic
sink reads the topic's last records once, at its first request after a start, and does
not produce a request whose id is there (the outbox delivers a sink's rows one at a
time, so the one a kill interrupted is among each partition's last few).
"""

from __future__ import annotations

import time

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from streamwatch.alerting.policy import Notification
from streamwatch.config import KafkaSettings, KafkaSinkSettings, ReviewSinkSettings
from streamwatch.review.request import ReviewRequest
from streamwatch.sinks.base import Delivered, DeliveryFailed, DeliveryResult, ReviewSink
from streamwatch.sinks.file import FileSink
from streamwatch.sinks.kafka import KafkaSink

REVIEW_HEADER = "streamwatch-review-id"
RECENT = 256  # records per partition read back at the first request after a start


class ReviewTopic(KafkaSink):
    def __init__(self, name: str, settings: KafkaSinkSettings, kafka: KafkaSettings) -> None:
        super().__init__(name, settings, kafka)
        self._recent: set[str] | None = None  # ids at the topic's end, once read

    def send(self, notification: Notification) -> DeliveryResult:
        return _no_alerts(self.name)

    def request(self, request: ReviewRequest) -> DeliveryResult:
        if self._recent is None:
            try:
                self._recent = self._tail()
            except KafkaError as exc:
                return DeliveryFailed(self.name, f"cannot read {self.topic}'s end: {exc}", True)
        if request.id in self._recent:
            self._recent.discard(request.id)
            return Delivered(self.name)
        headers = [(REVIEW_HEADER, request.id.encode())]
        return self.produce([(request.event_id.encode(), request.encode(), headers)])

    def _tail(self) -> set[str]:
        """The request ids among the last ``RECENT`` records of each partition."""
        consumer = KafkaConsumer(**self.client, enable_auto_commit=False)
        try:
            partitions = consumer.partitions_for_topic(self.topic) or set()
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            if not assigned:
                return set()
            consumer.assign(assigned)
            ends = consumer.end_offsets(assigned)
            starts = consumer.beginning_offsets(assigned)
            for tp in assigned:
                consumer.seek(tp, max(ends[tp] - RECENT, starts[tp]))
            ids: set[str] = set()
            deadline = time.monotonic() + self.timeout
            while any(consumer.position(tp) < ends[tp] for tp in assigned):
                if time.monotonic() > deadline:
                    raise KafkaError(f"its last records were not read within {self.timeout:g} s")
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        ids.update(v.decode() for k, v in record.headers if k == REVIEW_HEADER)
            return ids
        finally:
            consumer.close()


class ReviewFile(FileSink):
    def send(self, notification: Notification) -> DeliveryResult:
        return _no_alerts(self.name)

    def request(self, request: ReviewRequest) -> DeliveryResult:
        return self.append(request.id, request.encode())


def review_sink(name: str, settings: ReviewSinkSettings, kafka: KafkaSettings) -> ReviewSink:
    if settings.path is not None:
        return ReviewFile(name, settings.path)
    assert settings.topic is not None  # the settings have one or the other
    topic = KafkaSinkSettings(
        kind="kafka",
        topic=settings.topic,
        bootstrap_servers=settings.bootstrap_servers,
        timeout=settings.timeout,
    )
    return ReviewTopic(name, topic, kafka)


def _no_alerts(name: str) -> DeliveryResult:
    return DeliveryFailed(name, "a review sink takes review requests, not alerts", False)
