"""The same inputs give the same results: a fixed seeded stream (two models with labels,
a spread model, bad messages, a crash and restart in the middle) replayed through a
single instance and through a scaled-out one, every window's statistics digest and
every notification compared with what was recorded (``same_results.json``).

Record again only for a change that is meant to change results, and say so:
``.venv/bin/python -m tests.unit.pipeline.test_same_results --record``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from streamwatch.config import Settings, load_settings
from streamwatch.events import Message, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.conclusion import Produced
from streamwatch.pipeline.engine import Engine
from streamwatch.pipeline.reference import load_reference
from streamwatch.state.store import StateStore
from tests.factories import FakeChangelog
from tests.scenarios.streams import DAY, Change, Stream, messages

RECORDED = Path(__file__).with_name("same_results.json")
TOPIC, PARTITIONS, CHUNK = "t", 3, 400
WINDOWS = DAY + 12  # a reference day, then 12 windows evaluated
STREAMS = {
    "fraud": replace(Stream(seed=15, trough=10, peak=120), change=Change("shift", 1.5)),
    "churn": replace(Stream(seed=16, trough=10, peak=120), change=Change("concept", 0.3)),
    "s": replace(Stream(seed=17, trough=10, peak=120), change=Change("mix", 0.5)),
}
BAD = [b"not json", b'{"event_id": 1}', b'{"event_id":"x","model_id":"fraud"}']


def _as(model: str, raw: bytes) -> bytes:
    return raw.replace(b'"model_id":"fraud"', b'"model_id":"%s"' % model.encode())


def _stream(model: str, first: int, last: int) -> list[bytes]:
    return [_as(model, raw) for raw in messages(STREAMS[model], first, last)]


def partitioned() -> dict[int, list[bytes]]:
    """Each partition's messages: fraud and churn keyed by model id, "s" by event id,
    a bad message now and then."""
    out: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for model in ("fraud", "churn", "s"):
        for k, raw in enumerate(_stream(model, 1, WINDOWS)):
            key = msgspec.json.decode(raw)["event_id"] if model == "s" else model
            out[zlib.crc32(key.encode()) % PARTITIONS].append(raw)
            if k % 997 == 0:
                out[k % PARTITIONS].append(BAD[k % len(BAD)])
    return out


def settings(directory: Path, scaled: bool) -> Settings:
    reference = directory / "reference.jsonl"
    reference.write_bytes(b"\n".join(_stream("s", 0, 1)))
    lines = [
        "STREAMWATCH_WINDOW__SIZE=10m",
        "STREAMWATCH_WINDOW__ALLOWED_LATENESS=1m",
        "STREAMWATCH_REFERENCE__SEASON=1d",
        f"STREAMWATCH_REFERENCE__PATH={reference}",
        "STREAMWATCH_LABELS__HORIZON=15m",
        'STREAMWATCH_DETECTORS__SLICES__PROTECTED=["gender"]',
        f"STREAMWATCH_STATE__PATH={directory / 'state.sqlite'}",
        "STREAMWATCH_SERVER__ENABLED=false",
    ]
    if scaled:
        lines += ["STREAMWATCH_STATE__CHANGELOG_TOPIC=cl", 'STREAMWATCH_STATE__SPREAD_MODELS=["s"]']
    env = directory / "streamwatch.env"
    env.write_text("\n".join(lines) + "\n")
    return load_settings([env])


class Run:
    """One engine at a time over the partitions' messages, in rounds of a chunk per
    partition (with the partials published so far); a checkpoint after every round."""

    def __init__(self, directory: Path, scaled: bool) -> None:
        self.settings = settings(directory, scaled)
        self.reference = load_reference(self.settings.reference.path or Path(), self.settings)
        self.log = FakeChangelog(PARTITIONS) if scaled else None
        self.source = partitioned()
        if not scaled:  # one partition: everything in one order
            self.source = {0: [m for p in sorted(self.source) for m in self.source[p]]}
        self.outcomes: list[Produced] = []
        self.bad = 0.0

    def start(self) -> tuple[Engine, StateStore]:
        engine = Engine(
            self.settings,
            [],
            Metrics(CollectorRegistry()),
            self.reference,
            changelog=self.log,  # type: ignore[arg-type]
        )
        store = StateStore(self.settings.state.path, self.settings)
        if self.log is not None:
            engine.rebalance.acquire(set(self.source), store)
        else:
            checkpoint = store.load()
            if checkpoint is not None:
                engine.checkpointer.restore(checkpoint.state, checkpoint.offsets)
        return engine, store

    def batch(self, engine: Engine) -> list[Message]:
        batch = []
        for p, raws in self.source.items():
            at = engine.positions.next.get((TOPIC, p), 0)
            chunk = raws[at : at + CHUNK]
            batch += [Message(raw, Origin(TOPIC, p, at + k)) for k, raw in enumerate(chunk)]
            if self.log is not None:
                done = engine.positions.next.get(("cl.partials", p), 0)
                partials = self.log.partials.get(p, [])[done:]
                batch += [
                    Message(v, Origin("cl.partials", p, done + k)) for k, v in enumerate(partials)
                ]
        return batch

    def rounds(self, engine: Engine, store: StateStore, n: int | None) -> Iterator[None]:
        while n is None or n > 0:
            batch = self.batch(engine)
            if not batch:
                return
            self.outcomes.append(engine.process(batch))
            engine.checkpointer.checkpoint(store)
            n = None if n is None else n - 1
            yield

    def __call__(self) -> dict[str, Any]:
        engine, store = self.start()
        for _ in self.rounds(engine, store, 20):
            pass
        self.outcomes.append(engine.process(self.batch(engine)))  # lost: no checkpoint
        self.bad += engine.metrics.total("streamwatch_bad_events")
        store.close()
        engine, store = self.start()  # the crash: again from the checkpoint
        for _ in self.rounds(engine, store, None):
            pass
        self.outcomes.append(engine.finish())
        self.bad += engine.metrics.total("streamwatch_bad_events")
        store.close()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        windows = sorted(
            {
                (w.model, w.role, w.bounds.start, w.n, digest(w.findings))
                for outcome in self.outcomes
                for w in outcome.closed
            }
        )
        notifications = sorted(
            {
                (n.id, n.model, n.window.start, tuple((a.fingerprint, a.status) for a in n.alerts))
                for outcome in self.outcomes
                for n in outcome.notifications
            }
        )
        return {
            "windows": [list(w) for w in windows],
            "notifications": [
                [i, m, s, [list(a) for a in alerts]] for i, m, s, alerts in notifications
            ],
            "bad_events": self.bad,
        }


def digest(findings: Any) -> str:
    """The window log's digest: every statistic to six significant digits."""
    statistics = sorted(
        (f.detector, f.subject, f.statistic, f"{f.value:.6g}", f.severity.value) for f in findings
    )
    return hashlib.sha256(msgspec.json.encode(statistics)).hexdigest()[:16]


def results(directory: Path) -> dict[str, Any]:
    out = {}
    for mode in ("single", "scaled"):
        (directory / mode).mkdir()
        out[mode] = json.loads(json.dumps(Run(directory / mode, mode == "scaled")()))
    return out


def test_a_fixed_stream_gives_the_recorded_windows_and_notifications(tmp_path: Path) -> None:
    recorded = json.loads(RECORDED.read_text())
    now = results(tmp_path)
    for mode in ("single", "scaled"):
        assert len(now[mode]["windows"]) > 300  # both roles, three models, and outcomes
        assert now[mode]["notifications"], "the changes alert"
        assert now[mode]["windows"] == recorded[mode]["windows"], mode
        assert now[mode]["notifications"] == recorded[mode]["notifications"], mode
        assert now[mode]["bad_events"] == recorded[mode]["bad_events"], mode


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        RECORDED.write_text(json.dumps(results(Path(tmp)), indent=0) + "\n")
    print(f"recorded {RECORDED}")
