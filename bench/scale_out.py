"""Scale out: aggregate throughput of 1, 2 and 3 ``streamwatch run`` instances in one
consumer group, and what the changelog costs against local-only checkpoints.

Produces 600,000 events (the shape of replay_throughput.py: 20 numeric and 5
categorical features) of 6 models, keyed by model id, to a fresh 6-partition topic of
a real broker; the model names are chosen so that each lands on its own partition.
Then, for each configuration, a fresh group of daemon subprocesses (the installed entry
point, all detectors on, checkpoints every 2 s) reads the topic from the start; the time
is from starting the daemons to the group's committed offsets reaching the end of every
partition (so it includes their start-up and the group's rebalances: about 3 s).
Each configuration runs three times, interleaved; the medians are printed.

On this 2-core machine the broker (a JVM) and every instance share the two cores, so
more instances cannot add cores' worth of throughput: the figures say how much of the
scale-out protocol's cost (rebalances, restores, changelog writes) the cores absorb.

    make bench      (or: .venv/bin/python bench/scale_out.py [events])
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.partitioner.default import murmur2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._daemon import Daemon, create_topic, kafka
from bench.replay_throughput import stream

PARTITIONS = 6
RUNS = 3
CHECKPOINT_INTERVAL = 2.0
TIMEOUT = 600.0


def model_names(partitions: int) -> list[str]:
    """A model name per partition, as Kafka's default partitioner places its key."""
    names: dict[int, str] = {}
    i = 0
    while len(names) < partitions:
        name = f"model-{i}"
        names.setdefault((murmur2(name.encode()) & 0x7FFFFFFF) % partitions, name)
        i += 1
    return [names[p] for p in range(partitions)]


def produce(bootstrap: str, n: int) -> str:
    topic = create_topic(bootstrap, "scale", PARTITIONS)
    names = model_names(PARTITIONS)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=50, batch_size=1 << 20, max_request_size=16 << 20
    )
    for i, line in enumerate(stream(n)):
        name = names[i % PARTITIONS]
        value = line.replace(b'"model_id":"bench"', f'"model_id":"{name}"'.encode())
        producer.send(topic, value=value, key=name.encode())
    producer.flush()
    producer.close()
    return topic


def committed(watcher: KafkaConsumer, topic: str) -> int:
    """The group's committed offsets, summed (``watcher`` is in the group, not a member)."""
    offsets = (watcher.committed(TopicPartition(topic, p)) for p in range(PARTITIONS))
    return sum(o or 0 for o in offsets)


def end(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def run(bootstrap: str, topic: str, instances: int, changelog: bool) -> float:
    """Seconds for ``instances`` daemons in a fresh group to process the whole topic."""
    group = f"scale-{uuid.uuid4().hex[:8]}"
    settings: dict[str, object] = {
        "kafka__group_id": group,
        "state__checkpoint_interval": CHECKPOINT_INTERVAL,
        "window__size": "5m",
        "window__allowed_lateness": 0,
    }
    if changelog:
        settings["state__changelog_topic"] = f"{group}-changelog"
    total = end(bootstrap, topic)
    with tempfile.TemporaryDirectory() as tmp:
        daemons = []
        for k in range(instances):
            workdir = Path(tmp) / str(k)
            workdir.mkdir()
            daemons.append(Daemon(bootstrap, topic, workdir, **settings))
        watcher = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
        started = time.monotonic()
        for daemon in daemons:
            daemon.start()
        try:
            while committed(watcher, topic) < total:
                if time.monotonic() - started > TIMEOUT:
                    raise RuntimeError(f"not done in {TIMEOUT:.0f} s; see {tmp}")
                time.sleep(0.25)
            return time.monotonic() - started
        finally:
            watcher.close()
            for daemon in daemons:
                daemon.stop()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 600_000
    configurations = {"local": (1, False), 1: (1, True), 2: (2, True), 3: (3, True)}
    times: dict[object, list[float]] = {name: [] for name in configurations}
    with kafka() as bootstrap:
        topic = produce(bootstrap, n)
        for _ in range(RUNS):  # interleaved, so that a noisy minute hits all alike
            for name, (instances, changelog) in configurations.items():
                times[name].append(run(bootstrap, topic, instances, changelog))
    local = statistics.median(times["local"])
    print(f"Scale out: {n:,} events of 6 models on a 6-partition topic, local broker")
    print(f"seconds from starting the instances to every offset committed; medians of {RUNS}")
    print(f"{'':<44}{'seconds':>9}{'events/s':>11}{'ratio':>7}")
    print(f"{'1 instance, local checkpoints only':<44}{local:>9.2f}{n / local:>11,.0f}{1:>7.2f}")
    for k in (1, 2, 3):
        seconds = statistics.median(times[k])
        label = f"{k} instance{'s' if k > 1 else ''}, changelog"
        print(f"{label:<44}{seconds:>9.2f}{n / seconds:>11,.0f}{local / seconds:>7.2f}")
    print(
        "ratio: events/s against one instance with local checkpoints; the 1-instance "
        "changelog row is the changelog's overhead"
    )


if __name__ == "__main__":
    main()
