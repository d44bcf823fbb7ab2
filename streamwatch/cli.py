"""``streamwatch run | replay | backfill | demo | report | status | produce-demo | check-config |
outbox | test-alert``: the CLI."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from tqdm import tqdm

from streamwatch import daemon, demo
from streamwatch.alerting.outbox import STATUSES, Outbox, outbox_path
from streamwatch.alerting.policy import sample_notification
from streamwatch.config import Settings, load_settings, masked
from streamwatch.errors import ConfigError, SourceError, StateError
from streamwatch.observe import logs, status
from streamwatch.observe.metrics import Metrics
from streamwatch.observe.summary import fired_at_least, summary
from streamwatch.pipeline.conclusion import Produced
from streamwatch.scaleout import backfill
from streamwatch.severity import Severity
from streamwatch.sinks import Delivered, RoutedSink, build_sinks
from streamwatch.sources import ReplaySource, Source
from streamwatch.sources.tables import open_files
from streamwatch.state.store import StateStore

log = logging.getLogger("streamwatch")

EXIT_CONFIG = 2
EXIT_FIRED = 1  # replay --fail-on: an alert at or above the level fired
FILES = ".jsonl(.gz), .parquet, .csv(.gz), or a directory of tables"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(args.log_level)
    try:
        return int(args.command(args))
    except StateError as exc:
        # One JSON line (a daemon's log is parsed), no traceback: the file, what to do.
        log.error(str(exc), extra={"path": str(exc.path)} if exc.path else {})
        return EXIT_CONFIG
    except ConfigError as exc:
        print(f"streamwatch: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except SourceError as exc:
        print(f"streamwatch: {exc}", file=sys.stderr)
        # A replay's 1 says that alerts fired (--fail-on): one that could not run is a 2.
        return EXIT_CONFIG if args.command in (_replay, _backfill) else 1
    except Exception:
        if args.command not in (_replay, _backfill):
            raise
        log.exception("the replay failed")  # a bug: never read as "alerts fired"
        return EXIT_CONFIG


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamwatch", description=__doc__)
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING, ERROR")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(
        name: str, handler: object, help: str, configured: bool = True, fails: bool = False
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(command=handler)
        if configured:
            sub.add_argument(
                "--env-file",
                action="append",
                type=Path,
                default=[],
                metavar="FILE",
                help="env file with STREAMWATCH_ variables; repeatable, later files win",
            )
            sub.add_argument("--secrets-dir", type=Path, help="directory of secret files")
        if fails:
            sub.add_argument(
                "--fail-on",
                choices=(Severity.WARNING.value, Severity.CRITICAL.value),
                help="exit 1 if an alert of this severity or worse fired (0 if none did; "
                "2 if it could not run: the configuration, a file)",
            )
        return sub

    command("run", _run_daemon, "consume from Kafka as a daemon until SIGTERM")

    replay = command(
        "replay", _replay, "run the pipeline over event files, then summarise", fails=True
    )
    replay.add_argument("files", nargs="+", type=Path, metavar="PATH", help=FILES)

    fill = command(
        "backfill", _backfill, "replay event files on a Dask cluster, then summarise", fails=True
    )
    fill.add_argument("paths", nargs="+", type=Path, metavar="PATH", help=FILES)
    where = fill.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="local worker processes (default: the cores)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler's")

    run_demo = command("demo", _demo, "replay a synthetic stream with known drift", False)
    run_demo.add_argument("--events-per-hour", type=int, default=3000)
    run_demo.add_argument("--seed", type=int, default=42)
    run_demo.add_argument("--write", type=Path, help="also save the stream to this JSONL file")
    run_demo.add_argument(
        "--review",
        action="store_true",
        help="request fraud's doubtful predictions for review; a reviewer answers each",
    )
    run_demo.add_argument(
        "--out",
        type=Path,
        default=demo.OUT,
        metavar="DIR",
        help="where the run's state and report go (replaced)",
    )

    report = command("report", _report, "write the HTML report of a state file's history")
    report.add_argument("--state", type=Path, help="state file (default: STATE__PATH)")
    report.add_argument("--model", help="only this model")
    report.add_argument("--since", help="windows ending within this of the newest, e.g. 24h")
    report.add_argument("-o", "--output", type=Path, default=Path("report.html"), metavar="FILE")

    show = command("status", _status, "summarise a state file: models, windows, alerts, lag")
    show.add_argument("--state", type=Path, help="state file (default: STATE__PATH)")

    produce = command("produce-demo", _produce_demo, "publish the demo stream to Kafka", False)
    produce.add_argument("--bootstrap", required=True, metavar="HOST:PORT")
    produce.add_argument("--topic", default="predictions")
    produce.add_argument("--labels-topic", default="labels")
    produce.add_argument("--events-per-hour", type=int, default=3000)
    produce.add_argument("--seed", type=int, default=42)

    command("check-config", _check_config, "print the effective settings, or what is wrong")

    box = command("outbox", _outbox, "list the notifications to deliver, or send dead ones again")
    box.add_argument("action", choices=("list", "retry"), help="retry: dead rows pending again")
    box.add_argument("--sink", metavar="NAME", help="only this sink's rows")
    box.add_argument("--status", choices=STATUSES, help="list only rows of this status")
    box.add_argument("--outbox", type=Path, help="outbox file (default: as the settings say)")

    test = command("test-alert", _test_alert, "send a test notification through the sinks")
    test.add_argument(
        "--sink", action="append", default=[], metavar="NAME", help="only this sink; repeatable"
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.env_file, args.secrets_dir)


def _state_path(args: argparse.Namespace) -> Path:
    return Path(args.state) if args.state else _settings(args).state.path


def _report(args: argparse.Namespace) -> int:
    from streamwatch.observe import report  # matplotlib: loaded only to draw

    records = report.write(_state_path(args), args.output, args.model, args.since)
    models = sorted({r.model for r in records})
    print(f"wrote {args.output}: {len(records)} windows of {', '.join(models) or 'no model'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    print(status.summary(_state_path(args)))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    print(json.dumps(masked(_settings(args)), indent=2))
    return 0


def _outbox(args: argparse.Namespace) -> int:
    path = Path(args.outbox) if args.outbox else outbox_path(_settings(args))
    if not path.is_file():
        raise StateError(f"no outbox at {path}: give --outbox, or the daemon's env file", path)
    outbox = Outbox(path)  # beside a running daemon: SQLite's WAL lets both at it
    try:
        if args.action == "retry":
            retried = outbox.retry(args.sink)
            print(f"{retried} dead notification rows pending again: the daemon sends them")
            return 0
        for row in outbox.listed(args.sink, args.status):
            created = datetime.fromtimestamp(row.created, UTC).isoformat(timespec="seconds")
            error = f"  {row.error}" if row.error else ""
            print(
                f"{created}  {row.status:<8} {row.sink:<16} {row.model or '-':<16} {row.id}  "
                f"attempts {row.attempts}{error}"
            )
    finally:
        outbox.close()
    return 0


def _test_alert(args: argparse.Namespace) -> int:
    """Send a marked test notification straight through each sink (no outbox, no
    retries) and say per sink whether it arrived. Retrain sinks start real runs, so
    they are only tried when named with --sink."""
    settings = _settings(args)
    unknown = sorted(set(args.sink) - set(settings.sinks))
    if unknown:
        raise ConfigError(
            f"no sink named {', '.join(unknown)}; configured: {sorted(settings.sinks)}"
        )
    notification = sample_notification(time.time(), settings.alerts.labels)
    failed = 0
    for routed in build_sinks(settings):
        name, kind = routed.sink.name, routed.settings.kind
        if kind == "review":
            print(f"{name:<16} skipped (review: it takes review requests, not alerts)")
            continue
        if (args.sink and name not in args.sink) or (kind == "retrain" and name not in args.sink):
            print(
                f"{name:<16} skipped"
                + (" (retrain: name it with --sink)" if kind == "retrain" else "")
            )
            continue
        result = routed.sink.send(notification)
        routed.sink.close()
        if isinstance(result, Delivered):
            print(f"{name:<16} delivered")
        else:
            failed += 1
            print(f"{name:<16} FAILED: {result.reason}")
    return 1 if failed else 0


def _replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    source = open_files(args.files, settings.table)
    metrics = Metrics(CollectorRegistry())
    started = time.perf_counter()
    outcomes = _run(settings, source, build_sinks(settings), metrics)
    print(summary(metrics, time.perf_counter() - started, "replayed"))
    return _fail_on(args, outcomes)


def _backfill(args: argparse.Namespace) -> int:
    settings = _settings(args)
    metrics = Metrics(CollectorRegistry())
    started = time.perf_counter()
    engine = daemon.build_engine(settings, build_sinks(settings), metrics)
    reference = dict(engine.processor.reference)
    outcomes = backfill.run(engine, settings, reference, args.paths, args.workers, args.scheduler)
    print(summary(metrics, time.perf_counter() - started, "backfilled"))
    return _fail_on(args, outcomes)


def _fail_on(args: argparse.Namespace, outcomes: list[Produced]) -> int:
    if args.fail_on is None:
        return 0
    fired = fired_at_least(outcomes, Severity(args.fail_on))
    if not fired:
        print(f"no alert of {args.fail_on} or worse fired")
        return 0
    print(
        f"fired at {args.fail_on} or worse (--fail-on): {len(fired)} alert" + "s" * (len(fired) > 1)
    )
    for a in fired:
        model, detector, subject = (a.labels[k] for k in ("model", "detector", "subject"))
        print(f"  {a.severity.value:<9}{model:<16}{detector:<21}{subject}")
    return EXIT_FIRED


def _run_daemon(args: argparse.Namespace) -> int:
    settings = _settings(args)
    logs.configure(args.log_level, sys.stdout)
    return daemon.run(settings)


def _produce_demo(args: argparse.Namespace) -> int:
    stream = demo.generate(args.events_per_hour, args.seed)
    sent = demo.produce(stream, args.bootstrap, args.topic, args.labels_topic)
    print(f"produced {sent:,} messages to {args.topic} and {args.labels_topic}")
    return 0


def _run(
    settings: Settings,
    source: Source,
    sinks: list[RoutedSink],
    metrics: Metrics,
    store: StateStore | None = None,
) -> list[Produced]:
    engine = daemon.build_engine(settings, sinks, metrics)
    bar = tqdm(unit=" events", disable=not sys.stderr.isatty(), file=sys.stderr, leave=False)
    with bar:
        outcomes = engine.run(source, store, progress=bar.update)
    source.close()
    return outcomes


def _requested(stream: demo.DemoStream, reviews: Path) -> list[dict[str, Any]]:
    """The review requests of a first run over the stream: the events that the run with
    their verdicts requests too (choosing depends on the predictions, not on verdicts)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.jsonl"
        path.write_bytes(b"\n".join(stream.lines) + b"\n")
        settings = demo.settings(Path(tmp) / "state.sqlite", reviews)
        settings = settings.model_copy(update={"sinks": {"reviews": settings.sinks["reviews"]}})
        _run(settings, ReplaySource([path]), build_sinks(settings), Metrics(CollectorRegistry()))
    requests = [json.loads(line) for line in reviews.read_bytes().splitlines()]
    print(f"review: {len(requests):,} requests; a reviewer answers each 20 minutes later\n")
    return requests


