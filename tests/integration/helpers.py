"""Helpers of the integration tests: producing, consuming, offsets, daemon processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import MemberToRemove


def produce(
    kafka: str, topic: str, values: list[bytes], keys: list[bytes | None] | None = None
) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka, linger_ms=10, max_request_size=16 << 20)
    try:
        for i, value in enumerate(values):
            producer.send(topic, value=value, key=keys[i] if keys else None)
        producer.flush()
    finally:
        producer.close()


def consume_all(kafka: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Every record of ``topic`` from the start, waiting until ``expected`` have come."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=32 << 20,
        max_partition_fetch_bytes=32 << 20,
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
    finally:
        consumer.close()
    return records


def committed(kafka: str, group: str, topic: str) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0))  # type: ignore[no-any-return]
    finally:
        consumer.close()


def end_offset(kafka: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        tp = TopicPartition(topic, 0)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a daemon's log, skipping any other output."""
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return lines


@dataclass
class Daemon:
    """``streamwatch run`` in a subprocess, its JSON log lines collected to a file."""

    env_file: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        command = [sys.executable, "-m", "streamwatch", "--log-level", "INFO", "run"]
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [*command, "--env-file", str(self.env_file)], stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def logs(self) -> list[dict[str, Any]]:
        return json_lines(self.log_path)

    def stop(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.terminate()
        code = self.process.wait(timeout)
        self.process = None
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, every: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def env_file(path: Path, **variables: object) -> Path:
    """An env file of these settings (``None``: left out, the default)."""
    path.write_text(
        "".join(f"STREAMWATCH_{k.upper()}={v}\n" for k, v in variables.items() if v is not None)
    )
    return path


def produce_bulk(kafka: str, topic: str, values: list[bytes]) -> None:
    """Like :func:`produce`, in 1 MB batches: hundreds of thousands of records in a few
    seconds rather than tens (kafka-python's cost is per request as much as per record)."""
    produce_keyed(kafka, topic, values, [None] * len(values))


def expel_members(kafka: str, group: str) -> None:
    """Remove every member of ``group``, as ``kafka-consumer-groups`` or an operator would.

    A SIGKILLed consumer stays a member until its session times out (45 s with
    kafka-python 3), and a restarted one cannot join before: this spares a test the wait.
    """
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        described = admin.describe_groups([group])[group]
        members = [MemberToRemove(member_id=m["member_id"]) for m in described["members"]]
        if members:
            admin.remove_group_members(group, members)
    finally:
        admin.close()


def create_topic(kafka: str, partitions: int = 1) -> str:
    """A fresh topic, single-partition like the ``topics`` fixture, for wider fixtures."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}})
    finally:
        admin.close()
    return name


def produce_keyed(
    kafka: str, topic: str, values: Sequence[bytes], keys: Sequence[bytes | None]
) -> None:
    """Like :func:`produce_bulk`, each record with its key, so that Kafka's default
    partitioner (murmur2 of the key) sends all records of a key to one partition, in order."""
    producer = KafkaProducer(
        bootstrap_servers=kafka, linger_ms=50, batch_size=1 << 20, max_request_size=16 << 20
    )
    try:
        for value, key in zip(values, keys, strict=True):
            producer.send(topic, value=value, key=key)
        producer.flush()
    finally:
        producer.close()


def end_offsets(kafka: str, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
        return {tp.partition: int(offset) for tp, offset in ends.items()}
    finally:
        consumer.close()


def expel_member(kafka: str, group: str, instance_id: str) -> None:
    """Remove the static member ``instance_id`` (its ``group.instance.id``) of ``group``, and
    only it: SIGKILLed, a static member keeps its partitions until its session times out,
    and a rebalance would not give them to the others before."""
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        result = admin.remove_group_members(group, [MemberToRemove(group_instance_id=instance_id)])
    finally:
        admin.close()
    errors = {str(member): error.__name__ for member, error in result.items()}
    assert set(errors.values()) == {"NoError"}, f"{instance_id} not removed from {group}: {errors}"
