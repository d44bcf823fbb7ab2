"""The scenario runner: a stream through the whole of streamwatch as the daemon runs it
(engine, alert policy, durable outbox, a file sink, checkpoints), and what the sink got.

Each reference day is run once and checkpointed (stopped as by SIGTERM); every scenario
on that stream resumes from a copy of its state file, outbox and sink file, as a
restarted daemon would. The scenarios of one reference day run in one process, two
processes at a time.
"""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry

from streamwatch.alerting.outbox import Outbox, outbox_path
from streamwatch.config import Settings, load_settings
from streamwatch.detectors import Finding
from streamwatch.events import BadEvent, Origin
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline.engine import Engine
from streamwatch.sinks import build_sinks
from streamwatch.sources import Message
from streamwatch.state.store import StateStore
from tests.scenarios.streams import (
    CHANGE,
    DAY,
    SCENARIOS,
    START,
    WINDOW,
    Scenario,
    Stream,
    clock,
    messages,
)

TOPIC = "predictions"


class MemorySource:
    """Messages from a list, in batches; at its end either the input ends (the engine
    closes every window) or, with ``stop``, the engine stops as on SIGTERM."""

    def __init__(self, raws: Sequence[bytes], offset: int = 0, stop: Engine | None = None):
        self.messages = [Message(raw, Origin(TOPIC, 0, offset + k)) for k, raw in enumerate(raws)]
        self.position = 0
        self.stop = stop

    def poll(self, max_records: int) -> list[Message] | None:
        batch = self.messages[self.position : self.position + max_records]
        self.position += len(batch)
        if batch:
            return batch
        if self.stop is None:
            return None
        self.stop.stop()
        return []

    def dead_letter(self, bad: Sequence[BadEvent]) -> None:
        """Bad events are counted by the engine; there is nowhere else to keep them."""

    def settle(self) -> bool:
        return True

    def commit(self, offsets: object) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release."""


def settings(directory: Path) -> Settings:
    """The scenario suite's settings, read from an env file as the daemon reads them:
    every detector on, 10-minute windows, a reference of a day, a file sink."""
    env = directory / "streamwatch.env"
    env.write_text(
        "\n".join(
            [
                "STREAMWATCH_WINDOW__SIZE=10m",
                "STREAMWATCH_WINDOW__ALLOWED_LATENESS=1m",
                "STREAMWATCH_REFERENCE__SEASON=1d",
                "STREAMWATCH_LABELS__HORIZON=15m",
                'STREAMWATCH_DETECTORS__SLICES__PROTECTED=["gender"]',
                "STREAMWATCH_SINKS__AUDIT__KIND=file",
                f"STREAMWATCH_SINKS__AUDIT__PATH={directory / 'alerts.jsonl'}",
                f"STREAMWATCH_STATE__PATH={directory / 'state.sqlite'}",
                "STREAMWATCH_SERVER__ENABLED=false",
                "",
            ]
        )
    )
    return load_settings([env])


@dataclass(frozen=True, slots=True)
class Seen:
    """A closed window as the runner keeps it, with every finding (for diagnosis); role
    "reference" (pooled), "evaluated" (its drift), or "outcomes" (its labels judged)."""

    index: int
    role: str
    n: int
    findings: tuple[Finding, ...]


@dataclass(slots=True)
class Run:
    """A scenario's run: what the file sink received, and the windows that closed."""

    scenario: Scenario
    alerts: list[dict[str, Any]]  # every alert the file sink received, in order
    windows: list[Seen] = field(default_factory=list)
    events: int = 0
    seconds: float = 0.0

    def firing(self) -> Counter[tuple[str, str]]:
        """Firing notifications (not repeats) per (detector, subject)."""
        return Counter(
            (a["labels"]["detector"], a["labels"]["subject"])
            for a in self.alerts
            if a["status"] == "firing" and not a["repeated"]
        )

    def by_detector(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for (detector, _), n in self.firing().items():
            counts[detector] += n
        return counts

    def delay(self) -> int | None:
        """Windows from the change to the first firing alert of an expected detector
        (and subject) about a window at or after it; ``None`` if none fired."""
        change = self.scenario.stream.change
        start = CHANGE if change is None else change.start
        hits = [
            index(a) - start
            for a in self.alerts
            if a["status"] == "firing"
            and a["labels"]["detector"] in self.scenario.expect
            and self.scenario.subject in (None, a["labels"]["subject"])
            and index(a) >= start
        ]
        return min(hits, default=None)

    @property
    def evaluated(self) -> int:
        return len({s.index for s in self.windows if s.role == "evaluated"})

    def describe_alerts(self, alerts: Iterable[dict[str, Any]] | None = None) -> str:
        lines = []
        for a in self.alerts if alerts is None else alerts:
            if a["status"] != "firing" or a["repeated"]:
                continue
            labels = a["labels"]
            lines.append(
                f"window {index(a)} ({clock(index(a))}): {labels['severity']} "
                f"{labels['detector']} {labels['subject']} {labels['statistic']} "
                f"value {a['value']:.4g} threshold {a['threshold']:.4g}: "
                f"{a['annotations']['description']}"
            )
        return "\n".join(lines) or "(no firing alert)"

    def trace(self, detector: str, subject: str | None, first: int, last: int) -> str:
        """A detector's findings about windows ``first`` to ``last``: what it measured,
        against which threshold, and what it said."""
        lines = []
        for seen in self.windows:
            if not first <= seen.index <= last:
                continue
            for f in seen.findings:
                if f.detector == detector and subject in (None, f.subject):
                    lines.append(
                        f"window {seen.index} ({clock(seen.index)}, {seen.role}, n={seen.n}): "
                        f"{f.subject} {f.statistic} {f.value:.4g} threshold {f.threshold:.4g}"
                        f" {f.severity.value}: {f.explanation}"
                    )
        return "\n".join(lines) or f"(no {detector} finding in windows {first}..{last})"


def index(alert: dict[str, Any]) -> int:
    """The scenario window an alert is about."""
    start = datetime.fromisoformat(alert["window"]["start"]).timestamp()
    return round((start - START) / WINDOW)


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference day processed once and checkpointed (state, outbox, sink file), from
    which each scenario on the same stream resumes as a restarted daemon would."""

    directory: Path
    offset: int  # messages it processed
    windows: list[Seen]
    events: int
    seconds: float


class Suite:
    """Runs scenarios in ``directory``, each reference day once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.references: dict[Stream, Reference] = {}

    def reference(self, stream: Stream) -> Reference:
        stream = stream.unchanged
        done = self.references.get(stream)
        if done is None:
            here = self.directory / f"reference-{len(self.references)}"
            here.mkdir(parents=True)
            raws = messages(stream, 0, DAY, final=False)
            started = time.perf_counter()
            windows = _through_engine(settings(here), raws, 0, stop=True)
            done = self.references[stream] = Reference(
                here, len(raws), windows, _predictions(raws), time.perf_counter() - started
            )
        return done

    def run(self, scenario: Scenario) -> Run:
        """The scenario from the end of its reference day: the day's checkpoint, outbox
        and sink file copied, then the rest of the stream through a restored engine."""
        change = scenario.stream.change
        assert change is None or change.start >= DAY, "a change within the reference day"
        reference = self.reference(scenario.stream)
        here = self.directory / slug(scenario.name)
        shutil.copytree(reference.directory, here)
        raws = messages(scenario.stream, DAY, scenario.windows)
        started = time.perf_counter()
        windows = _through_engine(settings(here), raws, reference.offset, stop=False)
        return Run(
            scenario,
            read_alerts(here / "alerts.jsonl"),
            reference.windows + windows,
            reference.events + _predictions(raws),
            reference.seconds + time.perf_counter() - started,
        )

    def straight(self, scenario: Scenario) -> Run:
        """The scenario in one run from its first event, without a checkpoint."""
        here = self.directory / f"{slug(scenario.name)}-straight"
        here.mkdir(parents=True)
        raws = messages(scenario.stream, 0, scenario.windows)
        started = time.perf_counter()
        windows = _through_engine(settings(here), raws, 0, stop=False)
        seconds = time.perf_counter() - started
        alerts = read_alerts(here / "alerts.jsonl")
        return Run(scenario, alerts, windows, _predictions(raws), seconds)


def run_all(
    directory: Path, names: Iterable[str], straight: Iterable[str] = (), workers: int = 2
) -> tuple[dict[str, Run], dict[str, Run]]:
    """Run scenarios (and, for comparison, some of them straight through), the scenarios
    of one reference day in one process, ``workers`` processes at a time (a spawned
    pool: the engine runs on one core). Return the runs and the straight runs by name."""
    groups: dict[Stream, list[str]] = {}
    for name in names:
        groups.setdefault(SCENARIOS[name].stream.unchanged, []).append(name)
    tasks = [(directory / f"group-{k}", group, False) for k, group in enumerate(groups.values())]
    tasks += [(directory / f"straight-{k}", [name], True) for k, name in enumerate(straight)]
    # The longest first, so that the pool ends together: a day and more runs longest.
    tasks.sort(key=lambda t: -sum(SCENARIOS[n].windows - DAY + 50 for n in t[1]) - 200 * t[2])
    runs: dict[str, Run] = {}
    straights: dict[str, Run] = {}
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        for (_, group, whole), done in zip(tasks, pool.map(_group, tasks), strict=True):
            (straights if whole else runs).update(zip(group, done, strict=True))
    return runs, straights


def _group(task: tuple[Path, list[str], bool]) -> list[Run]:
    directory, names, whole = task
    suite = Suite(directory)
    if whole:
        return [suite.straight(SCENARIOS[name]) for name in names]
    return [suite.run(SCENARIOS[name]) for name in names]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _through_engine(
    settings: Settings, raws: Sequence[bytes], offset: int, stop: bool
) -> list[Seen]:
    """Run the engine over ``raws`` as the daemon runs: restored from the state file if
    it has a checkpoint, checkpointing, delivering through the outbox to the sinks; at
    the end of ``raws`` stopped as by SIGTERM (``stop``) or, as at the end of a replay,
    with every window closed."""
    outbox = Outbox(outbox_path(settings))
    engine = Engine(settings, build_sinks(settings), Metrics(CollectorRegistry()), outbox=outbox)
    store = StateStore(settings.state.path, settings)
    try:
        checkpoint = store.load()
        if checkpoint is not None:
            engine.checkpointer.restore(checkpoint.state, checkpoint.offsets)
        source = MemorySource(raws, offset, engine if stop else None)
        outcomes = engine.run(source, store)
        assert engine.outbox.pending() == 0, "notifications left undelivered"
    finally:
        store.close()
        outbox.close()
    return [
        Seen(w.bounds.index - START // WINDOW, w.role, w.n, tuple(w.findings))
        for outcome in outcomes
        for w in outcome.closed
    ]


def _predictions(raws: Sequence[bytes]) -> int:
    return sum(1 for raw in raws if b'"prediction"' in raw)


def read_alerts(path: Path) -> list[dict[str, Any]]:
    """The alerts that changed in each notification the file sink appended, in order
    (not those still firing beside them), with the value, threshold, window and repeat
    their annotations tell."""
    if not path.exists():
        return []
    with path.open("rb") as lines:
        notifications = [msgspec.json.decode(line) for line in lines]
    return [
        _typed(a) for n in notifications for a in n["alerts"] if a["fingerprint"] in n["changed"]
    ]


def _typed(alert: dict[str, Any]) -> dict[str, Any]:
    notes = alert["annotations"]
    start, end = notes["window"].split("/")
    return {
        **alert,
        "value": float(notes["value"]),
        "threshold": float(notes["threshold"]),
        "window": {"start": start, "end": end},
        "repeated": notes.get("repeated") == "true",
    }