def _demo(args: argparse.Namespace) -> int:
    stream = demo.generate(args.events_per_hour, args.seed)
    print(
        f"demo: {stream.predictions:,} predictions of models 'fraud' and 'eta' over "
        f"{demo.HOURS} hourly windows, {stream.labels:,} labels, {stream.late} late events, "
        f"{stream.garbage} garbage lines; features shift at 06:20.\n"
        "Expected alerts: "
        + ", ".join(f"{m}/{s} ({d})" for m, d, s in sorted(demo.EXPECTED))
        + "\nLabels for a fifth of fraud's predictions come an hour later."
        + "\n"
    )
    shutil.rmtree(args.out, ignore_errors=True)  # a fresh run: its own state
    args.out.mkdir(parents=True)
    reviews = args.out / "reviews.jsonl" if args.review else None
    settings = demo.settings(args.out / "state.sqlite", reviews)
    if reviews is not None:
        stream = demo.with_verdicts(stream, _requested(stream, reviews))
        reviews.unlink()
    store = StateStore(settings.state.path, settings)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.write or Path(tmp) / "demo.jsonl"
        path.write_bytes(b"\n".join(stream.lines) + b"\n")
        metrics = Metrics(CollectorRegistry())
        started = time.perf_counter()
        try:
            outcomes = _run(settings, ReplaySource([path]), build_sinks(settings), metrics, store)
        finally:
            store.close()
        print("\n" + summary(metrics, time.perf_counter() - started, "replayed"))
    fired = demo.fired(outcomes)
    print("\nAlerts fired (window start, model, detector, subject):")
    for (model, detector, subject), hour in sorted(fired.items(), key=lambda kv: kv[1]):
        print(f"  {hour:02d}:00  {model:<6} {detector:<21} {subject}")
    problems = demo.check(fired)
    if problems:
        print("\nMISMATCH: " + "; ".join(problems))
        return 1
    print(
        "\nAll expected alerts fired where expected (drift, and accuracy estimated from the"
        " scores, in the window where the shift starts or the next; accuracy realized once the"
        " labels of the shifted traffic have come); no others."
    )
    if reviews is not None:
        print(
            "\nfraud's accuracy from reviewers' verdicts (window, verdicts, weighted with its"
            " 95% interval, observed) beside its true accuracy over all predictions:"
        )
        print("\n".join(demo.reviewed(outcomes, stream)))
    from streamwatch.observe import report  # matplotlib: loaded only to draw

    out = args.out / "report.html"
    report.write(settings.state.path, out)
    print(f"\nReport: {out.resolve()}\nStatus: streamwatch status --state {settings.state.path}")
    return 0
