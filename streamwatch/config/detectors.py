"""The detectors' settings: :class:`DetectorSettings`, the section that holds every family,
and the families judged on the events of a window (drift, data quality, out of
distribution, operational). Those judged on outcomes are in ``outcome_detectors.py``."""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar, get_args

from pydantic import AfterValidator, Field, model_validator

from streamwatch.config.base import Section
from streamwatch.config.outcome_detectors import (
    ConceptDriftSettings,
    EstimatedPerformanceSettings,
    LabelShiftSettings,
    PerformanceSettings,
    ShadowSettings,
    SliceSettings,
)

NumericStatistic = Literal["wasserstein", "psi", "jensen_shannon", "ks"]
CategoricalStatistic = Literal["total_variation", "jensen_shannon", "psi"]
Kind = Literal["numeric", "categorical"]
STATISTICS: dict[Kind, tuple[str, ...]] = {
    "numeric": get_args(NumericStatistic),
    "categorical": get_args(CategoricalStatistic),
}
V = TypeVar("V")

# Effect-size thresholds (warning, critical) of each statistic. Wasserstein is
# normalised by the reference standard deviation: 0.1 reads "a tenth of a sd".
# Total variation, the share of mass that moved, is put on the same scale: between
# N(0, 1) and N(d, 1) it is 2 Phi(d/2) - 1, so 0.04 at 0.1 sd and 0.1 at 0.25 sd (the
# numeric critical). The warning sits a little above 0.04 because a sample's total
# variation is biased up by chance differences in every category (about 0.01 for five
# categories at 5,000 events a side, 0.03 for hundreds), which a shift of the mean
# is not; at 0.05 it still warns on 8 points moved at 5,000 events (a 0.2 sd shift's
# worth: the lowest of 600 windows read 0.07) and 12 points are critical.
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "wasserstein": (0.1, 0.25),
    "psi": (0.1, 0.25),
    "jensen_shannon": (0.1, 0.2),
    "ks": (0.1, 0.2),
    "total_variation": (0.05, 0.1),
}


def lower_keys(mapping: dict[str, V] | None) -> dict[str, V] | None:
    """``mapping`` with its keys lower-cased, as a variable's name is read (feature names
    and model ids are matched in any case); keys that differ only in case are refused.
    ``None`` (a map a model's own settings leave unset) stays ``None``."""
    if mapping is None:
        return None
    lowered = {key.lower(): value for key, value in mapping.items()}
    if len(lowered) < len(mapping):
        raise ValueError(f"keys differ only in case: {', '.join(sorted(mapping))}")
    return lowered


class ColumnDrift(Section):
    """One feature's own drift settings."""

    ignore: bool = Field(False, description="never judge this feature (an identifier)")
    statistic: Literal[NumericStatistic, CategoricalStatistic] | None = Field(
        None,
        description="its effect size, one its kind has (numeric: wasserstein, psi, "
        "jensen_shannon, ks; categorical: total_variation, jensen_shannon, psi); default: "
        "the detector's for its kind",
    )
    warning: float | None = Field(
        None, gt=0, description="default: the statistic's own if set, else the detector's"
    )
    critical: float | None = Field(
        None, gt=0, description="default: the statistic's own if set, else the detector's"
    )


class ColumnQuality(Section):
    """One feature's own data quality settings."""

    ignore: bool = Field(False, description="never judge this feature (an identifier)")
    warning: float | None = Field(None, gt=0, description="default: the detector's")
    critical: float | None = Field(None, gt=0, description="default: the detector's")


