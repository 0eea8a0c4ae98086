"""
Maximising an objective: one scoring routine, one quasi-Newton driver, one
Newton polish, one backtracking line search, one convergence test.

Optimisers are plain functions over an objective and a free vector, chosen
by name (``METHODS``, or any ``scipy.optimize.minimize`` method); they never
name a structure.  The objective provides (see
:class:`~.objective.HeteroskedasticObjective`):

* ``layout`` -- ``to_natural``, ``from_natural``, ``bounded``;
* ``admissible(natural)`` -- the blocks' constraints beyond the box;
* ``evaluate_natural(natural, info)`` -- the engine's evaluation (with the
  expected information ``ev.info`` when asked) and the natural gradient;
* ``conditioned_gradient``, ``conditioned_information`` and
  ``conditioner_inverse`` -- the gradient and expected information in the
  conditioned coordinates where scoring steps are solved, and the map back;
* ``free_value_and_gradient(free)`` -- for quasi-Newton and Newton steps;
* ``observed_information(natural, mask)`` -- the observed information
  (``objective.ObservedInformation``), for the convergence test and the
  standard errors;
* ``at_boundary(natural)`` -- variances at zero.

Convergence is judged by the Newton decrement ``g' (-H)^-1 g`` of the
analytic gradient (twice the possible further gain in log-likelihood),
over the free parameters that are not variances at zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy import optimize

from . import _linalg

__all__ = ["NEWTON_DECREMENT_TOL", "FLAT_TOL", "Estimate", "NewtonStep",
           "estimate", "line_search", "newton_decrement", "newton_step", "METHODS"]

#: Below this Newton decrement the fit is converged.
NEWTON_DECREMENT_TOL = 1e-10
#: Changes of the log-likelihood within this fraction of it are rounding:
#: the line search's allowance, and no progress for scoring's stall test.
LLF_RTOL = 1e-12

#: Below this Newton decrement (twice the log-likelihood still to gain) an
#: objective whose expected information is costly (``defers_information``)
#: scores the following steps with the information it has: near the
#: optimum it changes by far less than the steps need.
INFORMATION_REUSE_DECREMENT = 1.0
_MAX_NEWTON_STEPS = 20
#: After this many scoring steps in a row whose log-likelihood gain is
#: within the line search's rounding allowance, scoring has stalled at the
#: rounding level of the llf (a nearly flat ridge, e.g. ARMA(2,1) fitted
#: to AR(1) data, where its decrement stayed above NEWTON_DECREMENT_TOL for
#: its 200 iterations) and hands over to the next method.
_STALLED_STEPS = 5
#: Eigenvalues of the (unit-scaled, profiled) information of the covariance
#: parameters at or below this fraction of the largest mark flat directions:
#: a condition number of 1e8 is a standard-error ratio of 1e4 between two
#: link-scale quantities, far beyond what data determine.
FLAT_TOL = 1e-8


def line_search(value: Callable[[np.ndarray], float],
                candidate: Callable[[float], np.ndarray], f0: float,
                t_max: float = 1.0, t_min: float = 1e-10, rtol: float = LLF_RTOL):
    """
    Backtracking: the longest of ``t_max, t_max/2, ...`` (down to
    ``t_min``) at which ``value(candidate(t))`` is at least ``f0`` (less a
    rounding allowance ``rtol |f0|``).  ``value`` is maximised and may
    return -inf (outside the parameter space) or raise LinAlgError;
    ``candidate(t)`` is usually ``x + t * step``, projected onto the
    parameter space's bounds where the optimiser keeps them.

    Returns ``(t, x_new, value_new)``, or None when no such step exists;
    ``value`` was last called at ``x_new``.
    """
    t = t_max
    while t >= t_min:
        cand = candidate(t)
        try:
            v = value(cand)
        except np.linalg.LinAlgError:
            v = -np.inf
        if v >= f0 - rtol * abs(f0):
            return t, cand, v
        t *= 0.5
    return None


@dataclass
class NewtonStep:
    """Newton step, decrements and covariance at one point (``newton_step``)."""

    step: np.ndarray          # over the free entries of theta
    flat_step: np.ndarray     # the part of ``step`` in the flat directions
    decrement: float          # Newton decrement where the data determine theta
    flat_decrement: float     # the same along flat directions (floored)
    cov: np.ndarray           # inverse information, flat directions left out
    flat: np.ndarray          # (n_flat, n_free) flat directions
    indefinite: bool          # a clearly negative curvature: not a maximum


def newton_step(hess, g, n_outer, scale) -> NewtonStep:
    """
    Newton step with the covariance parameters' flat directions set aside.

    The log-likelihood can be flat only in the covariance parameters: at
    the boundary of the parameter space (a correlation at +-1, a variance
    at 0) it tends to a limit as a link-scale parameter runs to infinity.
    The mean and variance-function coefficients (the first ``n_outer`` of
    the free entries, full-rank designs) are profiled out by the Schur
    complement; the covariance block, in units of ``scale``, is split by
    its eigenvalues into well-determined directions and flat ones
    (eigenvalue at most ``FLAT_TOL`` times the largest, or negative).  The
    step is Newton's in the determined directions and, in the flat ones,
    the gradient over a curvature floored at that tolerance, which keeps
    pushing towards the boundary while the likelihood still rises there.
    The covariance is the inverse information with the flat directions
    held fixed (for an interior maximum, the inverse of ``-hess``).

    Raises LinAlgError if the mean and variance-function block of ``-hess``
    is not positive definite, or if no covariance direction is.
    """
    neg = -0.5 * (hess + hess.T)
    o = n_outer
    # Equilibrated: the coefficients' units (x * 1e8) are no reason to fail.
    chol = _linalg.cholesky_equilibrated(neg[:o, :o], "the mean and variance-"
                                         "function block of -hess")
    a_inv_b = _linalg.chol_solve(chol, neg[:o, o:])
    a_inv_g = _linalg.chol_solve(chol, g[:o])
    profile = neg[o:, o:] - neg[o:, :o] @ a_inv_b
    g_cov = g[o:] - a_inv_b.T @ g[:o]                  # profile gradient
    vals, vecs = np.linalg.eigh(scale[:, None] * profile * scale[None, :])
    if vals.size and vals[-1] <= 0:
        raise np.linalg.LinAlgError("no direction of positive curvature")
    floor = FLAT_TOL * vals[-1] if vals.size else 0.0
    flat = vals <= floor
    vecs = vecs * scale[:, None]                       # back to theta units
    determined = vecs[:, ~flat]
    p_inv = (determined / vals[~flat]) @ determined.T
    # Away from the maximum a clearly negative curvature is no boundary:
    # step along it by its size (ascent), as along a flat one by the floor.
    curvature = np.maximum(np.abs(vals[flat]), floor)
    v_g = vecs[:, flat].T @ g_cov
    flat_cov = vecs[:, flat] @ (v_g / curvature)
    step_cov = p_inv @ g_cov + flat_cov
    step = np.concatenate([a_inv_g - a_inv_b @ step_cov, step_cov])
    flat_step = np.concatenate([-a_inv_b @ flat_cov, flat_cov])
    a_inv = _linalg.chol_solve(chol, np.eye(o))
    cross = -a_inv_b @ p_inv
    cov = np.block([[a_inv - cross @ a_inv_b.T, cross], [cross.T, p_inv]])
    w = vecs[:, flat] / np.sqrt(floor)                 # curvature <= 1
    directions = np.concatenate([-a_inv_b @ w, w]).T  # the profile's path
    return NewtonStep(step, flat_step,
                      float(g[:o] @ a_inv_g + g_cov @ p_inv @ g_cov),
                      float(v_g @ (v_g / curvature)), cov, directions,
                      bool(vals.size and vals[0] < -floor))


def newton_decrement(g: np.ndarray, hess: np.ndarray, keep: np.ndarray):
    """``g' (-H)^-1 g`` over the entries ``keep``; None when -H is not
    positive definite there."""
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return 0.0
    try:
        chol = np.linalg.cholesky(-hess[np.ix_(idx, idx)])
    except np.linalg.LinAlgError:
        return None
    return float(g[idx] @ _linalg.chol_solve(chol, g[idx]))


# ----------------------------------------------------------------------
# Optimisers: (objective, free, mask, options, hist) -> (free, n_iter, done)
# ``hist``: None or a ``_progress.Trace``, called once per iteration with
# the log-likelihood, the natural parameters and the gradient (fit's disp,
# callback and full_output).
def fisher_scoring(objective, free, mask, options, hist):
    """
    Fisher scoring on the natural scale (steps solved in the objective's
    conditioned coordinates), with the analytic expected information as
    scoring matrix and a backtracking line search.

    Variances bounded below by zero on their own (``layout.bounded``) are
    handled by an active set: a step never takes them below zero, and one
    at zero whose gradient points outside is held there (the Kuhn-Tucker
    condition of a boundary maximum).  Other constraints (a covariance
    matrix that must stay semi-definite, ``objective.admissible``) reject a
    step; where that blocks progress the caller falls back to quasi-Newton
    on the free scale.

    Where the objective ``defers_information`` (AR(1) / CAR(1) residuals,
    whose information costs more than the rest of an evaluation), points
    reached once the decrement is below ``INFORMATION_REUSE_DECREMENT``
    are evaluated without it and their steps scored with the last one
    computed: the steps there are small, and the information barely
    changes over them.
    """
    lay = objective.layout
    nat = lay.to_natural(free)
    box = lay.bounded
    maxiter = options.get("maxiter", 200)
    # below this Newton decrement (on the scoring information) the point
    # is taken: a start needs less than an estimate
    tol = options.get("decrement_tol", NEWTON_DECREMENT_TOL)
    # Steps are solved in the conditioned coordinates u = T natural (centred
    # variance covariates), where the information is well conditioned.

    deferred = getattr(objective, "defers_information", False)

    def evaluate(x, info=True):
        if not objective.admissible(x):
            raise np.linalg.LinAlgError("outside the parameter space")
        return objective.evaluate_natural(x, info=info)

    try:
        ev, g = evaluate(nat)
    except np.linalg.LinAlgError:
        return free, 0, False
    stalled = 0
    # the expected information that scores the steps (without its
    # evaluation, which is released)
    scoring = _Information(ev.info_centred)
    for it in range(1, maxiter + 1):
        if hist is not None:
            hist(ev.llf, nat, g[mask])
        active = box & (nat <= 0) & (g <= 0)
        work = np.flatnonzero(mask & ~active)
        if work.size == 0:
            return lay.from_natural(nat), it, True
        T_w_inv = objective.conditioner_inverse(mask, work)
        g_u = objective.conditioned_gradient(ev, nat, g, mask)[work]
        info = objective.conditioned_information(scoring, mask, work)
        # A ridge relative to each parameter's own information: one relative
        # to the largest would swamp the parameters of other units (with y in
        # units 1e-3 the covariances' information is 1e12 times the variance
        # function's, and the steps were no longer those of the same fit).
        ridged = info.copy()
        ridged.flat[::work.size + 1] *= 1.0 + 1e-12
        try:
            chol = np.linalg.cholesky(ridged)
        except np.linalg.LinAlgError:
            return lay.from_natural(nat), it, False
        step_u = _linalg.chol_solve(chol, g_u)
        decrement = float(g_u @ step_u)
        if decrement < tol:
            return lay.from_natural(nat), it, True
        reuse = deferred and decrement < INFORMATION_REUSE_DECREMENT
        step = np.zeros_like(nat)
        step[work] = T_w_inv @ step_u
        # Longest step that keeps the boxed variances non-negative; the
        # variance that limits it lands on zero exactly.
        t_max, hit = 1.0, None
        shrinking = box & (step < 0)
        if shrinking.any():
            ratios = np.full(nat.size, np.inf)
            ratios[shrinking] = -nat[shrinking] / step[shrinking]
            if ratios.min() < 1.0:
                hit = int(np.argmin(ratios))
                t_max = float(ratios[hit])

        def candidate(t, start=nat, step=step, t_max=t_max, hit=hit):
            x = start + t * step
            x[box] = np.maximum(x[box], 0.0)
            if hit is not None and t == t_max:
                x[hit] = 0.0
            return x

        current_llf = ev.llf
        # Nothing below reads this point's evaluation: release it (and the
        # objective's copy of it) so that its row-sized arrays (residuals,
        # gradient rows) are not held while a trial point is evaluated --
        # the fit's peak memory.  The accepted point's evaluation takes its
        # place for the observed information.
        ev = last = None
        objective.release_evaluation()
        last = {}

        def value(x):
            # a trial point may overflow the variances (a power of a
            # covariate stepped far): its llf is then not finite and the
            # line search steps back, as quasi_newton's trial points do
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                last["x"], last["eval"] = x, evaluate(x, info=not reuse)
            return last["eval"][0].llf

        found = line_search(value, candidate, current_llf, t_max=t_max)
        if found is None:
            return lay.from_natural(nat), it, False
        nat, (ev, g) = last["x"], last["eval"]
        # a gain within the rounding allowance is no progress
        stalled = stalled + 1 if found[2] - current_llf <= LLF_RTOL * abs(current_llf) else 0
        if stalled >= _STALLED_STEPS:
            return lay.from_natural(nat), it, False
        if not reuse:
            scoring = _Information(ev.info_centred)
    return lay.from_natural(nat), maxiter, False


@dataclass(frozen=True)
class _Information:
    """An evaluation's expected information (``info_centred``, what
    ``objective.conditioned_information`` reads) without the evaluation."""

    info_centred: np.ndarray


def quasi_newton(objective, free, mask, options, hist, method="bfgs"):
    """A ``scipy.optimize.minimize`` method on the free scale (the
    objective divided by the number of rows, so that ``gtol`` does not
    depend on the sample size)."""
    full = free.copy()
    idx = np.flatnonzero(mask)
    nobs = objective.nobs

    last = {}

    def fun(x):
        full[idx] = x
        f, g = objective.free_value_and_gradient(full)
        last.update(x=np.array(x), f=f, g=g[idx])
        return -f / nobs, -g[idx] / nobs

    def callback(xk, *args):
        if hist is not None:
            if not np.array_equal(xk, last.get("x")):  # else already known
                fun(np.asarray(xk))
            full[idx] = xk
            hist(last["f"], objective.layout.to_natural(full), last["g"])

    if idx.size == 0:
        return free, 0, True
    opts = {"maxiter": options.get("maxiter", 1000)}
    name = {"lbfgs": "L-BFGS-B", "nm": "Nelder-Mead"}.get(method.lower(), method)
    if name.lower() in ("bfgs", "l-bfgs-b", "cg"):
        opts["gtol"] = options.get("gtol", 1e-7)
    jac = name.lower() not in ("nelder-mead", "powell")
    objective_fun = fun if jac else (lambda x: fun(x)[0])
    with np.errstate(all="ignore"):
        res = optimize.minimize(objective_fun, free[idx], jac=jac, method=name,
                                options=opts, callback=callback)
    full[idx] = res.x
    return full, int(getattr(res, "nit", 0)), bool(res.success)


#: Optimisers by name; other names are passed to scipy.optimize.minimize.
METHODS = {"scoring": fisher_scoring}


def run_method(name, objective, free, mask, options, hist):
    """Run the optimiser called ``name``."""
    if name in METHODS:
        return METHODS[name](objective, free, mask, options, hist)
    return quasi_newton(objective, free, mask, options, hist, method=name)


def newton_polish(objective, free, mask):
    """
    Newton steps (``newton_step``: flat directions set aside) on the free
    scale with the objective's Hessian there (``free_hessian``, along the
    directions of ``free_basis``).

    Its stationary points include maxima on the boundary of the covariance
    cone (a singular G, e.g. a correlation of +-1), where the natural
    gradient need not vanish; there its decrement is the test.

    Returns (free, converged, decrement).
    """
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return free, True, 0.0
    decrement = None
    basis = None
    for _ in range(_MAX_NEWTON_STEPS):
        f0, g0 = objective.free_value_and_gradient(free)
        if basis is None:
            # The steps are short and an approximate information whitens
            # as well: directions from the first point (computing one costs
            # about 2.5 gradient evaluations).
            basis = objective.free_basis(free, mask)
            if basis is None:
                return free, False, None
            # Units of each free entry: its length in the whitened
            # directions (about a standard error), for the flat test.
            units = np.sqrt(np.sum(basis**2, axis=1))
        hess = objective.free_hessian(free, mask, basis, g0)
        try:
            newton = newton_step(hess, g0[idx], 0, units)
        except np.linalg.LinAlgError:
            return free, False, None  # no direction of ascent curvature
        decrement = max(newton.decrement, newton.flat_decrement)
        if decrement < NEWTON_DECREMENT_TOL:
            return free, not newton.indefinite, decrement
        full_step = np.zeros_like(free)
        full_step[idx] = newton.step
        found = line_search(lambda x: objective.free_value_and_gradient(x)[0],
                            lambda t, x=free, s=full_step: x + t * s, f0, t_min=1e-4)
        if found is None:
            return free, False, decrement
        free = found[1]
    return free, False, decrement


@dataclass
class Estimate:
    """What a fit found: the estimate, its evaluation and how it got there."""

    natural: np.ndarray        # the blocks' parameters, natural scale
    free: np.ndarray           # the same, free scale
    information: object        # objective.ObservedInformation at the estimate
    converged: bool
    decrement: float | None
    max_grad: float            # largest |gradient| off the boundary
    at_boundary: np.ndarray    # variances at zero
    n_iter: int
    hist: list | None = None
    methods: Sequence[str] = field(default_factory=list)

    @property
    def evaluation(self):
        """The engine's evaluation at the estimate."""
        return self.information.evaluation


