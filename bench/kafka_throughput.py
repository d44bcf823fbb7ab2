"""Kafka end to end: streamwatch's rate against kafka-python's raw poll rate, same topic.

Produces the demo stream (at least 500,000 prediction events) to a fresh topic of a
real broker (started from Maven Central's jars unless STREAMWATCH_TEST_BOOTSTRAP names
one), then reads it twice from the start: once with a bare KafkaConsumer that only
polls, once through streamwatch's Kafka source and engine with all its detectors on.
Prints both rates and their ratio (one run each, in the same process).

    make bench      (or: .venv/bin/python bench/kafka_throughput.py [events_per_hour])
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamwatch import demo
from streamwatch.config import KafkaSettings, Settings, WindowSettings
from streamwatch.engine import POLL_RECORDS, Engine
from streamwatch.metrics import Metrics
from streamwatch.sources.kafka import KafkaSource
from tests.kafka_local import Broker


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


def streamwatch(bootstrap: str, topic: str, total: int) -> float:
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap, topics=(topic,), group_id=f"sw-{uuid.uuid4().hex}"
        ),
        window=WindowSettings(size="1h", allowed_lateness=300.0),
        sinks={},
    )
    metrics = Metrics(CollectorRegistry())
    engine = Engine(settings, [], metrics)
    source = KafkaSource(settings.kafka, metrics, engine.stopping, lambda: engine.positions)

    def stop_at_end(_: int) -> None:
        if metrics.total("streamwatch_messages") >= total:
            engine.stopping.set()

    started = time.perf_counter()
    try:
        engine.run(source, progress=stop_at_end)
        return time.perf_counter() - started
    finally:
        source.close()


def main() -> None:
    per_hour = int(sys.argv[1]) if len(sys.argv) > 1 else 26_000  # 520,000 predictions
    existing = os.environ.get("STREAMWATCH_TEST_BOOTSTRAP")
    broker = None if existing else Broker().start()
    bootstrap = existing or broker.bootstrap  # type: ignore[union-attr]
    try:
        stream = demo.generate(per_hour, seed=1)
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
        admin.close()
        lines = [
            line for line, label in zip(stream.lines, stream.is_label, strict=True) if not label
        ]
        stream = demo.DemoStream(
            lines, [None] * len(lines), [False] * len(lines), len(lines), 0, 0, 0
        )
        demo.produce(stream, bootstrap, topic, topic)
        size = sum(map(len, lines)) / len(lines)
        raw = raw_poll(bootstrap, topic, len(lines))
        ours = streamwatch(bootstrap, topic, len(lines))
    finally:
        if broker is not None:
            broker.stop()
    n = len(lines)
    print(f"Kafka end to end, {n:,} demo events of {size:.0f} bytes, one partition, local broker")
    print(f"{'':<40}{'seconds':>10}{'events/s':>12}")
    print(f"{'kafka-python raw poll':<40}{raw:>10.2f}{n / raw:>12,.0f}")
    print(f"{'streamwatch (source + engine, all on)':<40}{ours:>10.2f}{n / ours:>12,.0f}")
    print(f"ratio (streamwatch / raw poll): {raw / ours:.2f}")


if __name__ == "__main__":
    main()
