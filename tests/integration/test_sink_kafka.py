"""The Kafka sink against the real broker: one record per alert, keyed by fingerprint,
with the notification id; and a broker that is not there is a failure, not a crash."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

import msgspec
import pytest

from streamwatch.alerting.policy import Notification
from streamwatch.config import KafkaSettings, KafkaSinkSettings
from streamwatch.errors import ConfigError
from streamwatch.sinks.base import Delivered, DeliveryFailed
from streamwatch.sinks.kafka import NOTIFICATION_HEADER, KafkaSink
from tests.factories import drift_notification
from tests.integration.helpers import consume_all
from tests.kafka_local import free_port

pytestmark = pytest.mark.integration
Topics = Callable[[int], list[str]]


def notification(model: str = "fraud", subjects: tuple[str, ...] = ("amount",)) -> Notification:
    return drift_notification("7a3c" * 8, model, subjects)


def sink_settings(
    topic: str, bootstrap: str | None = None, timeout: float = 10.0
) -> KafkaSinkSettings:
    return KafkaSinkSettings(
        kind="kafka", topic=topic, bootstrap_servers=bootstrap, timeout=timeout
    )


def test_each_alert_is_a_record_keyed_by_its_fingerprint(kafka: str, topics: Topics) -> None:
    [topic] = topics(1)
    sent = notification(subjects=("amount", "country"))
    # The sink's own bootstrap is unset: it reaches the source's brokers.
    sink = KafkaSink("bus", sink_settings(topic), KafkaSettings(bootstrap_servers=kafka))
    try:
        result = sink.send(sent)
    finally:
        sink.close()

    assert result == Delivered("bus")
    records = consume_all(kafka, topic, expected=2)
    assert len(records) == 2
    by_key = {r.key: r for r in records}
    assert set(by_key) == {a.fingerprint.encode() for a in sent.alerts}
    for alert in sent.alerts:
        record = by_key[alert.fingerprint.encode()]
        assert msgspec.json.decode(record.value) == {**alert.to_dict(), "notification": sent.id}
        assert list(record.headers) == [(NOTIFICATION_HEADER, sent.id.encode())]


def test_a_retry_sends_the_same_notification_id(kafka: str, topics: Topics) -> None:
    [topic] = topics(1)
    sent = notification()
    # The sink's own brokers, not the source's (localhost:9092 by default).
    sink = KafkaSink("bus", sink_settings(topic, bootstrap=kafka), KafkaSettings())
    try:
        results = [sink.send(sent), sink.send(sent)]
    finally:
        sink.close()

    assert results == [Delivered("bus"), Delivered("bus")]
    records = consume_all(kafka, topic, expected=2)
    assert [dict(r.headers)[NOTIFICATION_HEADER] for r in records] == [sent.id.encode()] * 2
    assert [r.key for r in records] == [sent.alerts[0].fingerprint.encode()] * 2


# kafka-python 3.0.12 leaves sockets open when it cannot reach the cluster (inet.py
# raises without closing the one that was refused, and a producer that fails to start
# keeps its wakeup pair): the garbage collector closes them, with a ResourceWarning.
# They are collected at the end of this test, where that is expected; kafka's log
# records would keep them alive past it, so those are not made.
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
def test_a_broker_that_is_not_there_is_a_retryable_failure_within_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.CRITICAL, logger="kafka")
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens here
    # Made without a broker: the producer waits for the first send.
    sink = KafkaSink("bus", sink_settings("alerts", bootstrap=nobody, timeout=2.0), KafkaSettings())
    try:
        for _ in range(2):  # and a failed start does not stick
            started = time.monotonic()
            result = sink.send(notification())
            elapsed = time.monotonic() - started
            assert isinstance(result, DeliveryFailed)
            assert result.sink == "bus"
            assert result.retryable
            assert result.reason.startswith("cannot reach Kafka")
            assert elapsed < 2.0
    finally:
        sink.close()
        gc.collect()


def test_a_topic_kafka_would_refuse_is_a_config_error_at_start() -> None:
    with pytest.raises(ConfigError, match=r"^sink bus: Topic name .*illegal"):
        KafkaSink("bus", sink_settings("ml alerts"), KafkaSettings())
