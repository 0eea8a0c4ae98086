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
from .._linalg import chol_solve, cholesky_equilibrated
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

    def linear_predictor(self, var_params, exog_var=None, out=None):
        w = self.exog_var if exog_var is None else exog_var
        return rows_matmul(w, var_params, out=out)

    def start(self, context: StartContext) -> np.ndarray:
        return self.start_params(context.resid, 1.0 - context.share_re)

    def absorb_log_scale(self, natural, shift):
        """Parameters whose variances are those of ``natural`` times
        ``exp(shift)`` (unchanged without a constant direction)."""
        if self.const_direction is None:
            return natural
        if self.link == "log":
            return natural + shift * self.const_direction
        return natural * np.exp(shift)


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
        return self.variance_into(var_params, None, exog_var)[0]

    def variance_into(self, var_params, out, exog_var=None):
        """``(variance, sum of the log variances)``, the variances written
        into ``out`` (an (n,) float64 array, or None for a new one): the
        optimiser's evaluations reuse one array (``Layout.resid_var``),
        where a new one of the rows' size costs its page faults each time
        (10,000,000 rows: 80 MB), and take the log-determinant of R from
        the linear predictor's sum (no logarithms of the rows)."""
        eta = self.linear_predictor(var_params, exog_var, out=out)
        np.clip(eta, -_ETA_LIMIT, _ETA_LIMIT, out=eta)
        log_sum = float(eta.sum())
        return np.exp(eta, out=eta), log_sum

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
        logsq = np.square(resid)
        logsq += 1e-8 * np.mean(logsq) + 1e-300
        np.log(logsq, out=logsq)  # in place: no temporaries of the rows' size
        coef = self._least_squares(logsq)
        if self.const_direction is not None:
            coef = coef + (np.log(total_share) - _LOG_CHI2_1_MEAN) * self.const_direction
        return coef

    def _least_squares(self, v):
        """
        Least-squares coefficients of ``v`` on W.  With an intercept
        column, by the normal equations of the centred columns W_c
        (``_centring``; their Gram matrix accumulated block by block, one
        pass over W instead of an SVD of it) and back by a = T^-1 u
        (``conditioner``); by least squares (SVD) where W has no intercept
        or W_c'W_c is singular.
        """
        if self._centring is not None:
            W, means = self.exog_var, self._centring[1]
            k = W.shape[1]
            gram, rhs = np.zeros((k, k)), np.zeros(k)
            for start in range(0, W.shape[0], _BLOCK_ROWS):
                stop = start + _BLOCK_ROWS
                wc = W[start:stop] - means
                gram += wc.T @ wc
                rhs += wc.T @ v[start:stop]
            try:
                chol = cholesky_equilibrated(gram, "W_c'W_c")
            except np.linalg.LinAlgError:
                pass
            else:
                return np.linalg.solve(self.conditioner(), chol_solve(chol, rhs))
        return np.linalg.lstsq(self.exog_var, v, rcond=None)[0]

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


#: The covariate of a power variance function that is the fitted mean
#: (nlme's ``fitted(.)``).
FITTED = "fitted"


