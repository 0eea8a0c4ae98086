"""Rank and positive-definiteness decisions (_linalg): both sides of each
tolerance, far from it, and invariance to the units of columns and
random effects."""

import warnings

import numpy as np
import pandas as pd
import pytest

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import _linalg

SCALES = [1.0, 1e8, 1e-8]


def _design(gap, seed=0, n=200):
    """Intercept, x, and 2 x - 3 plus ``gap`` times a unit-variance
    direction (gap 0: exactly collinear)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    e = rng.standard_normal(n)
    return np.column_stack([np.ones(n), x, 2 * x - 3 + gap * e])


@pytest.mark.parametrize("scale", SCALES)
def test_redundant_columns_both_sides_and_units(scale):
    for cols in ([1], [2], [1, 2]):
        inside, outside = _design(1e-3), _design(0.0)
        inside[:, cols] *= scale
        outside[:, cols] *= scale
        assert _linalg.redundant_columns(inside) == []
        assert _linalg.redundant_columns(outside) == [2]


def test_redundant_columns_zero_column_and_later_duplicates():
    X = _design(1e-3)
    X = np.column_stack([X[:, :2], np.zeros(len(X)), X[:, 2], 5 * X[:, 1]])
    assert _linalg.redundant_columns(X) == [2, 4]


def _qr_only(mat, monkeypatch):
    """redundant_columns decided by the QR alone (the Gram screen off)."""
    with monkeypatch.context() as m:
        m.setattr(_linalg, "_gram_full_rank", lambda mat: False)
        return _linalg.redundant_columns(mat)


@pytest.mark.parametrize("scale", SCALES)
def test_gram_screen_agrees_with_the_qr_on_both_sides(scale, monkeypatch):
    # Gaps from clearly independent, through the screen's threshold (a
    # residual fraction of about 1e-3), down to the collinearity tolerance
    # (1e-7) and exact collinearity: the answer is the QR's throughout.
    screened = []
    for gap in [1.0, 1e-1, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-6, 1e-8, 0.0]:
        X = _design(gap)
        X[:, 2] *= scale
        assert _linalg.redundant_columns(X) == _qr_only(X, monkeypatch)
        screened.append(_linalg._gram_full_rank(X))
    # the screen passes exactly for the gaps far from the tolerance
    # (residual fraction gap / sqrt(4 + 9 + gap**2) above about 1e-3)
    assert screened == [True, True, True, False, False, False, False,
                        False, False, False]
    assert _linalg.redundant_columns(_design(1e-6)) == []
    assert _linalg.redundant_columns(_design(1e-8)) == [2]


def test_gram_screen_leaves_extreme_and_zero_columns_to_the_qr(monkeypatch):
    X = _design(1.0)
    for bad in (X * np.array([1.0, 1e200, 1.0]), X * np.array([1.0, 1e-200, 1.0]),
                np.column_stack([X, np.zeros(len(X))])):
        assert not _linalg._gram_full_rank(bad)
        assert _linalg.redundant_columns(bad) == _qr_only(bad, monkeypatch)
    assert _linalg.redundant_columns(X * np.array([1.0, 1e200, 1.0])) == []


def test_check_full_rank_names_the_column():
    X = _design(0.0) * np.array([1.0, 1e8, 1e-8])
    with pytest.raises(ValueError, match=r"The design is singular \(rank 2 < 3 "
                       r"columns\): \['c'\] are linear combinations"):
        _linalg.check_full_rank(X, "The design", ["a", "b", "c"], "Drop one.")
    _linalg.check_full_rank(_design(1e-3) * np.array([1.0, 1e8, 1e-8]),
                            "The design", ["a", "b", "c"], "Drop one.")


@pytest.mark.parametrize("scale", SCALES)
def test_cholesky_equilibrated_both_sides_and_units(scale):
    units = np.array([1.0, scale, 1.0 / scale])
    w = np.random.default_rng(1).uniform(0.1, 10, 200)  # a V^-1-like metric
    X = _design(1e-3) * units
    gram = X.T @ (X * w[:, None])
    L = _linalg.cholesky_equilibrated(gram)
    np.testing.assert_allclose(L @ L.T, gram, rtol=1e-10, atol=0)
    assert np.allclose(L, np.tril(L))
    X = _design(0.0) * units
    with pytest.raises(_linalg.NotPositiveDefiniteError):
        _linalg.cholesky_equilibrated(X.T @ (X * w[:, None]))


def test_cholesky_equilibrated_solves_a_badly_scaled_system():
    """x * 1e8 next to an intercept: the plain factor of X'X is at the
    mercy of rounding, the equilibrated one solves to full accuracy."""
    X = _design(1e-3) * np.array([1.0, 1e8, 1.0])
    beta = np.array([1.0, 2e-8, 3.0])
    gram = X.T @ X
    L = _linalg.cholesky_equilibrated(gram)
    np.testing.assert_allclose(_linalg.chol_solve(L, X.T @ (X @ beta)), beta,
                               rtol=1e-6)


def _corr3(third):
    """3 x 3 correlation matrix whose smallest eigenvalue grows with
    ``third`` (0: rank 2, correlations inside (-1, 1))."""
    B = np.array([[1.0, 0.2, third], [0.3, 1.0, third], [0.9, -0.8, third]])
    C = B @ B.T
    sd = np.sqrt(np.diag(C))
    return C / np.outer(sd, sd)


@pytest.mark.parametrize("scale", SCALES)
def test_covariance_rank_both_sides_and_units(scale):
    inside, outside = _corr3(0.2), _corr3(0.0)
    ev_in = np.linalg.eigvalsh(inside)
    ev_out = np.linalg.eigvalsh(outside)
    assert ev_in[0] / ev_in[-1] > 1e-3 and abs(ev_out[0] / ev_out[-1]) < 1e-15
    D = np.diag([scale, 1.0, 1.0 / scale])
    assert _linalg.covariance_rank(D @ inside @ D) == (3, 3)
    assert _linalg.covariance_rank(D @ outside @ D) == (2, 3)
    # a stack: the smallest rank
    assert _linalg.covariance_rank(np.stack([D @ inside @ D, D @ outside @ D])) == (2, 3)
    assert _linalg.is_positive_definite(np.stack([inside, outside])).tolist() == \
        [True, False]


def test_covariance_rank_correlation_near_one():
    """A correlation 1 - 1e-3 is full rank, -1 is not; tanh(7) (how the
    profile refits hold +-1) is still full rank, whatever the variances."""
    def cov(rho, v1=1.0, v2=1.0):
        sd = np.sqrt([v1, v2])
        return np.outer(sd, sd) * np.array([[1, rho], [rho, 1]])

    for v in (1.0, 1e-16, 1e16):
        assert _linalg.covariance_rank(cov(1 - 1e-3, 1.0, v)) == (2, 2)
        assert _linalg.covariance_rank(cov(-1.0, 1.0, v)) == (1, 2)
        assert _linalg.covariance_rank(cov(np.tanh(7.0), 1.0, v)) == (2, 2)


@pytest.mark.parametrize("scale", SCALES)
def test_zero_variance_with_and_without_reference(scale):
    """A variance of 0 is a rank deficiency; a tiny one is, relative to
    the effect's reference variance, which rescales with its column."""
    c2 = scale**2
    sigma = np.diag([2.0, 0.0, 1.0 * c2])
    assert _linalg.covariance_rank(sigma) == (2, 3)
    ref = np.array([1.0, 1.0, c2])
    tiny = np.diag([2.0, 1.0, 1e-20 * c2])
    small = np.diag([2.0, 1.0, 1e-3 * c2])
    assert _linalg.covariance_rank(tiny, ref) == (2, 3)
    assert _linalg.covariance_rank(small, ref) == (3, 3)
    assert _linalg.covariance_rank(tiny) == (3, 3)  # positive: no reference


