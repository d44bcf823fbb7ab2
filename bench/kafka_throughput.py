"""Kafka end to end: streamwatch's rate against its client's raw poll rate, same topic.

Produces 500,000 events of one model with 20 numeric and 5 categorical features (the
shape of BENCHMARKS.md, generated as in replay_throughput.py) to a fresh one-partition
topic of a real broker (started from Maven Central's jars unless
SW_TEST_BOOTSTRAP names one). Then reads it from the start, three times each
way, interleaved, for each client (kafka-python, confluent): with a bare consumer of
that client that only polls (kafka-python's ``poll``, confluent-kafka's ``consume``,
``POLL_RECORDS`` at a time, client defaults otherwise); through streamwatch's source of
that client and the columnar decoder alone (the floor of any pipeline that parses what
it consumes); and through streamwatch's source and engine with all detectors on,
checkpointing and committing as the daemon does. Prints the medians and each rate over
the same client's raw poll rate.

    make bench      (or: .venv/bin/python bench/kafka_throughput.py [events])
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.replay_throughput import stream
from streamwatch.config import KafkaSettings, Settings, WindowSettings
from streamwatch.events import decode_batch
from streamwatch.events.reader import Reader
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import POLL_RECORDS, Engine
from streamwatch.sources import Hooks, kafka_source
from streamwatch.state.store import StateStore
from tests.kafka_local import Broker

RUNS = 3
CLIENTS = ("kafka-python", "confluent")


def raw_poll(bootstrap: str, topic: str, total: int, client: str) -> float:
    if client == "confluent":
        return raw_consume(bootstrap, topic, total)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen, started = 0, time.perf_counter()
    try:
        while seen < total:
            for records in consumer.poll(timeout_ms=1000, max_records=POLL_RECORDS).values():
                seen += len(records)
        return time.perf_counter() - started
    finally:
        consumer.close()


def raw_consume(bootstrap: str, topic: str, total: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen, started = 0, time.perf_counter()
    try:
        while seen < total:
            records = consumer.consume(num_messages=POLL_RECORDS, timeout=1)
            seen += sum(record.error() is None for record in records)
        return time.perf_counter() - started
    finally:
        consumer.close()


def decode_only(bootstrap: str, topic: str, total: int, client: str) -> float:
    """streamwatch's source of that client and the columnar decoder, no detector: the
    floor under any pipeline that parses what it consumes."""
    settings = KafkaSettings(
        bootstrap_servers=bootstrap,
        topics=(topic,),
        group_id=f"decode-{uuid.uuid4().hex}",
        client=client,
    )
    source = kafka_source(settings, Metrics(CollectorRegistry()), threading.Event(), Hooks())
    reader, seen, started = Reader(), 0, time.perf_counter()
    try:
        while seen < total:
            polled = source.poll(POLL_RECORDS)
            seen += len(polled)
            decode_batch(polled, Settings().max_message_bytes, reader=reader)
        return time.perf_counter() - started
    finally:
        source.close()


def streamwatch(bootstrap: str, topic: str, total: int, client: str) -> float:
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            topics=(topic,),
            group_id=f"sw-{uuid.uuid4().hex}",
            client=client,
        ),
        window=WindowSettings(size="5m", allowed_lateness=0.0),
        sinks={},
    )
    metrics = Metrics(CollectorRegistry())
    engine = Engine(settings, [], metrics)
    source = kafka_source(
        settings.kafka, metrics, engine.stopping, Hooks(positions=lambda: engine.positions.next)
    )

    def stop_at_end(_: int) -> None:
        if metrics.total("streamwatch_messages") >= total:
            engine.stopping.set()

    # As the daemon runs: checkpoints every STATE__CHECKPOINT_INTERVAL, then commits.
    with tempfile.TemporaryDirectory() as tmp:
        store = StateStore(Path(tmp) / "state.sqlite", settings)
        started = time.perf_counter()
        try:
            engine.run(source, store, progress=stop_at_end)
            return time.perf_counter() - started
        finally:
            source.close()
            store.close()


def produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    for line in lines:
        producer.send(topic, value=line, key=b"bench")
    producer.flush()
    producer.close()


WAYS = {"raw": raw_poll, "decode": decode_only, "streamwatch": streamwatch}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    existing = os.environ.get("SW_TEST_BOOTSTRAP")
    broker = None if existing else Broker().start()
    bootstrap = existing or broker.bootstrap  # type: ignore[union-attr]
    ways = [(way, client) for client in CLIENTS for way in WAYS]
    times: dict[tuple[str, str], list[float]] = {way: [] for way in ways}
    try:
        lines = stream(n)
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        produce(bootstrap, topic, lines)
        for _ in range(RUNS):
            for way, client in ways:
                times[way, client].append(WAYS[way](bootstrap, topic, n, client))
    finally:
        if broker is not None:
            broker.stop()
    size = sum(map(len, lines)) / n
    print(f"Kafka end to end, {n:,} events of {size:.0f} bytes (20 numeric + 5 categorical)")
    print(f"one partition, local broker; medians of {RUNS} interleaved runs")
    print(f"{'':<48}{'seconds':>9}{'events/s':>11}{'ratio':>7}")
    for client in CLIENTS:
        raw, floor, ours = (statistics.median(times[way, client]) for way in WAYS)
        label = f"{client} raw poll (its baseline)"
        print(f"{label:<48}{raw:>9.2f}{n / raw:>11,.0f}{1:>7.2f}")
        label = "its source + columnar decoder, no detectors"
        print(f"{label:<48}{floor:>9.2f}{n / floor:>11,.0f}{raw / floor:>7.2f}")
        label = f"streamwatch, all detectors, client={client}"
        print(f"{label:<48}{ours:>9.2f}{n / ours:>11,.0f}{raw / ours:>7.2f}")
    print("ratio: streamwatch's rate / the same client's raw poll rate (target: 0.7)")


if __name__ == "__main__":
    main()
