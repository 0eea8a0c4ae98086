"""
From an estimate to inference: the covariance of the estimates, and the
warnings a fit owes its user (not converged, a variance at zero, a
singular covariance block).

Standard errors: the fixed effects use ``(X'V^-1 X)^-1`` (as nlme and
lme4), the blocks' parameters the inverse of the observed information of
the log-likelihood profiled over the fixed effects (REML: of the REML
criterion), with zero covariance between the two sets.

Intervals of bounded parameters (``transformed_interval``): a Wald
interval on a scale without the bound, mapped back (delta method for the
standard error on that scale), so the interval stays inside the parameter
space: log for variances (as Stata's), atanh for correlations and AR
coefficients in (-1, 1) (as Stata's), logit for CAR(1)'s phi in (0, 1).
"""

from __future__ import annotations

import warnings

import numpy as np
from statsmodels.tools.sm_exceptions import ConvergenceWarning, SingularMatrixWarning

from .optim import Estimate
from .structures import ARMA, CAR1, Layout

__all__ = ["covariance_of_estimates", "warn_fit_problems", "transformed_interval",
           "correlation_transforms"]


def covariance_of_estimates(estimate: Estimate, layout: Layout, mask=None,
                            stacklevel: int = 3) -> np.ndarray:
    """
    Covariance matrix of ``params`` (fixed effects first); parameters held
    fixed (``mask`` False) have zero rows and columns.

    Warns (ConvergenceWarning) when the observed information of the
    blocks' parameters is not positive definite, and then uses its
    pseudo-inverse.
    """
    k_fe = layout.k_fe
    cov = np.zeros((layout.k_params, layout.k_params))
    cov[:k_fe, :k_fe] = estimate.evaluation.fe_covariance()
    idx = (np.arange(layout.k_structure) if mask is None
           else np.flatnonzero(mask))
    if idx.size:
        try:
            inv = estimate.information.covariance(idx)
        except np.linalg.LinAlgError:
            warnings.warn(
                "The Hessian of the log-likelihood in the variance "
                "parameters is not negative definite (a variance on the "
                "boundary or a non-identified parameter); their standard "
                "errors are unreliable.", ConvergenceWarning,
                stacklevel=stacklevel)
            inv = estimate.information.covariance(idx, pseudo=True)
        full = k_fe + idx
        cov[np.ix_(full, full)] = inv
    return cov


