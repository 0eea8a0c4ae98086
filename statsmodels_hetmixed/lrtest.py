"""Likelihood-ratio tests with parameters on the boundary (chi-bar-square)."""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.optimize import nnls


class LRTestResult(tuple):
    """
    ``(statistic, pvalue, df)``, like ``OLSResults.compare_lr_test``, with
    the reference distribution it used.

    Attributes
    ----------
    statistic, pvalue : float
    df : int
        Number of parameters restricted by the null.
    weights : ndarray or None
        Mixture weights of chi2(df - k_b), ..., chi2(df) when ``k_b``
        restricted parameters are variances on the boundary; None for the
        plain chi2(df).
    boundary : list of str
        Names of the restricted parameters on the boundary.
    distribution : str
        A description of the reference distribution.
    """

    def __new__(cls, statistic, df, boundary=(), boundary_cov=None, seed=0):
        statistic = float(max(statistic, 0.0))
        boundary = list(boundary)
        k_b = len(boundary)
        if k_b == 0:
            weights = None
            pvalue = float(stats.chi2.sf(statistic, df))
            dist = f"chi2({df})"
        else:
            weights = chibar_weights(k_b, boundary_cov, seed=seed)
            dofs = np.arange(df - k_b, df + 1)
            pvalue = float(sum(w * _chi2_sf(statistic, d)
                               for w, d in zip(weights, dofs)))
            parts = " + ".join(f"{w:.3g} chi2({d})" for w, d in zip(weights, dofs))
            dist = f"chi-bar-square mixture {parts} ({k_b} variance(s) on the boundary)"
        self = super().__new__(cls, (statistic, pvalue, int(df)))
        self.statistic, self.pvalue, self.df = statistic, pvalue, int(df)
        self.weights, self.boundary, self.distribution = weights, boundary, dist
        return self

    def __repr__(self):
        return (f"LRTestResult(statistic={self.statistic:.4f}, "
                f"pvalue={self.pvalue:.4g}, df={self.df}, "
                f"distribution={self.distribution!r})")


def _chi2_sf(x, df):
    if df == 0:
        return float(x <= 0)  # chi2(0) is a point mass at zero
    return float(stats.chi2.sf(x, df))


def chibar_weights(k, cov=None, n_draws=20_000, seed=0, method="auto"):
    """
    Weights w_0..w_k of the chi-bar-square distribution for testing that k
    parameters with asymptotic covariance ``cov`` are zero against >= 0:
    w_i is the probability that the projection of N(0, cov) onto the
    non-negative orthant (in the cov^-1 metric) has i positive components.

    Exact for k = 1 (1/2, 1/2), for uncorrelated parameters
    (binomial(k, 1/2)) and for k = 2 (w_0 = arccos(rho) / 2 pi, w_1 = 1/2,
    Kudo 1963); otherwise (or with ``method="mc"``) by seeded Monte Carlo.
    """
    if k == 1:
        return np.array([0.5, 0.5])
    if cov is None:
        cov = np.eye(k)
    cov = np.asarray(cov, dtype=np.float64)
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    if method == "auto":
        if np.allclose(corr, np.eye(k), atol=1e-12):
            return stats.binom.pmf(np.arange(k + 1), k, 0.5)
        if k == 2:
            w0 = np.arccos(np.clip(corr[0, 1], -1, 1)) / (2 * np.pi)
            return np.array([w0, 0.5, 0.5 - w0])
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(corr)
    root_inv = np.linalg.inv(chol)
    draws = rng.standard_normal((n_draws, k)) @ chol.T
    counts = np.zeros(k + 1)
    for z in draws:
        theta, _ = nnls(root_inv, root_inv @ z)
        counts[np.count_nonzero(theta > 1e-12)] += 1
    return counts / n_draws