@pytest.mark.parametrize("scale", SCALES)
def test_cholesky_covariance(scale):
    D = np.diag([scale, 1.0, 1.0 / scale])
    sigma = D @ _corr3(0.2) @ D
    L = _linalg.cholesky_covariance(np.stack([sigma, 2 * sigma]))
    np.testing.assert_allclose(L[0] @ L[0].T, sigma, rtol=1e-10, atol=0)
    np.testing.assert_allclose(L[0], np.linalg.cholesky(sigma), rtol=1e-10,
                               atol=1e-12 * scale)
    with pytest.raises(np.linalg.LinAlgError):
        _linalg.cholesky_covariance(D @ _corr3(0.0) @ D)
    with pytest.raises(np.linalg.LinAlgError):
        _linalg.cholesky_covariance(np.diag([1.0, 0.0, 1.0]))


def _simulated(n_groups=30, size=8, seed=4):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.standard_normal(len(g))
    h = rng.integers(0, 2, n_groups)[g]
    y = (1 + 0.5 * x + 0.4 * h + rng.normal(0, 1.0, n_groups)[g]
         + np.exp(0.5 * (0.2 - 0.5 * h)) * rng.standard_normal(len(g)))
    return pd.DataFrame({"y": y, "x": x, "h": h, "g": g})


