"""Two-sample drift statistics on histograms: total variation, PSI, Jensen-Shannon, KS,
Wasserstein; and tests of a rate against its reference.

Each takes the reference and current counts on shared bins. Significance comes from
scipy's distributions (KS, chi-square, hypergeometric); the false discovery rate across
the subjects of one window is controlled with scipy's Benjamini-Hochberg.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import (
    chi2_contingency,
    false_discovery_control,
    hypergeom,
    kstwo,
    kstwobign,
    norm,
)

from streamwatch.batch import FloatArray

Counts = NDArray[np.int64] | NDArray[np.float64]

# Empty bins would make PSI infinite; this floor is the customary one (0.01%).
PSI_FLOOR = 1e-4
EXACT_KS_SIZE = 2000  # effective sample size n*m/(n+m) up to which scipy's p-value is used


def psi(reference: Counts, current: Counts) -> float:
    """Population stability index: KL(current‖reference) + KL(reference‖current)."""
    p = np.maximum(reference / reference.sum(), PSI_FLOOR)
    q = np.maximum(current / current.sum(), PSI_FLOOR)
    return float(np.sum(rel_entr(q, p) + rel_entr(p, q)))


def total_variation(reference: Counts, current: Counts) -> float:
    """The share of probability mass that moved: half the L1 distance between the two
    distributions (0 identical, 1 disjoint). Between N(0, 1) and N(d, 1) it is
    2 Phi(d/2) - 1, which puts it on the scale of a numeric shift in sd."""
    p, q = reference / reference.sum(), current / current.sum()
    return float(np.abs(q - p).sum() / 2)


def js_distance(reference: Counts, current: Counts) -> float:
    """Jensen-Shannon distance in bits (0 identical, 1 disjoint)."""
    return float(jensenshannon(reference, current, base=2))


def cdf_gaps(reference: Counts, current: Counts) -> FloatArray:
    """F_reference - F_current at each fine edge (the mass below it)."""
    gaps: FloatArray = (
        np.cumsum(reference)[:-1] / reference.sum() - np.cumsum(current)[:-1] / current.sum()
    )
    return gaps


def ks_statistic(reference: Counts, current: Counts) -> float:
    """Kolmogorov-Smirnov D from binned CDFs: exact when every distinct value is an edge,
    otherwise a lower bound within one fine bin's mass."""
    gaps = cdf_gaps(reference, current)
    return float(np.abs(gaps).max()) if gaps.size else 0.0


def ks_pvalue(d: float, n: int, m: int) -> float:
    """The two-sample KS p-value: scipy's (ks_2samp, method="asymp") up to an effective
    size of 2,000; beyond it, Kolmogorov's limit with Stephens' correction, within 3% of
    scipy's (relative, from p = 0.5 down to 1e-6; closer as samples grow) at a thousandth
    of the cost (scipy's takes 30 ms a feature at 100,000 events a side)."""
    en = n * m / (n + m)
    if en <= EXACT_KS_SIZE:
        return float(kstwo.sf(d, np.round(en)))
    root = math.sqrt(en)
    return float(kstwobign.sf(d * (root + 0.12 + 0.11 / root)))


def wasserstein(reference: Counts, current: Counts, edges: FloatArray) -> float:
    """Earth mover's distance between two histograms on ``edges``, in value units.

    Inside a bin the CDFs are taken as linear (values uniform in the bin); mass below
    the first or above the last edge sits on that edge. So this is the distance between
    the two distributions winsorised at the grid's outer edges (the reference's 1/128
    and 127/128 quantiles): heavy tails beyond them count for less, never for more.
    """
    if edges.size < 2:
        return 0.0
    gaps = cdf_gaps(reference, current)
    a, b, width = gaps[:-1], gaps[1:], np.diff(edges)
    same_sign = a * b >= 0
    magnitude = np.abs(a) + np.abs(b)
    crossing = np.divide(a * a + b * b, magnitude, out=np.zeros_like(a), where=magnitude > 0)
    area = np.where(same_sign, magnitude / 2, crossing / 2) * width
    return float(area.sum())


