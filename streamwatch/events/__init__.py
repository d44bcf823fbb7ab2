"""Events: their schema and their decoding, the only place in streamwatch that parses
input. A batch of messages becomes columns of its good events (:class:`EventColumns`,
no object per event on the common path) and the bad messages, each saying why."""

from streamwatch.events.columns import EventColumns
from streamwatch.events.decoder import Decoded, decode_batch, gc_paused
from streamwatch.events.exact import decode
from streamwatch.events.polled import Polled
from streamwatch.events.schema import (
    BadEvent,
    BadReason,
    Event,
    Message,
    Offsets,
    Origin,
)

__all__ = [
    "BadEvent",
    "BadReason",
    "Decoded",
    "Event",
    "EventColumns",
    "Message",
    "Offsets",
    "Origin",
    "Polled",
    "decode",
    "decode_batch",
    "gc_paused",
]
