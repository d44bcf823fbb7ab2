"""What the daemon leaves on disk and in its logs: aggregates, never raw values.

A run against the real broker on a stream whose feature values, event ids and secrets
are all distinctive, with a redacted feature that drifts; then the state file, the
outbox, the file sink and the log lines are searched byte by byte. Raw feature values
are looked for as numbers in any notation and as float64 in either byte order at any
offset; event ids may only be those the label join still holds (predictions within the
label TTL that never got their label), though earlier checkpoints held others.
"""

from __future__ import annotations

import base64
import json
import random
import re
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pytest

from streamwatch.alerting.policy import alias
from tests.factories import event
from tests.integration.helpers import Daemon, committed, end_offset, env_file, produce, wait_for
from tests.kafka_local import free_port

pytestmark = pytest.mark.integration

T0 = 1_790_000_000_000  # epoch ms
MINUTES, PER_MINUTE, SHIFT_AT = 20, 150, 12
UNLABELLED = 30  # predictions without a label, early in the stream and in its last minute

REDACTED = "zz_patient_weight"
VISIBLE = "visible_feature"
WHSEC = "whsec_" + base64.b64encode(b"privacy-test signing key 0123456").decode()
SECRETS = {
    "webhook secret": WHSEC,
    "webhook key": WHSEC.removeprefix("whsec_"),
    "header token": "hdr-tok-7Qx2Lm9Vw3",
    "url token": "url-tok-K8s2Pq0Zr5",
    "mail password": "mail-pw-Vb6Tn1Yc4",
    "retrain token": "rt-tok-Hj5Ed8Wg2",
    "sasl password": "sasl-pw-Nf3Ua7Xk1",
}


def event_id(minute: int, i: int) -> str:
    return f"pv7-{minute:02d}{i:03d}-k"  # fixed width: no id is inside another


def stream(seed: int = 11) -> tuple[list[bytes], dict[str, list[float]], dict[str, float]]:
    """One minute windows of predictions of model "m", labelled 10 s later (but for the
    first 30 of minute 2 and the last 30 of the last minute); both features shift by
    several sd from minute 12. Returns the messages in event-time order, every raw
    feature value by feature, and the score of each prediction by event id."""
    rng = random.Random(seed)
    timed: list[tuple[int, bytes]] = []
    values: dict[str, list[float]] = {REDACTED: [], VISIBLE: []}
    scores: dict[str, float] = {}
    for minute in range(MINUTES):
        shifted = minute >= SHIFT_AT
        for i in range(PER_MINUTE):
            t = T0 + minute * 60_000 + i * 400
            features = {
                REDACTED: rng.gauss(70.0, 5.0) + (20.0 if shifted else 0.0),
                VISIBLE: rng.gauss(0.0, 1.0) + (3.0 if shifted else 0.0),
            }
            for name, value in features.items():
                values[name].append(value)
            key, score = event_id(minute, i), rng.random()
            scores[key] = score
            raw = event(
                key, "m", t, score=score, prediction=str(int(score > 0.5)), features=features
            )
            timed.append((t, raw))
            if not unlabelled(minute, i):
                timed.append((t + 10_000, event(key, "m", t + 10_000, label=str(i % 2))))
    timed.sort(key=lambda pair: pair[0])
    return [raw for _, raw in timed], values, scores


def timestamp(raw: bytes) -> int:
    return int(msgspec.json.decode(raw)["timestamp"])


def unlabelled(minute: int, i: int) -> bool:
    return (minute == 2 and i < UNLABELLED) or (minute == MINUTES - 1 and i >= PER_MINUTE - 30)


# Bad messages carrying an id and a value of their own: they must leave no trace either.
GARBAGE = [
    event("pv7-bad01-k", "m", T0, features={REDACTED: [71.30918273645512]}),
    event("pv7-bad02-k", "m", T0, score=7.25, features={REDACTED: 69.81726354091827}),
    b'{"event_id": "pv7-bad03-k", "features": {"zz_patient_weight": 72.56473829101928}',
]
GARBAGE_VALUES = [71.30918273645512, 69.81726354091827, 72.56473829101928]


