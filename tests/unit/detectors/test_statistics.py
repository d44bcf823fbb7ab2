"""Each drift statistic against scipy on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr

from streamwatch.detectors import statistics as st
from streamwatch.detectors.histogram import fit_edges


def binned(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261122)


def test_ks_is_exact_when_every_value_is_an_edge(rng: np.random.Generator) -> None:
    a, b = rng.poisson(3.0, 4000).astype(float), rng.poisson(3.4, 3000).astype(float)
    edges = np.unique(np.concatenate([a, b]))
    d = st.ks_statistic(binned(edges, a), binned(edges, b))
    expected = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert st.ks_pvalue(d, len(a), len(b)) == pytest.approx(expected.pvalue, rel=1e-9)


@pytest.mark.parametrize("size", [2_001, 5_000, 50_000, 500_000])
def test_ks_p_value_of_large_samples_is_within_3_percent_of_scipys(size: int) -> None:
    n = m = 2 * size  # effective size n*m/(n+m) = size, past scipy's own formula
    for p in (0.5, 0.1, 0.01, 1e-3, 1e-4, 1e-6):
        d = float(stats.kstwo.isf(p, size))
        assert st.ks_pvalue(d, n, m) == pytest.approx(float(stats.kstwo.sf(d, size)), rel=0.03)


def test_ks_on_the_fine_grid_is_within_a_bin_of_exact(rng: np.random.Generator) -> None:
    a, b = rng.normal(0, 1, 20_000), rng.normal(0.2, 1.1, 20_000)
    edges = fit_edges(a[:2048])
    d = st.ks_statistic(binned(edges, a), binned(edges, b))
    exact = stats.ks_2samp(a, b).statistic
    assert exact - 1 / 64 <= d <= exact + 1e-12  # a lower bound, close


@pytest.mark.parametrize(
    "draw",
    [
        lambda r: (r.normal(0, 1, 20_000), r.normal(0.3, 1, 20_000)),
        lambda r: (r.normal(5, 2, 20_000), r.normal(5, 3, 20_000)),
        lambda r: (r.lognormal(0, 1, 20_000), r.lognormal(0.2, 1.1, 20_000)),
        lambda r: (r.uniform(0, 1, 5_000), r.uniform(0, 1, 5_000)),
    ],
)
def test_wasserstein_matches_scipy_on_the_winsorised_data(draw, rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    a, b = draw(rng)
    edges = fit_edges(a[:2048])
    ours = st.wasserstein(binned(edges, a), binned(edges, b), edges)
    lo, hi = edges[0], edges[-1]
    expected = stats.wasserstein_distance(np.clip(a, lo, hi), np.clip(b, lo, hi))
    assert ours == pytest.approx(expected, rel=0.03, abs=0.002)


def test_wasserstein_of_a_normal_shift_is_close_to_the_untrimmed_distance(
    rng: np.random.Generator,
) -> None:
    a, b = rng.normal(0, 1, 50_000), rng.normal(0.25, 1, 50_000)
    edges = fit_edges(a[:2048])
    ours = st.wasserstein(binned(edges, a), binned(edges, b), edges)
    assert ours == pytest.approx(stats.wasserstein_distance(a, b), rel=0.05)


def test_psi_is_the_symmetrised_kl_divergence() -> None:
    ref = np.array([500.0, 300.0, 200.0])
    cur = np.array([400.0, 300.0, 300.0])
    p, q = ref / ref.sum(), cur / cur.sum()
    expected = np.sum(rel_entr(q, p)) + np.sum(rel_entr(p, q))
    assert st.psi(ref, cur) == pytest.approx(expected)
    assert st.psi(ref, cur) == pytest.approx(np.sum((q - p) * np.log(q / p)))
    assert st.psi(ref, ref) == 0.0


def test_psi_stays_finite_with_empty_bins() -> None:
    assert np.isfinite(st.psi(np.array([10.0, 0.0]), np.array([0.0, 10.0])))


def test_jensen_shannon_matches_scipy() -> None:
    ref = np.array([30, 50, 20, 0])
    cur = np.array([10, 40, 30, 20])
    assert st.js_distance(ref, cur) == pytest.approx(jensenshannon(ref / 100, cur / 100, base=2))
    assert st.js_distance(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)


def test_chi_square_matches_scipy_and_drops_empty_columns() -> None:
    ref = np.array([120, 80, 0, 40])
    cur = np.array([100, 95, 0, 60])
    expected = stats.chi2_contingency(np.array([[120, 80, 40], [100, 95, 60]]), correction=False)
    assert st.chi_square_pvalue(ref, cur) == pytest.approx(expected.pvalue)
    assert st.chi_square_pvalue(np.array([5, 0]), np.array([7, 0])) == 1.0


def test_coarse_groups_are_reference_quantile_bins(rng: np.random.Generator) -> None:
    a = rng.normal(0, 1, 100_000)
    edges = fit_edges(a[:2048])
    counts = binned(edges, a)
    coarse = st.regroup(counts, st.coarse_groups(counts, 10), 10)
    assert coarse.sum() == len(a)
    assert np.all(np.abs(coarse / len(a) - 0.1) < 0.02)


def test_benjamini_hochberg_matches_scipy() -> None:
    p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205]
    assert st.benjamini_hochberg(p) == pytest.approx(stats.false_discovery_control(p))
    assert st.benjamini_hochberg([]) == []


def test_total_variation_is_the_share_of_mass_moved() -> None:
    ref = np.array([300.0, 250.0, 200.0, 150.0, 100.0])
    cur = np.array([220.0, 330.0, 200.0, 150.0, 100.0])  # 8 points from the first to the second
    assert st.total_variation(ref, cur) == pytest.approx(0.08)
    assert st.total_variation(ref, 2 * ref) == 0.0
    assert st.total_variation(np.array([1, 0]), np.array([0, 1])) == 1.0


@pytest.mark.parametrize("shift", [0.1, 0.2, 0.25, 0.4])
def test_total_variation_of_a_normal_shift_is_two_phi_of_half_the_shift_less_one(
    shift: float, rng: np.random.Generator
) -> None:
    # The scale its thresholds are set on: 0.04 at 0.1 sd, 0.1 at 0.25 sd.
    a, b = rng.normal(0, 1, 500_000), rng.normal(shift, 1, 500_000)
    edges = np.linspace(-6.0, 6.0, 241)
    tv = st.total_variation(binned(edges, a), binned(edges, b))
    assert tv == pytest.approx(2 * stats.norm.cdf(shift / 2) - 1, abs=0.005)


def test_pooling_judges_sparseness_on_both_sides_and_pools_what_it_is_told_to() -> None:
    ref = np.array([500.0, 300.0, 3.0, 0.0, 40.0])
    cur = np.array([480.0, 310.0, 0.0, 2.0, 60.0])
    pooled_ref, pooled_cur, kept = st.pool_sparse(ref, cur)
    assert kept.tolist() == [True, True, False, False, True]
    assert (pooled_ref.tolist(), pooled_cur.tolist()) == ([500, 300, 40, 3], [480, 310, 60, 2])
    swapped = st.pool_sparse(cur, ref)
    assert swapped[2].tolist() == kept.tolist()  # the same whichever side is which
    always = np.array([False, False, False, False, True])  # e.g. __other__
    pooled_ref, pooled_cur, kept = st.pool_sparse(ref, cur, always=always)
    assert kept.tolist() == [True, True, False, False, False]
    assert (pooled_ref.tolist(), pooled_cur.tolist()) == ([500, 300, 43], [480, 310, 62])


@pytest.mark.parametrize(
    ("k", "n", "k_ref", "n_ref"),
    [(1, 100, 0, 3000), (5, 100, 0, 3000), (90, 3000, 0, 3000), (660, 3000, 600, 3000)],
)
def test_the_exact_rate_test_is_fishers_one_sided(k: int, n: int, k_ref: int, n_ref: int) -> None:
    expected = stats.fisher_exact([[k, n - k], [k_ref, n_ref - k_ref]], alternative="greater")
    assert st.higher_rate_pvalue(k, n, k_ref, n_ref) == pytest.approx(expected.pvalue)


def test_the_exact_rate_test_holds_where_few_are_expected() -> None:
    # One value of 3,100 in all, in the 100-event window: chance 100/3100. The pooled
    # z-test calls it significant at 2e-8.
    assert st.higher_rate_pvalue(1, 100, 0, 3000) == pytest.approx(100 / 3100)
    assert st.higher_rate_pvalue(0, 100, 0, 3000) == 1.0
    assert st.higher_rate_pvalue(0, 100, 5, 3000) == 1.0
