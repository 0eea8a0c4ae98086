"""
Profile-likelihood confidence limits for the variances and correlations of
the random effects of location-scale models (private; used by
``LocationScaleResults.profile_ci``).

The joint covariance matrix is written as level-2 functions
(``structures.Level2Functions``, the layout of ``locscale.level2_layout``):
log variances and atanh correlations, linear in a group-level design S
(a column of ones for one covariance matrix).  One entry of theta -- the
log variance or atanh correlation at one level-2 design row, after a change
of basis of S that makes that row the first coordinate -- is held at a value
through the layout's ``free`` mask and the rest refitted by
``_locscale.fit``.  The limits are where the signed root of the likelihood
ratio statistic, ``sign(t - t_hat) sqrt(2 (llf_hat - llf_profile(t)))``,
crosses -+ the normal quantile.
"""

from __future__ import annotations

import copy
import functools
import warnings

import numpy as np
import pandas as pd
from scipy import optimize

from . import _linalg, _locscale

# How far from the estimate the limits are sought, on the parameter's own
# scale.  A log variance 20 below the estimate is a variance 2e-9 times as
# large: a profile still within the critical value there is read as a limit
# at variance 0 (the likelihood tends to that of the model without the
# effect).  |atanh| 7 is |corr| = 0.9999983, read as +-1.
LOGVAR_SPAN = 20.0
ATANH_MAX = 7.0
# A refit whose largest gradient component (of the total log-likelihood)
# is this small is accepted even when the Newton polish did not confirm
# convergence (flat directions: a correlation of an effect whose variance
# is held near zero).
ACCEPT_GRAD = 1e-3
# Consistency of the profile with the fit's log-likelihood.
LLF_TOL = 1e-6
# A limit is where the signed root is within this of the normal quantile
# (about 2e-4 in log-likelihood; on the log-variance or atanh scale a
# fraction 1e-4 of the standard error).
ROOT_TOL = 1e-4


class ProfileError(RuntimeError):
    """A refit at a profile point failed."""


def _level2_part(layout):
    """The layout's level-2 functions block and its slice of theta."""
    block = layout.role_block("re_cov")
    return block, layout.slice_of(block)


def _correlation_entries(layout):
    """Mask of the theta entries that are atanh-correlation coefficients."""
    block, where = _level2_part(layout)
    out = np.zeros(layout.size, bool)
    out[where] = block.correlations
    return out


def change_basis(S, theta, layout, row):
    """
    Re-express a model with level-2 functions so that ``row`` of the level-2 design
    is the first coordinate: ``S' = S A^-1`` and ``C' = C A'``, ``E' = E A'``
    with A the identity whose first row is ``row`` (invertible, because the
    design's first column is the intercept).  Then the log variances and
    atanh correlations at ``row`` are the first columns of C' and E'.  The
    other columns of C' and E' equal those of C and E, so coefficients held
    at 0 (the layout's ``terms``) stay at 0 -- the intercept, always
    estimated, is the only one that changes.

    Returns (S', theta').
    """
    k_s = S.shape[1]
    A = np.eye(k_s)
    A[0] = row
    if row[0] != 1.0:
        raise ValueError("the level-2 design row must start with the intercept (1)")
    block, where = _level2_part(layout)
    C, E = block.split(theta[where])
    S_new = S @ np.linalg.inv(A)
    theta_new = np.array(theta, dtype=np.float64)
    theta_new[where] = block.pack(C @ A.T, E @ A.T)
    return S_new, theta_new


