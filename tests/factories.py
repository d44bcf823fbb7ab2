"""Small builders of events and batches shared by the tests."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np
from prometheus_client import CollectorRegistry

from streamwatch.alerting.policy import Alert, Notification, fingerprint
from streamwatch.batch import Batch, Columns
from streamwatch.config import Settings, WindowSettings
from streamwatch.errors import ChangelogError, StateError
from streamwatch.events import BadEvent, EventColumns, Message, Offsets, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.scaleout.spread import Partial
from streamwatch.windows import WindowBounds

WINDOW = WindowBounds(5, 1_795_305_600.0, 1_795_309_200.0)


def event(
    event_id: str = "e1",
    model_id: str = "m",
    timestamp: Any = 1_700_000_000_000,
    **fields: Any,
) -> bytes:
    """A prediction event as JSON bytes; a score of 0.5 unless outputs are given."""
    body: dict[str, Any] = {"event_id": event_id, "model_id": model_id, "timestamp": timestamp}
    if not {"prediction", "score", "probabilities", "label"} & fields.keys():
        body["score"] = 0.5
    body.update(fields)
    return msgspec.json.encode(body)


def origin(offset: int = 0) -> Origin:
    return Origin("test", 0, offset)


def origins_of(columns: EventColumns) -> list[Origin]:
    """Where each good event of decoded columns came from, in their order."""
    return [columns.polled.origin(i) for i in columns.at.tolist()]


def numeric_batch(event_time: np.ndarray, **columns: np.ndarray) -> Batch:
    return Batch(np.asarray(event_time, dtype=np.float64), Columns(dict(columns)), Columns())


def categorical_batch(event_time: np.ndarray, **columns: list[str | None]) -> Batch:
    cat = {k: np.array(v, dtype=np.object_) for k, v in columns.items()}
    return Batch(np.asarray(event_time, dtype=np.float64), Columns({}, cat), Columns())


def drift_notification(
    id_: str, model: str = "fraud", subjects: tuple[str, ...] = ("amount",)
) -> Notification:
    """A notification of critical feature drift on ``subjects``, for sink tests."""

    def alert(subject: str) -> Alert:
        labels = {
            "alertname": "FeatureDrift",
            "model": model,
            "detector": "feature_drift",
            "subject": subject,
            "statistic": "wasserstein",
        }
        return Alert(
            status="firing",
            labels={**labels, "severity": "critical"},
            summary=f"critical: feature drift on {subject} of {model}",
            description=f"feature '{subject}' moved 0.41 reference sd",
            starts_at=WINDOW.end,
            ends_at=None,
            fingerprint=fingerprint(labels),
            value=0.41,
            threshold=0.25,
            window=WINDOW,
        )

    return Notification(id_, model, WINDOW, tuple(alert(s) for s in subjects))


class FakeChangelog:
    """The changelog's contract: the last record written per partition is what is read;
    partials are appended to the partition their model's key hashes to."""

    def __init__(self, partitions: int = 8) -> None:
        self.records: dict[int, tuple[bytes, Offsets]] = {}
        self.partials: dict[int, list[bytes]] = {}
        self.partitions = partitions
        self.shape = "fake"
        self.failing = False

    def write(self, states: Mapping[int, tuple[bytes, Offsets]]) -> None:
        if self.failing:
            raise ChangelogError("broker gone")
        self.records.update({p: (blob, dict(o)) for p, (blob, o) in states.items()})

    def read(self, partitions: Sequence[int]) -> dict[int, tuple[bytes, Offsets] | StateError]:
        return {p: self.records[p] for p in partitions if p in self.records}

    def publish(self, partials: Sequence[Partial]) -> None:
        if self.failing:
            raise ChangelogError("broker gone")
        for partial in partials:
            owner = zlib.crc32(partial.model.encode()) % self.partitions
            self.partials.setdefault(owner, []).append(msgspec.msgpack.encode(partial))


class Batches:
    """A source of fixed batches, then the end (``None``); it keeps no dead letters and
    every commit succeeds. Subclasses change what a poll does."""

    def __init__(self, batches: Sequence[list[Message]]) -> None:
        self.batches = list(batches)

    def poll(self, max_records: int) -> list[Message] | None:
        return self.batches.pop(0) if self.batches else None

    def dead_letter(self, bad: Sequence[BadEvent]) -> None:
        """None here."""

    def settle(self) -> bool:
        return True

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> bool:
        return True

    def close(self) -> None:
        """Nothing to close."""


def engine_fed(lines: Sequence[bytes]) -> Engine:
    """An engine of one-minute windows and no sinks that processed ``lines`` (in
    batches of 500) and closed every window."""
    settings = Settings(window=WindowSettings(size="1m", allowed_lateness=0.0), sinks={})
    e = Engine(settings, [], Metrics(CollectorRegistry()))
    for k in range(0, len(lines), 500):
        batch = lines[k : k + 500]
        e.process([Message(raw, Origin("t", 0, k + i)) for i, raw in enumerate(batch)])
    e.finish()
    return e