def warn_fit_problems(estimate: Estimate, layout: Layout, optimised: bool,
                      reml: bool, model_name: str = "HetMixedLM",
                      stacklevel: int = 3, re_basis=None,
                      held_zero=None) -> None:
    """The warnings of a fit: optimisation skipped or not converged, a
    singular covariance block (judged in the centred random-effects
    columns, ``re_basis``: ``_engine.GroupedData.re_basis``), variances at
    zero.  ``held_zero`` (boolean over the blocks' parameters): variances
    at zero by construction (a model without random effects), which are
    no boundary estimates."""
    if not optimised:
        warnings.warn("do_cg=False: the optimization was skipped and the "
                      "results are at the starting values.", UserWarning,
                      stacklevel=stacklevel)
        return
    if not estimate.converged:
        warnings.warn(
            f"{model_name} optimization did not converge: the largest "
            f"log-likelihood gradient component is {estimate.max_grad:.3g}. Try "
            "other start_params or method, or simplify the model.",
            ConvergenceWarning, stacklevel=stacklevel)
    for block, v in zip(layout.blocks, layout.parts(estimate.natural)):
        message = block.degenerate(v)
        if message is not None:
            warnings.warn(f"{message} The estimates and standard errors of "
                          f"{block.names} are not meaningful.",
                          ConvergenceWarning, stacklevel=stacklevel)
    at_bound = np.asarray(estimate.at_boundary, bool)
    if held_zero is not None:
        at_bound = at_bound & ~np.asarray(held_zero, bool)
    # decided on the centred effects' covariance G_c (re_basis), whose
    # correlations the origin of a random slope's covariate does not push
    # to within rounding of +-1
    centred = layout.centring(re_basis) @ estimate.natural
    held = (np.zeros(layout.k_structure, bool) if held_zero is None
            else np.asarray(held_zero, bool))
    singular = [b for b, v, h in zip(layout.blocks, layout.parts(centred),
                                     layout.parts(held))
                if b.singular(v) and not np.all(h)]
    if singular and not at_bound.any():
        warnings.warn(
            "The random-effects covariance matrix is singular at the "
            "estimate (a correlation of +-1 or a redundant random "
            "effect): the estimate is on the boundary of the parameter "
            "space, and standard errors of cov_re are not reliable. "
            "Consider dropping a random effect.",
            ConvergenceWarning, stacklevel=stacklevel)
    # MixedLM's warning (and category) whenever cov_re is singular at the
    # estimate, a variance at zero included (its entries come first).
    k_re2 = layout.cov_re(estimate.natural).size and \
        layout.blocks[0].k if layout.blocks else 0
    if k_re2 and (at_bound[:k_re2].any() or layout.blocks[0] in singular):
        warnings.warn("The random effects covariance matrix is singular.",
                      SingularMatrixWarning, stacklevel=stacklevel)
    if at_bound.any():
        names = layout.structure_names
        zero = [names[j] for j in np.flatnonzero(at_bound)]
        warnings.warn(
            f"The {'REML' if reml else 'ML'} estimate is on the "
            f"boundary of the parameter space: the variance(s) {zero} are "
            "zero; their standard errors and Wald tests are not reliable.",
            ConvergenceWarning, stacklevel=stacklevel)


# Interval scales: name -> (to the unbounded scale, its derivative, back).
_TRANSFORMS = {
    "log": (np.log, lambda x: 1.0 / x, np.exp),
    "atanh": (np.arctanh, lambda x: 1.0 / (1.0 - x * x), np.tanh),
    "logit": (lambda x: np.log(x / (1.0 - x)), lambda x: 1.0 / (x * (1.0 - x)),
              lambda z: 1.0 / (1.0 + np.exp(-z))),
}
# Where each transform's domain lies (open intervals).
_DOMAINS = {"log": (0.0, np.inf), "atanh": (-1.0, 1.0), "logit": (0.0, 1.0)}


def transformed_interval(est, se, q: float, transform: str | None):
    """
    Wald interval ``h(est) +- q se |h'(est)|`` on the scale ``h`` given by
    ``transform``, mapped back with ``h^-1``.

    Parameters
    ----------
    est, se : array_like
        Estimates and their standard errors on the natural scale.
    q : float
        Normal quantile (1.96 for 95%).
    transform : {"log", "atanh", "logit"} or None
        None gives the plain Wald interval ``est +- q se``.

    Returns
    -------
    (lower, upper) : ndarrays
        nan where the estimate is outside the transform's domain (on its
        boundary) or the standard error is unknown.
    """
    est, se = np.asarray(est, float), np.asarray(se, float)
    if transform is None:
        return est - q * se, est + q * se
    fwd, deriv, back = _TRANSFORMS[transform]
    lo, hi = _DOMAINS[transform]
    inside = (est > lo) & (est < hi)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = np.where(inside, est, np.nan)
        centre, half = fwd(x), q * se * np.abs(deriv(x))
        return back(centre - half), back(centre + half)


def correlation_transforms(block) -> list[str | None]:
    """
    The interval scale of each parameter of a bound correlation block:
    "logit" for CAR(1)'s phi, "atanh" for the correlations of the
    exchangeable, Toeplitz, banded and unstructured structures and AR(1)'s
    phi, None (plain Wald) for ARMA coefficients, which are not
    correlations: their admissible region is a joint one (stationarity,
    invertibility), not a product of intervals.
    """
    if isinstance(block, CAR1):
        kind = "logit"
    elif isinstance(block, ARMA):
        kind = None
    else:
        kind = "atanh"
    return [kind] * block.k