def daemon_env(config: Path, run: Path, kafka: str, topic: str) -> Path:
    closed = free_port()  # nothing listens: every delivery but the file's and log's fails
    mail = (
        f"mailto://ops-bot:{SECRETS['mail password']}@127.0.0.1:{closed}"
        "?to=ops@example.com&from=streamwatch@example.com"
    )
    return env_file(
        config / "daemon.env",
        kafka__bootstrap_servers=kafka,
        kafka__topics=json.dumps([topic]),
        kafka__group_id=f"g-{uuid.uuid4().hex}",
        # Without a SASL mechanism the credentials are not used (PLAINTEXT), only held.
        kafka__sasl_username="streamwatch",
        kafka__sasl_password=SECRETS["sasl password"],
        window__size="1m",
        window__allowed_lateness="0s",
        labels__horizon="30s",
        labels__ttl="3m",
        state__path=run / "state.sqlite",
        state__checkpoint_interval="0.2s",
        server__port=0,
        server__grace_period="6s",
        alerts__redact=json.dumps([REDACTED]),
        sinks__audit__kind="file",
        sinks__audit__path=run / "alerts.jsonl",
        sinks__stdout__kind="log",
        sinks__hook__kind="webhook",
        sinks__hook__url=f"http://127.0.0.1:{closed}/hooks/{SECRETS['url token']}",
        sinks__hook__secret=WHSEC,
        sinks__hook__headers=json.dumps({"Authorization": f"Bearer {SECRETS['header token']}"}),
        sinks__hook__retry_base="0.2s",
        sinks__hook__retry_cap="0.5s",
        sinks__hook__timeout="1s",
        sinks__mail__kind="apprise",
        sinks__mail__urls=json.dumps([mail]),
        sinks__mail__retry_base="0.2s",
        sinks__mail__retry_cap="0.5s",
        sinks__mail__timeout="2s",
        sinks__retrain__kind="retrain",
        sinks__retrain__url=f"http://127.0.0.1:{closed}/api/retrain",
        sinks__retrain__token=SECRETS["retrain token"],
        sinks__retrain__retry_base="0.2s",
        sinks__retrain__timeout="1s",
    )


IDS = [event_id(m, i) for m in range(MINUTES) for i in range(PER_MINUTE)]
IDS += ["pv7-bad01-k", "pv7-bad02-k", "pv7-bad03-k"]


def ids_in(data: bytes) -> set[str]:
    return {key for key in IDS if key.encode() in data}