def cholesky_to_level2(layout, beta, a, L):
    """theta with level-2 functions on S = 1 from a joint factor L (scale
    effects first), log variances and atanh correlations clipped to the
    search range (a variance of 0 or a correlation of +-1 has no finite
    value there)."""
    block = layout.role_block("re_cov")
    sigma = L @ L.T
    var = np.diag(sigma)
    # A zero variance: 2 LOGVAR_SPAN below the largest on the log scale.
    # Only zeros: the effects' variances are in their columns' units, and a
    # small positive one (a covariate in other units) is kept as it is.
    tiny = np.exp(-2 * LOGVAR_SPAN) * max(var.max(), 1e-300)
    var = np.where(var > 0, var, tiny)
    sd = np.sqrt(var)
    C = np.log(var)[:, None]
    E = np.array([[np.arctanh(np.clip(sigma[k, l] / (sd[k] * sd[l]),
                                      -np.tanh(ATANH_MAX), np.tanh(ATANH_MAX)))]
                  for k, l in block.pairs]).reshape(len(block.pairs), 1)
    theta = np.zeros(layout.size)
    theta[layout.fe], theta[layout.var] = beta, a
    theta[layout.slice_of(block)] = block.pack(C, E)
    return theta


def representable(layout, theta):
    """
    Whether the refits' parameterisation (log variances, atanh
    correlations) can hold the estimate ``theta`` (level-2 functions): every
    group's correlation matrix, with correlations beyond
    ``+-tanh(ATANH_MAX)`` read as that bound (how the search range holds a
    correlation of +-1), is of full rank by ``_linalg.covariance_rank``.
    A correlation of +-1 or a zero variance is a limit of the
    parameterisation and passes; a singular matrix whose correlations are
    all inside (-1, 1) (three or more random effects, one a combination of
    the others) does not.  Decided from the rank, far from rounding, so
    that the answer does not depend on whether a Cholesky factorisation of
    a matrix singular to rounding happens to succeed.
    """
    block, where = _level2_part(layout)
    sigma = block.sigma(np.asarray(theta, float)[where])[0]
    R, _ = _linalg.correlation(sigma)
    bound = np.tanh(ATANH_MAX)
    d = R.shape[-1]
    off = ~np.eye(d, dtype=bool)
    R[:, off] = np.clip(R[:, off], -bound, bound)
    rank, _ = _linalg.covariance_rank(R)
    return rank == d


class ProfileLikelihood:
    """
    The profile log-likelihood of entry ``index`` of theta (level-2 functions):
    the maximum over the other free entries with that one held at ``t``,
    each refit warm-started from the nearest point already computed.
    """

    def __init__(self, data, layout, theta_hat, index, llf_hat, progress=None):
        self.data = data
        self.progress = progress  # called as progress(t, llf) after each refit
        self.layout = copy.copy(layout)
        self.layout.estimated = layout.estimated.copy()
        self.layout.estimated[index] = False
        self.index = index
        # t -> (llf, theta); the estimate is the profile's maximum
        self.t_hat = float(theta_hat[index])
        self.points = {self.t_hat: (llf_hat, theta_hat.copy())}
        self.unconverged = []   # t of refits accepted without convergence

    def __call__(self, t):
        t = float(t)
        if t in self.points:
            return self.points[t][0]
        fit = self._refit(t, self._start(t))
        if not fit.converged and not fit.max_grad <= ACCEPT_GRAD:
            self.unconverged.append(t)
        self.points[t] = (fit.llf, fit.theta)
        if self.progress is not None:
            self.progress(t, fit.llf)
        return fit.llf

    def _refit(self, t, start):
        """The fit with the held entry at ``t`` from ``start``."""
        try:
            with np.errstate(all="ignore"):
                fit = _locscale.fit(self.data, self.layout, start, covariance=False)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            raise ProfileError(f"refit failed at {t:.6g}: {exc}") from exc
        if not np.isfinite(fit.llf):
            raise ProfileError(f"log-likelihood not finite at {t:.6g}")
        return fit

    def _start(self, t):
        """
        The estimate of the nearest computed point between ``t`` and the
        estimate (a continuation of the profile from its maximum outwards),
        with the held entry at t; correlations other than the held one are
        shrunk towards 0 until the covariance matrices are positive
        definite (needed with three or more random effects only).

        Not the nearest point on the far side: a trial point beyond the
        limit may have found a worse local maximum, and bisection starting
        from it inherited that maximum, so that the profile jumped there and
        the limit was the jump (HSB model 5, the public schools'
        correlation: 0.43 instead of 0.11, depending on the BLAS).
        """
        inward = [s for s in self.points if (s - t) * (self.t_hat - t) >= 0]
        near = min(inward or self.points, key=lambda s: abs(s - t))
        theta = self.points[near][1].copy()
        theta[self.index] = t
        lay = self.layout
        others = _correlation_entries(lay)
        others[self.index] = False
        for _ in range(60):
            try:
                lay.unpack(theta)
                return theta
            except np.linalg.LinAlgError:
                theta[others] *= 0.5
        raise ProfileError(f"no positive definite start at {t:.6g}")


