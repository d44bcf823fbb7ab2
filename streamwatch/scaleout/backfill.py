"""``streamwatch backfill``: months of logged events on a Dask cluster, with the results
of one replay.

Each file (a table, or a JSONL file) is a task, and a partition of its own: a worker
reads it, windows its events and updates the detectors of each model's part
(scaleout/spread.py), as a spread model's partition does, then closes every window of
it and returns the parts' partials: each window's detector state and each window's
labelled outcomes. Each window is then merged from its files' partials, in file order,
and evaluated once by a model's aggregate (scaleout/spread_aggregate.py, with no
timeout: every file is in), in the order one instance evaluates them. Where a model's
labelled reference is pinned, its windows depend on nothing evaluated before them and
are judged on the workers, in runs of consecutive windows; its labelled windows, where
the sequential detectors read each window's errors in order, and every window of a
model without, are judged by the driver. The windows then go through the alert policy,
the outbox and the sinks as a replay's do.

Files are taken in path order, and give the single replay's results when that order
is their time order (one file a day, say): each file has its own watermark, so an
event late within its file is late in the replay too. A label joins a prediction of
its own file: a table whose rows hold their labels (logged predictions joined with
their outcomes) loses none; label rows apart, a day's last labels in the next day's
file find no prediction. Every model needs a pinned reference (``REFERENCE__PATH``):
parts are binned on its grid. Shadow pairs and human review are left out.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streamwatch.config import Settings
from streamwatch.errors import ConfigError
from streamwatch.events import BadEvent, decode_batch
from streamwatch.pipeline.admission import Admission
from streamwatch.pipeline.by_model import by_model
from streamwatch.pipeline.conclusion import Produced
from streamwatch.pipeline.engine import POLL_RECORDS, Engine
from streamwatch.pipeline.monitor import ClosedWindow, ModelMonitor, Processed
from streamwatch.pipeline.reference import Pinned
from streamwatch.scaleout import spread
from streamwatch.scaleout.spread import Part
from streamwatch.scaleout.spread_aggregate import Aggregate
from streamwatch.sources.tables import is_table, open_files, table_files
from streamwatch.state.store import shape

log = logging.getLogger("streamwatch.backfill")


@dataclass
class Done:
    """What a file's task gives back: its parts' partials (encoded), and its counts."""

    partials: list[bytes] = field(default_factory=list)
    processed: dict[str, Processed] = field(default_factory=dict)  # by model
    bad: list[BadEvent] = field(default_factory=list)
    unpinned: Counter[str] = field(default_factory=Counter)  # events of models unpinned


def files_of(paths: Sequence[Path]) -> list[Path]:
    """The files of ``paths`` (directories of tables opened), each a partition."""
    return [f for p in paths for f in (table_files(p) if is_table(p) else [p])]


def check(settings: Settings, reference: dict[str, Pinned], files: Sequence[Path]) -> None:
    """Refuse, at start, what a backfill cannot do; and every file's columns."""
    if settings.window.mode != "time":
        raise ConfigError("STREAMWATCH_WINDOW__MODE: a backfill needs time windows")
    if not reference:
        raise ConfigError(
            "STREAMWATCH_REFERENCE__PATH: a backfill needs a pinned reference "
            "(each worker bins its windows on the reference's grid)"
        )
    open_files(files, settings.table).close()  # checks every table's columns


def part(settings: Settings, path: Path, partition: int, reference: dict[str, Pinned]) -> Done:
    """One file, windowed into a part per model: every window closed, its partials."""
    done = Done()
    source = open_files([path], settings.table)
    parts: dict[str, Part] = {}
    admission = Admission(settings)
    try:
        while (polled := source.poll(POLL_RECORDS)) is not None:
            decoded = decode_batch(polled, settings.max_message_bytes)
            done.bad += decoded.bad
            decoded = admission.known(decoded, done.bad)  # WATCH, as a replay's
            for model_id, events in by_model(decoded.columns).items():
                pinned = reference.get(model_id)
                if pinned is None:
                    done.unpinned[model_id] += len(events.positions)
                    continue
                model = parts.get(model_id)
                if model is None:
                    judge = ModelMonitor(model_id, settings.for_model(model_id), pinned)
                    model = parts[model_id] = Part(judge, partition)
                processed = model.process(events.predictions, events.labels)
                done.processed[model_id] = _add(done.processed.get(model_id), processed)
    finally:
        source.close()
    form = shape(settings)
    for model in parts.values():
        model.finish()
        done.partials += map(spread.encode, model.partials(form))
    return done


def _add(total: Processed | None, more: Processed) -> Processed:
    if total is None:
        return Processed(more.windowed, more.late, [], more.labels)
    return Processed(
        total.windowed + more.windowed, total.late + more.late, [], total.labels + more.labels
    )


