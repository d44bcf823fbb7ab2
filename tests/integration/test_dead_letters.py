"""Dead letters against a real broker: a record past the fetch limit (a poison pill) and
one the dead-letter topic refuses are dead-lettered as stubs, every other bad message
whole, each acknowledged before the offsets that cover it are committed. With both
Kafka clients, by the daemon itself, in one run."""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from streamwatch.sources.dead_letters import STUB_BYTES
from tests.factories import event
from tests.integration.helpers import (
    Daemon,
    committed,
    consume_all,
    end_offset,
    env_file,
    wait_for,
)

pytestmark = pytest.mark.integration
clients = pytest.mark.parametrize("client", ["kafka-python", "confluent"])

KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # a topic's max.message.bytes, by default
GOOD = 3000


def make_topic(kafka: str, **config: object) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        configs = {k.replace("_", "."): str(v) for k, v in config.items()}
        admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        admin.close()
    return name


def alter_topic(kafka: str, topic: str, **config: object) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        configs = {k.replace("_", "."): str(v) for k, v in config.items()}
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])
    finally:
        admin.close()


def produce_large(kafka: str, topic: str, values: list[bytes]) -> None:
    """In order, whatever their size (the topic must take them)."""
    producer = KafkaProducer(bootstrap_servers=kafka, linger_ms=10, max_request_size=64 << 20)
    try:
        for value in values:
            producer.send(topic, value=value)
        producer.flush()
    finally:
        producer.close()


def good_events(count: int) -> list[bytes]:
    return [event(f"g{i}", timestamp=i * 100, features={"x": float(i % 10)}) for i in range(count)]


def start(tmp_path: Path, kafka: str, topic: str, dlq: str, client: str, **more: object) -> Daemon:
    env = env_file(
        tmp_path / "d.env",
        kafka__bootstrap_servers=kafka,
        kafka__topics=json.dumps([topic]),
        kafka__group_id=f"g-{uuid.uuid4().hex[:12]}",
        kafka__dlq_topic=dlq,
        kafka__client=client,
        window__size="1m",
        window__allowed_lateness="0s",
        state__path=tmp_path / "state.sqlite",
        state__checkpoint_interval="0.5s",
        server__port=0,
        **more,
    )
    return Daemon(env, tmp_path / "daemon.log").start()


def group(daemon: Daemon) -> str:
    return daemon.env_file.read_text().split("GROUP_ID=")[1].split()[0]


def dead_letters_counted(daemon: Daemon) -> float:
    """``streamwatch_dead_letters_total`` on the daemon's /metrics."""
    (address,) = {line["address"] for line in daemon.logs() if "address" in line}
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        exposition = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "streamwatch_dead_letters_total"
    )


def stopped(daemon: Daemon) -> dict[str, Any]:
    (line,) = [line for line in daemon.logs() if line["message"] == "stopped"]
    return line


def headers_of(record: Any) -> dict[str, str]:
    return {key: value.decode() for key, value in record.headers}


@clients
def test_a_20_mb_record_past_the_fetch_limit_is_dead_lettered_as_a_stub_in_one_run(
    kafka: str, tmp_path: Path, client: str
) -> None:
    topic = make_topic(kafka, max_message_bytes=32 << 20)  # the source takes what we fetch not
    dlq = make_topic(kafka)
    pill = b"{" + b"x" * (20_000_000 - 1)
    values = good_events(GOOD)
    values.insert(GOOD // 2, pill)
    produce_large(kafka, topic, values)
    end = end_offset(kafka, topic)
    assert end == GOOD + 1

    daemon = start(tmp_path, kafka, topic, dlq, client)  # KAFKA__MAX_FETCH_BYTES: 16 MiB
    try:
        wait_for(lambda: committed(kafka, group(daemon), topic) == end, 90, "a commit past it")
        assert daemon.process is not None
        assert daemon.process.poll() is None  # one run: never exited, never restarted
        assert dead_letters_counted(daemon) == 1
    finally:
        assert daemon.stop() == 0
    summary = stopped(daemon)
    assert (summary["consumed"], summary["windowed"], summary["bad"]) == (end, GOOD, 1)
    assert summary["dead_letters"] == 1
    assert "Traceback" not in daemon.log_path.read_text()

    assert end_offset(kafka, dlq) == 1
    (stub,) = consume_all(kafka, dlq, expected=1)
    assert stub.value == pill[:STUB_BYTES]
    headers = headers_of(stub)
    assert headers["streamwatch-reason"] == "too_large"
    assert headers["streamwatch-detail"].startswith("20000000 bytes")
    assert headers["streamwatch-source-topic"] == topic
    assert headers["streamwatch-source-partition"] == "0"
    assert headers["streamwatch-source-offset"] == str(GOOD // 2)
    assert headers["streamwatch-original-size"] == "20000000"
    assert headers["streamwatch-failed-at"].startswith("20")


@clients
def test_1000_bad_messages_behind_one_the_dead_letter_topic_refuses_are_all_kept(
    kafka: str, tmp_path: Path, client: str
) -> None:
    topic = make_topic(kafka)
    # At first the dead-letter topic refuses every record (misconfigured), then it is
    # set to Kafka's default limit: it takes all but the 2 MB message.
    dlq = make_topic(kafka, max_message_bytes=100)
    refused = b"[" + b"1," * 1_000_000 + b"1]"  # 2 MB: too large for the topic
    junk = [b"not json %d" % i for i in range(999)] + [b'{"event_id": "no model"}']
    bad = [refused, *junk]
    values = good_events(500) + bad + good_events(GOOD)[500:]
    produce_large(kafka, topic, values)
    end = end_offset(kafka, topic)
    assert end == GOOD + len(bad)

    daemon = start(tmp_path, kafka, topic, dlq, client, kafka__connect_timeout="2s")
    try:

        def refused_commit() -> bool:
            return any(
                line["message"] == "dead letters not acknowledged; offsets not committed"
                for line in daemon.logs()
            )

        wait_for(refused_commit, 60, "a commit held back")
        # Not one offset past the first bad message, nothing counted, nothing kept.
        assert (committed(kafka, group(daemon), topic) or 0) <= 500
        assert dead_letters_counted(daemon) == 0
        assert end_offset(kafka, dlq) == 0

        alter_topic(kafka, dlq, max_message_bytes=KAFKA_DEFAULT_MAX_MESSAGE_BYTES)
        wait_for(lambda: committed(kafka, group(daemon), topic) == end, 90, "the end committed")
        assert dead_letters_counted(daemon) == len(bad)
        assert daemon.process is not None
        assert daemon.process.poll() is None
    finally:
        assert daemon.stop() == 0
    summary = stopped(daemon)
    assert (summary["consumed"], summary["windowed"]) == (end, GOOD)
    assert summary["bad"] == summary["dead_letters"] == len(bad)
    assert "Traceback" not in daemon.log_path.read_text()

    assert end_offset(kafka, dlq) == len(bad)  # 1,001: none lost, none twice
    letters = consume_all(kafka, dlq, expected=len(bad))
    by_offset = {int(headers_of(r)["streamwatch-source-offset"]): r for r in letters}
    assert sorted(by_offset) == list(range(500, 500 + len(bad)))
    stub = by_offset[500]
    assert stub.value == refused[:STUB_BYTES]
    assert headers_of(stub)["streamwatch-original-size"] == str(len(refused))
    assert headers_of(stub)["streamwatch-reason"] == "too_large"
    for k, value in enumerate(junk, start=501):  # the rest whole
        assert by_offset[k].value == value
        assert headers_of(by_offset[k])["streamwatch-original-size"] == str(len(value))