def find_limit(profile, t_hat, llf_hat, direction, step, bound, z, xtol,
               ftol=ROOT_TOL):
    """
    The point beyond ``t_hat`` in ``direction`` (+1 or -1) where
    ``sqrt(2 (llf_hat - profile(t)))`` reaches ``z``: steps outwards
    (extrapolating the signed root, which is close to linear on the log /
    atanh scale) until the statistic exceeds ``z``, then brentq, which
    stops at ``xtol`` or where the root is within ``ftol`` of ``z``.

    Returns (limit, at_bound); ``at_bound`` is True when the statistic
    stays below ``z`` up to ``bound``, which is then returned.
    """
    def excess(t):
        e = np.sqrt(2.0 * max(llf_hat - profile(t), 0.0)) - z
        # brentq stops at an exact zero: a point within ftol is the limit
        # (each evaluation is a refit, so the last bracket halvings that
        # xtol alone would ask for are expensive).
        return 0.0 if abs(e) < ftol else e

    inner, inner_root = t_hat, 0.0
    t = t_hat + direction * step
    while True:
        if direction * (t - bound) >= 0:
            t = bound
            if excess(t) < 0:
                return bound, True
            break
        e = excess(t)
        if e >= 0:
            break
        inner, inner_root = t, e + z
        # Next trial: the linear extrapolation of the signed root through
        # (t_hat, 0) and (inner, root), 10% beyond, to bracket the limit;
        # between 1.2 and 4 times as far from t_hat.
        factor = np.clip(1.1 * z / max(inner_root, 1e-12), 1.2, 4.0)
        t = t_hat + factor * (inner - t_hat)
    return optimize.brentq(excess, inner, t, xtol=xtol), False


def profile_limits(data, layout, theta, indices, z, xtol=1e-5, progress=None):
    """
    Profile-likelihood limits for entries ``indices`` of theta with level-2
    functions (log variances or atanh correlations) at the estimate ``theta``.

    Returns (llf at theta, list of dicts or None for held entries); each
    dict has the estimate ``t_hat``, ``lower`` and ``upper`` on the
    parameter's own scale (NaN where a refit failed), ``lower_at_bound`` /
    ``upper_at_bound`` (the profile stays within ``z`` up to the end of the
    search range), ``n_fits``, ``unconverged`` (held values whose refit was
    accepted unconverged), ``errors`` and ``max_llf`` (the largest profile
    log-likelihood met).  ``progress(k, t, llf)``, if given, is called
    after each refit for ``indices[k]``.
    """
    # The log-likelihood at the estimate with the same nodes and the same
    # code as the profile points (the reference for the statistic), and the
    # curvature on this scale for the first steps.
    with np.errstate(all="ignore"):
        check = _locscale.fit(data, layout, theta, optimise=False)
    llf_hat = check.llf
    correlation = _correlation_entries(layout)
    out = []
    for index in indices:
        if not layout.estimated[index]:
            out.append(None)
            continue
        t_hat = float(theta[index])
        se = np.sqrt(max(check.cov_theta[index, index], 0.0))
        step = float(np.clip(z * se, 0.05, 2.0)) if np.isfinite(se) and se > 0 else 0.5
        if correlation[index]:
            bounds = (-ATANH_MAX, ATANH_MAX)
        else:
            bounds = (t_hat - LOGVAR_SPAN, t_hat + LOGVAR_SPAN)
        report = None if progress is None else functools.partial(progress, len(out))
        prof = ProfileLikelihood(data, layout, theta, index, llf_hat, report)
        row = {"t_hat": t_hat, "errors": []}
        for side, direction, bound in zip(("lower", "upper"), (-1, 1), bounds):
            if direction * (t_hat - bound) >= 0:  # estimate at the boundary
                row[side], row[side + "_at_bound"] = bound, True
                continue
            try:
                row[side], row[side + "_at_bound"] = find_limit(
                    prof, t_hat, llf_hat, direction, step, bound, z, xtol)
            except ProfileError as exc:
                row[side], row[side + "_at_bound"] = np.nan, False
                row["errors"].append(str(exc))
        row["n_fits"] = len(prof.points) - 1
        row["unconverged"] = prof.unconverged
        row["max_llf"] = max((v[0] for v in prof.points.values()), default=-np.inf)
        out.append(row)
    return llf_hat, out