def estimate(objective, free, mask=None, methods=("scoring", "bfgs"),
             options=None, hist=None, optimise=True) -> Estimate:
    """
    Maximise ``objective`` from ``free``: the ``methods`` in turn until one
    reports success; then the convergence test on the observed Hessian,
    and Newton steps on the free scale if it fails.

    ``mask`` (free scale) marks the parameters estimated; the others stay
    at their values in ``free``.
    """
    lay = objective.layout
    options = {} if options is None else options
    mask = np.ones(free.size, bool) if mask is None else np.asarray(mask, bool)
    n_iter = 0
    if optimise:
        for name in methods:
            free, n_it, done = run_method(name, objective, free, mask, options, hist)
            n_iter += n_it
            if done:
                break
    natural = lay.to_natural(free)
    information = objective.observed_information(natural, mask)
    keep = mask & ~objective.at_boundary(natural)
    # in the conditioned coordinates, where the gradient does not cancel
    decrement = newton_decrement(information.grad_u, information.hess_u, keep)
    converged = optimise and decrement is not None and \
        decrement < NEWTON_DECREMENT_TOL
    if optimise and not converged:
        free, polished, free_decrement = newton_polish(objective, free, mask)
        natural = lay.to_natural(free)
        information = objective.observed_information(natural, mask)
        keep = mask & ~objective.at_boundary(natural)
        decrement = newton_decrement(information.grad_u, information.hess_u, keep)
        converged = decrement is not None and decrement < NEWTON_DECREMENT_TOL
        if not converged and polished:
            converged, decrement = True, free_decrement
    # Variances at zero are on the boundary: their gradient need not
    # vanish there, and the maximum may sit on it.
    at_bound = objective.at_boundary(natural)
    g = information.gradient
    max_grad = float(np.max(np.abs(g[mask & ~at_bound]), initial=0.0))
    return Estimate(natural, free, information, bool(converged), decrement,
                    max_grad, at_bound, n_iter, hist, list(methods))
