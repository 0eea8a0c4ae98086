"""
Mixed-effects location-scale models: random effects in the log residual
variance, jointly normal with the mean's random effects.

    log sigma2_ij = w_ij' a + v_ij' omega_i,    (u_i, omega_i) ~ N(0, Sigma)

Built with ``hetmixedlm(..., var_re_formula="~ 1")`` (or ``exog_var_re``)
and fitted by ML with adaptive Gauss-Hermite quadrature over omega (the
mean's random effects are integrated analytically); see ``_locscale``.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
from statsmodels.base import wrapper as wrap
from statsmodels.tools._decorators import cache_readonly

from . import _linalg, _locscale, optim
from ._progress import ProfileProgress
from .objective import HeteroskedasticObjective
from .structures import (
    JointCovariance,
    Layout,
    Level2Coefficients,
    Level2Functions,
    psd_factor,
)
from .structures.recov import effect_units
from .results import HetMixedLMResults, HetMixedLMResultsWrapper

__all__ = ["LocationScaleResults"]

# The order of the blocks in the fitter's theta: the fixed effects and the
# variance function lead (the Newton step profiles them out), then the
# random effects' joint covariance.
THETA_ROLES = ("variance", "re_cov")
# Default nodes per dimension of the random scale effects.
DEFAULT_NODES = {1: 15, 2: 5}
# A combination of the parameters is undetermined when a flat direction
# (curvature at most 1) would add more than this share to its variance.
_FLAT_SHARE = 1e-3


def fit_location_scale(model, reml=False, start_params=None, n_quad=None,
                       re_cov="joint", do_cg=True, maxiter=None, trace=None):
    """Fit a location-scale HetMixedLM (called by ``HetMixedLM.fit``;
    ``trace``: a ``_progress.Trace``, for disp and callback)."""
    if reml:
        raise ValueError(
            "Location-scale models (random scale effects) are fitted by "
            "maximum likelihood: call fit(reml=False). The REML criterion is "
            "not defined once the residual variances are random.")
    if model.var_link != "log":
        raise ValueError("Random scale effects need the log link (var_link='log').")
    if re_cov not in ("joint", "independent"):
        raise ValueError("re_cov must be 'joint' (correlated mean and scale "
                         "random effects) or 'independent'")
    q_w, q_u = model.k_var_re, model.k_re
    if n_quad is None:
        n_quad = DEFAULT_NODES[q_w]
    data = _location_scale_data(model, n_quad)
    layout = theta_layout(model, re_cov)
    options = {} if maxiter is None else {"maxiter": int(maxiter)}
    if trace is not None:
        options["trace"] = trace
    if start_params is not None:
        theta = theta_from_params(model, layout, start_params, "start_params")
    else:
        theta = _start_theta(model, layout, _fit_without_scale_effects(model))
    if model.exog_re_var is not None:
        return _fit_level2(model, data, layout, theta, n_quad, re_cov, do_cg,
                           options)
    fit = _locscale.fit(data, layout, theta, optimise=do_cg, **options)
    _warn_unconverged(fit, do_cg)
    joint = layout.role_block("re_cov")
    free_cov = joint.free_from_factor(fit.factor)
    # params: beta, the joint covariance (mean effects first), a.
    params = np.concatenate([fit.beta, joint.to_natural(free_cov), fit.var_params])
    # d params / d theta, analytic: beta and a carry over, the joint block's
    # Jacobian for the covariance.
    p, k = model.k_fe, model.k_var
    theta_cov = layout.slice_of(joint)
    jac = np.zeros((params.size, layout.size))
    jac[:p, :p] = np.eye(p)
    jac[p:p + joint.k, theta_cov] = joint.jacobian(free_cov)
    jac[p + joint.k:, p:p + k] = np.eye(k)
    cov = jac @ fit.cov_theta @ jac.T
    free = np.ones(len(params) - model.k_fe, bool)
    free[:joint.k] = joint.natural_estimated
    scale = np.exp(model.variance_function.log_scale(fit.var_params))
    res = LocationScaleResults(model, params, cov / scale)
    res.flat_directions = fit.flat_directions @ jac.T
    eb = _posterior(data, fit, layout)
    state = SimpleNamespace(llf=fit.llf, blup=eb.mean[:, :q_u],
                            cond_cov=eb.cov[:, :q_u, :q_u])
    res._finish(state, converged=fit.converged, max_grad=fit.max_grad,
                decrement=fit.decrement, n_iter=fit.n_iter, hist=None,
                method=["adaptive Gauss-Hermite quadrature"], free=free,
                reml=False, layout=_results_layout(layout))
    res._finish_location_scale(fit, eb, n_quad, re_cov)
    undetermined = res._undetermined_params()
    _warn_boundary([f"{n} is not determined" for n in undetermined],
                   "use re_cov='independent' or a simpler random-effects "
                   "structure", do_cg)
    if not undetermined:
        # A singular Sigma is reachable without flat directions in the
        # Cholesky parameters (a zero row of L): say so too.
        _warn_singular(*res.covariance_rank(), False, do_cg,
                       res._profile_representable())
    return LocationScaleResultsWrapper(res)


def _fit_without_scale_effects(model):
    """Starting values: the ML estimate of the same data without random
    scale effects (the model's heteroskedastic objective)."""
    objective = HeteroskedasticObjective(model._grouped, model.layout, reml=False)
    est = optim.estimate(objective, objective.start())
    var = model.layout.slice_of(model.variance_function)
    return SimpleNamespace(
        fe_params=est.evaluation.fe_params, cov_re=model.layout.cov_re(est.natural),
        var_params=model.layout.join(est.evaluation.fe_params, est.natural)[var],
        scale=objective.scale(est.natural))


def _results_layout(layout):
    """The results' layout of a location-scale fit: the fitter's blocks in
    the results' order (the joint covariance of the mean's and the scale's
    random effects, mean effects first, then the variance function), read
    on the natural scale."""
    return Layout(layout.fe_names, layout.blocks, q=layout.q)


def joint_layout(model, independent=False) -> Layout:
    """
    The optimiser's parameter layout of a location-scale model without
    level-2 functions: theta is the fixed effects, the variance function
    and the lower triangle of the joint covariance's Cholesky factor with
    the scale effects first (a ``JointCovariance`` block; ``independent``
    holds the mean-scale covariances at 0).
    """
    names = list(model.data.param_names)
    p, q_w, q_u = model.k_fe, model.k_var_re, model.k_re
    d = q_w + q_u
    joint = JointCovariance(names[p:p + d * (d + 1) // 2], q_w, q_u,
                            independent=independent)
    return Layout(names[:p], [model.variance_function, joint], q=d,
                  roles=THETA_ROLES)


def level2_layout(model, S=None, independent=False, terms=None) -> Layout:
    """
    The optimiser's parameter layout of a location-scale model with level-2
    variance functions: theta is the fixed effects, the variance function
    and the coefficients of the level-2 functions (a ``Level2Functions``
    block) on the group-level design ``S`` (default the model's; a column
    of ones for one covariance matrix, as the profile refits of a model
    without level-2 functions use).
    """
    S = model._re_var_group_design if S is None else np.asarray(S, float)
    columns = list(model.re_var_names) or ["Intercept"]
    functions = model._level2_functions(model.data.exog_re_names)
    block = Level2Functions(functions, columns, model.k_var_re, model.k_re, S,
                            independent=independent, terms=terms)
    return Layout(list(model.data.param_names[:model.k_fe]),
                  [model.variance_function, block], q=0, roles=THETA_ROLES)


def _cov_part(layout, theta):
    """The layout's random-effects covariance block and its part of theta."""
    block = layout.role_block("re_cov")
    return block, np.asarray(theta, float)[layout.slice_of(block)]


def theta_layout(model, re_cov="joint"):
    """The optimiser's parameter layout of a location-scale model: the
    joint covariance's Cholesky factor (``joint_layout``), or level-2
    variance functions (``level2_layout``)."""
    q_w = model.k_var_re
    independent = re_cov == "independent"
    if model.exog_re_var is None:
        return joint_layout(model, independent)
    terms = model._re_var_terms
    layout = level2_layout(model, independent=independent, terms=terms)
    block = layout.role_block("re_cov")
    if terms is not None and independent:
        held = [j for j, (k, l) in enumerate(block.pairs)
                if (k < q_w) != (l < q_w) and terms[block.d + j, 1:].any()]
        if held:
            comps = model._level2_components(model.data.exog_re_names)
            raise ValueError(
                "re_cov='independent' holds the correlations between mean and "
                "scale effects at 0 in every group, but re_var_formula gives "
                + ", ".join(model._level2_key(comps[block.d + j]) for j in held)
                + " a formula: remove it, or fit with re_cov='joint'.")
    return layout


def _level2_order(model, layout):
    """Positions in the level-2 layout's theta of the results' params:
    fixed effects, level-2 coefficients (those of the functions'
    formulas), variance function."""
    p, k = model.k_fe, model.k_var
    terms = model._re_var_terms
    block = layout.role_block("re_cov")
    level2 = layout.slice_of(block).start + (
        np.arange(block.k) if terms is None else np.flatnonzero(terms.ravel()))
    return np.r_[np.arange(p), level2, np.arange(p, p + k)]


def theta_from_params(model, layout, params, what="params"):
    """
    The optimiser's vector of a location-scale model from a vector in the
    layout of its ``params`` (checked: length, names, finite values, a
    positive semi-definite joint covariance, held correlations at zero).
    """
    from ._validate import param_vector

    vec, _ = param_vector(params, model.data.param_names, model.k_fe, what,
                          without_fe=False)
    if isinstance(layout.role_block("re_cov"), Level2Functions):
        theta = np.zeros(layout.size)
        order = _level2_order(model, layout)
        theta[order] = vec
        # Coefficients the fit holds (independent blocks) must be zero.
        held = np.flatnonzero(~layout.estimated[order] & (vec != 0))
        if held.size:
            names = [model.data.param_names[j] for j in held]
            raise ValueError(f"{what}: {names} are held at 0 by "
                             "re_cov='independent'; give 0 for them.")
        return theta
    p, joint = model.k_fe, layout.role_block("re_cov")
    try:  # (checks a positive semi-definite matrix, held covariances at 0)
        free_cov = joint.from_natural(vec[p:p + joint.k])
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return layout.pack(vec[:p], vec[p + joint.k:], free_cov)


def _start_theta(model, layout, base):
    """Starting values from ``base``, the fit without random scale effects:
    its fixed effects, variance function and random-effects covariance,
    scale-effect SDs 0.3 and no correlations with them (for level-2
    functions: their intercepts, no level-2 effects)."""
    q_w = model.k_var_re
    block = layout.role_block("re_cov")
    if not isinstance(block, Level2Functions):
        joint = block
        L0 = np.zeros((joint.dim, joint.dim))
        L0[:q_w, :q_w] = 0.3 * np.eye(q_w)
        L0[q_w:, q_w:] = psd_factor(np.asarray(base.cov_re))
        return layout.pack(np.asarray(base.fe_params), np.asarray(base.var_params),
                           joint.free_from_factor(L0))
    cov_u = np.asarray(base.cov_re)
    var_u = np.maximum(np.diag(cov_u), 1e-4 * base.scale)
    C0 = np.zeros((block.d, block.k_s))
    C0[:q_w, 0] = np.log(0.09)
    C0[q_w:, 0] = np.log(var_u)
    E0 = np.zeros((len(block.pairs), block.k_s))
    for j, (k, l) in enumerate(block.pairs):
        if k >= q_w and l >= q_w:
            rho = cov_u[k - q_w, l - q_w] / np.sqrt(var_u[k - q_w] * var_u[l - q_w])
            E0[j, 0] = np.arctanh(np.clip(rho, -0.9, 0.9))
    return layout.pack(np.asarray(base.fe_params), np.asarray(base.var_params),
                       block.pack(C0, E0))


def loglike(model, params, n_quad=None):
    """
    Log-likelihood of a location-scale model at a vector in the layout of
    its ``params`` (fixed effects included), by adaptive quadrature with
    ``n_quad`` nodes per dimension (default as in ``fit``); ``-inf`` where
    some group's joint covariance is not positive definite.
    """
    layout = theta_layout(model)
    theta = theta_from_params(model, layout, params)
    data = _location_scale_data(model, n_quad or DEFAULT_NODES[model.k_var_re])
    try:
        quad = _locscale.adapt(data, layout, theta)
    except np.linalg.LinAlgError:
        return -np.inf
    return _locscale._value_or_minus_inf(data, layout, theta, quad)


def _location_scale_data(model, n_quad):
    """The model's data laid out for quadrature with ``n_quad`` nodes per
    dimension (for the fit, and for refits such as profile points)."""
    return _locscale.LocationScaleData.build(
        model.endog, model.exog, model.exog_re, model.exog_var,
        model.exog_var_re, model._group_index, model.n_groups, n_quad)


def _warn_unconverged(fit, do_cg, stacklevel=4, hint=None):
    if do_cg and not fit.converged:
        from statsmodels.tools.sm_exceptions import ConvergenceWarning

        warnings.warn(
            "Location-scale optimization did not converge (largest gradient "
            f"component {fit.max_grad:.3g}); "
            + (hint or "try more quadrature nodes or a simpler model."),
            ConvergenceWarning, stacklevel=stacklevel)


def _warn_singular(rank, d, per_group, do_cg, profile_ok, stacklevel=4):
    """Warn when the joint covariance (of some group, ``per_group``: with
    level-2 functions) is (nearly) singular, ``rank`` < ``d`` (see
    ``_linalg.covariance_rank``): a correlation of +-1, a variance of 0,
    or more generally a random effect that is a linear combination of the
    others -- the boundary of the parameter space, where standard errors
    are not reliable.  ``profile_ok``: profile_ci can represent the
    estimate (``_profile.representable``), so the warning recommends it;
    else it says that profile_ci will refuse."""
    if not do_cg:
        return
    if rank < d:
        from statsmodels.tools.sm_exceptions import ConvergenceWarning

        warnings.warn(
            "The estimate is on the boundary of the parameter space: the "
            "joint random-effects covariance matrix is singular "
            + ("for some groups " if per_group else "")
            + f"(rank {rank} of {d}: some random effects are linear "
            "combinations of the others, e.g. a correlation of +-1 or a zero "
            "variance). The standard errors of the random-effects parameters "
            "are not reliable there. Accept the singular estimate, or simplify "
            "the random-effects structure (fewer random effects, or "
            "re_cov='independent')"
            + ("; profile_ci() gives intervals that remain valid up to the "
               "boundary." if profile_ok else
               ". profile_ci() is not available for this estimate: its "
               "log-variance / atanh-correlation refits cannot represent a "
               "singular matrix without a correlation of +-1 or a zero "
               "variance."), ConvergenceWarning, stacklevel=stacklevel)


def _effect_reference(model, mean_first=True):
    """Reference variances of the joint random effects for
    ``_linalg.covariance_rank`` (a variance at most ``ZERO_VAR_RTOL`` of
    it is zero):
    the squared units of ``effect_units``, mean effects first
    (results order) or scale effects first (layout order)."""
    units = effect_units(model.endog, model.exog_re, model.exog_var_re)
    if mean_first:
        q_w = model.k_var_re
        units = np.r_[units[q_w:], units[:q_w]]
    return units ** 2


def _warn_boundary(quantities, remedy, do_cg, stacklevel=4):
    """Warn that the estimate is on the boundary of the parameter space,
    naming the quantities there (strings; none, no warning) and a
    remedy."""
    if not do_cg or not quantities:
        return
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    warnings.warn(
        "The estimate is on the boundary of the parameter space: "
        + "; ".join(quantities) + ". The log-likelihood is flat there, so "
        "the data do not determine these quantities: their standard errors, "
        "and those of the coefficients that carry them, are NaN; the other "
        "standard errors hold them at the boundary. Accept the boundary "
        f"value, or {remedy}.", ConvergenceWarning, stacklevel=stacklevel)


def _fit_level2(model, data, layout, theta, n_quad, re_cov, do_cg, options):
    """Location-scale fit with level-2 variance functions (re_var_formula)."""
    q_u = model.k_re
    fit = _locscale.fit(data, layout, theta, optimise=do_cg, **options)
    # With three or more random effects the correlation functions do not
    # keep every group's covariance positive definite by themselves: a
    # maximum on that constraint stops the optimiser short.
    block, coefficients = _cov_part(layout, fit.theta)
    rank, d = _linalg.covariance_rank(block.sigma(coefficients)[0],
                                      _effect_reference(model, mean_first=False))
    hint = None
    if d >= 3 and rank < d:
        hint = ("the maximum lies where some group's covariance matrix of the "
                f"{d} random effects becomes singular, a constraint the "
                "level-2 correlation functions do not remove. Use fewer "
                "correlated random effects: re_cov='independent' (mean and "
                "scale effects in separate blocks), or fewer random effects.")
    # one call deeper than fit_location_scale's own warnings
    _warn_unconverged(fit, do_cg, stacklevel=5, hint=hint)
    p, k = model.k_fe, model.k_var
    order = _level2_order(model, layout)
    n_l2 = len(order) - p - k
    params = fit.theta[order]
    cov = fit.cov_theta[np.ix_(order, order)]
    scale = np.exp(model.variance_function.log_scale(fit.var_params))
    res = Level2Results(model, params, cov / scale)
    res.flat_directions = fit.flat_directions[:, order]
    eb = _posterior(data, fit, layout)
    state = SimpleNamespace(llf=fit.llf, blup=eb.mean[:, :q_u],
                            cond_cov=eb.cov[:, :q_u, :q_u])
    names = list(model.data.param_names)
    res._finish(state, converged=fit.converged, max_grad=fit.max_grad,
                decrement=fit.decrement, n_iter=fit.n_iter, hist=None,
                method=["adaptive Gauss-Hermite quadrature"],
                free=layout.estimated[order][p:], reml=False,
                layout=Layout(names[:p], [Level2Coefficients(names[p:p + n_l2]),
                                          model.variance_function], q=0))
    res._finish_level2(fit, eb, n_quad, re_cov, layout, order)
    boundary = res._boundary_quantities()
    _warn_boundary(boundary, "hold the quantity constant across groups (a dict "
                   "re_var_formula without it), or use "
                   + ("" if re_cov == "independent" else "re_cov='independent' or ")
                   + "a simpler random-effects structure", do_cg, stacklevel=5)
    if not boundary:  # nearly singular, yet determined: say so
        _warn_singular(rank, d, True, do_cg, res._profile_representable(),
                       stacklevel=5)
    return LocationScaleResultsWrapper(res)


def _posterior(data, fit, layout):
    """Posterior means and covariances of (u_i, omega_i) given the data,
    by the fit's integration rule (``rule.posterior_moments``)."""
    q_w = data.q_w
    L_ww = _locscale._split_factor(fit.factor, q_w)[0]
    m, K = fit.posterior.shape
    tk = fit.quad.node_values(data)                       # (m, K, q_w)
    mean_u, cov_u = _locscale.node_conditionals(data, fit.quad, fit.beta,
                                                fit.var_params, fit.factor)
    L_ww = np.broadcast_to(L_ww, (m,) + L_ww.shape[-2:])
    mean_w = np.einsum("ikb,iab->ika", tk, L_ww)
    mu = np.concatenate([mean_u, mean_w], axis=2)         # (m, K, d)
    d = mu.shape[2]
    within = np.zeros((m, K, d, d))
    q_u = mean_u.shape[2]
    within[:, :, :q_u, :q_u] = cov_u
    mean, cov = data.rule.posterior_moments(mu, within, fit.posterior)
    return SimpleNamespace(mean=mean, cov=cov)


class LocationScaleResults(HetMixedLMResults):
    """
    Results of a location-scale HetMixedLM (random scale effects).

    ``params`` holds the fixed effects, the lower triangle of the joint
    covariance matrix of the random effects (the mean's first, then the
    scale effects, named ``var:...``), and the variance-function
    coefficients ``a``.  ``cov_re`` is the mean's block (as in MixedLM);
    ``cov_re_joint`` the whole matrix.

    ``var_params`` (``a``) give the residual variance of a median group,
    ``exp(w'a)`` (omega = 0); ``population_residual_variance`` gives the
    population average ``exp(w'a + v' Sigma_omega v / 2)``.

    Attributes
    ----------
    flat_directions : ndarray
        (n_flat, k_params): directions in ``params`` along which the
        log-likelihood is flat (curvature at most 1 along each), empty for
        an interior maximum.  They arise on the boundary of the parameter
        space, e.g. a correlation at +-1 in some groups.  The covariance
        (``cov_params``, ``bse``, ``t_test``, ``nlcom``, ``re_table``)
        holds them fixed, and the variance of any parameter or function
        that changes along one of them is NaN: the data do not determine
        it.
    n_flat : int
        Their number.
    """

    flat_directions = np.zeros((0, 0))

    @property
    def n_flat(self):
        """Number of flat directions of the log-likelihood at the estimate."""
        return len(self.flat_directions)

    def cov_params(self, r_matrix=None, column=None, scale=None, cov_p=None,
                   other=None):
        """
        Covariance of the parameters or of linear combinations of them, as
        ``LikelihoodModelResults.cov_params``.

        On the boundary of the parameter space (``flat_directions``) the
        rows and columns of parameters, or of combinations (rows of
        ``r_matrix`` / ``other``), that change along a flat direction are
        NaN.
        """
        cov = super().cov_params(r_matrix=r_matrix, column=column, scale=scale,
                                 cov_p=cov_p, other=other)
        if not self.n_flat or cov_p is not None:
            return cov
        eye = np.eye(len(self.params))
        if column is not None:
            rows = others = eye[np.atleast_1d(column)]
        elif r_matrix is not None:
            rows = np.atleast_2d(np.asarray(r_matrix, float))
            others = rows if other is None else np.atleast_2d(np.asarray(other, float))
        else:
            rows = others = eye
        cov = np.array(cov, dtype=float, ndmin=2)
        full = super().cov_params()
        bad_rows = self._undetermined(rows, full)
        cov[bad_rows, :] = np.nan
        cov[:, bad_rows if others is rows else self._undetermined(others, full)] = np.nan
        return cov[0, 0] if column is not None and np.ndim(column) == 0 else cov

    def _undetermined(self, rows, cov=None):
        """
        Which linear combinations (rows) of the parameters change along a
        flat direction.  A flat direction's curvature is at most 1, so a
        combination r picks up a variance of at least (r'v)^2 from it,
        however flat it really is; undetermined when that is more than
        _FLAT_SHARE of the variance from the determined directions
        (``cov``: the covariance of the parameters with the flat
        directions held fixed; default the fit's).
        """
        flat = ((rows @ self.flat_directions.T) ** 2).sum(axis=1)
        if cov is None:
            cov = super().cov_params()
        determined = np.einsum("ij,jk,ik->i", rows, cov, rows)
        return flat > _FLAT_SHARE * determined

    def _undetermined_params(self):
        """Names of the parameters whose standard errors are undetermined."""
        if not self.n_flat:
            return []
        names = list(self.model.data.param_names)
        bad = self._undetermined(np.eye(len(names)))
        return [n for n, b in zip(names, bad) if b]

    def _finish_location_scale(self, fit, eb, n_quad, re_cov):
        model = self.model
        q_u = model.k_re
        names = list(model.data.exog_re_names) + list(model.var_re_names)
        joint = self.cov_re
        self.cov_re_joint = pd.DataFrame(joint, index=names, columns=names)
        self.cov_re = joint[:q_u, :q_u]
        self.cov_re_unscaled = self.cov_re / self.scale
        self.n_quad = n_quad
        self.re_cov = re_cov
        # kept with the results: remove_data() drops the model's data
        self._re_reference = _effect_reference(model)
        self._eb = eb
        self._ls_fit = fit

    def _joint_covariances(self):
        """Every distinct joint covariance matrix of (u_i, omega_i), (n, d, d)."""
        return np.asarray(self.cov_re_joint)[None]

    def covariance_rank(self):
        """
        Numerical rank of the joint random-effects covariance matrix (the
        smallest over groups with level-2 variance functions) and its size;
        a rank below the size is a singular estimate, on the boundary of
        the parameter space.

        Returns
        -------
        (int, int)
        """
        return _linalg.covariance_rank(self._joint_covariances(),
                                       self._re_reference)

    def _profile_representable(self):
        """Whether ``profile_ci``'s refits can start at the estimate (see
        ``_profile.representable``)."""
        from . import _profile

        model = self.model
        S, theta = self._profile_model()[:2]
        return _profile.representable(level2_layout(model, S), theta)

    @cache_readonly
    def corr_re_joint(self):
        """Correlations of the joint random effects (DataFrame)."""
        cov = self.cov_re_joint
        sd = np.sqrt(np.diag(cov))
        with np.errstate(invalid="ignore", divide="ignore"):
            return cov / np.outer(sd, sd)

    def re_table(self, alpha=0.05):
        """
        Standard deviations and correlations of the joint random effects,
        with delta-method standard errors and confidence intervals (log
        scale for SDs, Fisher's z for correlations).

        Returns
        -------
        pandas.DataFrame
        """
        lay = self.layout

        def covariances(x):
            return lay.cov_re(x[lay.k_fe:])[None]

        return _sd_corr_table(self, covariances, list(self.cov_re_joint.index),
                              None, alpha)

    def profile_ci(self, names=None, alpha=0.05, variances=False,
                   disp: bool = False, callback=None):
        """
        Profile-likelihood confidence intervals for the standard deviations
        (or variances) and correlations of the random effects.

        A limit is a value at which the log-likelihood, maximised over all
        other parameters with the SD or correlation held there, lies
        ``chi2_1(1 - alpha) / 2`` below its maximum: the interval contains
        the values that a likelihood-ratio test at level ``alpha`` does not
        reject (as R's ``confint(fit, method = "profile")`` for lme4).
        Unlike the delta-method intervals of ``re_table()`` it does not
        rest on a quadratic approximation of the log-likelihood on some
        scale.  That matters most for an SD near zero or a correlation near
        +-1, and with level-2 variance functions, whose profile intervals do
        not depend on which level is the reference.

        Parameters
        ----------
        names : str or list of str, optional
            Rows of ``re_table()`` to profile, such as ``"SD(g)"`` or
            ``"corr(g, var:g)"`` (with level-2 variance functions
            ``"sector=1 | SD(g)"``); ``"Var(g)"`` asks for the variance.
            Default: every SD and correlation.
        alpha : float
            1 - confidence level.
        variances : bool
            Add a ``Var(...)`` row after each SD row.  The limits are the
            squared SD limits (profile intervals follow monotone
            transformations).
        disp : bool
            Print a line per refit on stdout (the row, the held value and
            the refit's log-likelihood): an interval takes 5 to 10 refits,
            each about as long as a fit from a close start.
        callback : callable, optional
            Called after each refit as ``callback(progress)`` with a
            ``ProfileProgress`` named tuple: ``row`` (the ``re_table()``
            label profiled), ``number`` and ``total`` (its position among
            the rows profiled, 1-based), ``refits`` (for this row so far),
            ``value`` (the held log variance or atanh correlation) and
            ``llf`` (the refit's log-likelihood).

        Returns
        -------
        pandas.DataFrame
            Indexed like ``re_table()``: ``Estimate``, the lower and upper
            limits, and ``Method``: "profile", "profile (lower limit at
            boundary)" when the log-likelihood stays within the critical
            value all the way to a variance of 0 or a correlation of -1
            (the limit is then 0 or -1), "profile (upper limit at
            boundary)" at a correlation of +1, or "held" for correlations
            held at 0 (``re_cov="independent"``), whose limits are NaN.

        Raises
        ------
        ValueError
            For a bad name or ``alpha``, and when the joint covariance
            matrix is singular in a way the refits' parameterisation (log
            variances, atanh correlations) cannot hold: with three or more
            random effects, a rank-deficient matrix without a correlation
            of +-1 (e.g. HSB model 2).  This is decided from the rank of the
            correlation matrix (``_profile.representable``), before any
            refit.

        Warns
        -----
        ConvergenceWarning
            If the log-likelihood recomputed at the estimate differs from
            ``llf`` (by more than 1e-6), if a refit finds a larger
            log-likelihood than the fit (which then had not reached the
            maximum), if refits at some profile points stop unconverged
            (their log-likelihoods are used, which can make the interval too
            narrow), or if refits fail (those limits are NaN).

        Notes
        -----
        Each point of the profile is a refit of the whole model with one
        log variance (or atanh correlation) held fixed, warm-started from
        the nearest point already computed, with the same number of
        quadrature nodes as the fit (``n_quad``), so the profile is
        comparable with ``llf``.  The search starts from the delta-method
        interval on the log-variance / atanh scale, steps outwards until
        the likelihood-ratio statistic exceeds the critical value and then
        solves for the limit (scipy's ``brentq``, until the signed root of
        the statistic is within 1e-4 of the normal quantile, or to 1e-5 on
        the log-variance / atanh scale).  One interval typically takes 5 to
        10 refits.

        The limits for a variance search down to 2e-9 times the estimate
        and those for a correlation out to +-0.9999983; a profile that
        stays within the critical value up to there gives a limit of 0 or
        +-1, the boundary of the parameter space.  At such a boundary the
        coverage of likelihood-ratio intervals is no longer exact (the
        statistic's distribution is a mixture).

        Fixed effects and variance-function coefficients (``a``) are not
        profiled: their Wald intervals, ``conf_int()``, are reliable (the
        package's coverage simulation with 50 groups finds 93% to 96% for
        nominal 95%).  The docs section "Confidence intervals for variances
        and correlations" compares the three kinds of interval.

        See Also
        --------
        re_table : delta-method intervals for the same quantities.
        """
        from scipy.stats import norm

        from . import _profile

        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, not {alpha!r}")
        model = self.model
        z = norm.ppf(1 - alpha / 2)
        S, theta, rows, row_labels, terms = self._profile_model()
        re_names = list(self.cov_re_joint.index)
        quantities = _re_quantities(re_names)
        labels = _row_labels(row_labels, [q[0] for q in quantities])
        var_labels = _row_labels(row_labels, [f"Var({n})" for n in re_names]
                                 + [None] * (len(quantities) - len(re_names)))
        wanted = _profile.rows_wanted(names, labels, var_labels, variances)
        q_w, q_u = model.k_var_re, model.k_re
        d, n_q = q_w + q_u, len(quantities)
        perm = np.r_[np.arange(q_w, d), np.arange(q_w)]  # results -> layout order
        data = _location_scale_data(model, self.n_quad)
        estimates = self.re_table(alpha)["Estimate"].to_numpy()
        limits = {}
        problems = {"unconverged": [], "errors": [], "higher": []}
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        profiled = sorted(wanted)
        refits = {}

        def report(k, t, llf):
            refits[k] = refits.get(k, 0) + 1
            info = ProfileProgress(labels[k], profiled.index(k) + 1,
                                   len(profiled), refits[k], float(t), float(llf))
            if disp:
                print(f"Profile {info.number}/{info.total} {info.row}: refit "
                      f"{info.refits}, held value {info.value:.6g}, "
                      f"log-likelihood {info.llf:.6f}", flush=True)
            if callback is not None:
                callback(info)

        def make_layout(design):
            return level2_layout(model, design,
                                 independent=(self.re_cov == "independent"),
                                 terms=terms)

        # Decided from the rank before any refit (a failed factorisation
        # would depend on the BLAS kernel for a matrix singular to rounding).
        if not _profile.representable(make_layout(S), theta):
            rank, d = self.covariance_rank()
            raise ValueError(
                "profile_ci refits the model in terms of log variances and "
                "atanh correlations, which cannot represent this estimate: its "
                f"joint covariance matrix is singular (rank {rank} of {d}). "
                "Intervals for it are not available; refit a simpler random-effects structure (e.g. "
                "re_cov='independent'), whose estimate is inside the parameter "
                "space, or read re_table() with the caution the boundary "
                "warning gives.")

        for r, row in enumerate(rows):
            positions = [k for k in sorted(wanted) if k // n_q == r]
            if not positions:
                continue
            # This row's log variances and atanh correlations as entries of theta.
            S_row, theta_row = _profile.change_basis(S, theta, make_layout(S), row)
            layout = make_layout(S_row)
            block = layout.role_block("re_cov")
            start = layout.slice_of(block).start
            indices = []
            for k in positions:
                _, i, j = quantities[k % n_q]
                indices.append(start + block.coefficient(perm[i], perm[j]))
            llf_hat, found = _profile.profile_limits(
                data, layout, theta_row, indices, z,
                progress=lambda i, t, llf, pos=positions: report(pos[i], t, llf))
            if abs(llf_hat - self.llf) > _profile.LLF_TOL:
                _profile.warn(
                    f"The log-likelihood recomputed for the profile "
                    f"({llf_hat:.8f}) differs from llf ({self.llf:.8f}); the "
                    "profile intervals are relative to the recomputed value.")
            for k, out in zip(positions, found):
                limits[k] = out
                if out is None:
                    continue
                if out["unconverged"]:
                    problems["unconverged"].append(labels[k])
                if out["errors"]:
                    problems["errors"].append(f"{labels[k]} ({out['errors'][0]})")
                if out["max_llf"] > llf_hat + _profile.LLF_TOL:
                    problems["higher"].append(
                        f"{labels[k]} (+{out['max_llf'] - llf_hat:.3g})")
        if problems["higher"]:
            _profile.warn(
                "Refits with a random-effects parameter held found a larger "
                "log-likelihood than the fit, which therefore had not reached "
                "the maximum: " + ", ".join(problems["higher"]) + ". The "
                "profile intervals are not reliable; refit (more quadrature "
                "nodes, a simpler model).")
        if problems["unconverged"]:
            _profile.warn(
                "Some refits at profile points stopped unconverged, for "
                + ", ".join(problems["unconverged"]) + "; their log-likelihoods "
                "were used, which can make those intervals too narrow.")
        if problems["errors"]:
            _profile.warn("Profile refits failed for " + ", ".join(problems["errors"])
                          + "; those limits are NaN.")
        return _profile.table(limits, wanted, labels, var_labels, estimates,
                              [q[1] == q[2] for q in quantities], alpha)

    def _profile_model(self):
        """
        The model with level-2 functions for profiling: the group-level design
        S (a column of ones: one covariance matrix), theta at the estimate,
        the design rows whose SDs and correlations are profiled, and their
        labels (None: one row, no labels).
        """
        from . import _profile

        model, fit = self.model, self._ls_fit
        S = np.ones((model.n_groups, 1))
        theta = _profile.cholesky_to_level2(level2_layout(model, S), fit.beta,
                                            fit.var_params, fit.factor)
        return S, theta, np.ones((1, 1)), None, None

    @cache_readonly
    def random_effects(self):
        """
        Empirical-Bayes predictions (posterior means) of each group's mean
        and scale random effects: dict of Series by group label.
        """
        names = list(self.model.data.exog_re_names) + list(self.model.var_re_names)
        return {lab: pd.Series(self._eb.mean[i], index=names)
                for i, lab in enumerate(self.model.group_labels)}

    @cache_readonly
    def random_effects_cov(self):
        """Posterior covariance matrices of (u_i, omega_i), by group."""
        names = list(self.model.data.exog_re_names) + list(self.model.var_re_names)
        return {lab: pd.DataFrame(self._eb.cov[i], index=names, columns=names)
                for i, lab in enumerate(self.model.group_labels)}

    @cache_readonly
    def resid_var(self):
        """Predicted residual variance of each observation,
        ``exp(w'a + v' omega_hat_i)`` with the groups' predicted scale effects."""
        self._needs_data("resid_var")
        model = self.model
        q_u = model.k_re
        omega = self._eb.mean[:, q_u:]
        eta = model.exog_var @ self._var_params + np.einsum(
            "ja,ja->j", model.exog_var_re, omega[model._group_index])
        return np.exp(eta)

    def group_icc(self):
        """
        Each group's intraclass correlation ``tau2 / (tau2 + sigma2_i)``,
        with tau2 the random-intercept variance of the mean (first random
        effect) and sigma2_i the geometric mean of the group's predicted
        residual variances.

        Returns
        -------
        pandas.Series
        """
        model = self.model
        logv = np.bincount(model._group_index, weights=np.log(self.resid_var),
                           minlength=model.n_groups) / model._group_sizes
        tau2 = self._intercept_variance()
        return pd.Series(tau2 / (tau2 + np.exp(logv)), index=model.group_labels,
                         name="ICC")

    def _intercept_variance(self):
        """Variance of the mean's first random effect (every group's)."""
        return float(np.asarray(self.cov_re)[0, 0])

    def population_residual_variance(self, exog_var=None, exog_var_re=None,
                                     alpha=0.05):
        """
        Population-averaged residual variance
        ``E[sigma2] = exp(w'a + v' Sigma_omega v / 2)`` with delta-method
        standard errors, for the given design rows (default: the distinct
        rows of the data's designs).

        Returns
        -------
        pandas.DataFrame
        """
        model = self.model
        if exog_var is None:
            both = np.hstack([model.exog_var, model.exog_var_re])
            rows, first = np.unique(both, axis=0, return_index=True)
            rows = rows[np.argsort(first)]
            if len(rows) > 200:
                raise ValueError("Too many distinct design rows; pass exog_var "
                                 "and exog_var_re for chosen values.")
            w, v = rows[:, :model.k_var], rows[:, model.k_var:]
        else:
            w = np.atleast_2d(np.asarray(exog_var, float))
            v = np.atleast_2d(np.asarray(exog_var_re, float))
        lay = self.layout
        q_u = model.k_re
        var_names = list(model.data.exog_var_names) + list(model.var_re_names)
        labels = [", ".join(f"{n}={x:g}" for n, x in zip(var_names, row))
                  for row in np.hstack([w, v])]

        def func(x):
            cov = lay.cov_re(x[lay.k_fe:])[q_u:, q_u:]
            return np.exp(w @ x[self._vf_slice] + 0.5 * np.einsum("ja,ab,jb->j", v, cov, v))

        table = self._delta_method(func, names=labels, alpha=alpha, log_ci=True)
        return table.drop(columns=["z", "P>|z|"]).rename(columns={"Coef.": "Variance"})

    def lr_test_vs_linear(self):
        raise NotImplementedError(
            "lr_test_vs_linear is not available for location-scale fits; "
            "compare with the fit without random effects by compare_lr_test.")

    def to_additive(self, alpha=0.05):
        raise NotImplementedError(
            "to_additive is not available for location-scale fits: with random "
            "scale effects the variances are not additive in the groups.")


class Level2Results(LocationScaleResults):
    """
    Results of a location-scale model with level-2 variance functions
    (``re_var_formula``): each random effect's log variance and each
    correlation's atanh are linear in group-level predictors S.

    ``params`` holds the fixed effects, the level-2 coefficients (named
    ``logvar(<effect>):<S column>`` and ``atanh corr(<e1>, <e2>):<S
    column>``; z-tests in the summary; with a dict ``re_var_formula`` only
    the columns of each function's formula), and the variance-function
    coefficients.  ``cov_re_groups`` gives every group's covariance matrix;
    ``cov_re_joint`` is the one at the reference (S = intercept only).

    A variance or correlation on the boundary for some row of S (a
    correlation at +-1, a variance at 0) is named in a warning at fit
    time; its ``re_table`` entries have no standard error or interval, nor
    do the coefficients that carry it (see ``flat_directions``).
    """

    def _finish_level2(self, fit, eb, n_quad, re_cov, l2layout, positions):
        model = self.model
        q_w, q_u = model.k_var_re, model.k_re
        self._l2 = l2layout
        self._l2_block, self._l2_part = _cov_part(l2layout, fit.theta)
        self._positions = positions  # of params in the layout's theta
        self._l2_theta = fit.theta
        self.vcomp = np.zeros(0)
        names = list(model.data.exog_re_names) + list(model.var_re_names)
        self._re_names = names
        self._perm = np.r_[np.arange(q_w, q_w + q_u), np.arange(q_w)]
        block = self._l2_block
        sigma, _, _ = block.sigma(self._l2_part)
        self._sigma_groups = sigma[:, self._perm][:, :, self._perm]
        reference = np.zeros((1, block.k_s))
        reference[0, 0] = 1.0
        ref = block.sigma(self._l2_part, reference)[0][0][np.ix_(self._perm, self._perm)]
        self.cov_re_joint = pd.DataFrame(ref, index=names, columns=names)
        self.cov_re = ref[:q_u, :q_u]
        self.cov_re_unscaled = self.cov_re / self.scale
        self.n_quad, self.re_cov = n_quad, re_cov
        self._re_reference = _effect_reference(model)  # as in _finish_location_scale
        self._eb, self._ls_fit = eb, fit
        self._z_rows = slice(0, len(self.params) - model.k_var)

    def _is_variance(self, name):
        return False  # level-2 coefficients and log-linear terms are interior

    @cache_readonly
    def cov_re_groups(self):
        """Each group's joint random-effects covariance matrix (dict of
        DataFrames by group label; mean effects first)."""
        return {lab: pd.DataFrame(self._sigma_groups[i], index=self._re_names,
                                  columns=self._re_names)
                for i, lab in enumerate(self.model.group_labels)}

    def re_table(self, alpha=0.05):
        """
        SDs and correlations of the random effects for each distinct row of
        the level-2 design, with delta-method standard errors and intervals
        (log scale for SDs, Fisher's z for correlations).

        Returns
        -------
        pandas.DataFrame
            Indexed by "level-2 design row | quantity".
        """
        lay, perm = self._l2, self._perm
        rows, row_labels = self._design_rows()

        def covariances(x):
            block, part = _cov_part(lay, self._theta(x))
            return block.sigma(part, rows)[0][:, perm][:, :, perm]

        return _sd_corr_table(self, covariances, self._re_names, row_labels, alpha,
                              undetermined=self._on_boundary()[0].ravel())

    def _theta(self, params):
        """The layout's parameter vector from ``params``."""
        theta = np.zeros(self._l2.size)
        theta[self._positions] = params
        return theta

    def _design_rows(self):
        """Distinct rows of the level-2 design, in order of appearance, and
        their labels ("sector=1"; "all" without level-2 variables)."""
        model = self.model
        rows, first = np.unique(model._re_var_group_design, axis=0,
                                return_index=True)
        rows = rows[np.argsort(first)]
        labels = [", ".join(f"{n}={v:g}" for n, v in
                            zip(model.re_var_names[1:], r[1:])) or "all"
                  for r in rows]
        return rows, labels

    def _boundary_quantities(self):
        """
        The re_table entries on the boundary, described as "corr(a, b) for
        sector=0 is at +1" (see ``_on_boundary``).
        """
        bad, values = self._on_boundary()
        _, labels = self._design_rows()
        quantities = [q[0] for q in _re_quantities(self._re_names)]
        out = []
        for r, q in zip(*np.nonzero(bad)):
            where = "in all groups" if labels[r] == "all" else f"for {labels[r]}"
            if q < len(self._re_names):  # a log variance
                at = "0" if values[r, q] < 0 else "infinity"
            else:
                at = "+1" if values[r, q] > 0 else "-1"
            out.append(f"{quantities[q]} {where} is at {at}")
        return out

    def _on_boundary(self):
        """
        Which re_table entries (design rows x quantities) are on the
        boundary, and their link-scale values (log variance, atanh
        correlation).

        Judged on the link scale, S_r' c: there the flat direction shows,
        whereas the SD or correlation itself saturates (tanh of a diverging
        coefficient is 1 to machine precision, with a zero derivative).
        """
        lay, perm, block = self._l2, self._perm, self._l2_block
        rows, _ = self._design_rows()
        # The layout's level-2 function of each re_table quantity.
        comp = [block.component(perm[i], perm[j])
                for _, i, j in _re_quantities(self._re_names)]
        start, ks = lay.slice_of(block).start, block.k_s
        functionals = np.zeros((len(rows), len(comp), lay.size))
        for q, c in enumerate(comp):
            functionals[:, q, start + c * ks:start + (c + 1) * ks] = rows
        functionals = functionals[..., self._positions].reshape(
            len(rows) * len(comp), -1)
        values = (functionals @ np.asarray(self.params, float)).reshape(len(rows), -1)
        if not self.n_flat:
            return np.zeros(values.shape, bool), values
        return self._undetermined(functionals).reshape(values.shape), values

    def _profile_model(self):
        # The fit's terms (a dict re_var_formula holds some at 0) carry
        # over to the refits: the change of basis to a design row alters
        # only the intercepts' coordinates (see _profile.change_basis).
        lay, block = self._l2, self._l2_block
        terms = lay.estimated[lay.slice_of(block)].reshape(-1, block.k_s)
        rows, labels = self._design_rows()
        return self.model._re_var_group_design, self._l2_theta, rows, labels, terms

    def _joint_covariances(self):
        return self._sigma_groups

    def _intercept_variance(self):
        """Each group's variance of the mean's first random effect."""
        return self._sigma_groups[:, 0, 0]

    def population_residual_variance(self, *args, **kwargs):
        raise NotImplementedError(
            "population_residual_variance is not available with level-2 "
            "variance functions (the scale effects' variance differs by group); "
            "use nlcom with the level-2 coefficients.")


def _sd_corr_table(res, covariances, names, row_labels, alpha, undetermined=None):
    """
    SDs and correlations of random effects, for one or more covariance
    matrices ``covariances(params) -> (rows, d, d)``, with delta-method
    standard errors and intervals: log scale for SDs, Fisher's z for
    correlations.  Standard errors that vanish (held or degenerate
    parameters) or are ``undetermined`` (a mask over the entries, rows
    first; entries on the boundary) are left blank, with their intervals.
    """
    from scipy.stats import norm

    d = len(names)
    quantities = _re_quantities(names)
    pairs = [(i, j) for _, i, j in quantities[d:]]

    def func(x):
        sig = covariances(x)
        sd = np.sqrt(np.clip(np.diagonal(sig, axis1=1, axis2=2), 0, None))
        corr = np.stack([sig[:, i, j] / (sd[:, i] * sd[:, j]) for i, j in pairs],
                        axis=1) if pairs else np.zeros((len(sig), 0))
        return np.concatenate([sd, corr], axis=1).ravel()

    labels = _row_labels(row_labels, [q[0] for q in quantities])
    table = res._delta_method(func, names=labels, alpha=alpha)
    est, se = table["Coef."].to_numpy(), table["Std.Err."].to_numpy()
    n_rows = 1 if row_labels is None else len(row_labels)
    is_sd = np.tile(np.r_[np.ones(d, bool), np.zeros(len(pairs), bool)], n_rows)
    q = norm.ppf(1 - alpha / 2)
    se = np.where(se > 1e-12 * np.maximum(np.abs(est), 1.0), se, np.nan)
    if undetermined is not None:
        se = np.where(undetermined, np.nan, se)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        half_sd = q * se / est
        z = np.arctanh(np.clip(est, -1 + 1e-15, 1 - 1e-15))
        half_r = q * se / (1 - est**2)
        lo = np.where(is_sd, est * np.exp(-half_sd), np.tanh(z - half_r))
        hi = np.where(is_sd, est * np.exp(half_sd), np.tanh(z + half_r))
    out = table[["Coef."]].rename(columns={"Coef.": "Estimate"})
    out["Std.Err."] = se
    out[f"[{alpha / 2:g}"] = lo
    out[f"{1 - alpha / 2:g}]"] = hi
    return out


def _re_quantities(names):
    """
    The SDs and correlations of random effects named ``names`` as rows of
    ``re_table()``: (label, i, j), with i == j for the SD of effect i and
    i > j for the correlation of effects j and i.
    """
    d = len(names)
    return [(f"SD({n})", i, i) for i, n in enumerate(names)] + \
        [(f"corr({names[j]}, {names[i]})", i, j) for i in range(d) for j in range(i)]


def _row_labels(row_labels, quantities):
    """Table labels: the quantities, one block per level-2 design row (None
    stays None)."""
    if row_labels is None:
        return list(quantities)
    return [None if q is None else f"{r} | {q}" for r in row_labels for q in quantities]


class LocationScaleResultsWrapper(HetMixedLMResultsWrapper):
    pass


# The wrapper calls the methods of the class it is populated with: this
# one's cov_params leaves undetermined combinations NaN.
wrap.populate_wrapper(LocationScaleResultsWrapper, LocationScaleResults)
