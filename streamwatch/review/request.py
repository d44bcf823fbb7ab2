"""A review request: one prediction a person should look at, and why it was chosen."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray

from streamwatch.alerting.notification import isoformat

_FNV_OFFSET, _FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    """``rules``: each rule that selected the event, with the measures it read;
    ``probability``: the chance the event had of being requested, which weights its
    verdict; ``features``: only those ``REVIEW__FEATURES`` names (never redacted ones)."""

    model: str
    event_id: str
    version: str | None
    time: float  # the prediction's event time, epoch seconds
    window: int  # its window's index
    rules: Mapping[str, Mapping[str, float | None]]
    probability: float
    features: Mapping[str, float | str | None] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Stable: the same event is stored (and requested) once, however often chosen."""
        return f"review:{self.model}:{self.event_id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event_id": self.event_id,
            "model": self.model,
            "version": self.version,
            "time": isoformat(self.time),
            "rules": {name: dict(measures) for name, measures in self.rules.items()},
            "probability": self.probability,
            "features": dict(self.features),
        }

    def encode(self) -> bytes:
        return msgspec.json.encode(self.to_dict())


def uniforms(model: str, event_ids: NDArray[np.object_]) -> NDArray[np.float64]:
    """A uniform draw in [0, 1) per event, fixed by the model and event id alone: the
    same event is chosen or not however its input was batched, replayed or restarted.
    FNV-1a over the id's UTF-8 bytes, column by column (a byte matrix, no loop per
    event), then splitmix64's finaliser to spread the bits."""
    if len(event_ids) == 0:
        return np.empty(0)
    raw = np.char.encode(event_ids.astype(np.str_), "utf-8")
    width = raw.dtype.itemsize
    matrix = np.frombuffer(raw.tobytes(), np.uint8).reshape(len(raw), max(width, 1))
    h = np.full(len(raw), _seed(model), np.uint64)
    for j in range(width):
        column = matrix[:, j].astype(np.uint64)
        present = column != 0  # padding (ids shorter than the widest) changes nothing
        h = np.where(present, (h ^ column) * np.uint64(_FNV_PRIME), h)
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _seed(model: str) -> int:
    """FNV-1a over the model's bytes: where every one of its events' hashes starts."""
    h = _FNV_OFFSET
    for byte in model.encode():
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h
