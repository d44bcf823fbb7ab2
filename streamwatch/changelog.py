"""The changelog: each partition's state in a compacted Kafka topic, so that it follows
the partition to whichever instance of the group is assigned it (as Kafka Streams does).

Changelog partition N holds source partition N's state, one record per checkpoint under
the key "N": compaction keeps the last, and only the last is ever read (seek to the end
less one). A record is a checkpoint in the state file's own encoding (compressed), with
its format and the digest of the settings that shape it, so a record written by other
settings is refused like a state file is.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence

import msgspec
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streamwatch.config import Settings
from streamwatch.errors import ChangelogError, StateError
from streamwatch.sources.kafka import client_config
from streamwatch.state import FORMAT, Offsets, decode_offsets, encode_offsets, shape

log = logging.getLogger("streamwatch.changelog")

MAX_RECORD_BYTES = 64 << 20  # a partition's state; the topic's max.message.bytes
SEGMENT_MS = 600_000  # roll segments every 10 minutes, so that compaction has work
READ_TIMEOUT_MS = 30_000
ZLIB_LEVEL = 1  # histograms compress 4x at level 1; higher levels cost 5x more for 5%


class _Record(msgspec.Struct, array_like=True):
    format: int
    shape: str
    offsets: bytes
    state: bytes  # zlib-compressed: a quarter of the size, about 5 ms a megabyte


class Changelog:
    """Writes and reads partitions' states in ``STATE__CHANGELOG_TOPIC``."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.state.changelog_topic
        assert topic is not None
        self.topic = topic
        self.shape = shape(settings)
        self.kafka = settings.kafka
        config = client_config(settings.kafka)
        self._ensure_topic(config)
        self._producer = KafkaProducer(
            **config, acks="all", retries=5, max_request_size=MAX_RECORD_BYTES, linger_ms=0
        )
        self._reader = KafkaConsumer(
            **config,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=MAX_RECORD_BYTES,
            fetch_max_bytes=MAX_RECORD_BYTES,
        )

    def _ensure_topic(self, config: Mapping[str, object]) -> None:
        """Create the topic if missing: compacted, as many partitions as the source."""
        admin = KafkaAdminClient(**config)
        try:
            partitions = max(
                len(admin.describe_topics([t])[0]["partitions"]) for t in self.kafka.topics
            )
            topic = NewTopic(
                self.topic,
                num_partitions=partitions,
                replication_factor=-1,  # the broker's default
                topic_configs={
                    "cleanup.policy": "compact",
                    "max.message.bytes": str(MAX_RECORD_BYTES),
                    "segment.ms": str(SEGMENT_MS),
                },
            )
            try:
                admin.create_topics([topic])
                log.info(
                    "changelog topic created", extra={"topic": self.topic, "partitions": partitions}
                )
            except TopicAlreadyExistsError:
                existing = len(admin.describe_topics([self.topic])[0]["partitions"])
                if existing < partitions:
                    raise StateError(
                        f"changelog {self.topic} has {existing} partitions, the source "
                        f"{partitions}: add partitions to it (the same number)"
                    ) from None
        finally:
            admin.close()

    def write(self, states: Mapping[int, tuple[bytes, Offsets]]) -> None:
        """Write each partition's encoded state and the offsets it covers; return once
        the broker has them all (raise :class:`ChangelogError` otherwise)."""
        try:
            self._send(states)
        except KafkaError as exc:
            raise ChangelogError(f"changelog {self.topic}: {exc}") from exc

    def _send(self, states: Mapping[int, tuple[bytes, Offsets]]) -> None:
        futures = [
            self._producer.send(
                self.topic,
                key=str(partition).encode(),
                value=encode(blob, offsets, self.shape),
                partition=partition,
            )
            for partition, (blob, offsets) in states.items()
        ]
        self._producer.flush(timeout=self.kafka.connect_timeout)
        for future in futures:
            future.get(timeout=0)  # raises the send's error, if it failed

    def read(self, partitions: Sequence[int]) -> dict[int, tuple[bytes, Offsets]]:
        """The last state written of each of ``partitions`` that has one."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self._reader.assign(tps)
        ends = self._reader.end_offsets(tps)
        wanted = {tp for tp in tps if ends[tp] > 0}
        for tp in wanted:
            self._reader.seek(tp, ends[tp] - 1)
        found: dict[int, tuple[bytes, Offsets]] = {}
        while wanted:
            batches = self._reader.poll(timeout_ms=READ_TIMEOUT_MS)
            if not batches:
                raise StateError(f"changelog {self.topic}: no record came in {READ_TIMEOUT_MS} ms")
            for tp, records in batches.items():
                if tp in wanted and records:
                    where = f"changelog {self.topic}[{tp.partition}]"
                    found[tp.partition] = decode(records[-1].value, self.shape, where)
                    wanted.discard(tp)
        self._reader.assign([])
        return found

    def close(self) -> None:
        self._producer.close(timeout=3)
        self._reader.close()


def encode(blob: bytes, offsets: Offsets, shape: str) -> bytes:
    """A changelog record: a partition's encoded state and the offsets it covers."""
    state = zlib.compress(blob, ZLIB_LEVEL)
    return msgspec.msgpack.encode(_Record(FORMAT, shape, encode_offsets(offsets), state))


def decode(value: bytes, shape: str, where: str) -> tuple[bytes, Offsets]:
    """A record's state and offsets; refused if written by another format or shape."""
    try:
        record = msgspec.msgpack.decode(value, type=_Record)
        offsets = decode_offsets(record.offsets)
        state = zlib.decompress(record.state)
    except (msgspec.DecodeError, ValueError, TypeError, zlib.error) as exc:
        raise StateError(f"{where} is unreadable: {exc}") from exc
    if record.format != FORMAT or record.shape != shape:
        raise StateError(
            f"{where} was written by another streamwatch format or with other window or "
            "detector settings; restore those settings, or name a new "
            "STREAMWATCH_STATE__CHANGELOG_TOPIC to start afresh"
        )
    return state, offsets
