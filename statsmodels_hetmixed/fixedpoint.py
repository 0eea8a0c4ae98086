"""
Variance functions of the fitted values: nlme's fixed-point iteration.

With ``var_power="fitted"`` (nlme's ``varPower(form = ~ fitted(.))``) the
residual variances depend on the mean.  nlme does not maximise a
likelihood in which they depend on beta.  It iterates (``lme.formula``):

1. hold ``v`` at the fitted values of the innermost level,
   ``X beta + Z b`` (BLUP-conditional), of the previous fit;
2. maximise the (restricted) likelihood with ``v`` held: an ordinary
   heteroskedastic model with a known covariate;
3. set ``v`` to the new fitted values; stop when the parameters moved less
   than a tolerance.

The estimates, the log-likelihood and the standard errors are those of
the last step 2, with ``v`` the fitted values of the step before (nlme's
stored ``logLik`` is that too).  At a fixed point the estimates maximise
the likelihood with ``v`` held at the fitted values they imply; they do
not maximise the likelihood in which ``v = X beta + Z b`` varies with
the parameters (that likelihood has further terms in beta: the score of
beta gains ``d log sigma2 / d beta`` terms, and the estimates differ).
The standard errors treat ``v`` as known.  Log-likelihoods of such fits
are each evaluated at their own ``v``, so LR tests and AIC between them
(or against a fit without the fitted-value function) compare likelihoods
of different data weights: use them as descriptions, not as tests with
their nominal levels.

:func:`iterate` runs the iteration on the layout's blocks that depend on
the fitted values (their ``update`` hook).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from . import optim
from .structures import Layout

__all__ = ["FixedPoint", "iterate", "DEFAULT_TOL", "DEFAULT_MAXITER"]

#: Relative change at which the iteration stops (nlme's ``tolerance``
#: is 1e-6 by default; its fits here used 1e-10).
DEFAULT_TOL = 1e-8
#: Most refits (nlme's ``maxIter`` is 50).
DEFAULT_MAXITER = 100


@dataclass(frozen=True)
class FixedPoint:
    """
    How a fit with variance functions of the fitted values ended.

    Attributes
    ----------
    converged : bool
        Whether the iteration reached its tolerance.
    n_iter : int
        Number of fits (each a maximisation with the fitted values held).
    param_change : float
        Largest relative change of the covariance and variance parameters
        (natural scale; absolute where a parameter is 0) in the last step.
    gap : float
        Relative distance ``max |f - v| / max |v|`` between the fitted
        values ``f`` at the estimates and the ``v`` the estimates were
        computed with: 0 at an exact fixed point.
    tol : float
        The tolerance: the iteration stops when ``param_change`` and
        ``gap`` are both at most ``tol``.
    """

    converged: bool
    n_iter: int
    param_change: float
    gap: float
    tol: float

    def __str__(self) -> str:
        state = "reached" if self.converged else "NOT reached"
        return (f"fixed point of the fitted-value variance function {state} "
                f"after {self.n_iter} fits (relative change {self.param_change:.2g},"
                f" fitted-value gap {self.gap:.2g})")


def relative_change(old: np.ndarray, new: np.ndarray) -> float:
    """nlme's convergence measure: max |old - new| / |new| (|old - new|
    where new is 0)."""
    old, new = np.asarray(old, float), np.asarray(new, float)
    if old.size == 0:
        return 0.0
    denom = np.where(new == 0, 1.0, np.abs(new))
    return float(np.max(np.abs(old - new) / denom))


def iterate(layout: Layout, make_objective: Callable[[], object],
            fitted_of: Callable[[object], np.ndarray], start_fitted: np.ndarray,
            start: Callable[[object], np.ndarray], mask, *, methods, options,
            hist, tol: float = DEFAULT_TOL, maxiter: int = DEFAULT_MAXITER,
            stacklevel: int = 3) -> tuple[optim.Estimate, object, FixedPoint]:
    """
    nlme's fixed-point iteration (see the module docstring).

    Parameters
    ----------
    layout : Layout
        The model's blocks; those that depend on the fitted values are
        updated in place (``Layout.update``) and are left at the ``v`` of
        the returned estimate.
    make_objective : callable
        A fresh objective of the layout (its caches belong to one ``v``).
    fitted_of : callable
        The fitted values ``X beta + Z b`` of an engine evaluation.
    start_fitted : ndarray
        The first ``v`` (e.g. the OLS fitted values).
    start : callable
        ``start(objective)``: the free starting vector of the first fit
        (with its ``v``); later fits start from the previous estimate.
    mask, methods, options, hist
        As ``optim.estimate``.
    tol, maxiter
        Stopping rule (``FixedPoint.tol``) and most fits.

    Returns
    -------
    (Estimate, objective, FixedPoint)
        The last fit, its objective and how the iteration ended; warns
        (ConvergenceWarning) when the fixed point was not reached.
    """
    if maxiter < 1:
        raise ValueError("the fixed-point iteration needs maxiter >= 1")
    v = np.asarray(start_fitted, dtype=np.float64)
    layout.update(v)
    objective = make_objective()
    free = start(objective)
    previous = None
    change = gap = np.inf
    for it in range(1, maxiter + 1):
        est = optim.estimate(objective, free, mask, methods=methods,
                             options=options, hist=hist)
        fitted = fitted_of(est.evaluation)
        gap = float(np.max(np.abs(fitted - v)) / max(np.max(np.abs(v)), 1e-300))
        change = np.inf if previous is None else relative_change(previous, est.natural)
        if change <= tol and gap <= tol:
            break
        if it == maxiter:
            break
        previous = est.natural
        free = est.free
        v = fitted
        layout.update(v)
        objective = make_objective()
    converged = change <= tol and gap <= tol
    record = FixedPoint(bool(converged), it, float(change), gap, float(tol))
    if not converged:
        warnings.warn(
            f"The {str(record)[0].lower()}{str(record)[1:]}, tolerance {tol:g}. "
            "The estimates are those of the last fit, with the variance "
            "covariate held at the fitted values of the fit before; raise "
            "fitted_maxiter or use a covariate instead of the fitted values.",
            ConvergenceWarning, stacklevel=stacklevel)
    return est, objective, record
