"""streamwatch against a real Kafka broker: alerts, dead letters, crash and resume."""

from __future__ import annotations

import json
import random
import threading
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streamwatch import demo
from streamwatch.config import KafkaSettings, Settings, StateSettings, WindowSettings
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.sources import Hooks, ReplaySource, kafka_source
from streamwatch.state.store import StateStore
from tests.factories import event
from tests.integration.helpers import (
    Daemon,
    committed,
    consume_all,
    end_offset,
    env_file,
    produce,
    wait_for,
)
from tests.kafka_local import free_port

pytestmark = pytest.mark.integration
Topics = Callable[[int], list[str]]
# Every test runs with both Kafka clients (STREAMWATCH_KAFKA__CLIENT).
clients = pytest.mark.parametrize("client", ["kafka-python", "confluent"])


def daemon_env(path: Path, kafka: str, topics: list[str], group: str, **more: object) -> Path:
    return env_file(
        path,
        kafka__bootstrap_servers=kafka,
        kafka__topics=json.dumps(topics),
        kafka__group_id=group,
        window__size="1h",
        window__allowed_lateness="5m",
        labels__horizon="2h",
        sinks__audit__kind="file",
        sinks__audit__path=path.parent / "alerts.jsonl",
        state__path=path.parent / "state.sqlite",
        state__checkpoint_interval="0.5s",
        **{"server__port": 0, **more},
    )


def alert_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def fired(path: Path) -> dict[tuple[str, str, str], int]:
    """(model, detector, subject) of firing alerts -> the hour of their window."""
    return {
        (a["labels"]["model"], a["labels"]["detector"], a["labels"]["subject"]): int(
            record["window"]["start"][11:13]
        )
        for record in alert_records(path)
        for a in record["alerts"]
        if a["status"] == "firing" and a["fingerprint"] in record["changed"]
    }


@clients
def test_the_daemon_fires_the_demo_alerts(
    kafka: str, topics: Topics, tmp_path: Path, client: str
) -> None:
    predictions, labels = topics(2)
    stream = demo.generate(events_per_hour=3000, seed=42)
    demo.produce(stream, kafka, predictions, labels)
    port = free_port()
    env = daemon_env(
        tmp_path / "d.env",
        kafka,
        [predictions, labels],
        f"g-{uuid.uuid4().hex}",
        server__port=port,
        kafka__client=client,
    )
    daemon = Daemon(env, tmp_path / "daemon.log").start()
    alerts = tmp_path / "alerts.jsonl"
    ends = {t: end_offset(kafka, t) for t in (predictions, labels)}
    try:
        wanted = set(demo.EXPECTED) - demo.BEFORE_LABELS  # see BEFORE_LABELS
        wait_for(lambda: set(fired(alerts)) - demo.BEFORE_LABELS == wanted, 90, "the demo's alerts")
        group = env.read_text().split("GROUP_ID=")[1].split()[0]
        wait_for(
            lambda: all(committed(kafka, group, t) == end for t, end in ends.items()),
            60,
            "every message committed",
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            exposition = response.read().decode()
    finally:
        assert daemon.stop() == 0
    assert 'streamwatch_events_total{model="fraud"} 30000.0' in exposition
    assert 'streamwatch_bad_events_total{reason="invalid_json"} 2.0' in exposition
    assert demo.check(fired(alerts), optional=demo.BEFORE_LABELS) == []
    (stopped,) = [line for line in daemon.logs() if line["message"] == "stopped"]
    assert stopped["consumed"] == len(stream.lines)
    assert stopped["bad"] == stream.garbage
    assert stopped["labels"] == stream.labels
    assert stopped["late"] == stream.late


@clients
def test_bad_messages_go_to_the_dead_letter_topic_with_reasons(
    kafka: str, topics: Topics, tmp_path: Path, client: str
) -> None:
    source_topic, dlq = topics(2)
    garbage = [
        b"\xff" + random.Random(5).randbytes(199),  # binary junk, not JSON from byte 0
        b'{"event_id": "t1", "model_id": "m", "timestamp": 1, "score": 0.',  # truncated
        event("w1", score="high"),  # wrong type
        b'{"model_id": "m", "timestamp": 1, "score": 0.5}',  # no event_id
        b'{"event_id": "x", "timestamp": 1, "score": 0.5}',  # no model_id
        b"[" + b"1," * (2_500_000) + b"1]",  # 5 MB
        b"",
    ]
    good = [event(f"g{i}", timestamp=i * 100, features={"x": float(i % 10)}) for i in range(3000)]
    values = list(good)
    for k, junk in enumerate(garbage):
        values.insert((k + 1) * 400, junk)
    produce(kafka, source_topic, values)

    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=kafka,
            topics=(source_topic,),
            group_id=f"g-{uuid.uuid4().hex}",
            dlq_topic=dlq,
            client=client,
        ),
        window=WindowSettings(size="1m", allowed_lateness=0.0),
        sinks={},
    )
    metrics = Metrics(CollectorRegistry())
    engine = Engine(settings, [], metrics)
    hooks = Hooks(positions=lambda: engine.positions.next)  # no state: nothing to save
    source = kafka_source(settings.kafka, metrics, engine.stopping, hooks)

    def stop_when_all_consumed(_: int) -> None:
        if metrics.total("streamwatch_messages") >= len(values):
            engine.stopping.set()

    runner = threading.Thread(
        target=engine.run, args=(source,), kwargs={"progress": stop_when_all_consumed}
    )
    runner.start()
    runner.join(120)
    source.close()
    assert not runner.is_alive()

    assert metrics.total("streamwatch_events") == len(good)  # every good event windowed
    letters = consume_all(kafka, dlq, expected=len(garbage))
    assert len(letters) == len(garbage)
    by_offset = {int(dict(r.headers)["streamwatch-source-offset"]): r for r in letters}
    for junk in garbage:
        offset = values.index(junk)
        record = by_offset[offset]
        headers = {key: value.decode() for key, value in record.headers}
        assert record.value == junk  # unchanged, even the 5 MB one
        assert headers["streamwatch-source-topic"] == source_topic
        assert headers["streamwatch-source-partition"] == "0"
        assert headers["streamwatch-reason"]
        assert headers["streamwatch-failed-at"].startswith("20")
    reasons = [dict(by_offset[values.index(j)].headers)["streamwatch-reason"] for j in garbage]
    assert reasons == [
        b"invalid_json",
        b"invalid_json",
        b"wrong_type",
        b"missing_field",
        b"missing_field",
        b"too_large",
        b"invalid_json",
    ]
    assert committed(kafka, settings.kafka.group_id, source_topic) == len(values)


