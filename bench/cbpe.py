"""Estimated performance before labels (CBPE): streamwatch's ``estimated_performance``
beside NannyML's CBPE, on NannyML's own synthetic datasets, chunk by chunk.

Per chunk of 5,000 rows, each tool's estimated accuracy, ROC AUC and F1 against the
value realized from the analysis targets (computed here, once, for both tools):

- car loan (binary): NannyML's reference set (50,000 rows, labelled) and analysis set
  (50,000 rows, 10 chunks; covariate shift in its second half takes accuracy from 0.94
  to 0.92 with p(y|x) unchanged, which CBPE is built for);
- card (multiclass, three classes): 60,000 and 60,000 rows, 12 chunks; accuracy,
  ROC AUC and F1 macro-averaged over the classes (one against the rest), as NannyML's;
- car loan, label shift: 8 chunks drawn within each class from the first half of the
  car loan analysis set (where p(x|y) is the reference's), the repaid rate moving from
  the reference's (50%) by 5 points a chunk to 15 points more and staying there;
  seeded. CBPE's p(y|x) no longer holds: the classes' mix moved.

streamwatch runs as ``streamwatch replay`` builds it (the engine decoding JSON events,
every detector on), its settings read from an env file: count windows of 5,000 events
(``WINDOW__MODE=count``, ``WINDOW__SIZE=5000``), so that each window holds a chunk's
rows; the reference set pinned (``REFERENCE__PATH``) as prediction events carrying their
labels, which calibrate from the first window; the analysis rows without labels. On the
label-shift stream twice: with ``DETECTORS__LABEL_SHIFT__ESTIMATE=true`` (the estimate
corrected for the estimated class priors) and without. NannyML 0.13.1 ``CBPE`` with
``chunk_size=5000``, fitted on the reference set; its realized values (it is given the
targets to report them) must equal ours, so both tools see the same rows.

Intervals: streamwatch's ``low``/``high`` (95%); NannyML's confidence band (its estimate
± 3 sampling errors, clipped to [0, 1]). Run time: fit and estimate (NannyML, from
DataFrames), reading the reference file and the whole stream (streamwatch, from JSON).

    make bench      (or: .venv-bench/bin/python bench/cbpe.py)
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._baselines import markdown, nannyml
from streamwatch.config import load_settings
from streamwatch.daemon import build_engine
from streamwatch.detectors import registry
from streamwatch.observe.metrics import Metrics
from tests.scenarios.runner import MemorySource

CHUNK = 5_000
SEED = 2026
SHIFTS = (0.15, 0.35)  # the positive rate's rise over the reference's, in the end
RAMP, SHIFTED = 3, 8  # chunks it takes to rise (the first at the reference's), chunks in all
METRICS = ("accuracy", "roc_auc", "f1")
NOT_YET = "not yet measured"

Interval = tuple[float, float, float]  # estimate, low, high
Estimates = dict[str, list[Interval]]  # metric -> one per chunk


@dataclass(frozen=True, slots=True)
class Dataset:
    """A labelled reference and an analysis set with its targets, as NannyML loads them.
    ``classes`` are the probability columns' classes (binary: the score's is ``1``)."""

    name: str
    reference: Any  # pandas frames
    analysis: Any
    target: str
    probabilities: dict[str, str]  # class -> column
    features: list[str]
    label_shift: bool = False

    @property
    def binary(self) -> bool:
        return len(self.probabilities) == 1

    @property
    def chunks(self) -> int:
        return len(self.analysis) // CHUNK


@dataclass(slots=True)
class Run:
    """What one tool estimated on a dataset, and how long it took."""

    estimates: Estimates
    seconds: float
    notes: list[str] = field(default_factory=list)


# -- the datasets ---------------------------------------------------------------------


def datasets(nml: Any) -> list[Dataset]:
    reference, analysis, targets = nml.load_synthetic_car_loan_dataset()
    reference = reference.assign(repaid=reference["repaid"].astype(int))
    analysis = analysis.merge(targets, on="id").assign(repaid=lambda f: f["repaid"].astype(int))
    car_features = [c for c in reference.columns[1:] if c not in {"repaid", "timestamp", "y_pred"}]
    car_features.remove("y_pred_proba")
    car = Dataset("car loan", reference, analysis, "repaid", {"1": "y_pred_proba"}, car_features)
    reference, analysis, targets = nml.load_synthetic_multiclass_classification_dataset()
    analysis = analysis.merge(targets, on="id")
    probabilities = {c.removeprefix("y_pred_proba_"): c for c in reference.columns}
    probabilities = {k: c for k, c in probabilities.items() if c.startswith("y_pred_proba_")}
    card_features = list(reference.columns[1 : reference.columns.get_loc("timestamp")])
    card = Dataset("card (3 classes)", reference, analysis, "y_true", probabilities, card_features)
    rng = np.random.default_rng(SEED)
    return [car, *(label_shifted(car, shift, rng) for shift in SHIFTS), card]


def label_shifted(data: Dataset, top: float, rng: np.random.Generator) -> Dataset:
    """``SHIFTED`` chunks drawn within each class from the first half of ``data``'s
    analysis set (no covariate shift there), their positive rate rising from the
    reference's by ``top`` over ``RAMP`` chunks, then staying; the rows keep the first
    rows' timestamps, in order."""
    pool = data.analysis.iloc[: len(data.analysis) // 2]
    base = float(data.reference[data.target].mean())
    positives = np.flatnonzero(pool[data.target].to_numpy() == 1)
    negatives = np.flatnonzero(pool[data.target].to_numpy() == 0)
    rows = []
    for step in range(SHIFTED):
        k = round(CHUNK * (base + top * min(step, RAMP) / RAMP))
        chunk = np.concatenate(
            [rng.choice(positives, k, replace=False), rng.choice(negatives, CHUNK - k, False)]
        )
        rows.append(rng.permutation(chunk))
    drawn = pool.iloc[np.concatenate(rows)].reset_index(drop=True)
    drawn["id"] = np.arange(len(drawn)) + 10_000_000
    drawn["timestamp"] = data.analysis["timestamp"].iloc[: len(drawn)].to_numpy()
    return Dataset(
        f"car loan, label shift {top * 100:+.0f} points",
        data.reference,
        drawn,
        data.target,
        data.probabilities,
        data.features,
        True,
    )


# -- realized values ------------------------------------------------------------------


def roc_auc(truth: NDArray[np.bool_], score: NDArray[np.float64]) -> float:
    """The probability that a positive outranks a negative (ties half): Mann-Whitney."""
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]
    n1 = int(truth.sum())
    n0 = len(truth) - n1
    return float((ranks[truth].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def f1(truth: NDArray[np.bool_], predicted: NDArray[np.bool_]) -> float:
    tp = int((truth & predicted).sum())
    wrong = int((truth != predicted).sum())
    return 2 * tp / (2 * tp + wrong)


def realized(data: Dataset) -> Estimates:
    """Per chunk, from the targets: accuracy, ROC AUC and F1 of the positive class
    (binary), or macro-averaged one against the rest (multiclass), as NannyML's."""
    found: Estimates = {m: [] for m in METRICS}
    for k in range(data.chunks):
        part = data.analysis.iloc[k * CHUNK : (k + 1) * CHUNK]
        truth = part[data.target].astype(str).to_numpy()
        predicted = part["y_pred"].astype(str).to_numpy()
        values = {"accuracy": float((truth == predicted).mean())}
        aucs = [roc_auc(truth == c, part[col].to_numpy()) for c, col in data.probabilities.items()]
        f1s = [f1(truth == c, predicted == c) for c in data.probabilities]
        values["roc_auc"], values["f1"] = float(np.mean(aucs)), float(np.mean(f1s))
        for metric, value in values.items():
            found[metric].append((value, value, value))
    return found


# -- NannyML --------------------------------------------------------------------------


def nannyml_cbpe(nml: Any, data: Dataset, truth: Estimates) -> Run:
    started = time.perf_counter()
    estimator = nml.CBPE(
        problem_type="classification_binary" if data.binary else "classification_multiclass",
        y_pred_proba=data.probabilities["1"] if data.binary else data.probabilities,
        y_pred="y_pred",
        y_true=data.target,
        metrics=list(METRICS),
        chunk_size=CHUNK,
    )
    estimator.fit(data.reference)
    table = estimator.estimate(data.analysis).filter(period="analysis").to_df()
    seconds = time.perf_counter() - started
    assert len(table) == data.chunks, f"{len(table)} NannyML chunks, not {data.chunks}"
    found: Estimates = {}
    for metric in METRICS:
        value = table[metric, "value"].to_numpy(dtype=float)
        low = table[metric, "lower_confidence_boundary"].to_numpy(dtype=float)
        high = table[metric, "upper_confidence_boundary"].to_numpy(dtype=float)
        found[metric] = list(zip(value.tolist(), low.tolist(), high.tolist(), strict=True))
        theirs = table[metric, "realized"].to_numpy(dtype=float)
        ours = np.array([r[0] for r in truth[metric]])
        assert np.allclose(theirs, ours, atol=1e-9), f"{data.name}: realized {metric} differ"
    return Run(found, seconds)


# -- streamwatch ----------------------------------------------------------------------


def landed() -> bool:
    return "estimated_performance" in registry.default()


def events(data: Dataset, frame: Any, prefix: str, labelled: bool) -> list[bytes]:
    """The rows as prediction events (JSON lines), with their labels if ``labelled``."""
    encode = msgspec.json.Encoder().encode
    stamps = (frame["timestamp"].astype("datetime64[ms]").astype("int64")).tolist()
    features = frame[data.features].astype(object).where(frame[data.features].notna(), None)
    rows = features.to_dict("records")
    predicted = frame["y_pred"].tolist()
    labels = frame[data.target].tolist() if labelled else [None] * len(frame)
    if data.binary:
        outputs: list[dict[str, Any]] = [
            {"prediction": int(p), "score": float(s)}
            for p, s in zip(predicted, frame[data.probabilities["1"]].tolist(), strict=True)
        ]
    else:
        columns = {c: frame[col].tolist() for c, col in data.probabilities.items()}
        outputs = [
            {"prediction": str(p), "probabilities": {c: float(v[i]) for c, v in columns.items()}}
            for i, p in enumerate(predicted)
        ]
    lines = []
    for i, (t, row, output, label) in enumerate(zip(stamps, rows, outputs, labels, strict=True)):
        event = {"event_id": f"{prefix}{i}", "model_id": "m", "timestamp": t, "features": row}
        event.update(output)
        if label is not None:
            event["label"] = int(label) if data.binary else str(label)
        lines.append(encode(event))
    return lines


def streamwatch(data: Dataset, directory: Path, estimate_shift: bool) -> Run:
    """The analysis rows through the engine, the labelled reference pinned; per window
    (chunk) the estimated_performance findings."""
    here = directory / f"{len(list(directory.iterdir()))}"
    here.mkdir()
    reference = here / "reference.jsonl"
    reference.write_bytes(b"\n".join(events(data, data.reference, "r", labelled=True)) + b"\n")
    env = here / "streamwatch.env"
    env.write_text(
        "\n".join(
            [
                "STREAMWATCH_WINDOW__MODE=count",
                f"STREAMWATCH_WINDOW__SIZE={CHUNK}",
                f"STREAMWATCH_REFERENCE__PATH={reference}",
                f"STREAMWATCH_DETECTORS__LABEL_SHIFT__ESTIMATE={str(estimate_shift).lower()}",
                f"STREAMWATCH_STATE__PATH={here / 'state.sqlite'}",
                "STREAMWATCH_SERVER__ENABLED=false",
                "",
            ]
        )
    )
    settings = load_settings([env])
    raws = events(data, data.analysis, "a", labelled=False)
    started = time.perf_counter()
    engine = build_engine(settings, [], Metrics(CollectorRegistry()))
    produced = engine.run(MemorySource(raws))
    seconds = time.perf_counter() - started
    found: dict[str, dict[int, Interval]] = {}
    corrected: set[float] = set()
    sizes: dict[int, int] = {}
    for batch in produced:
        for window in batch.closed:
            if window.role == "evaluated":
                sizes[window.bounds.index] = window.n
            for f in window.findings:
                if f.detector == "estimated_performance":
                    d = f.details
                    found.setdefault(f.subject, {})[window.bounds.index] = (
                        d["estimated"],
                        d["low"],
                        d["high"],
                    )
                    corrected.add(d["corrected"])
    chunks = range(data.chunks)
    assert sizes == dict.fromkeys(chunks, CHUNK), f"windows are not the chunks: {sizes}"
    notes = []
    if found and corrected != {float(estimate_shift)}:
        notes.append(f"corrected: {sorted(corrected)}")
    estimates = {
        m: [by_window[k] for k in chunks]
        for m, by_window in found.items()
        if m in METRICS and set(by_window) >= set(chunks)
    }
    return Run(estimates, seconds, notes)


# -- the table ------------------------------------------------------------------------


def row(dataset: str, tool: str, run: Run | None, truth: Estimates) -> list[str]:
    """Per metric: the mean absolute error (for accuracy its worst chunk too) and the
    chunks whose realized value lies within the tool's interval."""
    if run is None:
        return [dataset, tool, *[NOT_YET] * 7, ""]
    cells = []
    for metric in METRICS:
        estimates = run.estimates.get(metric)
        if estimates is None:
            cells += ["n/a"] * (3 if metric == "accuracy" else 2)
            continue
        pairs = list(zip(estimates, [r[0] for r in truth[metric]], strict=True))
        errors = [abs(e - a) for (e, _, _), a in pairs]
        cells.append(f"{np.mean(errors):.4f}")
        if metric == "accuracy":
            worst = int(np.argmax(errors))
            cells.append(f"{errors[worst]:.4f} ({worst})")
        cells.append(f"{sum(low <= a <= high for (_, low, high), a in pairs)}/{len(pairs)}")
    seconds = f"{run.seconds:.1f}" + (f" ({', '.join(run.notes)})" if run.notes else "")
    return [dataset, tool, *cells, seconds]


def main() -> None:
    started = time.perf_counter()
    nml = nannyml()
    ready = landed()
    if not ready:
        print("(streamwatch has no estimated_performance detector yet)", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="streamwatch-cbpe-") as work:
        for data in datasets(nml):
            truth = realized(data)
            rows.append(row(data.name, "NannyML CBPE", nannyml_cbpe(nml, data, truth), truth))
            log(data, "NannyML", started)
            variants = [("corrected", True), ("uncorrected", False)] if data.label_shift else []
            for how, shift in variants or [("", False)]:
                tool = f"streamwatch, {how}" if how else "streamwatch"
                run = streamwatch(data, Path(work), shift) if ready else None
                rows.append(row(data.name, tool, run, truth))
                log(data, tool, started)
    print(
        f"estimated performance per chunk of {CHUNK:,} rows against the realized value: "
        "mean absolute error, worst chunk, and the chunks whose realized value lies within "
        "the tool's interval (streamwatch: 95%; NannyML: ± 3 sampling errors); label "
        f"shift: the repaid rate rises from the reference's over {RAMP} chunks, "
        f"{SHIFTED} chunks in all\n"
    )
    header = [
        "dataset",
        "tool",
        "accuracy: mean error",
        "worst (chunk)",
        "within interval",
        "ROC AUC: mean error",
        "within interval",
        "F1: mean error",
        "within interval",
        "run time (s)",
    ]
    print(markdown(header, rows, left=2))
    print(f"\n({time.perf_counter() - started:.0f} s; seed {SEED})")


def log(data: Dataset, tool: str, started: float) -> None:
    print(f"{data.name}, {tool}: {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