class DriftSettings(Section):
    """Feature or prediction drift: effect size decides severity, significance gates it."""

    enabled: bool = Field(True, description="run this detector")
    numeric_statistic: NumericStatistic = Field(
        "wasserstein", description="effect size that sets the severity of numeric columns"
    )
    categorical_statistic: CategoricalStatistic = Field(
        "total_variation",
        description="effect size that sets the severity of categorical columns",
    )
    numeric_warning: float | None = Field(None, gt=0, description="default follows the statistic")
    numeric_critical: float | None = Field(None, gt=0, description="default follows the statistic")
    categorical_warning: float | None = Field(
        None, gt=0, description="default follows the statistic"
    )
    categorical_critical: float | None = Field(
        None, gt=0, description="default follows the statistic"
    )
    # A daemon judges a window every few minutes, all day: at 1% a window it would raise
    # a false alarm every hundred windows (measured: 2 in 156 null windows of realistic
    # traffic); every detector is set to about one in a thousand.
    alpha: float = Field(0.001, gt=0, lt=1, description="false discovery rate per window")
    min_samples: int = Field(100, ge=2, description="fewer events in either window: no verdict")
    bins: int = Field(10, ge=2, le=100, description="coarse bins for PSI and Jensen-Shannon")
    max_categories: int = Field(200, ge=2, description="categories tracked per feature")
    columns: Annotated[dict[str, ColumnDrift], AfterValidator(lower_keys)] = Field(
        default_factory=dict,
        description="column -> its own settings: a feature's (an output's, of prediction drift), "
        "named in any case",
    )

    @model_validator(mode="after")
    def _ordered(self) -> DriftSettings:
        for kind, statistics in STATISTICS.items():
            warning, critical = self.thresholds(kind)
            if critical < warning:
                raise ValueError(
                    f"{kind}_critical ({critical}) is below {kind}_warning ({warning})"
                )
            for name, column in self.columns.items():
                if column.statistic is not None and column.statistic not in statistics:
                    continue  # never this kind's statistic
                warning, critical = self.thresholds(kind, name)
                if critical < warning:
                    raise ValueError(
                        f"columns.{name}: critical ({critical}) is below warning ({warning})"
                        + ("" if column.statistic else f" for {kind} columns")
                    )
        return self

    def statistic(self, kind: Kind, column: str | None = None) -> str:
        """The effect size of a column of ``kind``: the column's own when it set one that
        its kind has."""
        own = self.column(column).statistic if column is not None else None
        if own is not None and own in STATISTICS[kind]:
            return own
        return self.numeric_statistic if kind == "numeric" else self.categorical_statistic

    def thresholds(self, kind: Kind, column: str | None = None) -> tuple[float, float]:
        """(warning, critical) for numeric or categorical columns, or for one column: its
        own where set, else its own statistic's defaults, else the detector's."""
        statistic = self.statistic(kind)
        warning, critical = DEFAULT_THRESHOLDS[statistic]
        set_warning = self.numeric_warning if kind == "numeric" else self.categorical_warning
        set_critical = self.numeric_critical if kind == "numeric" else self.categorical_critical
        warning, critical = set_warning or warning, set_critical or critical
        if column is None:
            return warning, critical
        own = self.column(column)
        if own.statistic is not None and own.statistic in STATISTICS[kind]:
            warning, critical = DEFAULT_THRESHOLDS[own.statistic]
        return own.warning or warning, own.critical or critical

    def column(self, name: str) -> ColumnDrift:
        """A feature's own settings (in any case), or the defaults."""
        return self.columns.get(name.lower(), _NO_DRIFT)


