"""Charts of the report as inline SVG (matplotlib, no pyplot: safe in a server thread).

Text stays text in the SVG (searchable, selectable, printable) and ids are seeded, so
one history always renders to the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import UTC

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from numpy.typing import NDArray

from streamwatch.detectors import Distribution

mpl.rcParams.update(
    {
        "svg.fonttype": "none",
        "svg.hashsalt": "streamwatch",
        "font.size": 8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 9,
        "axes.titleweight": "bold",
    }
)
WIDTH = 6.6  # inches: fits a laptop screen beside nothing, and an A4 page in print
COLOURS = {"ok": "#2b6cb0", "warning": "#d69e2e", "critical": "#c53030"}
REFERENCE, CURRENT = "#a0aec0", "#2b6cb0"

FloatArray = NDArray[np.float64]
Span = tuple[float, float]  # epoch seconds, an alert firing from one to the other


def _svg(figure: Figure) -> str:
    out = io.StringIO()
    figure.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg") :]


def _days(epochs: Sequence[float]) -> FloatArray:
    """Epoch seconds as matplotlib's dates (days since 1970)."""
    return np.asarray(epochs, dtype=np.float64) / 86400.0


def _date_axis(axes: Axes) -> None:
    locator = AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]


def timeline(
    title: str,
    starts: Sequence[float],
    values: Sequence[float],
    thresholds: Sequence[float],
    severities: Sequence[str],
    alerts: Sequence[Span],
) -> str:
    """A statistic per window against its threshold, breaches coloured, the spans an
    alert was firing shaded."""
    figure = Figure(figsize=(WIDTH, 1.7))
    axes = figure.subplots()
    x = _days(starts)
    for begin, end in alerts:
        axes.axvspan(begin / 86400.0, end / 86400.0, color=COLOURS["critical"], alpha=0.12, lw=0)
    axes.plot(x, values, color="#4a5568", lw=1)
    axes.scatter(x, values, s=12, c=[COLOURS.get(s, "#4a5568") for s in severities], zorder=3)
    axes.step(x, thresholds, where="mid", color=COLOURS["warning"], lw=1, ls="--")
    axes.set_title(title, loc="left")
    _date_axis(axes)
    return _svg(figure)


def distribution(shares: Distribution) -> str:
    """Reference and current shares of one column, side by side."""
    figure = Figure(figsize=(WIDTH / 2, 2.0))
    axes = figure.subplots()
    positions = range(len(shares.labels))
    if shares.kind == "numeric":
        width = 1.0
        axes.bar(positions, shares.reference, width, color=REFERENCE, label="reference")
        axes.bar(positions, shares.current, width, color=CURRENT, alpha=0.55, label="current")
        ticks = list(positions)[:: max(1, len(shares.labels) // 4)]
        axes.set_xticks(ticks, [f"{float(shares.labels[i]):.3g}" for i in ticks])
    else:
        half = 0.4
        axes.bar([p - half / 2 for p in positions], shares.reference, half, color=REFERENCE)
        axes.bar([p + half / 2 for p in positions], shares.current, half, color=CURRENT)
        axes.set_xticks(list(positions), shares.labels, rotation=30, ha="right")
        axes.legend(["reference", "current"], frameon=False)
    if shares.kind == "numeric":
        axes.legend(frameon=False)
    axes.set_ylabel("share")
    axes.set_title(shares.subject, loc="left")
    return _svg(figure)


def performance(
    starts: Sequence[float],
    realized: Mapping[str, Sequence[float]],
    estimated: Mapping[str, Sequence[tuple[float, ...]]],
    coverage: Sequence[float],
) -> str:
    """Performance metrics per window over label coverage (bars): realized (solid, once
    labels came) and estimated before them (dashed, its interval shaded), one colour a
    metric."""
    figure = Figure(figsize=(WIDTH, 2.0))
    axes = figure.subplots()
    x = _days(starts)
    bars = axes.twinx()
    width = (starts[1] - starts[0]) / 86400 * 0.8 if len(starts) > 1 else 0.02
    bars.bar(x, coverage, width, color=REFERENCE, alpha=0.5)
    bars.set_ylim(0, 1)
    bars.set_ylabel("label coverage")
    bars.spines["right"].set_visible(True)
    colours = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(sorted(realized.keys() | estimated.keys())):
        colour = colours[i % len(colours)]
        if name in realized:
            axes.plot(x, realized[name], marker="o", ms=3, lw=1, color=colour, label=name)
        if name in estimated:
            value, low, high = np.array(estimated[name], dtype=np.float64).T
            axes.plot(x, value, ls="--", lw=1, color=colour, label=f"{name} (estimated)")
            axes.fill_between(x, low, high, color=colour, alpha=0.15, lw=0)
    axes.set_zorder(bars.get_zorder() + 1)
    axes.patch.set_visible(False)
    axes.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.12, 1.0))
    axes.set_title("performance over time", loc="left")
    _date_axis(axes)
    return _svg(figure)


def review(starts: Sequence[float], values: Sequence[tuple[float, ...]]) -> str:
    """Accuracy from reviewers' verdicts per window: weighted (its interval shaded), an
    estimate for all predictions, and observed, the agreement on a sample chosen for doubt."""
    figure = Figure(figsize=(WIDTH, 2.0))
    axes = figure.subplots()
    x = _days(starts)
    weighted, low, high, observed = np.array(values, dtype=np.float64)[:, :4].T
    axes.plot(x, weighted, marker="o", ms=3, lw=1, label="accuracy, weighted")
    axes.fill_between(x, low, high, alpha=0.15, lw=0)
    axes.plot(x, observed, ls=":", marker=".", lw=1, color=REFERENCE, label="observed agreement")
    axes.set_ylim(0, 1)
    axes.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.set_title("human review", loc="left")
    _date_axis(axes)
    return _svg(figure)
