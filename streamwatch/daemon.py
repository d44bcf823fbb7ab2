"""``streamwatch run``: the daemon's wiring around the engine: the outbox, the state
file, the changelog (scaled out), the endpoints, signals, and the Kafka source whose
rebalances go to the engine's state."""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from streamwatch.alerting.outbox import Outbox, outbox_path
from streamwatch.config import Settings
from streamwatch.errors import SourceError, storage
from streamwatch.observe import health
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.pipeline.reference import load_reference
from streamwatch.sinks import RoutedSink, build_sinks
from streamwatch.sources import kafka_source
from streamwatch.state.store import StateStore

if TYPE_CHECKING:
    from streamwatch.scaleout.changelog import Changelog
    from streamwatch.sources.confluent import ConfluentSource
    from streamwatch.sources.kafka import KafkaSource

log = logging.getLogger("streamwatch")


def build_engine(
    settings: Settings,
    sinks: list[RoutedSink],
    metrics: Metrics,
    outbox: Outbox | None = None,
    changelog: Changelog | None = None,
) -> Engine:
    """The engine of ``settings``, with its pinned reference when ``REFERENCE__PATH`` is
    set (replay and demo build theirs here too)."""
    reference = None
    if settings.reference.path is not None:
        reference = load_reference(settings.reference.path, settings)
    return Engine(settings, sinks, metrics, reference, outbox, changelog)


def run(settings: Settings) -> int:
    """Run the daemon until SIGTERM or SIGINT: state restored, Kafka consumed, alerts
    delivered, endpoints served; then checkpoint, commit, deliver, exit 0."""
    sinks = build_sinks(settings)
    registry = CollectorRegistry()
    with storage("outbox", outbox_path(settings)):  # damaged, read-only: a StateError
        outbox = Outbox(outbox_path(settings))
    changelog = None
    if settings.state.changelog_topic is not None:
        from streamwatch.scaleout.changelog import Changelog  # kafka-python, like the source

        # Before the source subscribes: the partials topic, consumed with the source, must
        # be created with the source's partitions, not auto-created with the broker's.
        changelog = Changelog(settings)
    engine = build_engine(settings, sinks, Metrics(registry), outbox, changelog)
    server = None
    if settings.server.enabled:
        server = health.serve(settings.server, registry, engine.health, settings.state.path)
        address = f"{settings.server.host}:{server.server_port}"
        log.info("serving /metrics, /livez, /readyz", extra={"address": address})
    store = StateStore(settings.state.path, settings)
    store.check_mode(partitioned=settings.state.changelog_topic is not None)
    if changelog is None:
        _restore(engine, store)  # scaled out: each partition's state, once assigned
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: engine.stop())
    try:
        source = _source(settings, engine, store)
    except SourceError:
        if not engine.stopping.is_set():
            raise
        log.info("stopped before Kafka could be reached")
        if changelog is not None:
            changelog.close()
        if server is not None:
            server.shutdown()
        store.close()
        outbox.close()
        return 0
    engine.health.assigned = lambda: source.ready
    try:
        engine.run(source, store, keep=False)
    finally:
        source.close()
        if changelog is not None:
            changelog.close()
        store.close()
        outbox.close()
        if server is not None:
            server.shutdown()
    log.info("stopped", extra=engine.metrics.summary())
    return 0


def _restore(engine: Engine, store: StateStore) -> None:
    checkpoint = store.load()
    if checkpoint is not None:
        engine.checkpointer.restore(checkpoint.state, checkpoint.offsets)
        log.info(
            "state restored",
            extra={
                "models": len(engine.processor.models),
                "path": str(store.path),
                "offsets": {f"{t}:{p}": o for (t, p), o in checkpoint.offsets.items()},
            },
        )
    engine.health.restored = True


def _source(settings: Settings, engine: Engine, store: StateStore) -> KafkaSource | ConfluentSource:
    """The Kafka consumer, its rebalances wired to the engine's state (scaled out: each
    partition's, restored and saved through the changelog)."""
    kafka = settings.kafka
    if engine.changelog is not None and settings.state.spread_models:
        # Partials come to their owners with the events.
        topics = (*kafka.topics, settings.state.partials_topic)
        kafka = kafka.model_copy(update={"topics": topics})
    return kafka_source(kafka, engine.metrics, engine.stopping, engine.rebalance.hooks(store))
