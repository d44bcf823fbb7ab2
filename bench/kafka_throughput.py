"""Kafka end to end: streamwatch's rate against kafka-python's raw poll rate, same topic.

Produces 500,000 events of one model with 20 numeric and 5 categorical features (the
shape of BENCHMARKS.md, generated as in replay_throughput.py) to a fresh one-partition
topic of a real broker (started from Maven Central's jars unless
STREAMWATCH_TEST_BOOTSTRAP names one). Then reads it from the start, three times each
way, interleaved: with a bare kafka-python KafkaConsumer that only polls, and through
streamwatch's Kafka source and engine with all its detectors on, checkpointing and
committing as the daemon does, with each client
(kafka-python, confluent). Prints the medians and their ratios to the raw poll.

    make bench      (or: .venv/bin/python bench/kafka_throughput.py [events])
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.replay_throughput import stream
from streamwatch.config import KafkaSettings, Settings, WindowSettings
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import POLL_RECORDS, Engine
from streamwatch.sources import Hooks, kafka_source
from streamwatch.state.store import StateStore
from tests.kafka_local import Broker

RUNS = 3
CLIENTS = ("kafka-python", "confluent")


def raw_poll(bootstrap: str, topic: str, total: int) -> float:
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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    existing = os.environ.get("STREAMWATCH_TEST_BOOTSTRAP")
    broker = None if existing else Broker().start()
    bootstrap = existing or broker.bootstrap  # type: ignore[union-attr]
    times: dict[str, list[float]] = {name: [] for name in ("raw", *CLIENTS)}
    try:
        lines = stream(n)
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        produce(bootstrap, topic, lines)
        for _ in range(RUNS):
            times["raw"].append(raw_poll(bootstrap, topic, n))
            for client in CLIENTS:
                times[client].append(streamwatch(bootstrap, topic, n, client))
    finally:
        if broker is not None:
            broker.stop()
    size = sum(map(len, lines)) / n
    raw = statistics.median(times["raw"])
    print(f"Kafka end to end, {n:,} events of {size:.0f} bytes (20 numeric + 5 categorical)")
    print(f"one partition, local broker; medians of {RUNS} interleaved runs")
    print(f"{'':<46}{'seconds':>9}{'events/s':>11}{'ratio':>7}")
    print(f"{'kafka-python raw poll (the baseline)':<46}{raw:>9.2f}{n / raw:>11,.0f}{1:>7.2f}")
    for client in CLIENTS:
        ours = statistics.median(times[client])
        label = f"streamwatch, all detectors, client={client}"
        print(f"{label:<46}{ours:>9.2f}{n / ours:>11,.0f}{raw / ours:>7.2f}")
    print("ratio: streamwatch's rate / kafka-python's raw poll rate (target: 0.6)")


if __name__ == "__main__":
    main()
