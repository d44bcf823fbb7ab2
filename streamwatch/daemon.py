"""``streamwatch run``: the daemon's wiring around the engine: the outbox, the state
file, the changelog (scaled out), the endpoints, signals, and the Kafka source whose
rebalances go to the engine's state."""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import ExitStack
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from streamwatch.alerting.outbox import Outbox, outbox_path
from streamwatch.config import Settings, env_name
from streamwatch.errors import ConfigError, SourceError, storage
from streamwatch.observe import health
from streamwatch.observe.health import Health
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.pipeline.reference import Pinned, load_reference
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
    alive: Health | None = None,
) -> Engine:
    """The engine of ``settings``, with the pinned references of ``REFERENCE__PATH`` and
    of the models that set their own (replay and demo build theirs here too)."""
    return Engine(settings, sinks, metrics, pinned(settings), outbox, changelog, alive)


def pinned(settings: Settings) -> dict[str, Pinned]:
    """Each model's pinned reference, read from ``REFERENCE__PATH``, or from the model's
    own file (``MODELS__<MODEL>__REFERENCE__PATH``), which must hold its events (only
    those count). A model with its own performance settings reads the common file again,
    with its own task."""
    path = settings.reference.path
    reference = {} if path is None else load_reference(path, settings)
    for key in settings.models:
        own = settings.for_model(key)
        common = own.reference.path == path
        if own.reference.path is None or (
            common and own.detectors.performance == settings.detectors.performance
        ):
            continue
        found = {
            m: p for m, p in load_reference(own.reference.path, own).items() if m.lower() == key
        }
        if not found and not common:
            raise ConfigError(
                f"{env_name(('models', key, 'reference', 'path'))}: {own.reference.path} "
                f"holds no prediction events of model {key!r}"
            )
        reference = {m: p for m, p in reference.items() if m.lower() != key} | found
    return reference


def run(settings: Settings) -> int:
    """Run the daemon until SIGTERM or SIGINT: state restored, Kafka consumed, alerts
    delivered, endpoints served; then checkpoint, commit, deliver, exit 0.

    The endpoints answer first: while Kafka cannot be reached at start, ``/livez`` says
    the daemon waits for it (a restart would not help), and a SIGTERM ends the wait."""
    sinks = build_sinks(settings)
    registry = CollectorRegistry()
    with ExitStack() as resources:
        with storage("outbox", outbox_path(settings)):  # damaged, read-only: a StateError
            outbox = Outbox(outbox_path(settings))
        resources.callback(outbox.close)
        alive = Health(settings.server.liveness_timeout, waiting=True)
        if settings.server.enabled:
            server = health.serve(settings.server, registry, alive, settings.state.path)
            resources.callback(server.shutdown)
            address = f"{settings.server.host}:{server.server_port}"
            log.info("serving /metrics, /livez, /readyz", extra={"address": address})
        stopping = threading.Event()  # until the engine is made, a signal stops the wait
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
        changelog = None
        if settings.state.changelog_topic is not None:
            changelog = _changelog(settings, stopping)
            if changelog is None:
                return 0
            resources.callback(changelog.close)
        engine = build_engine(settings, sinks, Metrics(registry), outbox, changelog, alive)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: engine.stop())
        if stopping.is_set():
            engine.stop()
        store = StateStore(settings.state.path, settings)
        resources.callback(store.close)
        store.check_mode(partitioned=settings.state.changelog_topic is not None)
        if changelog is None:
            _restore(engine, store)  # scaled out: each partition's state, once assigned
        try:
            source = _source(settings, engine, store)
        except SourceError:
            if not engine.stopping.is_set():
                raise
            log.info("stopped before Kafka could be reached")
            return 0
        resources.callback(source.close)
        alive.waiting = False
        alive.polled()
        engine.health.assigned = lambda: source.ready
        engine.run(source, store, keep=False)
    log.info("stopped", extra=engine.metrics.summary())
    return 0


def _changelog(settings: Settings, stopping: threading.Event) -> Changelog | None:
    """The changelog (scaled out), made once Kafka answers; None if stopped first.

    Before the source subscribes: the partials topic, consumed with the source, must be
    created with the source's partitions, not auto-created with the broker's."""
    from streamwatch.scaleout.changelog import Changelog  # kafka-python, like the source

    delay = 1.0
    while True:
        try:
            return Changelog(settings)
        except SourceError as exc:  # Kafka cannot be reached: wait, as the source does
            log.error(
                "cannot reach Kafka; retrying", extra={"error": str(exc), "retry_in_seconds": delay}
            )
        if stopping.wait(delay):
            log.info("stopped before Kafka could be reached")
            return None
        delay = min(delay * 2, 30.0)


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