class _CovariateVariance(VarianceBlock):
    """
    Shared by the power variance functions: the covariate ``v`` of each row,
    given or (``"fitted"``) the fitted mean, set by ``update`` (nlme's
    ``covariate<-`` / ``update.varFunc``).
    """

    #: What the block does with covariate values of exactly zero: ``True``
    #: accepts them (c + |v| ** delta > 0), ``False`` refuses them.
    zeros_allowed = False
    #: nlme's function name, for the messages.
    nlme_name = ""

    def _set_covariate(self, covariate, name, nobs):
        self.depends_on_fitted = isinstance(covariate, str)
        self.covariate_name = name if name is not None else (
            FITTED if self.depends_on_fitted else "v")
        if self.depends_on_fitted:
            if covariate != FITTED:
                raise ValueError(
                    f"{self.nlme_name}: the covariate is an array (a column of "
                    f"the data) or {FITTED!r}, not {covariate!r}")
            if nobs is None:
                raise ValueError(f"{self.nlme_name} of the fitted values needs "
                                 "nobs, the model's number of rows")
            self.nobs = int(nobs)
            # |v| = 1 until the fitter sets the fitted values (update)
            self._store(np.ones(self.nobs))
            return
        self.nobs = None if nobs is None else int(nobs)
        v = self._checked(covariate, "covariate")
        self.nobs = v.size
        self._store(v)

    def _checked(self, values, what):
        """The covariate as a float vector, refusing what the block cannot
        use (missing values; zeros unless ``zeros_allowed``)."""
        try:
            v = np.asarray(values, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ValueError(
                f"the {self.nlme_name} covariate {self.covariate_name!r} is not "
                "numeric: give a numeric column (a power of a category has no "
                "meaning; for one variance per level use var_by).") from None
        if self.nobs is not None and v.size != self.nobs:
            raise ValueError(f"the {self.nlme_name} {what} has {v.size} values "
                             f"for {self.nobs} rows")
        if not np.all(np.isfinite(v)):
            raise ValueError(
                f"the {self.nlme_name} {what} {self.covariate_name!r} has missing "
                "or infinite values: drop those rows (missing='drop' drops rows "
                "with a missing value in any column the model uses).")
        if not self.zeros_allowed and np.any(v == 0):
            if self.depends_on_fitted and what == "fitted values":
                raise ValueError(
                    "varPower of the fitted values: some fitted values are "
                    "exactly 0, where |fitted| ** delta is 0 or infinite. Use "
                    "var_const_power='fitted' (c + |fitted| ** delta), or "
                    "shift the response so that its fitted values are not 0.")
            raise ValueError(
                f"the power-variance covariate {self.covariate_name!r} has zeros, "
                "where |v| ** delta is 0 or infinite: shift it, use "
                "var_const_power (nlme's varConstPower: c + |v| ** delta), or "
                "drop those rows.")
        return v

    def update(self, fitted: np.ndarray) -> None:
        """Set ``v`` to the fitted values (blocks of ``"fitted"`` only; a
        block of a given covariate ignores the call)."""
        if self.depends_on_fitted:
            self._store(self._checked(fitted, "fitted values"))

    def new_covariate(self, design) -> np.ndarray:
        """The covariate of new rows (``design``: their values of v, or
        their predicted means for ``"fitted"``), checked as the block's."""
        nobs, self.nobs = self.nobs, None
        try:
            return self._checked(design, "covariate of the new rows")
        finally:
            self.nobs = nobs

    def start(self, context: StartContext) -> np.ndarray:
        return self._start(context.resid)

    def _power_start(self, resid) -> float:
        """delta from the slope of log squared residuals on log |v| (half
        of it: sd, not variance), over the rows with v != 0."""
        use = self.abs_v > 0
        if use.sum() < 3:
            return 0.0
        x = np.log(self.abs_v[use])
        if np.ptp(x) == 0:
            return 0.0
        y = np.log(resid[use] ** 2 + 1e-8 * np.mean(resid ** 2) + 1e-300)
        slope = np.polyfit(x, y, 1)[0]
        return float(np.clip(slope / 2.0, -3.0, 3.0))


class PowerVariance(IdentityScale, _CovariateVariance):
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
    covariate : array_like (n,) or "fitted"
        Non-zero values, one per row of the model's data (after any rows
        with missing values were dropped); or ``"fitted"``: the fitted
        mean of the innermost level, ``X beta + Z b``, which the fitter
        sets through ``update`` (nlme's ``varPower(form = ~ fitted(.))``).
    name : str, optional
        The covariate's name; the parameter is ``"power(<name>)"``
        (default ``"v"``, or ``"fitted"``).
    nobs : int, optional
        The number of rows; required with ``"fitted"``.
    """

    title = "Variance power"
    nlme_name = "varPower"

    def __init__(self, covariate, name: str | None = None,
                 nobs: int | None = None) -> None:
        self._set_covariate(covariate, name, nobs)
        self.names = [f"power({self.covariate_name})"]

    def _store(self, v):
        self.abs_v = np.abs(v)
        self.log_abs = np.log(self.abs_v)

    def _start(self, resid):
        return np.array([self._power_start(resid)])

    def variance(self, natural, design=None):
        log_abs = self.log_abs if design is None else np.log(np.abs(
            self.new_covariate(design)))
        return np.exp(np.clip(2.0 * natural[0] * log_abs, -_ETA_LIMIT, _ETA_LIMIT))

    def log_derivative(self, natural):
        return 2.0 * self.log_abs[:, None]

    def log_scale(self, natural):
        return float(2.0 * natural[0] * self.log_abs.mean())


class ConstPowerVariance(_CovariateVariance):
    """
    nlme's ``varConstPower``: ``sd_ij`` proportional to
    ``c + |v_ij| ** delta`` with ``c > 0``, so the block's factor of
    sigma2_ij is ``(c + |v_ij| ** delta) ** 2``.

    Natural parameters ``(c, delta)`` (nlme's ``const`` and ``power``);
    the optimiser searches ``(log c, delta)``.  As nlme's, ``c`` is not
    multiplied by the residual scale: it is in the units of
    ``|v| ** delta``.  Zeros in ``v`` are allowed (their factor is
    ``c ** 2``).  ``c -> 0`` is ``varPower``; with ``delta -> 0`` the
    block is a constant and ``c`` is not identified (the variance
    function's intercept carries the scale).

    Parameters
    ----------
    covariate : array_like (n,) or "fitted"
        As :class:`PowerVariance`.
    name : str, optional
        The covariate's name; the parameters are ``"const(<name>)"`` and
        ``"power(<name>)"``.
    nobs : int, optional
        The number of rows; required with ``"fitted"``.
    """

    title = "Variance constant plus power"
    nlme_name = "varConstPower"
    zeros_allowed = True
    #: c > 0: no z-test against 0 in the summary (0 is the boundary, varPower)
    untested = (0,)
    #: Scoring in (c, delta) crawled along the curved ridge c ~ |k|^delta
    #: (200 steps where quasi-Newton in (log c, delta) takes 30, and stopped
    #: at lower maxima on sleepstudy and Orthodont)
    scoring = False

    def __init__(self, covariate, name: str | None = None,
                 nobs: int | None = None) -> None:
        self._set_covariate(covariate, name, nobs)
        self.names = [f"const({self.covariate_name})",
                      f"power({self.covariate_name})"]

    def _store(self, v):
        self.abs_v = np.abs(v)
        # log|v| where v != 0 (|v| ** delta there).  Rows with v = 0 get
        # |v| ** delta = 0, so their factor is c ** 2 whatever delta: nlme's
        # pow(0, delta) for delta > 0; for delta <= 0 nlme's is 1 or inf (a
        # likelihood that is not finite or jumps at delta = 0)
        nonzero = self.abs_v > 0
        self._nonzero = nonzero
        self.log_abs = np.where(nonzero, np.log(np.where(nonzero, self.abs_v, 1.0)),
                                0.0)

    def _powers(self, delta, log_abs=None, nonzero=None):
        """|v| ** delta of the block's rows, or of rows with ``log_abs``
        (log |v|, 0 where v = 0) and ``nonzero``."""
        if log_abs is None:
            log_abs, nonzero = self.log_abs, self._nonzero
        return np.where(nonzero, np.exp(np.clip(delta * log_abs, -_ETA_LIMIT,
                                                _ETA_LIMIT)), 0.0)

    def to_natural(self, free):
        free = np.asarray(free, dtype=np.float64)
        return np.array([np.exp(np.clip(free[0], -_ETA_LIMIT, _ETA_LIMIT)), free[1]])

    def from_natural(self, natural):
        natural = np.asarray(natural, dtype=np.float64)
        if not natural[0] > 0:
            raise ValueError(f"{self.names[0]} (varConstPower's constant) must "
                             "be positive")
        return np.array([np.log(natural[0]), natural[1]])

    def jacobian(self, free):
        return np.diag([np.exp(np.clip(free[0], -_ETA_LIMIT, _ETA_LIMIT)), 1.0])

    def admissible(self, natural):
        return bool(natural[0] > 0)

    def free_gradient(self, free, grad_log_variance):
        natural = self.to_natural(free)
        return self.jacobian(free).T @ self.natural_gradient(natural,
                                                             grad_log_variance)

    def _start(self, resid):
        delta = self._power_start(resid)
        # away from delta = 0, where c and the variance function's
        # intercept are not separately identified (a singular information)
        if abs(delta) < 0.25:
            delta = 0.25 if delta >= 0 else -0.25
        typical = np.exp(np.mean(delta * self.log_abs[self._nonzero])) \
            if self._nonzero.any() else 1.0
        return np.array([float(typical), delta])

    def variance(self, natural, design=None):
        c, delta = natural[0], natural[1]
        if design is None:
            power = self._powers(delta)
        else:
            v = np.abs(self.new_covariate(design))
            nz = v > 0
            power = self._powers(delta, np.log(np.where(nz, v, 1.0)), nz)
        return (c + power) ** 2

    def log_derivative(self, natural):
        c, delta = natural[0], natural[1]
        power = self._powers(delta)
        total = c + power
        return np.column_stack([2.0 / total, 2.0 * power * self.log_abs / total])

    def log_scale(self, natural):
        return float(2.0 * np.mean(np.log(natural[0] + self._powers(natural[1]))))

    #: A row's share |v| ** delta / (c + |v| ** delta) within this of 0 or
    #: 1 counts as at its limit (far from rounding: 1e-6 of a share).
    degenerate_share = 1e-6

    def degenerate(self, natural):
        """
        At the estimate every row's share ``|v|^delta / (c + |v|^delta)``
        is at 0 or 1: the block is a constant (c dominates everywhere:
        delta not identified, c -> inf), varPower (|v|^delta dominates:
        c -> 0), or a step between two sets of rows (delta -> +-inf, as
        nlme's fits of Orthodont's age): the likelihood is flat along a
        direction to infinity and the estimates of c and delta are where
        the optimiser stopped.
        """
        c, delta = natural[0], natural[1]
        power = self._powers(delta)
        share = power / (c + power)
        eps = self.degenerate_share
        low, high = share <= eps, share >= 1 - eps
        # Away from the limits, rows of one value of |v| at most: as delta
        # runs to +-inf with c following |v|^delta of the extreme value
        # (or of |v| = 1, whose |v|^delta = 1 whatever delta), the others
        # go to their limits.  An interior fit keeps rows of several values
        # in between.
        if np.unique(self.abs_v[~(low | high)]).size > 1 or \
                np.unique(self.abs_v).size < 2:
            return None
        name = self.covariate_name
        if low.all():
            what = (f"c = {c:.3g} exceeds |{name}|^delta on every row: the "
                    f"variance does not depend on {name}, delta is not "
                    "identified (the limit c -> inf). Compare the fit without "
                    "var_const_power, with var_power, and with a variance "
                    "step between values of the covariate: another limit "
                    "may have a higher likelihood.")
        elif high.all():
            what = (f"|{name}|^delta exceeds c = {c:.3g} on every row: the "
                    f"block is varPower (the limit c -> 0). Use var_power.")
        else:
            rows = np.unique(self.abs_v[~low])
            shown = ", ".join(f"{r:g}" for r in rows[:4]) + (
                ", ..." if rows.size > 4 else "")
            what = (f"delta = {delta:.3g} makes |{name}|^delta negligible or "
                    f"dominant on every row but those where |{name}| is "
                    f"{shown}: the fit tends to a step between two sets of "
                    "rows (delta -> +-inf), where c and delta are not "
                    "identified. Fit that step instead (e.g. a variance "
                    "formula with an indicator of those rows).")
        return f"varConstPower({name}) is degenerate at the estimate: {what}"
