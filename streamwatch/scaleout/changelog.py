"""The changelog: each partition's state in a compacted Kafka topic, so that it follows
the partition to whichever instance of the group is assigned it (as Kafka Streams does).

Changelog partition N holds source partition N's state, one record per checkpoint under
the key "N": compaction keeps the last, and only the last is ever read (seek to the end
less one). A record is a checkpoint in the state file's own encoding (compressed), with
its format, the digest of the settings that shape it and the checkpoint's checksum, so
a record written by other settings, or changed since, is refused like a state file is.

With spread models, the changelog's producer also publishes their partials (spread.py)
to ``STATE__CHANGELOG_TOPIC``.partials, created beside it with as many partitions.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Mapping, Sequence

import msgspec
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streamwatch.config import Settings
from streamwatch.errors import ChangelogError, SourceError, StateError
from streamwatch.events import Offsets
from streamwatch.scaleout import spread
from streamwatch.scaleout.spread import Partial
from streamwatch.sources.kafka import client_config
from streamwatch.state.store import (
    FORMAT,
    ZLIB_LEVEL,
    checksum,
    decode_offsets,
    encode_offsets,
    shape,
)

log = logging.getLogger("streamwatch.changelog")

MAX_RECORD_BYTES = 64 << 20  # a partition's state; the topic's max.message.bytes
SEGMENT_MS = 600_000  # roll segments every 10 minutes, so that compaction has work
READ_TIMEOUT_MS = 30_000
DESCRIBE_TRIES = 20  # half a second apart


class _Record(msgspec.Struct, array_like=True):
    format: int
    shape: str
    offsets: bytes
    state: bytes  # zlib-compressed: a quarter of the size, about 5 ms a megabyte
    checksum: bytes = b""  # of the offsets and the state uncompressed; none before format 6


class Changelog:
    """Writes and reads partitions' states in ``STATE__CHANGELOG_TOPIC``."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.state.changelog_topic
        assert topic is not None
        self.topic = topic
        spread = settings.state.spread_models
        self.partials_topic = settings.state.partials_topic if spread else None
        self.shape = shape(settings)
        self.kafka = settings.kafka
        config = client_config(settings.kafka)
        try:
            self.partitions = self._ensure_topics(config)
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
        except KafkaError as exc:
            raise SourceError(
                f"changelog {topic}: Kafka at {settings.kafka.bootstrap_servers}: {exc}"
            ) from exc

    def _ensure_topics(self, config: Mapping[str, object]) -> int:
        """Create the topic (compacted) and the partials topic if missing, with as many
        partitions as the source; return that number."""
        admin = KafkaAdminClient(**config)
        try:
            partitions = max(
                len(admin.describe_topics([t])[0]["partitions"]) for t in self.kafka.topics
            )
            compacted = {"cleanup.policy": "compact", "segment.ms": str(SEGMENT_MS)}
            _ensure(admin, self.topic, partitions, compacted)
            if self.partials_topic is not None:  # its partition N goes with the source's
                _ensure(admin, self.partials_topic, partitions, {}, exact=True)
        finally:
            admin.close()
        return partitions

    def write(self, states: Mapping[int, tuple[bytes, Offsets]]) -> None:
        """Write each partition's encoded state and the offsets it covers; return once
        the broker has them all (raise :class:`ChangelogError` otherwise)."""
        self._deliver(
            self.topic,
            [
                (str(partition).encode(), encode(blob, offsets, self.shape), partition)
                for partition, (blob, offsets) in states.items()
            ],
        )

    def publish(self, partials: Sequence[Partial]) -> None:
        """Publish spread models' partials, keyed by model (so that one partition, and
        one instance, has all of a model's); return once the broker has them all."""
        assert self.partials_topic is not None
        records = [(p.model.encode(), spread.encode(p), None) for p in partials]
        self._deliver(self.partials_topic, records)

    def _deliver(self, topic: str, records: Sequence[tuple[bytes, bytes, int | None]]) -> None:
        try:
            futures = [
                self._producer.send(topic, key=key, value=value, partition=partition)
                for key, value, partition in records
            ]
            self._producer.flush(timeout=self.kafka.connect_timeout)
            for future in futures:
                future.get(timeout=0)  # raises the send's error, if it failed
        except KafkaError as exc:
            raise ChangelogError(f"{topic}: {exc}") from exc

    def read(self, partitions: Sequence[int]) -> dict[int, tuple[bytes, Offsets] | StateError]:
        """The last state written of each of ``partitions`` that has one, or why it is
        refused (another format or settings, a failed checksum)."""
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self._reader.assign(tps)
        ends = self._reader.end_offsets(tps)
        wanted = {tp for tp in tps if ends[tp] > 0}
        for tp in wanted:
            self._reader.seek(tp, ends[tp] - 1)
        found: dict[int, tuple[bytes, Offsets] | StateError] = {}
        while wanted:
            batches = self._reader.poll(timeout_ms=READ_TIMEOUT_MS)
            if not batches:
                raise StateError(f"changelog {self.topic}: no record came in {READ_TIMEOUT_MS} ms")
            for tp, records in batches.items():
                if tp in wanted and records:
                    where = f"changelog {self.topic}[{tp.partition}]"
                    try:
                        found[tp.partition] = decode(records[-1].value, self.shape, where)
                    except StateError as exc:
                        found[tp.partition] = exc
                    wanted.discard(tp)
        self._reader.assign([])
        return found

    def close(self) -> None:
        self._producer.close(timeout=3)
        self._reader.close()


def _ensure(
    admin: KafkaAdminClient,
    topic: str,
    partitions: int,
    configs: Mapping[str, str],
    exact: bool = False,
) -> None:
    """Create ``topic`` if missing; refuse one with fewer partitions than the source (or,
    if ``exact``, other than the source's)."""
    new = NewTopic(
        topic,
        num_partitions=partitions,
        replication_factor=-1,  # the broker's default
        topic_configs={"max.message.bytes": str(MAX_RECORD_BYTES), **configs},
    )
    try:
        admin.create_topics([new])
        log.info("topic created", extra={"topic": topic, "partitions": partitions})
    except TopicAlreadyExistsError:
        existing = _partitions(admin, topic)
        if existing < partitions or (exact and existing != partitions):
            raise StateError(
                f"{topic} has {existing} partitions, the source {partitions}: it needs "
                "the same number"
            ) from None


def _partitions(admin: KafkaAdminClient, topic: str) -> int:
    """How many partitions ``topic`` has. Just created by another instance, it may show
    none for a moment, until the broker's metadata has it."""
    for _ in range(DESCRIBE_TRIES):
        found = len(admin.describe_topics([topic])[0]["partitions"])
        if found:
            return found
        time.sleep(0.5)
    return 0


def encode(blob: bytes, offsets: Offsets, shape: str) -> bytes:
    """A changelog record: a partition's encoded state and the offsets it covers."""
    encoded = encode_offsets(offsets)
    state = zlib.compress(blob, ZLIB_LEVEL)
    return msgspec.msgpack.encode(_Record(FORMAT, shape, encoded, state, checksum(encoded, blob)))


def decode(value: bytes, shape: str, where: str) -> tuple[bytes, Offsets]:
    """A record's state and offsets; refused if written by another format or shape, or if
    it fails its checksum."""
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
    if checksum(record.offsets, state) != record.checksum:
        raise StateError(
            f"{where} fails its checksum (changed since it was written) and is not restored; "
            "name a new STREAMWATCH_STATE__CHANGELOG_TOPIC to start afresh"
        )
    return state, offsets
