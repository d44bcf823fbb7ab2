"""``streamwatch backfill`` on a local Dask cluster of two worker processes gives a single
replay's results: the same statistics digest of every window (its events' and its
labelled outcomes') and the same notification ids, over 20 Parquet files of a day of
logged predictions with their labels, a mean shift of 1.5 sd in its middle."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from streamwatch import cli
from streamwatch.config import Settings, load_settings
from streamwatch.daemon import build_engine, pinned
from streamwatch.errors import ConfigError
from streamwatch.observe.metrics import Metrics
from streamwatch.pipeline import engine as engine_module
from streamwatch.pipeline.conclusion import Produced
from streamwatch.scaleout import backfill
from streamwatch.sources.tables import open_files
from tests.scenarios.streams import CHANGE, DAY, Change, Stream, messages
from tests.tables import flatten, with_labels, write, write_jsonl
from tests.unit.pipeline.test_same_results import digest

FILES = 20
# Lateness past a window, horizon under it: labelled windows come due between windows'
# closes in another rhythm (a labelled window is due at its end plus the horizon plus
# the lateness, a window closes at its end plus the lateness). No season: the outcome
# reference is full after a few labelled windows.
LATE = (
    "STREAMWATCH_REFERENCE__SEASON=0",
    "STREAMWATCH_REFERENCE__MIN_EVENTS=300",
    "STREAMWATCH_DETECTORS__ESTIMATED_PERFORMANCE__MIN_LABELS=300",
    "STREAMWATCH_WINDOW__ALLOWED_LATENESS=25m",
    "STREAMWATCH_LABELS__HORIZON=5m",
)
STREAM = replace(Stream(seed=22, trough=10, peak=120), change=Change("shift", 1.5))


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reference day (a Parquet training set), then the logs of the day after as one
    JSONL file and as 20 Parquet files of consecutive rows."""
    directory = tmp_path_factory.mktemp("backfill")
    training = with_labels(messages(STREAM, 0, DAY))
    write(flatten(training), directory / "reference.parquet")
    unlabelled = [
        msgspec.json.encode(msgspec.json.decode(raw) | {"label": None}) for raw in training
    ]
    write(flatten(unlabelled), directory / "features.parquet")  # a reference without labels
    raws = with_labels(messages(STREAM, DAY, CHANGE + 30))
    write_jsonl(raws, directory / "logs.jsonl")
    size = -(-len(raws) // FILES)
    for k in range(FILES):
        part = raws[k * size : (k + 1) * size]
        write(flatten(part), directory / "logs" / f"day=04/part-{k:02d}.parquet")
    (directory / "logs" / "_SUCCESS").touch()
    return directory


def settings(directory: Path, *extra: str, reference: str = "reference.parquet") -> Settings:
    env = directory / "streamwatch.env"
    env.write_text(
        "\n".join(
            [
                "STREAMWATCH_WINDOW__SIZE=10m",
                "STREAMWATCH_REFERENCE__SEASON=1d",
                f"STREAMWATCH_REFERENCE__PATH={directory / reference}",
                "STREAMWATCH_LABELS__HORIZON=15m",
                'STREAMWATCH_TABLE__SEGMENTS=["region","gender"]',
                "STREAMWATCH_SERVER__ENABLED=false",
                "STREAMWATCH_SINKS__AUDIT__KIND=file",
                f"STREAMWATCH_SINKS__AUDIT__PATH={directory / 'alerts.jsonl'}",
                *extra,
            ]
        )
        + "\n"
    )
    return load_settings([env])


def results(produced: list[Produced]) -> dict[str, Any]:
    return {
        "windows": sorted(
            (w.model, w.role, w.bounds.start, w.n, digest(w.findings))
            for p in produced
            for w in p.closed
        ),
        "notifications": sorted(n.id for p in produced for n in p.notifications),
    }


@pytest.mark.parametrize(
    ("reference", "extra"),
    [
        ("reference.parquet", ()),
        # No season: the outcome reference is full after a few labelled windows.
        (
            "features.parquet",
            (
                "STREAMWATCH_REFERENCE__SEASON=0",
                "STREAMWATCH_REFERENCE__MIN_EVENTS=300",
                "STREAMWATCH_DETECTORS__ESTIMATED_PERFORMANCE__MIN_LABELS=300",
            ),
        ),
        ("features.parquet", LATE),
    ],
)
def test_a_backfill_on_two_workers_gives_the_single_replays_digests_and_ids(
    logs: Path, reference: str, extra: tuple[str, ...]
) -> None:
    """With labels, the reference is the outcome reference, and windows are judged on the
    workers; without, the first labelled windows are pooled into it, and estimation
    starts once it is due: windows are judged in the driver, in the replay's order."""
    config = settings(logs, *extra, reference=reference)
    single = build_engine(config, [], Metrics(CollectorRegistry()))
    produced = single.run(open_files([logs / "logs.jsonl"], config.table), None)
    single_windows = [w for p in produced for w in p.closed]
    replayed = results(produced)
    metrics = Metrics(CollectorRegistry())
    engine = build_engine(config, [], metrics)
    filled = results(backfill.run(engine, config, pinned(config), [logs / "logs"], workers=2))
    assert len(replayed["windows"]) >= 2 * 30  # each window's events and outcomes
    assert {w[1] for w in replayed["windows"]} == {"evaluated", "outcomes"}
    assert len(replayed["notifications"]) >= 2  # the shift fires, and more
    estimated = [
        w for w in single_windows if any(f.detector == "estimated_performance" for f in w.findings)
    ]
    assert estimated  # the estimate is in the digests: it depends on the outcome reference
    assert filled == replayed
    assert metrics.summary()["windowed"] == single.metrics.summary()["windowed"]


def test_a_replay_gives_the_same_whatever_its_polls(
    logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a backfill is compared with does not depend on how a replay's polls fall:
    a window is estimated once an outcome reference due by its end is full, whether the
    window closed in the poll that made it full or in a later one."""
    config = settings(logs, *LATE, reference="features.parquet")
    runs, estimated = [], []
    for records in (20, 5000):
        monkeypatch.setattr(engine_module, "POLL_RECORDS", records)
        single = build_engine(config, [], Metrics(CollectorRegistry()))
        produced = single.run(open_files([logs / "logs.jsonl"], config.table), None)
        runs.append(results(produced))
        estimated.append(
            [
                w.bounds.start
                for p in produced
                for w in p.closed
                if any(f.detector == "estimated_performance" for f in w.findings)
            ]
        )
    assert estimated[0]  # from the window the outcome reference is due by on
    assert estimated[0] == estimated[1]
    assert runs[0] == runs[1]


def test_a_running_cluster_gives_the_same(logs: Path) -> None:
    """``--scheduler``: the workers of a cluster started apart (as a team's would be)."""
    from distributed import LocalCluster

    config = settings(logs)
    single = build_engine(config, [], Metrics(CollectorRegistry()))
    replayed = results(single.run(open_files([logs / "logs.jsonl"], config.table), None))
    with LocalCluster(
        n_workers=2, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster:
        engine = build_engine(config, [], Metrics(CollectorRegistry()))
        address = cluster.scheduler_address
        filled = backfill.run(engine, config, pinned(config), [logs / "logs"], scheduler=address)
        assert len(cluster.workers) == 2  # still up: a backfill leaves a running cluster be
    assert results(filled) == replayed


def test_the_command_sends_what_replay_sends(
    logs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the CLI and a file sink: the same notifications, by id, in the same order."""
    env = ["--env-file", str(logs / "streamwatch.env")]
    settings(logs)
    sent = logs / "alerts.jsonl"
    assert cli.main(["replay", str(logs / "logs.jsonl"), *env]) == 0
    replayed = [json.loads(line)["id"] for line in sent.read_text().splitlines()]
    sent.unlink()
    assert cli.main(["backfill", "--workers", "2", str(logs / "logs"), *env]) == 0
    filled = [json.loads(line)["id"] for line in sent.read_text().splitlines()]
    assert replayed
    assert filled == replayed
    assert "backfilled in" in capsys.readouterr().out


def test_what_a_backfill_cannot_do_is_refused_before_a_cluster_starts(logs: Path) -> None:
    unpinned = settings(logs).model_copy(
        update={"reference": settings(logs).reference.model_copy(update={"path": None})}
    )
    with pytest.raises(ConfigError, match="REFERENCE__PATH"):
        backfill.check(unpinned, {}, backfill.files_of([logs / "logs"]))
    counted = settings(logs, "STREAMWATCH_WINDOW__MODE=count", "STREAMWATCH_WINDOW__SIZE=500")
    with pytest.raises(ConfigError, match="WINDOW__MODE"):
        backfill.check(counted, pinned(settings(logs)), backfill.files_of([logs / "logs"]))
    engine = build_engine(settings(logs), [], Metrics(CollectorRegistry()))
    with pytest.raises(ConfigError, match="--workers 0"):
        backfill.run(engine, settings(logs), pinned(settings(logs)), [logs / "logs"], workers=0)
    wrong = settings(logs, "STREAMWATCH_TABLE__SCORE=proba")
    with pytest.raises(ConfigError, match="TABLE__SCORE: column 'proba'"):
        backfill.check(wrong, pinned(settings(logs)), backfill.files_of([logs / "logs"]))


def test_a_file_of_another_model_without_reference_is_counted_apart(logs: Path) -> None:
    config = settings(logs)
    raws = [
        msgspec.json.encode(msgspec.json.decode(raw) | {"model_id": "churn"})
        for raw in with_labels(messages(STREAM, DAY, DAY + 2))
    ]
    other = write(flatten(raws), logs / "churn" / "part.parquet")
    done = backfill.part(config, other, 0, pinned(config))
    assert done.partials == []
    assert done.unpinned == {"churn": len(raws)}