class DataQualitySettings(Section):
    """Missing values, out-of-range values, unseen categories, schema changes: a rate
    warns when it rose significantly over the reference's, by at least ``warning``."""

    enabled: bool = Field(True, description="run this detector")
    # The test decides; the warning, a floor, keeps a huge window from warning on a trivial rise,
    # and covers what the test cannot see: the share outside the range in the events
    # the grid was fitted on is 1.56% by construction, while later events' share is
    # 1.6% give or take 0.27 points (sd, 2,048 fitted events).
    warning: float = Field(
        0.01, gt=0, description="smallest absolute rise of a rate that warns, if significant"
    )
    critical: float = Field(
        0.2, gt=0, description="absolute rise of a rate that is critical, if significant"
    )
    alpha: float = Field(0.001, gt=0, lt=1, description="false discovery rate per window")
    min_samples: int = Field(100, ge=10, description="fewer events: no verdict")
    columns: Annotated[dict[str, ColumnQuality], AfterValidator(lower_keys)] = Field(
        default_factory=dict, description="feature -> its own settings, named in any case"
    )

    @model_validator(mode="after")
    def _ordered(self) -> DataQualitySettings:
        if self.critical < self.warning:
            raise ValueError(f"critical ({self.critical}) is below warning ({self.warning})")
        for name in self.columns:
            warning, critical = self.thresholds(name)
            if critical < warning:
                raise ValueError(
                    f"columns.{name}: critical ({critical}) is below warning ({warning})"
                )
        return self

    def thresholds(self, column: str) -> tuple[float, float]:
        """(warning, critical) of a feature: its own where set, else the detector's."""
        own = self.column(column)
        return own.warning or self.warning, own.critical or self.critical

    def column(self, name: str) -> ColumnQuality:
        """A feature's own settings (in any case), or the defaults."""
        return self.columns.get(name.lower(), _NO_QUALITY)


_NO_DRIFT, _NO_QUALITY = ColumnDrift(), ColumnQuality()


class OutOfDistributionSettings(Section):
    """The share of events far from the reference in all features at once (detectors/ood)."""

    enabled: bool = Field(True, description="run this detector")
    quantile: float = Field(0.99, gt=0.5, lt=1, description="reference distance quantile")
    max_features: int = Field(50, ge=2, description="numeric features used, most present first")
    warning: float = Field(0.02, gt=0, description="absolute rise of the share that warns")
    critical: float = Field(0.1, gt=0, description="absolute rise of the share, critical")
    alpha: float = Field(0.001, gt=0, lt=1, description="significance level")
    min_samples: int = Field(200, ge=10, description="fewer events: no fit, no verdict")


class OperationalSettings(Section):
    """Latency, error rate and volume against the reference (detectors/operational)."""

    enabled: bool = Field(True, description="run this detector")
    latency_warning: float = Field(0.5, gt=0, description="relative p95/p99 rise that warns")
    latency_critical: float = Field(1.0, gt=0, description="relative rise that is critical")
    latency_p99_limit_ms: float | None = Field(None, gt=0, description="an absolute p99 limit")
    error_warning: float = Field(0.01, gt=0, description="error-rate increase that warns")
    error_critical: float = Field(0.05, gt=0, description="error-rate increase, critical")
    volume_warning: float = Field(2.0, gt=1, description="fold change of volume that warns")
    volume_critical: float = Field(4.0, gt=1, description="fold change that is critical")
    alpha: float = Field(
        0.001, gt=0, lt=1, description="significance level of a window's tests together"
    )
    min_samples: int = Field(100, ge=10, description="fewer events: no latency verdict")


class DetectorSettings(Section):
    """The detectors run on each model's closed windows, each on or off by ``enabled``."""

    feature_drift: DriftSettings = Field(
        DriftSettings(), description="each feature of the events against the reference"
    )
    prediction_drift: DriftSettings = Field(
        DriftSettings(),
        description="the model's outputs: score, predicted class or value, probabilities",
    )
    performance: PerformanceSettings = PerformanceSettings()
    estimated_performance: EstimatedPerformanceSettings = EstimatedPerformanceSettings()
    concept_drift: ConceptDriftSettings = ConceptDriftSettings()
    slices: SliceSettings = SliceSettings()
    shadow: ShadowSettings = ShadowSettings()
    label_shift: LabelShiftSettings = LabelShiftSettings()
    operational: OperationalSettings = OperationalSettings()
    data_quality: DataQualitySettings = DataQualitySettings()
    out_of_distribution: OutOfDistributionSettings = OutOfDistributionSettings()
    grid_sample: int = Field(
        2048, ge=16, description="events per model used to fix the fine numeric bin grid"
    )
