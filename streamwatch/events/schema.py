"""The event schema (DESIGN.md, "Events"), and what a source hands over: messages with
their origins, and the bad ones that are dead-lettered unchanged.

``null`` means absent throughout: ``"features": null`` is an event without features,
and a class probability or segment that is ``null`` is not there. (Both paths of
decoding agree on this; an Arrow column cannot tell a null from a missing key.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, NamedTuple

import msgspec
from msgspec import Meta

# Epoch milliseconds up to the end of year 9999; anything bigger is a mistake, not a date.
MAX_EPOCH_MS = 253_402_300_799_999
MAX_TEXT = 256  # characters of an id, version, class or segment name
MAX_CATEGORY = 1024  # characters of a class label or segment value
MAX_FEATURES = 2048
MAX_CLASSES = 256
MAX_SEGMENT_KEYS = 64
MAX_LATENCY_MS = 1e9
_INT64 = Meta(ge=-(2**63), le=2**63 - 1)

Text = Annotated[str, Meta(min_length=1, max_length=MAX_TEXT)]
Category = Annotated[str, Meta(max_length=MAX_CATEGORY)]
# Feature names and values are checked where columns are built (batch.py): per-key and
# per-value constraints here would double the cost of decoding.
Int = Annotated[int, _INT64]
Timestamp = (
    Annotated[datetime, Meta(tz=True)]
    | Annotated[int, Meta(ge=0, le=MAX_EPOCH_MS)]
    | Annotated[float, Meta(ge=0, le=MAX_EPOCH_MS)]
)
FeatureValue = float | str | bool | None
Output = Category | Int | float | bool
Probability = Annotated[float, Meta(ge=0.0, le=1.0)]


class Event(msgspec.Struct, gc=False, frozen=True):
    """One prediction or label event (see DESIGN.md, "Events").

    An event with ``label`` and none of prediction, score or probabilities is a label
    event; one with a prediction is a prediction event (and may carry its label).
    """

    event_id: Text | Int
    model_id: Text
    timestamp: Timestamp
    model_version: Text | Int | None = None
    features: Annotated[dict[str, FeatureValue], Meta(max_length=MAX_FEATURES)] | None = {}
    prediction: Output | None = None
    score: Probability | None = None
    probabilities: (
        Annotated[dict[Text, Probability | None], Meta(max_length=MAX_CLASSES)] | None
    ) = None
    label: Output | None = None
    segments: (
        Annotated[dict[Text, Category | Int | bool | None], Meta(max_length=MAX_SEGMENT_KEYS)]
        | None
    ) = None
    latency_ms: Annotated[float, Meta(ge=0.0, le=MAX_LATENCY_MS)] | None = None
    error: bool | None = None
    source: Text | None = None  # of a label: "review" for a reviewer's verdict

    def __post_init__(self) -> None:
        if (
            self.prediction is None
            and self.score is None
            and self.probabilities is None
            and self.label is None
        ):
            raise ValueError("event has neither a prediction (or score) nor a label")

    @property
    def is_label(self) -> bool:
        return self.prediction is None and self.score is None and self.probabilities is None

    @property
    def epoch_seconds(self) -> float:
        ts = self.timestamp
        return ts.timestamp() if isinstance(ts, datetime) else ts / 1000.0


BadReason = Literal[
    "future_timestamp",
    "model_limit",
    "model_unknown",
    "model_spread",
    "bad_partial",
    "too_large",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "too_deep",
]


class Origin(msgspec.Struct, frozen=True, gc=False):
    """Where a message came from: topic (or file), partition and offset (or line). (A
    struct: one is made per message, in C, several times faster than a dataclass.)"""

    topic: str
    partition: int
    offset: int

    @property
    def key(self) -> tuple[str, int]:
        return (self.topic, self.partition)


class Message(NamedTuple):
    """A message as a source hands it over: its bytes and where it came from."""

    value: bytes
    origin: Origin


Offsets = dict[tuple[str, int], int]  # (topic, partition) -> the next offset to process


@dataclass(frozen=True, slots=True)
class BadEvent:
    """A message that is not a valid event, kept unchanged for the dead-letter topic."""

    reason: BadReason
    detail: str
    raw: bytes
    origin: Origin
