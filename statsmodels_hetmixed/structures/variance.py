"""
Residual variance functions: sigma2_ij as a function of a design W.

Each variance function is a :class:`~.base.VarianceBlock`: it maps its
parameters to the residual variances of the rows and maps the engine's
gradient with respect to ``log sigma2_ij`` back to its parameters.  The
fitter only talks to that interface, so a new variance function is a new
class here (see the documentation page "Adding a structure").
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from statsmodels.tools.sm_exceptions import ValueWarning

from .._engine import rows_matmul, rows_tmatvec
from .base import IdentityScale, SquareRootScale, StartContext, VarianceBlock

# Prefix that marks the residual variance function in ``params`` names.  The
# same regressor may appear in the mean and in the variance function, so the
# two blocks need distinct names (e.g. "female" and "var:female").
VAR_PREFIX = "var:"

# E[log chi2_1] = -(gamma + log 2): log squared residuals underestimate
# log variances by this much on average.
_LOG_CHI2_1_MEAN = -1.2703628454614782

# exp() of anything beyond this overflows; variances that large or small
# mean the optimiser is far off, and the likelihood tells it so.
_ETA_LIMIT = 700.0


def make_variance_function(link: str, exog_var: np.ndarray,
                           names: list[str]) -> "_VarianceFunction":
    """The variance function for ``var_link`` (``"log"`` or ``"identity"``);
    ``names`` are the columns of ``exog_var``."""
    classes = {"log": LogLinearVariance, "identity": AdditiveVariance}
    if link not in classes:
        raise ValueError(
            f"var_link must be 'log' (log-linear variance function) or "
            f"'identity' (additive variances, as Stata's dummy-variance-level "
            f"models), not {link!r}")
    return classes[link](exog_var, names)


def _constant_direction(W):
    """Coefficients c with W c = 1 when W spans the constant, else None:
    from a constant column where W has one (exact, and no least-squares
    pass over the rows), else by least squares."""
    if W.shape[0] == 0:
        return None
    constant = np.flatnonzero(np.all(W == W[0], axis=0) & (W[0] != 0))
    if constant.size:
        coef = np.zeros(W.shape[1])
        coef[constant[0]] = 1.0 / W[0, constant[0]]
        return coef
    coef, *_ = np.linalg.lstsq(W, np.ones(len(W)), rcond=None)
    return coef if np.allclose(W @ coef, 1.0, atol=1e-8) else None


# Rows per block of the centred products W_c'g (no n x k copy of W_c held).
_BLOCK_ROWS = 1 << 16


class _VarianceFunction(VarianceBlock):
    """Shared set-up: the design W and the constant direction it spans.

    ``names`` (the block's parameter names) are the columns of W with the
    prefix ``var:``; ``column_names`` are the columns themselves.
    """

    link = None
    # Whether the optimiser works on square roots of the parameters (which
    # keeps them non-negative and lets them reach zero).
    square_root = False

    def __init__(self, exog_var, names):
        # No copy of the design (any memory order serves W a and W'g).
        self.exog_var = np.asarray(exog_var, dtype=np.float64)
        self.nobs = self.exog_var.shape[0]
        self.column_names = list(names)
        self.names = [VAR_PREFIX + str(v) for v in self.column_names]
        self.k_var = self.exog_var.shape[1]
        self.const_direction = _constant_direction(self.exog_var)
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
        return rows_matmul(w, var_params)

    def start(self, context: StartContext) -> np.ndarray:
        return self.start_params(context.resid, 1.0 - context.share_re)


class LogLinearVariance(IdentityScale, _VarianceFunction):
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
    log_linear = True

    def variance(self, var_params, exog_var=None):
        """Residual variances sigma2_ij."""
        eta = self.linear_predictor(var_params, exog_var)
        return np.exp(np.clip(eta, -_ETA_LIMIT, _ETA_LIMIT))

    def natural_gradient(self, var_params, grad_log_variance):
        """d llf / d var_params from d llf / d log sigma2_ij: W' g."""
        return rows_tmatvec(self.exog_var, grad_log_variance)

    @functools.cached_property
    def _centring(self):
        """
        (intercept column, column means): with an intercept column j0
        (W[:, j0] = 1 / c0, W c = 1 for c = c0 e_j0), the other columns
        centred, W_c = W - 1 m' (m_j0 = 0), give W a = W_c u with
        u = T a, T = I + c0 e_j0 m'.  None without an intercept column.
        """
        const = self.const_direction
        if const is None:
            return None
        carriers = np.flatnonzero(np.abs(const) > 1e-8)
        if len(carriers) != 1:
            return None
        j0 = int(carriers[0])
        means = self.exog_var.mean(axis=0)
        means[j0] = 0.0
        return j0, means

    def conditioner(self):
        # Centred columns: a covariate far from its origin (year rather
        # than year - 2010) is nearly collinear with the intercept, and
        # W'g cancels to a few digits; the centred W_c'g does not.
        T = np.eye(self.k)
        if self._centring is not None:
            j0, means = self._centring
            T[j0] += self.const_direction[j0] * means
        return T

    def conditioned_gradient(self, var_params, grad_log_variance):
        if self._centring is None:
            return self.natural_gradient(var_params, grad_log_variance)
        # W_c'g with W_c = W - 1 m', centred block by block: W'g - m 1'g
        # would cancel, and a centred copy of W would double its memory.
        W, means, g = self.exog_var, self._centring[1], grad_log_variance
        out = np.zeros(self.k)
        for start in range(0, W.shape[0], _BLOCK_ROWS):
            stop = start + _BLOCK_ROWS
            out += (W[start:stop] - means).T @ g[start:stop]  # (see rows_tmatvec)
        return out

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


class AdditiveVariance(SquareRootScale, _VarianceFunction):
    """
    Additive residual variance, ``sigma2_ij = w_ij' theta`` with
    ``theta >= 0`` and non-negative columns of W.

    This is the parameterisation of Stata's dummy-variance-level models
    (``mixed y x || g: || nid: male, nocons``): with W = (1, male),
    ``theta = (var(Residual), var(male))``.  With W the dummies of every
    level of a factor and no intercept (``"~ 0 + C(g)"``), theta holds one
    residual variance per level, as Stata's ``residuals(independent, by(g))``
    and nlme's ``varIdent``.
    """

    link = "identity"
    square_root = True
    nonnegative_what = "identity-link variances"

    def __init__(self, exog_var, names):
        super().__init__(exog_var, names)
        negative = [names[j] for j in range(self.k_var)
                    if np.any(self.exog_var[:, j] < 0)]
        if negative:
            raise ValueError(
                f"var_link='identity' needs non-negative variance-design "
                f"columns (each adds a non-negative variance), but {negative} "
                "has negative values. Use dummies (e.g. male rather than a "
                "-1/1 coding) or the log link, var_link='log'.")
        if np.any(self.exog_var.sum(axis=1) <= 0):
            raise ValueError(
                "var_link='identity': some rows have an all-zero variance design, "
                "so their residual variance would be zero. Include an intercept "
                "(var(Residual)) or one dummy per level.")

    def variance(self, var_params, exog_var=None):
        r = self.linear_predictor(var_params, exog_var)
        # Variances exactly zero are outside the model; keep the likelihood
        # finite so that the optimiser's line search can step back.
        return np.maximum(r, 1e-300)

    def natural_gradient(self, var_params, grad_log_variance):
        """d llf / d theta from d llf / d log sigma2_ij."""
        return self.exog_var.T @ (grad_log_variance / self.variance(var_params))

    def log_derivative(self, var_params):
        """d log sigma2_ij / d theta = W / sigma2."""
        return self.exog_var / self.variance(var_params)[:, None]

    def free_gradient(self, free, grad_log_variance):
        return 2.0 * free * self.natural_gradient(self.to_natural(free),
                                                  grad_log_variance)

    @property
    def bounded(self):
        return np.ones(self.k, bool)

    def start_params(self, resid, total_share=1.0):
        """Non-negative least squares of squared residuals on W."""
        from scipy.optimize import nnls

        sq = resid**2 * total_share
        coef, _ = nnls(self.exog_var, sq)
        floor = 0.05 * np.mean(sq)
        # Start inside the parameter space: a variance at exactly zero has a
        # zero gradient in the square-root parameterisation.
        return np.maximum(coef, floor)


class PowerVariance(IdentityScale, VarianceBlock):
    """
    Variance proportional to a power of a covariate, nlme's ``varPower``:
    ``sd_ij`` is proportional to ``|v_ij| ** delta``, so the block's factor
    of sigma2_ij is ``|v_ij| ** (2 delta)``.

    It multiplies the model's variance function (nlme's ``varComb``), whose
    intercept carries the overall scale; ``delta = 0`` is homoskedasticity
    in ``v``.  With a covariate (not the fitted values) this is the
    log-linear function of ``log |v|`` with coefficient ``2 delta``.

    Parameters
    ----------
    covariate : array_like (n,)
        Non-zero values, one per row of the model's data (after any rows
        with missing values were dropped).
    name : str
        The covariate's name; the parameter is ``"power(<name>)"``.
    """

    title = "Variance power"

    def __init__(self, covariate, name: str = "v") -> None:
        v = np.asarray(covariate, dtype=np.float64).ravel()
        if not np.all(np.isfinite(v)):
            raise ValueError(f"the power-variance covariate {name!r} has missing "
                             "or infinite values")
        if np.any(v == 0):
            raise ValueError(
                f"the power-variance covariate {name!r} has zeros, where "
                "|v| ** delta is 0 or infinite: shift it (nlme's varConstPower "
                "adds a constant) or drop those rows.")
        self.log_abs = np.log(np.abs(v))
        self.nobs = v.size
        self.names = [f"power({name})"]

    def start(self, context: StartContext) -> np.ndarray:
        return np.zeros(1)


    def variance(self, natural, design=None):
        log_abs = self.log_abs if design is None else np.log(np.abs(
            np.asarray(design, dtype=np.float64).ravel()))
        return np.exp(np.clip(2.0 * natural[0] * log_abs, -_ETA_LIMIT, _ETA_LIMIT))

    def log_derivative(self, natural):
        return 2.0 * self.log_abs[:, None]

    def log_scale(self, natural):
        return float(2.0 * natural[0] * self.log_abs.mean())
