"""The detectors judged on outcomes: joined labels (performance, concept drift, slices,
label shift) or the champion's predictions (shadow)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from streamwatch.config.base import Section

Task = Literal["auto", "classification", "regression"]


class PerformanceSettings(Section):
    """Performance against the reference once labels join (see detectors/performance)."""

    enabled: bool = Field(True, description="run this detector")
    # "auto" reads a model as a classifier when it sends scores, probabilities, or
    # string or boolean predictions; a classifier sending bare integers needs saying so.
    task: Task = Field("auto", description="classification, regression, or auto")
    tasks: dict[str, Task] = Field(default_factory=dict, description="model id -> its task")
    positive_class: str = Field("1", description="the class precision, recall, F1 are of")
    warning: float = Field(0.05, gt=0, description="relative degradation that warns")
    critical: float = Field(0.15, gt=0, description="relative degradation that is critical")
    alpha: float = Field(0.001, gt=0, lt=1, description="false discovery rate per window")
    min_labels: int = Field(100, ge=2, description="fewer labels on either side: no verdict")


class SliceSettings(Section):
    """Subgroup performance and fairness (detectors/slices)."""

    enabled: bool = Field(True, description="run this detector")
    features: tuple[str, ...] = Field((), description="features to slice by, besides segments")
    protected: tuple[str, ...] = Field(
        (),
        description="attributes whose fairness gaps to check (sliced, listed as features or not)",
    )
    max_slices: int = Field(20, ge=2, description="values tracked per dimension; the rest: other")
    min_support: int = Field(
        100, ge=10, description="labelled events a slice needs, in the window and the reference"
    )
    warning: float = Field(
        0.05,
        gt=0,
        description="a slice this much worse than in the reference, or this much further "
        "behind the rest than in the reference, warns",
    )
    critical: float = Field(0.15, gt=0, description="this much worse is critical")
    # Many small slices are scanned every window, each two ways (42 tests for seven
    # slices): at this level about one window in a thousand breaches by chance, and a 5%
    # slice losing 10 points at 10,000 events a window is found within two windows.
    alpha: float = Field(0.001, gt=0, lt=1, description="false discovery rate per window")
    parity_warning: float = Field(0.1, gt=0, description="parity and odds gaps that warn")
    parity_critical: float = Field(0.2, gt=0, description="gaps that are critical")
    impact_warning: float = Field(0.8, gt=0, le=1, description="disparate impact below: warns")
    impact_critical: float = Field(0.6, gt=0, le=1, description="below this: critical")


class ShadowSettings(Section):
    """Challenger versions against the champion (detectors/shadow)."""

    enabled: bool = Field(True, description="run this detector")
    champions: dict[str, str] = Field(
        default_factory=dict,
        description="model id -> champion version; only then are other versions compared",
    )
    disagreement_warning: float = Field(0.05, gt=0, description="disagreement that warns")
    disagreement_critical: float = Field(0.15, gt=0, description="disagreement, critical")
    score_warning: float = Field(0.05, gt=0, description="mean score difference that warns")
    score_critical: float = Field(0.1, gt=0, description="mean score difference, critical")
    alpha: float = Field(0.001, gt=0, lt=1, description="significance level")
    min_pairs: int = Field(100, ge=10, description="fewer pairs in a window: no verdict")
    max_waiting: int = Field(100_000, ge=1, description="challengers waiting for the champion")


class ConceptDriftSettings(Section):
    """Concept drift: each window's errors against the reference's errors on the same
    kind of predictions, or a river change detector on the error stream (detectors/concept)."""

    enabled: bool = Field(True, description="run this detector")
    detector: Literal["reference", "adwin", "page_hinkley", "ddm", "eddm"] = Field(
        "reference",
        description="reference: a window's errors beyond those the reference makes on the "
        "same predictions (follows daily cycles); adwin, page_hinkley, ddm, eddm: a river "
        "change detector on the errors in arrival order (not seasonal-aware; ddm and eddm "
        "read classifiers' misses only)",
    )
    warning: float = Field(
        0.05,
        gt=0,
        description="excess error rate that warns (for a regressor: a share of the expected "
        "mean absolute error)",
    )
    critical: float = Field(0.1, gt=0, description="excess error rate that is critical")
    # One test per window, not a family: a strict level keeps chance excesses in windows
    # of a few hundred labels to about one in a thousand windows.
    alpha: float = Field(0.001, gt=0, lt=1, description="significance level")
    min_labels: int = Field(
        100, ge=10, description="fewer labels in the window or the reference: no verdict"
    )


class EstimatedPerformanceSettings(Section):
    """Performance estimated before labels come (CBPE, detectors/estimated): from the
    scores calibrated on the labelled reference, against the reference's realized
    performance."""

    enabled: bool = Field(True, description="run this detector")
    warning: float = Field(0.05, gt=0, description="relative estimated degradation that warns")
    critical: float = Field(0.15, gt=0, description="relative degradation that is critical")
    alpha: float = Field(0.001, gt=0, lt=1, description="false discovery rate per window")
    min_labels: int = Field(
        1000, ge=100, description="labelled reference events the calibration needs: no verdict"
    )
    min_samples: int = Field(100, ge=10, description="fewer scored events in a window: none")


class LabelShiftSettings(Section):
    """Label shift: observed once labels join, estimated (MLLS or BBSE) from predictions."""

    enabled: bool = Field(True, description="run this detector")
    # The estimates hold only under label shift (p(x|y) unchanged); under covariate shift
    # they read moved predictions as moved priors. Turn it on where label shift is the
    # expected kind of change; estimated performance is then corrected for the priors.
    estimate: bool = Field(False, description="estimate priors from predictions")
    # MLLS by default: the more accurate on seeded streams (mean L1 error of the priors
    # 0.0055-0.0116 against BBSE's 0.0073-0.0168; streamwatch/detectors/label_shift.py).
    # A model sending no probabilities gets BBSE either way.
    method: Literal["mlls", "bbse"] = Field(
        "mlls",
        description="mlls: maximum likelihood (EM on probabilities calibrated by bias-corrected "
        "temperature scaling); bbse: black box shift estimation (predicted classes)",
    )
    warning: float = Field(0.1, gt=0, description="shift of the class priors that warns")
    critical: float = Field(0.2, gt=0, description="shift of the class priors that is critical")
    # One test per window (not a family under FDR control): a stricter level keeps false
    # alarms to about one in a thousand windows.
    alpha: float = Field(0.001, gt=0, lt=1, description="significance level")
    min_samples: int = Field(500, ge=10, description="labels (and predictions) needed")