@clients
def test_killed_mid_stream_the_daemon_resumes_from_its_checkpoint(
    kafka: str, topics: Topics, tmp_path: Path, client: str
) -> None:
    (predictions,) = topics(1)
    stream = demo.generate(events_per_hour=15_000, seed=7)  # 300,000 predictions
    lines = [
        line for line, is_label in zip(stream.lines, stream.is_label, strict=True) if not is_label
    ]
    produce(kafka, predictions, lines)
    end = end_offset(kafka, predictions)
    group = f"g-{uuid.uuid4().hex}"
    env = daemon_env(tmp_path / "d.env", kafka, [predictions], group, kafka__client=client)

    daemon = Daemon(env, tmp_path / "first.log").start()
    wait_for(lambda: (committed(kafka, group, predictions) or 0) > end // 3, 120, "a third")
    daemon.kill()
    at_kill = committed(kafka, group, predictions) or 0
    settings = Settings(
        window=WindowSettings(size="1h", allowed_lateness=300.0),
        state=StateSettings(path=tmp_path / "state.sqlite"),
    )
    store = StateStore(settings.state.path, settings)
    checkpoint = store.load()
    store.close()
    assert checkpoint is not None
    resumed_from = checkpoint.offsets[(predictions, 0)]
    assert at_kill <= resumed_from < end  # committed only what the checkpoint covers

    second = Daemon(env, tmp_path / "second.log").start()
    wait_for(lambda: committed(kafka, group, predictions) == end, 120, "the end of the topic")
    assert second.stop() == 0
    (stopped,) = [line for line in second.logs() if line["message"] == "stopped"]
    assert stopped["consumed"] == end - resumed_from  # after the checkpoint, nothing before

    # The same alerts as an uninterrupted run over the same stream, window for window.
    replay_file = tmp_path / "stream.jsonl"
    replay_file.write_bytes(b"\n".join(lines) + b"\n")
    whole = Engine(settings, [], Metrics(CollectorRegistry()))
    outcomes = whole.run(ReplaySource([replay_file]))[:-1]  # the daemon never reaches the end
    expected = {n.id for o in outcomes for n in o.notifications}
    delivered = {str(r["id"]) for r in alert_records(tmp_path / "alerts.jsonl")}
    assert expected
    assert delivered == expected