def _fit(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no convergence or singularity warning
        return hmf.hetmixedlm("y ~ x + h", data, groups="g",
                              var_formula="~ h").fit(reml=False)


@pytest.mark.parametrize("scale", [1e8, 1e-8, 1e14, 1e-14])
def test_model_fixed_effect_in_other_units(scale):
    """A covariate times 1e8 (or 1e-8, or 1e+-14, which a rank rule on the
    raw design called collinear) fits, with its coefficient divided by the
    factor and the rest unchanged."""
    data = _simulated()
    base = _fit(data)
    rec = _fit(data.assign(x=data["x"] * scale))
    expected = np.asarray(base.fe_params) * np.array([1.0, 1.0 / scale, 1.0])
    np.testing.assert_allclose(np.asarray(rec.fe_params), expected, rtol=1e-6)
    np.testing.assert_allclose(rec.llf, base.llf, rtol=1e-10)


def test_model_collinear_design_names_the_column():
    data = _simulated()
    data = data.assign(x=data["x"] * 1e8, x3=3e-8 * data["x"] - 2)
    with pytest.raises(ValueError, match=r"fixed-effects design.*singular.*\['x3'\]"):
        hmf.hetmixedlm("y ~ x + h + x3", data, groups="g")


@pytest.mark.parametrize("units", [1e-6, 1.0, 1e6])
def test_is_positive_semidefinite_whatever_the_units(units):
    """Decided on the correlations: the same answer in any units, on both
    sides of the tolerance."""
    from statsmodels_hetmixed._linalg import COV_RTOL, is_positive_semidefinite

    sd = np.array([1.0, 1e-3]) * units
    for corr, expected in [(1.0, True), (0.5, True), (1 + 0.1 * COV_RTOL, True),
                           (1 + 10 * COV_RTOL, False), (-1.5, False)]:
        cov = np.array([[1.0, corr], [corr, 1.0]]) * np.outer(sd, sd)
        assert is_positive_semidefinite(cov) is expected, (corr, units)
    assert not is_positive_semidefinite(np.diag([units, -1e-30 * units]))
    assert is_positive_semidefinite(np.diag([units, 0.0]))


def test_chol_solve_empty_blocks():
    """Empty factors or right-hand sides (a Newton step without outer
    parameters) give empty solutions on every supported scipy (1.12's
    potrs rejected them: a random-slope ML fit failed in newton_polish)."""
    assert _linalg.chol_solve(np.zeros((0, 0)), np.zeros((0, 3))).shape == (0, 3)
    assert _linalg.chol_solve(np.zeros((0, 0)), np.zeros(0)).shape == (0,)
    L = np.linalg.cholesky(np.array([[2.0, 0.5], [0.5, 1.0]]))
    assert _linalg.chol_solve(L, np.zeros((2, 0))).shape == (2, 0)