# ----------------------------------------------------------------------
# The table of profile_ci

def warn(message):
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    # stacklevel 3: the caller of profile_ci
    warnings.warn(message, ConvergenceWarning, stacklevel=3)


def rows_wanted(names, labels, var_labels, variances):
    """
    The rows ``profile_ci`` reports: {table position: (SD or correlation
    row, Var row)}, from the labels asked for (``names``; None for all).
    A Var row shares the profile of its SD row.
    """
    has_var = [v is not None for v in var_labels]
    if names is None:
        return {k: (True, variances and has_var[k]) for k in range(len(labels))}
    wanted = {}
    for name in [names] if isinstance(names, str) else list(names):
        if name in labels:
            k = labels.index(name)
            wanted[k] = (True, wanted.get(k, (False, False))[1]
                         or (variances and has_var[k]))
        elif name in var_labels:
            k = var_labels.index(name)
            wanted[k] = (wanted.get(k, (False, False))[0], True)
        else:
            valid = labels + [v for v in var_labels if v is not None]
            raise ValueError(f"{name!r} is not a random-effects SD, variance or "
                             f"correlation; use one of {valid}")
    return wanted


def table(limits, wanted, labels, var_labels, estimates, is_sd, alpha):
    """
    The table of ``profile_ci``: limits on the log-variance / atanh scale
    (``profile_limits`` rows, None for held entries) by table
    position, turned into SDs, variances and correlations.
    """
    n_q = len(is_sd)
    index, est, lower, upper, method = [], [], [], [], []
    for k in sorted(wanted):
        sd_row, var_row = wanted[k]
        out, sd = limits[k], is_sd[k % n_q]
        if out is None:
            lo = hi = np.nan
            how = "held"
        else:
            if sd:
                lo = 0.0 if out["lower_at_bound"] else np.exp(0.5 * out["lower"])
                hi = np.inf if out["upper_at_bound"] else np.exp(0.5 * out["upper"])
            else:
                lo = -1.0 if out["lower_at_bound"] else np.tanh(out["lower"])
                hi = 1.0 if out["upper_at_bound"] else np.tanh(out["upper"])
            # An SD has no upper boundary: a profile still within the
            # critical value 20 units of log variance above the estimate
            # gives no finite limit.
            at = [side for side in ("lower", "upper") if out[side + "_at_bound"]
                  and not (sd and side == "upper")]
            how = "profile" if not at else \
                f"profile ({' and '.join(at)} limit at boundary)"
            if sd and out["upper_at_bound"]:
                how += " (no upper limit found)"
        rows = [(labels[k], 1)] if sd_row else []
        if var_row:
            rows.append((var_labels[k], 2))
        for label, power in rows:
            index.append(label)
            est.append(estimates[k] ** power)
            lower.append(lo ** power if sd else lo)
            upper.append(hi ** power if sd else hi)
            method.append(how)
    return pd.DataFrame({"Estimate": est, f"[{alpha / 2:g}": lower,
                         f"{1 - alpha / 2:g}]": upper, "Method": method},
                        index=index)
