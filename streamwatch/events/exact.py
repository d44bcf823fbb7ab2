"""The exact path: one message at a time, typed by msgspec straight from the bytes.

It is the definition of a valid event: the columnar path (columnar.py) hands it every
message it cannot vouch for, and must agree with it on every other (the differential
test, tests/unit/events/test_columnar.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from streamwatch.events.schema import BadEvent, BadReason, Event, Origin

_decoder = msgspec.json.Decoder(Event)
decode_fast = _decoder.decode  # raises on a bad message: for bytes known to be good


def decode(
    raw: bytes, origin: Origin, max_bytes: int, latest: float = math.inf
) -> Event | BadEvent:
    """Decode one message; every failure becomes a :class:`BadEvent`, nothing raises.
    Events stamped after ``latest`` (epoch seconds) are bad: one event from the far
    future would move the watermark past every window."""
    if len(raw) > max_bytes:
        return BadEvent("too_large", f"{len(raw)} bytes > limit of {max_bytes}", raw, origin)
    try:
        event = _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        return BadEvent(_classify(str(exc)), str(exc), raw, origin)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return BadEvent("invalid_json", str(exc), raw, origin)
    except RecursionError:
        return BadEvent("too_deep", "nested deeper than the decoder allows", raw, origin)
    seconds = event.epoch_seconds
    if 0 <= seconds <= latest:
        return event
    if seconds > latest:
        detail = f"timestamp {event.timestamp} is ahead of the clock"
        return BadEvent("future_timestamp", detail, raw, origin)
    # As for the numeric forms (>= 0): a window before 1970 has no place here, and one
    # before year 1 cannot even be written down.
    return BadEvent("invalid_value", f"timestamp {event.timestamp} is before 1970", raw, origin)


def decode_each(
    raws: Sequence[bytes], origins: Sequence[Origin], max_bytes: int, latest: float
) -> tuple[list[int], list[Event], list[BadEvent]]:
    """Messages one by one: the positions and events of the good ones, and the bad."""
    positions, events, bad = [], [], []
    for i, (raw, origin) in enumerate(zip(raws, origins, strict=True)):
        result = decode(raw, origin, max_bytes, latest)
        if isinstance(result, BadEvent):
            bad.append(result)
        else:
            positions.append(i)
            events.append(result)
    return positions, events, bad


def _classify(message: str) -> BadReason:
    if message.startswith("Object missing required field"):
        return "missing_field"
    if message.startswith("Expected `object`") and " - at `" not in message:
        return "not_an_object"  # no path: the message itself is not a JSON object
    if message.startswith("Expected `") and ", got `" in message:
        return "wrong_type"
    return "invalid_value"