def binned_std(counts: Counts, edges: FloatArray) -> float:
    """Standard deviation of a fine histogram, winsorised like :func:`wasserstein`: mass
    below or above the grid sits on the outer edges, values are uniform inside a bin.
    Used to normalise Wasserstein, it makes one wild reference value unable to shrink
    every later distance (the raw standard deviation would)."""
    total = counts.sum()
    if total == 0 or edges.size == 0:
        return 0.0
    centres = np.concatenate([edges[:1], (edges[:-1] + edges[1:]) / 2, edges[-1:]])
    widths = np.concatenate([[0.0], np.diff(edges), [0.0]])
    p = counts / total
    mean = float(p @ centres)
    variance = float(p @ ((centres - mean) ** 2 + widths**2 / 12))
    return math.sqrt(max(variance, 0.0))


def pool_sparse(
    reference: Counts,
    current: Counts,
    minimum: float = 5.0,
    always: NDArray[np.bool_] | None = None,
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_]]:
    """Categories expected fewer than ``minimum`` times in the smaller sample, and those
    marked ``always``, pooled into one last bucket (Cochran's rule), so that the
    chi-square test holds and the noise of rare categories does not read as drift.
    Sparseness is judged on the two sides' total, so the pooling is the same whichever
    side a count came from. Returns the counts and which were kept."""
    total = reference + current
    smaller = min(reference.sum(), current.sum())
    expected = total * smaller / total.sum()
    pooled = expected < minimum
    if always is not None:
        pooled |= always
    if pooled.sum() < 2:  # a bucket of one is that category
        everything = np.ones(len(total), dtype=np.bool_)
        return reference.astype(np.float64), current.astype(np.float64), everything
    kept = ~pooled
    return (
        np.append(reference[kept], reference[pooled].sum()).astype(np.float64),
        np.append(current[kept], current[pooled].sum()).astype(np.float64),
        kept,
    )


def chi_square_pvalue(reference: Counts, current: Counts) -> float:
    """Chi-square test of homogeneity of two count vectors (bins empty in both dropped)."""
    table = np.vstack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)


def coarse_groups(reference: Counts, bins: int) -> NDArray[np.intp]:
    """Map fine bins to about ``bins`` groups of equal reference mass (quantile bins)."""
    total = reference.sum()
    centre = (np.cumsum(reference) - reference / 2) / total
    groups: NDArray[np.intp] = np.minimum((centre * bins).astype(np.intp), bins - 1)
    return groups


def regroup(counts: Counts, groups: NDArray[np.intp], bins: int) -> FloatArray:
    return np.bincount(groups, weights=counts, minlength=bins).astype(np.float64)


def one_sided(difference: float, se: float) -> float:
    """P-value of a positive ``difference`` at least this large, normally distributed
    with standard error ``se`` under the null."""
    if se <= 0:
        return 0.0 if difference > 0 else 1.0
    return float(norm.sf(difference / se))


def higher_rate_pvalue(k: int, n: int, k_ref: int, n_ref: int) -> float:
    """One-sided Fisher exact test that the rate k/n exceeds k_ref/n_ref: given the
    k + k_ref events counted on both sides, the chance that at least k of them fall
    among the current n (hypergeometric). Valid at any count, where the pooled z-test
    is not when few are expected: 1 in 100 against 0 in 3,000 gives z = 5.5 (p = 2e-8),
    though with 1 event in all, it lands in the current window 100 times in 3,100."""
    return float(hypergeom.sf(k - 1, n + n_ref, k + k_ref, n))


def benjamini_hochberg(pvalues: list[float]) -> list[float]:
    """Adjusted p-values (q-values) controlling the false discovery rate."""
    if not pvalues:
        return []
    # A p-value that could not be computed (NaN) is no evidence at all: 1.
    clean = np.nan_to_num(np.asarray(pvalues, dtype=np.float64), nan=1.0)
    return [float(q) for q in false_discovery_control(clean, method="bh")]
