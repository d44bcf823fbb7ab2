"""The HTML report: one self-contained page per state file, from its window history.

Per model: each detector's statistic over time against its threshold with the spans an
alert fired shaded; the reference and current distributions of the columns that
breached (at their first breach, or at the window a link asks for); the estimated class
priors with their intervals; the slice table; performance, estimated before labels and
realized after, with label coverage; accuracy from reviewers' verdicts, weighted and
observed; the alert history. Charts are inline SVG, styles
inline: no network fetch, ever.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2
from markupsafe import Markup

from streamwatch.alerting.policy import isoformat
from streamwatch.config import parse_duration
from streamwatch.detectors import registry
from streamwatch.errors import ConfigError
from streamwatch.observe import history
from streamwatch.observe.history import AlertChange, Statistic, WindowRecord
from streamwatch.observe.report import charts

ESTIMATED = "estimated_performance"
REVIEW = "review"
REVIEWED_ROWS = 12  # the latest windows with verdicts, in the review table
MAX_TIMELINES = 30  # per model: breached series first

_TEMPLATE = jinja2.Environment(
    loader=jinja2.PackageLoader("streamwatch", "observe/report"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
).get_template("page.html")

Key = tuple[str, str, str]  # detector, subject, statistic


@dataclass
class Shown:
    """A breached column's distributions at one window."""

    subject: str
    detector: str
    window: str
    note: str
    svg: Markup
    explanation: str


@dataclass
class ModelView:
    name: str
    first: str
    last: str
    windows: int
    events: int
    firing: list[AlertChange] = field(default_factory=list)
    timelines: list[Markup] = field(default_factory=list)
    distributions: list[Shown] = field(default_factory=list)
    priors: list[dict[str, object]] = field(default_factory=list)
    priors_window: str = ""
    slices: list[Statistic] = field(default_factory=list)
    slices_window: str = ""
    performance: Markup | None = None
    review: Markup | None = None
    reviewed: list[dict[str, object]] = field(default_factory=list)
    alerts: list[tuple[str, AlertChange]] = field(default_factory=list)


def render(
    records: Sequence[WindowRecord],
    source: str,
    focus: float | None = None,
    generated: float | None = None,
) -> str:
    """The page of these records (oldest first); ``focus``: a window start to show the
    distributions of."""
    models = sorted({r.model for r in records})
    views = [_model(m, [r for r in records if r.model == m], focus) for m in models]
    when = time.time() if generated is None else generated
    return _TEMPLATE.render(
        models=views, source=source, generated=isoformat(when), focus=focus and isoformat(focus)
    )


def write(
    state: Path, out: Path, model: str | None = None, since: str | None = None
) -> list[WindowRecord]:
    """Write the report of a state file; return the records it shows."""
    records = select(state, model, since)
    out.write_text(render(records, str(state)), encoding="utf-8")
    return records


def page(state: Path, query: Mapping[str, str]) -> bytes:
    """The report for ``/report?model=M&window=START&since=24h``."""
    focus = None
    if "window" in query:
        try:
            focus = datetime.fromisoformat(query["window"]).timestamp()
        except ValueError as exc:
            raise ConfigError(f"window={query['window']!r} is not an ISO 8601 time") from exc
    records = select(state, query.get("model"), query.get("since"))
    return render(records, str(state), focus).encode()


def select(state: Path, model: str | None, since: str | None) -> list[WindowRecord]:
    """The records of a model (or all), ending within ``since`` (a duration) of the
    newest one. Event time: a replayed week reads the same as a live one."""
    records = history.read(state, model)
    if since is not None and records:
        try:
            span = parse_duration(since)
        except ValueError as exc:
            raise ConfigError(f"--since: {exc}") from exc
        newest = max(r.end for r in records)
        records = [r for r in records if r.end > newest - span]
    return records


def _model(name: str, records: list[WindowRecord], focus: float | None) -> ModelView:
    windows = [r for r in records if r.role in history.WINDOW_ROLES]
    view = ModelView(
        name,
        first=isoformat(records[0].start),
        last=isoformat(records[-1].end),
        windows=len(windows),
        events=sum(r.events for r in windows),
    )
    view.alerts = [(isoformat(r.start), a) for r in records for a in r.alerts]
    view.firing = _firing(records)
    view.timelines = _timelines(records)
    view.distributions = _distributions(records, focus)
    _priors(view, records)
    _slices(view, records)
    view.performance = _performance(records)
    _review(view, records)
    return view


def _firing(records: list[WindowRecord]) -> list[AlertChange]:
    last: dict[Key, AlertChange] = {}
    for r in records:
        for a in r.alerts:
            last[(a.detector, a.subject, a.statistic)] = a
    return [a for a in last.values() if a.status == "firing"]


def _timelines(records: list[WindowRecord]) -> list[Markup]:
    series: dict[Key, list[tuple[WindowRecord, Statistic]]] = {}
    for r in records:
        for s in r.statistics:
            if s.detector not in ("labels", REVIEW):  # review: its own chart
                series.setdefault((s.detector, s.subject, s.statistic), []).append((r, s))
    breached = {k for k, points in series.items() if any(s.severity != "ok" for _, s in points)}
    # A subject per feature or slice: drawn only where it breached (the slice table
    # lists every slice of the latest labelled window).
    per_subject = registry.per_subject()
    keys = [k for k in series if k[0] not in per_subject or k in breached]
    keys.sort(key=lambda k: (k not in breached, k))
    spans = _alert_spans(records)
    out = []
    for key in keys[:MAX_TIMELINES]:
        points = series[key]
        detector, subject, statistic = key
        svg = charts.timeline(
            f"{detector.replace('_', ' ')} · {subject} · {statistic}",
            [r.start for r, _ in points],
            [s.value for _, s in points],
            [s.threshold for _, s in points],
            [s.severity for _, s in points],
            spans.get(key, []),
        )
        out.append(Markup(svg))
    return out


