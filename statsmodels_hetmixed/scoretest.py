"""
Score (Lagrange multiplier) tests of the residual variance function.

A score test needs only the fit of the null model.  The model is extended
by the parameters to test, set at their null values (zero), and the
extended model's log-likelihood is differentiated there:

    U = d llf / d psi           at (theta_0, psi = 0)
    I = -d2 llf / d(theta, psi)2  (observed) or its expectation (expected)

with ``theta_0`` the null estimates of the nuisance parameters (the
random-effects covariance and the null variance function; the fixed
effects are profiled out, or integrated out under REML).  The efficient
score and information for ``psi`` are

    U_eff = U_psi - I_psi,theta I_theta^-1 U_theta
    I_eff = I_psi - I_psi,theta I_theta^-1 I_theta,psi

(``U_theta`` is zero at a converged null fit; keeping it makes the
statistic that of the quadratic approximation whatever the optimiser's
last digits).  The statistic is ``LM = U_eff' I_eff^-1 U_eff``, chi2 with
``dim(psi)`` degrees of freedom when psi = 0 is inside the parameter
space.  When the tested parameters are variances (psi >= 0: identity-link
variance terms, the variance of a random scale effect), the null is on the
boundary and the statistic is the one-sided score statistic

    LM+ = Z' I_eff Z - min_{b >= 0} (Z - b)' I_eff (Z - b),  Z = I_eff^-1 U_eff

(Silvapulle and Silvapulle 1995; ``max(U_eff, 0)^2 / I_eff`` for one
parameter), whose null distribution is the chi-bar-square mixture of
:mod:`.lrtest` (1/2 chi2(0) + 1/2 chi2(1) for one variance), the same as
the likelihood-ratio test's.

Two tests are built here:

* **Variance-function terms** (``variance_terms_test``): new columns of W
  in the model's own link.  The extended model is the null model's
  :class:`~.structures.Layout` with the variance function replaced by one
  on ``[W, W_new]``; its :class:`~.objective.HeteroskedasticObjective`
  gives the analytic gradient and either the observed information (the
  one Hessian routine, central differences of the analytic gradient) or
  the engine's analytic expected information.  No refit.
* **A random scale intercept** (``scale_effect_test``): ``log sigma2_ij =
  w_ij' a + omega_i``, ``omega_i ~ N(0, s2)`` independent of the mean's
  random effects, tested at ``s2 = 0`` (ML).  In the standard deviation of
  ``omega_i`` the score is identically zero (the likelihood is even in
  it), so the test is taken in the variance ``s2``.  Writing
  ``l_i(w)`` for group i's Gaussian log-likelihood with all its residual
  variances multiplied by ``exp(w)``, the marginal likelihood is
  ``E f_i(omega)``, and expanding in ``s2``:

      d llf / d s2     = 1/2 sum_i (l_i'' + l_i'^2)
      d2 llf / d s2^2  = 1/4 sum_i (c4_i - c2_i^2),
      c2 = l'' + l'^2,  c4 = l'''' + 4 l''' l' + 3 l''^2 + 6 l'' l'^2 + l'^4,

  all at ``w = 0``.  ``l_i`` has a closed form in ``w`` from the
  eigenvalues of ``L' Z_i' R_i^-1 Z_i L`` (``_shift_derivatives``), so its
  derivatives are exact.

  By default the test divides by the expected (Fisher) information.  With
  ``z_i = V_i^-1/2 r_i`` and ``A_i = V_i^-1/2 R_i V_i^-1/2`` the group's
  score is a polynomial of degree 4 in the Gaussian ``z_i`` whose moments
  give, in closed form from the same eigenvalues
  (``_scale_expected_information``),

      I_ss = sum_i tr A_i^2 / 8 + tr A_i^4 / 4 + (tr A_i^2)^2 / 8,

  its covariance with the fixed-effect scores is zero (odd moments), and
  with the score of any covariance parameter it is half that parameter's
  Fisher information with a common shift ``w`` of the log variances (to
  first order ``E exp(omega_i) = 1 + s2 / 2``).  With an intercept in the
  variance function the efficient information is therefore
  ``sum_i tr A_i^4 / 4 + (tr A_i^2)^2 / 8``.  The observed information
  (``observed=True``: the exact ``d2 llf / d s2^2`` and central
  differences of the score for the cross derivatives) contains the
  squares of the group scores and makes the test conservative in finite
  samples (rejection rates of 1-2% at the 5% level in
  ``benchmarks/sim_score_test.py``; 4.0-5.4% with the expected one).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from . import _engine, _formula, _hessian, _linalg
from .lrtest import LRTestResult
from .objective import HeteroskedasticObjective
from .structures import Layout, make_variance_function

__all__ = ["ScoreTestResult", "score_statistic", "variance_terms_test",
           "scale_effect_test"]


class ScoreTestResult(LRTestResult):
    """
    Result of a score (Lagrange multiplier) test.

    Unpacks as ``(statistic, pvalue, df)``, like ``compare_lr_test``'s
    :class:`~statsmodels_hetmixed.lrtest.LRTestResult`, whose attributes it
    has (``statistic``, ``pvalue``, ``df``, ``distribution``, ``weights``,
    ``boundary``); also ``k_constraint`` (= ``df``, statsmodels'
    ``ScoreTestResult`` name) and:

    Attributes
    ----------
    score : pandas.Series
        The efficient score of each tested parameter.
    information : str
        ``"observed"`` or ``"expected"``: which information matrix.
    method : str
        ``"ML"`` or ``"REML"``: the criterion of the null fit.
    hypothesis : str
        What was tested, in words.
    """

    def __new__(cls, statistic, df, boundary=(), boundary_cov=None, *, score,
                names, information, method, hypothesis):
        self = super().__new__(cls, statistic, df, boundary, boundary_cov)
        self.k_constraint = self.df
        self.score = pd.Series(np.asarray(score, dtype=float), index=list(names))
        self.information = information
        self.method = method
        self.hypothesis = hypothesis
        return self

    def __repr__(self):
        return (f"ScoreTestResult(statistic={self.statistic:.4f}, "
                f"pvalue={self.pvalue:.4g}, df={self.df}, "
                f"distribution={self.distribution!r})")

    def summary(self) -> str:
        """The test as text: hypothesis, statistic, reference distribution
        and p-value."""
        lines = [
            f"Score (Lagrange multiplier) test, {self.method} null fit, "
            f"{self.information} information",
            f"H0: {self.hypothesis}",
            f"LM statistic: {self.statistic:.4f}    df: {self.df}    "
            f"p-value: {self.pvalue:.4g}",
            f"Reference distribution: {self.distribution}",
        ]
        return "\n".join(lines)


def score_statistic(gradient, information, tested, nuisance, bounded=None):
    """
    The score statistic from the extended model's gradient and information.

    Parameters
    ----------
    gradient : ndarray (k,)
    information : ndarray (k, k)
        Observed or expected information (minus the Hessian).
    tested, nuisance : sequence of int
        Indices of the tested parameters (at zero) and of the estimated
        nuisance parameters; the others (held, or variances at zero in the
        null fit) are treated as known.
    bounded : ndarray of bool, optional
        Over ``tested``: parameters that are variances (one-sided
        alternative psi >= 0).

    Returns
    -------
    statistic : float
    score : ndarray
        Efficient score U_eff.
    cov : ndarray
        I_eff^-1, the asymptotic covariance of the one-step estimate of the
        tested parameters (for the chi-bar-square weights).

    Raises
    ------
    numpy.linalg.LinAlgError
        When the efficient information is not positive definite.
    """
    g = np.asarray(gradient, dtype=float)
    info = np.asarray(information, dtype=float)
    info = 0.5 * (info + info.T)
    t, n = np.asarray(tested, int), np.asarray(nuisance, int)
    i_tt, i_tn, i_nn = info[np.ix_(t, t)], info[np.ix_(t, n)], info[np.ix_(n, n)]
    if n.size:
        solved = np.linalg.solve(i_nn, np.column_stack([i_tn.T, g[n]]))
        u_eff = g[t] - i_tn @ solved[:, -1]
        i_eff = i_tt - i_tn @ solved[:, :-1]
    else:
        u_eff, i_eff = g[t], i_tt
    i_eff = 0.5 * (i_eff + i_eff.T)
    bounded = np.zeros(t.size, bool) if bounded is None else np.asarray(bounded, bool)
    if t.size == 1 and bounded[0] and u_eff[0] <= 0:
        # One variance whose efficient score points out of the parameter
        # space: the statistic is zero whatever the information (which
        # the observed one need not make positive there).
        cov = np.linalg.inv(i_eff) if i_eff[0, 0] > 0 else np.full((1, 1), np.nan)
        return 0.0, u_eff, cov
    chol = np.linalg.cholesky(i_eff)  # LinAlgError when not positive definite
    z = np.linalg.solve(i_eff, u_eff)
    full = float(u_eff @ z)
    if not bounded.any():
        return full, u_eff, np.linalg.inv(i_eff)
    # One-sided: the distance, in the I_eff metric, from Z to the cone
    # {b: b_j >= 0 where bounded}, subtracted from Z' I_eff Z.
    lower = np.where(bounded, 0.0, -np.inf)
    fit = lsq_linear(chol.T, chol.T @ z, bounds=(lower, np.inf), method="bvls")
    d = z - fit.x
    return max(full - float(d @ i_eff @ d), 0.0), u_eff, np.linalg.inv(i_eff)


# ----------------------------------------------------------------------
# Variance-function terms
def _nuisance_mask(res, natural):
    """Natural parameters of the null fit that were estimated inside the
    parameter space (held ones and variances at zero count as known)."""
    lay = res.layout
    free = np.ones(lay.k_structure, bool) if res.freepat is None \
        else np.asarray(res.freepat, bool)
    scale = float(np.exp(lay.log_scale(natural)))
    return free & ~lay.at_boundary(natural, scale)


def _added_design(res, var_formula, exog_var, eval_env):
    """The added variance design and its column names."""

    model = res.model
    if (var_formula is None) == (exog_var is None):
        raise ValueError("give the variance terms to test as var_formula (e.g. "
                         "'~ female + ses') or as an array exog_var, not both "
                         "or neither.")
    if var_formula is not None:
        frame = getattr(model.data, "frame", None)
        if frame is None or len(frame) != model.nobs:
            raise ValueError(
                "var_formula needs the model's data frame (a model built with "
                "from_formula, whose data were not removed); for a model built "
                "from arrays pass the new columns as exog_var.")
        try:
            design = _formula.design(
                var_formula, frame, eval_env,
                getattr(model, "_formula_engine", None) or _formula.formula_engine())
        except (*_formula.FORMULA_ERRORS, ValueError) as exc:
            raise ValueError(
                f"var_formula {var_formula!r} cannot be evaluated on the model's "
                f"data: {exc}".split("\n")[0]) from exc
        return np.asarray(design, float), [str(c) for c in design.columns]
    names = list(getattr(exog_var, "columns", []))
    w = np.asarray(exog_var, dtype=float)
    if w.ndim == 1:
        w = w[:, None]
    if w.shape[0] != model.nobs:
        raise ValueError(f"exog_var has {w.shape[0]} rows; the model has "
                         f"{model.nobs} observations.")
    if not np.isfinite(w).all():
        raise ValueError("exog_var has missing or infinite values.")
    if len(names) != w.shape[1]:
        names = [f"w_new{j + 1}" for j in range(w.shape[1])]
    return w, [str(n) for n in names]


def _extended_variance_function(model, w_add, add_names):
    """The variance function on ``[W, W_new]``: the new columns less an
    intercept the null design already spans; errors for terms already in
    the model."""
    vf = model.variance_function
    w_null, null_names = vf.exog_var, list(vf.column_names)
    keep = [j for j in range(w_add.shape[1])
            if not (vf.const_direction is not None
                    and np.all(w_add[:, j] == w_add[0, j]) and w_add[0, j] != 0)]
    w_add = w_add[:, keep]
    add_names = [add_names[j] for j in keep]
    repeated = [n for n in add_names if n in null_names]
    if repeated:
        raise ValueError(
            f"{repeated} are already in the variance function "
            f"{['var:' + n for n in null_names]}: give only the terms to add.")
    if not add_names:
        raise ValueError("the variance formula adds no term to the model's "
                         f"variance function {['var:' + n for n in null_names]}.")
    w_ext = np.hstack([w_null, w_add])
    names = null_names + add_names
    _linalg.check_full_rank(
        w_ext, "The extended variance design (the model's and the tested "
        "columns)", names, "The tested terms must not be combinations of "
        "terms already in the variance function: give only new terms.")
    return make_variance_function(model.var_link, w_ext, names), len(add_names)


def variance_terms_test(res, var_formula=None, exog_var=None, observed=True,
                        eval_env=None) -> ScoreTestResult:
    """
    Score test of adding variance-function terms to a fit (see
    ``HetMixedLMResults.score_test_variance``).
    """
    model = res.model
    lay = res.layout
    vf = model.variance_function
    new_vf, k_add = _extended_variance_function(
        model, *_added_design(res, var_formula, exog_var, eval_env or {}))
    blocks = [new_vf if b is vf else b for b in lay.blocks]
    ext = Layout(lay.fe_names, blocks, q=lay.q)
    natural0 = res._natural
    parts = [np.concatenate([v, np.zeros(k_add)]) if b is vf else v
             for b, v in zip(lay.blocks, lay.parts(natural0))]
    natural = np.concatenate(parts)
    # Where the null's parameters and the new ones sit in the extended vector.
    vf_slice = ext.block_slices[ext.blocks.index(new_vf)]
    tested = np.arange(vf_slice.stop - k_add, vf_slice.stop)
    old_positions = np.delete(np.arange(ext.k_structure), tested)
    nuisance = old_positions[_nuisance_mask(res, natural0)]

    objective = HeteroskedasticObjective(model._grouped, ext, res.reml)
    used = np.zeros(ext.k_structure, bool)
    used[np.concatenate([nuisance, tested])] = True
    if observed:
        obs = objective.observed_information(natural, mask=used, central=True)
        gradient, information = obs.gradient, -obs.hessian
    else:
        ev, gradient = objective.evaluate_natural(natural, info=True)
        information = ev.info
    link = model.var_link
    bounded = np.full(k_add, link == "identity")
    names = [ext.structure_names[j] for j in tested]
    kind = "observed" if observed else "expected"
    try:
        stat, score, cov = score_statistic(gradient, information, tested, nuisance,
                                           bounded)
    except np.linalg.LinAlgError as exc:
        other = "observed=False (expected information)" if observed else \
            "observed=True"
        raise np.linalg.LinAlgError(
            f"The {kind} information of the extended model is not positive "
            f"definite for {names} given the other parameters: the data do not "
            f"determine these terms at the null fit. Try {other}, or fewer "
            "terms.") from exc
    boundary = names if bounded.any() else ()
    sign = ">=" if bounded.any() else "!="
    return ScoreTestResult(
        stat, k_add, boundary, cov if len(boundary) > 1 else None, score=score,
        names=names, information=kind, method=res.method,
        hypothesis=f"{', '.join(names)} = 0 (against {sign} 0), {link} link")


# ----------------------------------------------------------------------
# A random scale intercept
_STIRLING2 = {1: (1,), 2: (1, 1), 3: (1, 3, 1), 4: (1, 7, 6, 1)}


def _shift_spectrum(grouped, layout, natural, fe_params=None):
    """
    Per group, what a common shift of its log residual variances acts on.

    With ``L' Z_i' R_i^-1 Z_i L = Q diag(lam) Q'`` and ``v = Q' L' Z_i' R_i^-1
    r_i`` (r_i the marginal residuals at the fixed effects ``fe_params``,
    their GLS estimates when None): ``lam`` (m, q; zeros where the group
    does not determine a direction), ``t2 = v^2 / lam`` (0 where lam = 0),
    ``D = r_i' R_i^-1 r_i - sum_k t2_k`` and ``extra = n_i - q``.

    The eigenvalues of ``A_i = V_i^-1/2 R_i V_i^-1/2`` are ``1 / (1 + lam_k)``
    and 1 with multiplicity ``n_i - q`` (``V_i = R_i^1/2 (I + R_i^-1/2 Z_i G
    Z_i' R_i^-1/2) R_i^1/2``), so ``tr A_i^j = sum_k (1 + lam_k)^-j + extra``
    (also when n_i < q: the q - n_i zero eigenvalues of lam contribute the 1s
    that ``extra`` takes away).
    """
    factor = layout.factor(natural)
    r = layout.resid_var(natural)
    ev = _engine.evaluate(grouped, layout.factor(natural, grouped.re_basis), r,
                          reml=False, fe_params=fe_params)
    resid, winv = ev.resid_marginal, 1.0 / r
    Z = grouped.exog_z
    q = Z.shape[1]
    A = _engine.group_cross(grouped, Z, Z, winv)
    e = _engine.group_cross(grouped, Z, resid[:, None], winv)[:, :, 0]
    gi, m = grouped.group_index, grouped.n_groups
    sizes = np.bincount(gi, minlength=m)
    rr = np.bincount(gi, weights=resid * resid * winv, minlength=m)
    S = factor.T @ A @ factor
    lam, vec = np.linalg.eigh(0.5 * (S + S.transpose(0, 2, 1)))
    top = np.maximum(lam.max(axis=1, keepdims=True), 0.0)
    positive = lam > 1e-12 * np.maximum(top, 1e-300)
    lam = np.where(positive, lam, 0.0)
    v = np.einsum("iab,ia->ib", vec, e @ factor)  # Q' L' e
    t2 = np.where(positive, v * v / np.where(positive, lam, 1.0), 0.0)
    return lam, t2, rr - t2.sum(axis=1), sizes - q


def _shift_derivatives(grouped, layout, natural, fe_params=None):
    """
    Derivatives ``l_i^(k)(0)``, k = 1..4, of each group's ML
    log-likelihood ``l_i(w)`` in a common shift ``w`` of its log residual
    variances (R_i -> exp(w) R_i), at fixed fixed effects (their GLS
    estimates when ``fe_params`` is None): an (m, 4) array.

    With the quantities of ``_shift_spectrum`` and ``c = exp(w)``:

        -2 l_i = sum_k log(lam_k + c) + (n_i - q) log c
                 + sum_k t_k^2 / (lam_k + c) + D / c + const;

    the derivatives in ``w`` follow from those in ``c`` by
    ``d^n/dw^n = sum_j S(n, j) c^j d^j/dc^j`` (Stirling numbers of the
    second kind), at c = 1.
    """
    lam, t2, D, extra = _shift_spectrum(grouped, layout, natural, fe_params)
    m = lam.shape[0]
    inv = 1.0 / (lam + 1.0)  # 1 / (lam + c) at c = 1
    out = np.empty((m, 4))
    for n in range(1, 5):
        total = np.zeros(m)
        for j, s in enumerate(_STIRLING2[n], start=1):
            fact = float(np.prod(np.arange(1, j + 1)))
            # d^j/dc^j of log(lam + c) and of 1 / (lam + c), at c = 1
            d_log = (-1) ** (j - 1) * (fact / j) * ((inv ** j).sum(axis=1) + extra)
            d_quad = (-1) ** j * fact * ((t2 * inv ** (j + 1)).sum(axis=1) + D)
            total += s * (d_log + d_quad)
        out[:, n - 1] = -0.5 * total
    return out


def _scale_expected_information(grouped, layout, natural):
    """
    Per group, the expected information of the scale variance ``s2`` at
    ``s2 = 0`` and its cross information with a common shift ``w`` of the
    log residual variances: two (m,) arrays ``(I_ss, I_sw)``.

    Under the null ``z_i = V_i^-1/2 r_i ~ N(0, I)``; with ``A_i`` as in
    ``_shift_spectrum``, ``Q1 = z'Az - tr A`` and ``Q2 = z'A^2 z - tr A^2``,
    group i's score is ``U_i = Q1/4 - Q2/2 + (Q1^2 - E Q1^2)/8``.  The joint
    cumulants of Gaussian quadratic forms (``cum(z'M_1 z, ..., z'M_k z) =
    2^(k-1) (k-1)! tr(M_1 ... M_k)`` for symmetric matrices, all
    orderings being equal here) give

        Var U_i = tr A^2 / 8 + tr A^4 / 4 + (tr A^2)^2 / 8,

    and for any covariance parameter with score ``(z'B z - tr B) / 2``
    (``B = V^-1/2 dV V^-1/2``), ``Cov(U_i, .) = tr(A B) / 4``: half the
    Fisher information between ``w`` (whose ``dV = R``) and that
    parameter.  In particular ``I_sw = tr A^2 / 4``.
    """
    lam, _, _, extra = _shift_spectrum(grouped, layout, natural)
    inv = 1.0 / (lam + 1.0)
    tr2 = (inv ** 2).sum(axis=1) + extra
    tr4 = (inv ** 4).sum(axis=1) + extra
    return tr2 / 8 + tr4 / 4 + tr2 * tr2 / 8, tr2 / 4


def _scale_score(grouped, layout, natural, fe_params=None):
    """(d llf / d s2, d2 llf / d s2^2) at s2 = 0 (module docstring)."""
    l1, l2, l3, l4 = _shift_derivatives(grouped, layout, natural, fe_params).T
    c2 = l2 + l1 * l1
    c4 = l4 + 4 * l3 * l1 + 3 * l2 * l2 + 6 * l2 * l1 * l1 + l1 ** 4
    return 0.5 * c2.sum(), 0.25 * (c4 - c2 * c2).sum()


def _scale_expected_system(grouped, layout, natural):
    """
    The ML gradient of the natural parameters and the expected information
    of ``(natural, s2)`` at ``s2 = 0`` (the fixed effects, orthogonal to both
    in expectation, profiled out): ``(gradient, information)``, sizes k and
    (k + 1, k + 1).

    The cross information of ``s2`` with a covariance parameter is half its
    Fisher information with a common shift of the log residual variances
    (``_scale_expected_information``); that column comes from the engine's
    expected information with the shift as one more variance direction.
    """
    cov_dirs, var_dirs = layout.info_directions(natural)
    shift = np.ones((var_dirs.shape[0], 1))
    # the engine works with the centred random effects (G_c = M G M'): their
    # factor and the derivatives of G_c
    ev = _engine.evaluate(grouped, layout.factor(natural, grouped.re_basis),
                          layout.resid_var(natural), reml=False, gradient=True,
                          info_directions=(_engine.centred_directions(grouped, cov_dirs),
                                           np.hstack([var_dirs, shift])))
    gradient = layout.natural_gradient(natural, ev.grad_cov, ev.grad_eta)
    i_ss, _ = _scale_expected_information(grouped, layout, natural)
    k = layout.k_structure
    info = np.empty((k + 1, k + 1))
    info[:k, :k] = ev.info[:k, :k]
    info[k, :k] = info[:k, k] = 0.5 * ev.info[:k, k]
    info[k, k] = i_ss.sum()
    return gradient, info


def _scale_observed_system(objective, natural, nuisance, fe_params):
    """The profile gradient and observed information of ``(natural, s2)`` at
    ``s2 = 0`` over ``nuisance`` and ``s2`` (other rows and columns zero)."""
    grouped, lay = objective.grouped, objective.layout
    k = lay.k_structure
    obs = objective.observed_information(
        natural, mask=np.isin(np.arange(k), nuisance), central=True)
    u_s, h_ss = _scale_score(grouped, lay, natural)
    # Profiling over the fixed effects: d2/ds2^2 less the beta part,
    # h_sb (X'V^-1 X)^-1 h_sb'; the cross derivatives with the other
    # parameters are those of the profile score (envelope theorem).
    fe = np.asarray(fe_params, dtype=float)
    xtvix = obs.evaluation.xtvix
    basis_b = _hessian.whitening_basis(xtvix, np.sqrt(np.diag(np.linalg.inv(xtvix))))
    d_b = _hessian.directional_derivatives(
        lambda b: np.atleast_1d(_scale_score(grouped, lay, natural, b)[0]),
        fe, None, basis_b, central=True)
    h_sb = np.linalg.solve(basis_b.T, d_b.T).T[0]  # J = D B^-1
    h_ss = h_ss + float(h_sb @ np.linalg.solve(xtvix, h_sb.T))
    h_sn = np.zeros(k)
    if nuisance.size:
        size = objective._typical_size(natural, natural)[nuisance]
        basis_n = _hessian.whitening_basis(
            -obs.hessian[np.ix_(nuisance, nuisance)], size)

        def profile_score(x):
            y = natural.copy()
            y[nuisance] = x
            return np.atleast_1d(_scale_score(grouped, lay, y)[0])

        d_n = _hessian.directional_derivatives(
            profile_score, natural[nuisance], None, basis_n, central=True)
        h_sn[nuisance] = np.linalg.solve(basis_n.T, d_n.T).T[0]
    info = np.zeros((k + 1, k + 1))
    info[:k, :k] = -obs.hessian
    info[k, :k] = info[:k, k] = -h_sn
    info[k, k] = -h_ss
    return np.asarray(obs.gradient, dtype=float), info


def scale_effect_test(res, observed=False) -> ScoreTestResult:
    """
    Score test of adding a random scale intercept, independent of the
    mean's random effects (see ``HetMixedLMResults.score_test_variance``);
    expected information by default, the observed one with ``observed``.
    """
    model = res.model
    if res.layout.correlation_block is not None:
        raise NotImplementedError(
            "The score test of a random scale effect is not available with a "
            "residual correlation structure (location-scale models have none).")
    if res.reml:
        raise ValueError(
            "The score test of a random scale effect needs an ML null fit: "
            "location-scale models are fitted by ML (the REML criterion is not "
            "defined once residual variances are random). Refit with "
            "fit(reml=False).")
    if model.var_link != "log":
        raise ValueError(
            "Random scale effects enter a log-linear variance function; this "
            "fit has var_link='identity'. Refit with the log link (e.g. "
            "var_formula='~ 0 + C(g)' with the default var_link='log') to test "
            "a random scale effect.")
    if model.k_vc or model.variance_blocks:
        raise NotImplementedError(
            "Location-scale models with variance components or variance_blocks "
            "are not available, so neither is the score test of their random "
            "scale effect.")
    lay, grouped = res.layout, model._grouped
    natural = res._natural
    nuisance = np.flatnonzero(_nuisance_mask(res, natural))
    if observed:
        objective = HeteroskedasticObjective(grouped, lay, reml=False)
        gradient, info = _scale_observed_system(objective, natural, nuisance,
                                                res.fe_params)
    else:
        gradient, info = _scale_expected_system(grouped, lay, natural)
    u_s = _scale_score(grouped, lay, natural)[0]
    k = lay.k_structure
    gradient = np.concatenate([gradient, [u_s]])
    group = model.data.exog_re_names[0] if model.k_re else "Group"
    name = f"var:{group} Var"
    kind = "observed" if observed else "expected"
    try:
        stat, score, _ = score_statistic(gradient, info, [k], nuisance, [True])
    except np.linalg.LinAlgError as exc:
        raise np.linalg.LinAlgError(
            f"The {kind} information of the random scale variance is not "
            "positive at the null fit given the other parameters, so the score "
            "test is not defined; fit the location-scale model and use "
            "compare_lr_test.") from exc
    return ScoreTestResult(
        stat, 1, [name], score=score, names=[name], information=kind,
        method=res.method,
        hypothesis=f"{name} = 0 (against > 0): no random scale intercept, "
                   "independent of the mean's random effects")