def evaluate(
    settings: Settings,
    reference: dict[str, Pinned],
    done: Sequence[Done],
    judged: Judged | None = None,
    runs: int = 1,
) -> list[ClosedWindow]:
    """The files' partials merged by window, in file order, and evaluated once each (see
    :meth:`Aggregate.drain`). A model whose labelled reference is pinned has windows that
    depend on nothing evaluated before them: those are judged apart, in ``runs`` runs of
    consecutive windows by ``judged`` (on the cluster's workers); the rest here."""
    aggregates: dict[str, Aggregate] = {}
    apart: dict[str, list[tuple[int, bytes]]] = {}  # model -> (window, partial), file order
    form = shape(settings)  # a digest of the settings: once, not per partial
    for partials in done:  # in file order: a window's partials merge in that order
        for blob in partials.partials:
            partial = spread.decode(blob, form)
            aggregate = aggregates.get(partial.model)
            if aggregate is None:
                aggregate = _aggregate(settings, reference, partial.model, len(done))
                aggregates[partial.model] = aggregate
            if partial.window is not None and aggregate.judge.outcomes.pool.complete:
                apart.setdefault(partial.model, []).append((partial.window[0], blob))
            else:
                aggregate.receive(partial)
    tasks = [(m, run) for m, partials in sorted(apart.items()) for run in _runs(partials, runs)]
    if judged is None:
        judged = partial_judge(settings, reference, len(done))
    closed = [w for model in sorted(aggregates) for w in aggregates[model].drain()]
    closed += [w for windows in judged(tasks) for w in windows]
    return sorted(closed, key=_order)


Judged = Callable[[list[tuple[str, list[bytes]]]], list[list[ClosedWindow]]]


def partial_judge(settings: Settings, reference: dict[str, Pinned], files: int) -> Judged:
    """Runs of windows judged here, one after another."""
    return lambda tasks: [judge(settings, reference, m, run, files) for m, run in tasks]


def _runs(partials: list[tuple[int, bytes]], runs: int) -> list[list[bytes]]:
    """Partials in about ``runs`` runs of consecutive windows, all of a window's in one
    (in file order: the sort is stable)."""
    partials = sorted(partials, key=lambda p: p[0])
    indices = sorted({index for index, _ in partials})
    firsts = indices[:: max(1, -(-len(indices) // runs))]
    split: list[list[bytes]] = [[] for _ in firsts]
    for index, blob in partials:
        split[bisect.bisect_right(firsts, index) - 1].append(blob)
    return split


def judge(
    settings: Settings, reference: dict[str, Pinned], model: str, partials: list[bytes], files: int
) -> list[ClosedWindow]:
    """Windows of ``model`` (their partials, in file order), merged and evaluated."""
    aggregate = _aggregate(settings, reference, model, files)
    form = shape(settings)
    for blob in partials:
        aggregate.receive(spread.decode(blob, form))
    return aggregate.drain()


def _aggregate(
    settings: Settings, reference: dict[str, Pinned], model: str, files: int
) -> Aggregate:
    judge = ModelMonitor(model, settings.for_model(model), reference[model])
    return Aggregate(judge, files, math.inf)


def _order(window: ClosedWindow) -> tuple[float, int, str]:
    """As a replay's batch concludes what closed in it: by window end (a window's events
    before its outcomes), models by id."""
    return window.bounds.end, int(window.role == "outcomes"), window.model


def run(
    engine: Engine,
    settings: Settings,
    reference: dict[str, Pinned],
    paths: Sequence[Path],
    workers: int | None = None,
    scheduler: str | None = None,
) -> list[Produced]:
    """Backfill ``paths`` on a local cluster of ``workers`` processes, or on the Dask
    cluster at ``scheduler``; conclude the windows through ``engine``."""
    import dask
    from distributed import Client, LocalCluster

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: a backfill needs one worker at least")
    files = files_of(paths)
    check(settings, reference, files)
    cluster = None
    if scheduler is None:
        # Dask's workers give freed memory back to the system past 64 KiB (its default):
        # numpy's temporaries then come from the system each time, and numpy-bound tasks
        # ran 2.2 times slower here (measured with half-second tasks).
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = LocalCluster(
                n_workers=workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # a free port: another cluster may have 8787
            )
    try:
        client = Client(scheduler if cluster is None else cluster)
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise
    try:
        settings_at, reference_at = client.scatter([settings, reference], broadcast=True)
        futures = client.map(
            part,
            [settings_at] * len(files),
            files,
            range(len(files)),
            [reference_at] * len(files),
            pure=False,
        )
        done: list[Done] = client.gather(futures)
        account(engine, done)

        def judged(tasks: list[tuple[str, list[bytes]]]) -> list[list[ClosedWindow]]:
            return client.gather(  # type: ignore[no-any-return]
                [
                    client.submit(judge, settings_at, reference_at, m, run, len(files), pure=False)
                    for m, run in tasks
                ]
            )

        runs = max(1, 2 * sum(client.nthreads().values()))  # a few a worker, for balance
        closed = evaluate(settings, reference, done, judged, runs)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return engine.conclude(batches(closed))


def account(engine: Engine, done: Sequence[Done]) -> None:
    """Count what the files held."""
    for result in done:
        if result.bad:
            engine.accounting.rejected(result.bad)
        for model_id, processed in result.processed.items():
            engine.accounting.processed(model_id, processed)
    unpinned = sum((result.unpinned for result in done), Counter[str]())
    if unpinned:
        log.warning("models with no pinned reference left out", extra={"events": unpinned})


def batches(closed: list[ClosedWindow]) -> Iterable[list[ClosedWindow]]:
    """The windows in batches of one window end and role each."""
    batch: list[ClosedWindow] = []
    for window in closed:
        if batch and _order(batch[0])[:2] != _order(window)[:2]:
            yield batch
            batch = []
        batch.append(window)
    if batch:
        yield batch