def _alert_spans(records: list[WindowRecord]) -> dict[Key, list[charts.Span]]:
    """From the window an alert fired in to the one it resolved in (or the last)."""
    open_: dict[Key, float] = {}
    spans: dict[Key, list[charts.Span]] = {}
    for r in records:
        for a in r.alerts:
            key = (a.detector, a.subject, a.statistic)
            if a.status == "firing":
                open_.setdefault(key, r.start)
            elif key in open_:
                spans.setdefault(key, []).append((open_.pop(key), r.start))
    end = records[-1].end
    for key, start in open_.items():
        spans.setdefault(key, []).append((start, end))
    return spans


def _distributions(records: list[WindowRecord], focus: float | None) -> list[Shown]:
    shown: dict[tuple[str, str], Shown] = {}
    for r in records:
        if focus is not None and r.start != focus:
            continue
        explained = {(s.detector, s.subject): s.explanation for s in r.statistics}
        for d in r.distributions:
            if (d.detector, d.subject) in shown:
                continue
            shown[(d.detector, d.subject)] = Shown(
                d.subject,
                d.detector,
                f"{isoformat(r.start)} to {isoformat(r.end)}",
                "the window asked for" if focus is not None else "first breach",
                Markup(charts.distribution(d)),
                explained.get((d.detector, d.subject), ""),
            )
    return list(shown.values())


def _priors(view: ModelView, records: list[WindowRecord]) -> None:
    for r in reversed(records):
        for s in r.statistics:
            if s.detector == "label_shift" and any(k.startswith("prior_low[") for k in s.details):
                classes = [k[len("prior[") : -1] for k in s.details if k.startswith("prior[")]
                view.priors = [
                    {
                        "label": c,
                        "reference": s.details[f"prior_reference[{c}]"],
                        "estimate": s.details[f"prior[{c}]"],
                        "low": s.details[f"prior_low[{c}]"],
                        "high": s.details[f"prior_high[{c}]"],
                        "moved": not (
                            s.details[f"prior_low[{c}]"]
                            <= s.details[f"prior_reference[{c}]"]
                            <= s.details[f"prior_high[{c}]"]
                        ),
                    }
                    for c in classes
                ]
                view.priors_window = f"{isoformat(r.start)} to {isoformat(r.end)}"
                return


def _slices(view: ModelView, records: list[WindowRecord]) -> None:
    slices = registry.per_slice()
    for r in reversed(records):
        rows = [s for s in r.statistics if s.detector in slices]
        if rows:
            view.slices = sorted(rows, key=lambda s: (s.severity == "ok", s.detector, s.subject))
            view.slices_window = f"{isoformat(r.start)} to {isoformat(r.end)}"
            return


def _performance(records: list[WindowRecord]) -> Markup | None:
    """Each metric's realized value (outcome records) and its estimate with its interval
    (evaluated records, before labels), on one axis of window starts."""
    realized = _series(records, "outcomes", "performance", ("current",))
    estimated = _series(records, "evaluated", ESTIMATED, ("estimated", "low", "high"))
    if not realized and not estimated:
        return None
    starts = sorted(
        {start for values in (*realized.values(), *estimated.values()) for start in values}
    )
    coverage = dict.fromkeys(starts, 0.0)
    for r in records:
        if r.role == "outcomes":
            coverage[r.start] = next((s.value for s in r.statistics if s.detector == "labels"), 0.0)
    return Markup(
        charts.performance(
            starts,
            {name: [v.get(x, (math.nan,))[0] for x in starts] for name, v in realized.items()},
            {name: [v.get(x, (math.nan,) * 3) for x in starts] for name, v in estimated.items()},
            [coverage[x] for x in starts],
        )
    )


def _review(view: ModelView, records: list[WindowRecord]) -> None:
    """Accuracy from reviewers' verdicts per window: weighted by each request's chance
    (an estimate for all predictions, its interval shaded) and observed."""
    keys = ("weighted", "weighted_low", "weighted_high", "observed", "verdicts", "predictions")
    found = _series(records, REVIEW, REVIEW, keys).get("accuracy")
    if not found:
        return
    starts = sorted(found)
    view.review = Markup(charts.review(starts, [found[x] for x in starts]))
    view.reviewed = [
        dict(zip(("window", *keys), (isoformat(x), *found[x]), strict=True))
        for x in reversed(starts[-REVIEWED_ROWS:])
    ]


def _series(
    records: list[WindowRecord], role: str, detector: str, keys: tuple[str, ...]
) -> dict[str, dict[float, tuple[float, ...]]]:
    """subject -> window start -> the values of ``keys`` in the findings' details."""
    series: dict[str, dict[float, tuple[float, ...]]] = {}
    for r in records:
        if r.role != role:
            continue
        for s in r.statistics:
            if s.detector == detector:
                values = tuple(s.details.get(k, math.nan) for k in keys)
                series.setdefault(s.subject, {})[r.start] = values
    return series
