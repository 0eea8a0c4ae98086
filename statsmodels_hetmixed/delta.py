"""Delta-method inference for functions of the parameters (Stata's nlcom)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm


def numerical_jacobian(func, x, rel_step=1e-6):
    """Central-difference Jacobian of a vector function at x."""
    x = np.asarray(x, dtype=np.float64)
    f0 = np.atleast_1d(np.asarray(func(x), dtype=np.float64))
    jac = np.empty((f0.size, x.size))
    for j in range(x.size):
        h = rel_step * max(abs(x[j]), 1e-3)
        up, down = x.copy(), x.copy()
        up[j] += h
        down[j] -= h
        jac[:, j] = (np.atleast_1d(func(up)) - np.atleast_1d(func(down))) / (2 * h)
    return f0, jac


def delta_method(func, params, cov, names=None, alpha=0.05, log_ci=False):
    """
    Estimate, standard error, z-test and confidence interval of
    ``func(params)`` by the delta method.

    Parameters
    ----------
    func : callable
        Maps the parameter vector to a scalar or a vector.
    params : ndarray
    cov : ndarray or callable
        Covariance matrix of ``params``, or a function that maps the
        Jacobian of ``func`` (one row per component) to the covariance
        matrix of the linearised function, such as a results object's
        ``cov_params`` (which leaves undetermined components NaN).
    names : list of str, optional
        Labels of the function's components.
    alpha : float
        1 - confidence level.
    log_ci : bool
        Confidence intervals computed on the log scale and transformed back
        (for positive quantities such as variances): ``est * exp(-+ z se /
        est)``; they stay positive.

    Returns
    -------
    pandas.DataFrame
        Columns Coef., Std.Err., z, P>|z|, and the interval bounds.
    """
    est, jac = numerical_jacobian(func, params)
    if callable(cov):
        var = np.diag(np.atleast_2d(cov(jac)))
    else:
        var = np.einsum("ij,jk,ik->i", jac, cov, jac)
    se = np.sqrt(np.maximum(var, 0.0))
    q = norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = est / se
        if log_ci:
            half = np.where(est > 0, q * se / est, np.nan)
            lower, upper = est * np.exp(-half), est * np.exp(half)
        else:
            lower, upper = est - q * se, est + q * se
    if names is None:
        names = [f"_nl_{k + 1}" for k in range(est.size)]
    return pd.DataFrame(
        {"Coef.": est, "Std.Err.": se, "z": z, "P>|z|": 2 * norm.sf(np.abs(z)),
         f"[{alpha / 2:g}": lower, f"{1 - alpha / 2:g}]": upper},
        index=list(names))
