"""
Residual variance functions: sigma2_ij as a function of a design W.

Each variance function maps its parameters to the residual variances of the
rows and maps the engine's gradient with respect to ``log sigma2_ij`` back to
its parameters.  The model only talks to this interface, so new variance
functions (e.g. an additive, identity-link form) are new classes here.
"""

from __future__ import annotations

import warnings

import numpy as np
from statsmodels.tools.sm_exceptions import ValueWarning

# E[log chi2_1] = -(gamma + log 2): log squared residuals underestimate
# log variances by this much on average.
_LOG_CHI2_1_MEAN = -1.2703628454614782

# exp() of anything beyond this overflows; variances that large or small
# mean the optimiser is far off, and the likelihood tells it so.
_ETA_LIMIT = 700.0


class LogLinearVariance:
    """
    Log-linear residual variance, ``log sigma2_ij = w_ij' a``.

    Parameters
    ----------
    exog_var : ndarray (n, k_var)
        The variance design W.  Must have full column rank.
    names : list of str
        Column names of W.
    """

    link = "log"

    def __init__(self, exog_var, names):
        self.exog_var = np.ascontiguousarray(exog_var, dtype=np.float64)
        self.names = list(names)
        self.k_var = self.exog_var.shape[1]
        # Coefficients c with W c = 1, when W spans the constant.
        coef, *_ = np.linalg.lstsq(self.exog_var, np.ones(len(self.exog_var)),
                                   rcond=None)
        fit = self.exog_var @ coef
        self.const_direction = coef if np.allclose(fit, 1.0, atol=1e-8) else None
        if self.const_direction is None:
            warnings.warn(
                "The variance design (exog_var / var_formula) does not span a "
                "constant, so the residual variance has no free overall scale. "
                "Add an intercept to the variance formula unless this is "
                "intended.",
                ValueWarning,
                stacklevel=3,
            )

    def linear_predictor(self, var_params, exog_var=None):
        w = self.exog_var if exog_var is None else exog_var
        return w @ var_params

    def variance(self, var_params, exog_var=None):
        """Residual variances sigma2_ij."""
        eta = self.linear_predictor(var_params, exog_var)
        return np.exp(np.clip(eta, -_ETA_LIMIT, _ETA_LIMIT))

    def gradient(self, var_params, grad_log_variance):
        """d llf / d var_params from d llf / d log sigma2_ij."""
        return self.exog_var.T @ grad_log_variance

    def log_derivative(self, var_params):
        """d log sigma2_ij / d var_params, an (n, k_var) array: W."""
        return self.exog_var

    def start_params(self, resid, total_share=1.0):
        """
        Starting values from a regression of log squared residuals on W.

        ``total_share`` is the fraction of the residuals' variance that is
        attributed to the residual (level-1) variance; the rest is left to
        the random effects.
        """
        logsq = np.log(resid**2 + 1e-8 * np.mean(resid**2) + 1e-300)
        coef, *_ = np.linalg.lstsq(self.exog_var, logsq, rcond=None)
        if self.const_direction is not None:
            coef = coef + (np.log(total_share) - _LOG_CHI2_1_MEAN) * self.const_direction
        return coef

    def log_scale(self, var_params):
        """Mean over rows of log sigma2_ij (log of the geometric mean)."""
        return float(np.mean(self.linear_predictor(var_params)))