def checkpoint(path: Path) -> bytes:
    """The state blob of the daemon's latest checkpoint, read beside the daemon."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (blob,) = db.execute("SELECT state FROM checkpoint").fetchone()
    finally:
        db.close()
    return bytes(blob)


_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def numbers_in(data: bytes) -> set[float]:
    """Every number written in ``data`` as text, in any notation."""
    found = set()
    for token in _NUMBER.findall(data):
        try:
            found.add(float(token))
        except (ValueError, OverflowError):
            continue
    return found


def doubles_in(data: bytes) -> set[float]:
    """Every 8 bytes of ``data`` read as a float64, big- and little-endian, at every offset
    (msgpack writes big-endian doubles wherever the encoding puts them)."""
    found: set[float] = set()
    for start in range(8):
        usable = (len(data) - start) // 8 * 8
        chunk = data[start : start + usable]
        for dtype in (">f8", "<f8"):
            array = np.frombuffer(chunk, dtype=dtype)
            found.update(array[np.isfinite(array)].tolist())
    return found


def test_no_raw_value_event_id_or_secret_is_left_behind_and_redacted_names_stay_out(
    kafka: str, topics: Callable[[int], list[str]], tmp_path: Path
) -> None:
    (topic,) = topics(1)
    messages, values, scores = stream()
    config, run = tmp_path / "config", tmp_path / "run"  # the env file holds the secrets
    config.mkdir()
    run.mkdir()
    env = daemon_env(config, run, kafka, topic)
    group = env.read_text().split("GROUP_ID=")[1].split()[0]
    # In parts, so that checkpoints are written while events wait: during the warm-up
    # (the first 30 s, less than a window) and while predictions wait for labels that
    # come later. What was held then must not outlive it on disk.
    warm = next(k for k, raw in enumerate(messages) if timestamp(raw) >= T0 + 30_000)
    half = len(messages) // 2
    produce(kafka, topic, [*messages[:warm], *GARBAGE])
    daemon = Daemon(env, run / "daemon.log").start()
    held_then: set[str] = set()

    def caught_up() -> bool:
        return committed(kafka, group, topic) == end_offset(kafka, topic)

    try:
        for part in (messages[warm:half], messages[half:]):
            wait_for(caught_up, 60, "a checkpoint of all so far")
            held_then |= ids_in(checkpoint(run / "state.sqlite"))
            produce(kafka, topic, part)
        wait_for(caught_up, 60, "the whole stream")
        audit = run / "alerts.jsonl"
        wait_for(lambda: audit.exists() and alias(REDACTED) in audit.read_text(), 30, "alerts")
    finally:
        assert daemon.stop() == 0
    files = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    assert {"state.sqlite", "state.sqlite.outbox", "alerts.jsonl", "daemon.log"} <= set(files)
    log = files["daemon.log"].decode()
    # The paths that could leak were taken: deliveries failed and were retried.
    failures = {"notification not delivered, will retry", "notification dead"}
    retried = {line["sink"] for line in daemon.logs() if line.get("message") in failures}
    assert {"hook", "mail", "retrain"} <= retried, retried
    assert '"stopped"' in log

    # Secrets: nowhere.
    for name, secret in SECRETS.items():
        leaks = [file for file, data in files.items() if secret.encode() in data]
        assert not leaks, f"the {name} is written in {leaks}"

    # Event ids: only predictions the label join may still hold, those within the label
    # TTL of the end that never got a label; the state does hold those (and not those of
    # minute 2, expired). Those it held earlier, during the warm-up or waiting for labels
    # that came later, are gone from every file.
    waiting = {event_id(MINUTES - 1, i) for i in range(PER_MINUTE) if unlabelled(MINUTES - 1, i)}
    assert held_then - waiting, "earlier checkpoints held events that were labelled later"
    for file, data in files.items():
        present = ids_in(data)
        assert present <= waiting, f"{file} holds event ids {sorted(present - waiting)[:10]}"
    # Read from the checkpoint's blob: in the file's bytes an id may straddle the
    # boundary of two SQLite pages.
    assert ids_in(checkpoint(run / "state.sqlite")) == waiting

    # Raw feature values: in no notation and no binary form. (The scan does see raw
    # floats: the scores of the predictions waiting in the label join.)
    raw = {v for column in values.values() for v in column} | set(GARBAGE_VALUES)
    for file, data in files.items():
        written = (raw & numbers_in(data)) | (raw & doubles_in(data))
        assert not written, f"{file} holds raw feature values {sorted(written)[:5]}"
    assert {scores[key] for key in waiting} & doubles_in(files["state.sqlite"])

    # The redacted feature drifted and was alerted on, by its alias only.
    for file in ("alerts.jsonl", "state.sqlite.outbox", "daemon.log"):
        assert REDACTED.encode() not in files[file], f"{REDACTED} is named in {file}"
    alerted = [
        a
        for record in map(json.loads, files["alerts.jsonl"].splitlines())
        for a in record["alerts"]
    ]
    subjects = {
        a["labels"]["subject"] for a in alerted if a["labels"]["detector"] == "feature_drift"
    }
    assert {alias(REDACTED), VISIBLE} <= subjects
    assert alias(REDACTED).encode() in files["state.sqlite.outbox"]
    sink_lines = [
        line for line in daemon.logs() if line.get("sink") == "stdout" and "labels" in line
    ]
    assert alias(REDACTED) in {line["labels"]["subject"] for line in sink_lines}
