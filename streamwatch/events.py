"""The event schema and its decoding: the only place in streamwatch that parses input.

A message becomes either an :class:`Event` (typed by msgspec, straight from the bytes,
no dict round trip) or a :class:`BadEvent` that says why not. Decoding never raises.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal, NamedTuple

import msgspec
from msgspec import Meta

# Epoch milliseconds up to the end of year 9999; anything bigger is a mistake, not a date.
_MAX_EPOCH_MS = 253_402_300_799_999
_INT64 = Meta(ge=-(2**63), le=2**63 - 1)

Text = Annotated[str, Meta(min_length=1, max_length=256)]
Name = Annotated[str, Meta(min_length=1, max_length=256)]
Category = Annotated[str, Meta(max_length=1024)]
# Feature names and values are checked where columns are built (batch.py): per-key and
# per-value constraints here would double the cost of decoding.
Int = Annotated[int, _INT64]
Timestamp = (
    Annotated[datetime, Meta(tz=True)]
    | Annotated[int, Meta(ge=0, le=_MAX_EPOCH_MS)]
    | Annotated[float, Meta(ge=0, le=_MAX_EPOCH_MS)]
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
    features: Annotated[dict[str, FeatureValue], Meta(max_length=2048)] = {}
    prediction: Output | None = None
    score: Probability | None = None
    probabilities: Annotated[dict[Name, Probability], Meta(max_length=256)] | None = None
    label: Output | None = None
    segments: Annotated[dict[Name, Category | Int | bool], Meta(max_length=64)] | None = None
    latency_ms: Annotated[float, Meta(ge=0.0, le=1e9)] | None = None
    error: bool | None = None

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
    "spread_label",
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


@dataclass(frozen=True, slots=True)
class Decoded:
    """A batch split into good events (with their raw bytes and origins) and bad ones."""

    events: list[Event]
    raw: list[bytes]
    origins: list[Origin]
    bad: list[BadEvent]


_decoder = msgspec.json.Decoder(Event)


def decode(raw: bytes, origin: Origin, max_bytes: int) -> Event | BadEvent:
    """Decode one message; every failure becomes a :class:`BadEvent`, nothing raises."""
    if len(raw) > max_bytes:
        return BadEvent("too_large", f"{len(raw)} bytes > limit of {max_bytes}", raw, origin)
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        return BadEvent(_classify(str(exc)), str(exc), raw, origin)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return BadEvent("invalid_json", str(exc), raw, origin)
    except RecursionError:
        return BadEvent("too_deep", "nested deeper than the decoder allows", raw, origin)


def decode_batch(messages: Sequence[Message], max_bytes: int, latest: float = math.inf) -> Decoded:
    """Decode a batch of messages. Events stamped after ``latest`` (epoch seconds) are
    bad: one event from the far future would move the watermark past every window."""
    events: list[Event] = []
    raws: list[bytes] = []
    origins: list[Origin] = []
    bad: list[BadEvent] = []
    decode_fast = _decoder.decode
    for raw, origin in messages:
        result: Event | BadEvent
        try:  # the usual case decodes in C, without a Python call per message
            result = decode_fast(raw) if len(raw) <= max_bytes else decode(raw, origin, max_bytes)
        except (ValueError, RecursionError):  # msgspec's errors, UnicodeDecodeError
            result = decode(raw, origin, max_bytes)  # again, to say why: bad ones are rare
        if isinstance(result, BadEvent):
            bad.append(result)
            continue
        seconds = result.epoch_seconds  # once: hot path
        if 0 <= seconds <= latest:
            events.append(result)
            raws.append(raw)
            origins.append(origin)
        elif seconds > latest:
            detail = f"timestamp {result.timestamp} is ahead of the clock"
            bad.append(BadEvent("future_timestamp", detail, raw, origin))
        else:
            # As for the numeric forms (>= 0): a window before 1970 has no place here,
            # and one before year 1 cannot even be written down.
            detail = f"timestamp {result.timestamp} is before 1970"
            bad.append(BadEvent("invalid_value", detail, raw, origin))
    return Decoded(events, raws, origins, bad)


def _classify(message: str) -> BadReason:
    if message.startswith("Object missing required field"):
        return "missing_field"
    if message.startswith("Expected `object`") and " - at `" not in message:
        return "not_an_object"  # no path: the message itself is not a JSON object
    if message.startswith("Expected `") and ", got `" in message:
        return "wrong_type"
    return "invalid_value"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (nesting is fine).

    Decoding allocates many small containers; a collection in the middle of a large
    batch nearly halves throughput (BENCHMARKS.md) and finds nothing to free. Held
    over a whole batch, the batch's objects are freed by reference counting before
    the collector is back, so it never scans them at all.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
