"""``streamwatch status``: what a state file says, as a terminal summary.

Per model: the last window closed, the alerts firing now, and label coverage; for the
daemon: when the last checkpoint was written, the offsets it covers and the consumer lag
measured then. Reads the file only, so it works beside a running daemon.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from streamwatch.alerting.policy import isoformat
from streamwatch.observe import history
from streamwatch.observe.history import WindowRecord
from streamwatch.state.store import Checkpoint, read_lag, read_merged


@dataclass(frozen=True)
class Firing:
    model: str
    severity: str
    detector: str
    subject: str
    since: float  # event time the alert started


def firing(checkpoint: Checkpoint) -> list[Firing]:
    """The alerts firing at the checkpoint (announced, not yet resolved)."""
    alerts = []
    for labels, _breaches, _clean, severity, starts_at, sent_at, *_ in checkpoint.state[
        "policy"
    ].values():
        if severity is not None and sent_at is not None:
            alerts.append(
                Firing(labels["model"], severity, labels["detector"], labels["subject"], starts_at)
            )
    return sorted(alerts, key=lambda a: (a.model, a.since, a.detector, a.subject))


def summary(path: Path, now: float | None = None) -> str:
    db = history.open_readonly(path)
    try:
        checkpoint = read_merged(db, path)
        lag = read_lag(db)
        records = history.records(db)
    finally:
        db.close()
    if checkpoint is None:
        return f"{path}: no checkpoint yet"
    now = time.time() if now is None else now
    lines = [
        f"state     {path}",
        f"written   {isoformat(checkpoint.written_at)} ({now - checkpoint.written_at:,.0f} s ago)",
    ]
    for (topic, partition), offset in sorted(checkpoint.offsets.items()):
        behind = lag.get(f"{topic}:{partition}")
        lines.append(
            f"offset    {topic}:{partition} next {offset:,}"
            + ("" if behind is None else f", lag {behind:,}")
        )
    alerts = firing(checkpoint)
    for model in sorted(checkpoint.state["models"]):
        lines += ["", *_model(model, [r for r in records if r.model == model], alerts)]
    return "\n".join(lines)


def _model(model: str, records: list[WindowRecord], alerts: list[Firing]) -> list[str]:
    windows = [r for r in records if r.role in history.WINDOW_ROLES]
    lines = [f"model {model}"]
    if windows:
        last = windows[-1]
        lines.append(
            f"  last window   {isoformat(last.start)} to {isoformat(last.end)} "
            f"({last.role}, {last.events:,} events)"
        )
    else:
        lines.append("  last window   none closed yet")
    coverage = [
        s for r in records if r.role == "outcomes" for s in r.statistics if s.detector == "labels"
    ]
    if coverage:
        latest = coverage[-1]
        lines.append(f"  labels        {latest.value:.0%} of the last evaluated window's")
    mine = [a for a in alerts if a.model == model]
    lines.append(f"  alerts        {len(mine)} firing" + (":" if mine else ""))
    lines += [
        f"    {a.severity:<8} {a.detector} · {a.subject} (since the window ending "
        f"{isoformat(a.since)})"
        for a in mine
    ]
    return lines
