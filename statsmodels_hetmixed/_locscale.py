"""
Location-scale mixed models: the marginal likelihood by adaptive
Gauss-Hermite quadrature over the random scale effects (private).

    y_ij = x_ij' beta + z_ij' u_i + e_ij,  e_ij ~ N(0, sigma2_ij)
    log sigma2_ij = w_ij' a + v_ij' omega_i,   (omega_i, u_i) ~ N(0, Sigma)

With the joint Cholesky factor ``L`` of Sigma ordered scale effects first,
``omega = L_ww t`` and ``u | t ~ N(L_uw t, L_uu L_uu')`` for a standard
normal ``t`` (dimension ``q_w``, 1 or 2).  Given ``t`` a group is an
ordinary Gaussian LMM with residual variances ``exp(w'a + v'L_ww t)`` and
mean offset ``z'L_uw t``, whose log-likelihood ``f_i(t)`` the engine
computes; only ``t`` is integrated numerically:

    L_i = int exp(f_i(t)) phi(t) dt.

Adaptive quadrature centres the nodes at each group's mode ``t_i`` of
``h_i(t) = f_i(t) + log phi(t)`` and scales them by the Cholesky factor
``B_i`` of ``(-h_i''(t_i))^-1``:

    L_i ~= |B_i| sum_k w_k exp(h_i(t_i + B_i x_k)) / phi(x_k).

When the scale effects' design ``V`` is constant within each group (a
random scale intercept, or group-level covariates), a node only multiplies
a group's residual variances by ``c = exp(v_i' L_ww t)`` and shifts its
mean by ``z_j' L_uw t``, so every per-group sum the Gaussian likelihood
needs at a node follows from sums taken once over the rows
(``_GroupSums``: ``Z'R0^-1 Z``, ``Z'R0^-1 r0``, ``r0'R0^-1 r0``,
``sum log r0`` of the residuals ``r0 = y - X beta`` and variances
``R0 = exp(W a)``):

    Z'R^-1 Z = A0 / c,   Z'R^-1 (r0 - Z o) = (e0 - A0 o) / c,
    (r0 - Z o)'R^-1 (r0 - Z o) = (Q0 - 2 o'e0 + o'A0 o) / c,

with ``o = L_uw t``.  An evaluation is then one pass over the rows for
the sums and one for the gradient, whatever the number of nodes, and the
groups' modes cost no pass at all (``_node_terms``).  Otherwise an
evaluation is one engine pass over the rows per node, each reduced to
per-group sums at once (``_node_terms_by_rows``; the rows are never
copied per node).  The rule --
its points ``x_k`` and weights, how the log-likelihood, its gradient and
the posterior follow from the values at the points, whether its points
move with the parameters, its coarse rule and Hessian steps -- is an
object of ``_rules`` (adaptive Gauss-Hermite, or Laplace); this module
never tests which rule it has.  With the nodes held fixed, the gradient
of a quadrature rule in (beta, a, L) is exact; ``fit`` re-adapts the
nodes between optimisation runs until the log-likelihood is stable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _engine, _linalg, optim
from ._rules import IntegrationRule, rule_for
from . import _hessian as _differences  # (_hessian is this module's mode Hessian)
from .structures.recov import column_rms as _column_rms
from .structures.recov import positive as _positive

_LOG_2PI = np.log(2.0 * np.pi)


@dataclass
class LocationScaleData:
    """Data of a location-scale model: the rows (one copy) and the rule."""

    endog: np.ndarray
    exog: np.ndarray
    exog_re: np.ndarray       # Z (n, q_u)
    exog_var: np.ndarray      # W (n, k_var)
    exog_var_re: np.ndarray   # V (n, q_w)
    group_index: np.ndarray
    n_groups: int
    nodes: np.ndarray         # (K, q_w) the rule's points, standard scale
    log_weights: np.ndarray   # (K,)  their log weights (NaN if unused)
    single: _engine.GroupedData     # the engine's data of the rows
    # V's row of each group when V is constant within groups (m, q_w):
    # nodes are then evaluated from per-group sums (``_GroupSums``); None
    # if V varies within some group (one engine pass per node).
    v_group: np.ndarray | None
    group_sizes: np.ndarray   # (m,) rows per group
    rule: IntegrationRule     # the integration rule (``_rules``)
    _coarse: object = None    # the data with the coarse rule (``coarse_rule``)

    @classmethod
    def build(cls, endog, exog, exog_re, exog_var, exog_var_re, group_index,
              n_groups, rule, single=None):
        """``rule``: an ``IntegrationRule``, or ``fit``'s ``n_quad``
        (nodes per dimension, 1 for Laplace); ``single``: the engine's
        data of the same rows, if already built."""
        rule = rule_for(rule)
        endog = np.asarray(endog, float)
        exog = np.asarray(exog, float)
        exog_re = np.asarray(exog_re, float).reshape(len(endog), -1)
        exog_var = np.asarray(exog_var, float)
        exog_var_re = np.asarray(exog_var_re, float).reshape(len(endog), -1)
        group_index = np.asarray(group_index)
        q_w = exog_var_re.shape[1]
        if q_w not in (1, 2):
            raise ValueError("random scale effects must have one or two "
                             f"dimensions, not {q_w}")
        nodes, log_w = rule.points(q_w)
        if single is None:
            single = _engine.GroupedData.build(endog, exog, exog_re, group_index,
                                               n_groups)
        return cls(endog, exog, exog_re, exog_var, exog_var_re, group_index,
                   int(n_groups), nodes, log_w, single,
                   _group_rows(exog_var_re, group_index, n_groups),
                   np.bincount(group_index, minlength=n_groups), rule)

    def coarse_rule(self):
        """
        The same data with the rule's coarse rule (``rule.coarse``; self
        if that is this rule), built once.  ``fit`` runs its quasi-Newton
        stage on it, and the Newton steps at the full rule finish from there.
        """
        coarse = self.rule.coarse(self.q_w)
        if coarse is self.rule:
            return self
        if self._coarse is None:
            self._coarse = LocationScaleData.build(
                self.endog, self.exog, self.exog_re, self.exog_var,
                self.exog_var_re, self.group_index, self.n_groups, coarse,
                single=self.single)
        return self._coarse

    @property
    def q_w(self):
        return self.exog_var_re.shape[1]

    @property
    def q_u(self):
        return self.exog_re.shape[1]


def _group_rows(rows, group_index, n_groups):
    """Each group's row of ``rows`` (m, k) if ``rows`` is constant within
    every group (exactly), else None."""
    if len(rows) == 0:
        return None
    first = np.zeros((n_groups, rows.shape[1]))
    first[group_index] = rows  # the last row of each group (any one would do)
    return first if np.array_equal(first[group_index], rows) else None


def _split_factor(L, q_w):
    return L[..., :q_w, :q_w], L[..., q_w:, :q_w], L[..., q_w:, q_w:]


def _times_factor(x, L, last):
    """``x @ L.T`` over the last axis of ``x`` (m, ..., b), with ``L``
    common (a, b) or one per group (m, a, b); ``last``: the einsum letters
    of x's axes between the group's and the last."""
    if L.ndim == 2:
        return x @ L.T
    return np.einsum(f"g{last}b,gab->g{last}a", x, L)


def conditional(data, t_rows, beta, a, L, gradient=False):
    """
    The engine's Gaussian log-likelihood of each group given the
    standardized scale effects ``t_rows`` (one row of t per row).  ``L`` is
    the joint factor, common (d, d) or one per group (m, d, d).
    """
    L_ww, L_uw, L_uu = _split_factor(L, data.q_w)
    gi = data.group_index
    if L.ndim == 2:
        log_c = np.einsum("ja,ja->j", data.exog_var_re, t_rows @ L_ww.T)
        offset = np.einsum("ja,ja->j", data.exog_re, t_rows @ L_uw.T)
    else:
        log_c = np.einsum("ja,jab,jb->j", data.exog_var_re, L_ww[gi], t_rows)
        offset = np.einsum("ja,jab,jb->j", data.exog_re, L_uw[gi], t_rows)
    r = np.exp(np.clip(data.exog_var @ a + log_c, -700.0, 700.0))
    return _engine.evaluate(data.single, L_uu, r, False, fe_params=beta,
                            gradient=gradient, endog=data.endog - offset,
                            per_group=True, fe_summaries=False)


@dataclass
class _GroupSums:
    """
    Sums over each group's rows at (beta, a) from which ``_node_terms``
    evaluates the group at any node when V is constant within groups (see
    the module docstring): with ``r0 = y - X beta`` and ``R0 = exp(W a)``,
    ``A0 = Z'R0^-1 Z``, ``e0 = Z'R0^-1 r0``, ``Q0 = r0'R0^-1 r0`` and
    ``log_r = sum log R0``; the row arrays are kept for the gradient.
    """

    winv: np.ndarray    # (n,) 1 / R0
    resid: np.ndarray   # (n,) r0
    A0: np.ndarray      # (m, q_u, q_u)
    e0: np.ndarray      # (m, q_u)
    Q0: np.ndarray      # (m,)
    log_r: np.ndarray   # (m,)
    sizes: np.ndarray   # (m,) rows per group

    @classmethod
    def build(cls, data, beta, a):
        single, gi, m = data.single, data.group_index, data.n_groups
        eta = np.clip(data.exog_var @ a, -700.0, 700.0)
        winv = np.exp(-eta)
        resid = data.endog - data.exog @ beta
        Z = data.exog_re
        n, q = Z.shape
        if single.pad_index is not None:  # the engine's padded layout
            A0 = _engine.group_cross(single, Z, Z, winv)
            e0 = _engine.group_cross(single, Z, resid[:, None], winv)[:, :, 0]
            Q0 = np.bincount(gi, resid * resid * winv, m)
            log_r = np.bincount(gi, eta, m)
        else:  # all sums in one pass (``segment_sums``), column-major
            cols = np.empty((n, q * q + q + 2), order="F")
            zw = Z * winv[:, None]
            cols[:, :q * q] = (zw[:, :, None] * Z[:, None, :]).reshape(n, q * q)
            np.multiply(zw, resid[:, None], out=cols[:, q * q:q * q + q])
            np.multiply(resid * winv, resid, out=cols[:, -2])
            cols[:, -1] = eta
            sums = _engine.segment_sums(single, cols)
            A0 = sums[:, :q * q].reshape(m, q, q)
            e0, Q0, log_r = sums[:, q * q:q * q + q], sums[:, -2], sums[:, -1]
        A0 = 0.5 * (A0 + A0.transpose(0, 2, 1))
        return cls(winv, resid, A0, e0, Q0, log_r, data.group_sizes)


@dataclass
class _NodeTerms:
    """
    Each group's conditional Gaussian log-likelihood ``f`` at each node
    (m, K) and, with ``gradient``, the per-group pieces of its gradients
    (``_node_terms``, ``_node_terms_by_rows``).
    """

    f: np.ndarray
    mean: np.ndarray = None       # (m, K, q_u) E[u | t, y]
    cond_cov: np.ndarray = None   # (m, K, q_u, q_u) Var(u | t, y)
    zr: np.ndarray = None         # (m, K, q_u) Z'V^-1 (y - X beta - Z L_uw t)
    vg: np.ndarray = None         # (m, K, q_w) sum_j v_j d f / d log r_j
    grad_cov: np.ndarray = None   # (m, K, q_u, q_u) d f / d (L_uu L_uu')
    # _node_terms only: 1 / c (m, K)
    c_inv: np.ndarray = None
    # _node_terms_by_rows only: X'V^-1 resid (m, K, p), W' d f / d log r (m, K, k)
    xr: np.ndarray = None
    wg: np.ndarray = None

    def t_gradient(self, L, q_w):
        """d f / d t (m, K, q_w) = vg' L_ww + zr' L_uw."""
        L_ww, L_uw, _ = _split_factor(L, q_w)
        if L.ndim == 2:
            return self.vg @ L_ww + self.zr @ L_uw
        return (np.einsum("gka,gab->gkb", self.vg, L_ww)
                + np.einsum("gka,gab->gkb", self.zr, L_uw))


def _mv(A, x):
    """``A @ x`` for stacks of tiny matrices (..., a, b) and vectors (..., b),
    by broadcasting (batched matrix products cost more per matrix than
    the arithmetic when q is 1 or 2)."""
    return (A * x[..., None, :]).sum(axis=-1)


def _mm(A, B):
    """``A @ B`` for stacks of tiny matrices, by broadcasting."""
    return (A[..., :, :, None] * B[..., None, :, :]).sum(axis=-2)


def _dot(x, y):
    return (x * y).sum(axis=-1)


def _small_gain(factor, A):
    """
    ``(log |M|, K)`` with ``M = I + L'A L`` and ``K = L M^-1 L'`` (the
    engine's ``_gain``) for a stack of (group, node) matrices ``A`` (m, K,
    q, q) and ``L`` common (q, q) or per group (m, q, q): in closed form
    for q = 1, else by the engine.
    """
    m, K, q, _ = A.shape
    if q == 1:
        l2 = factor[..., 0, 0] ** 2
        if factor.ndim == 3:
            l2 = l2[:, None]
        M = 1.0 + l2 * A[..., 0, 0]
        return np.log(M), (l2 / M)[..., None, None]
    if factor.ndim == 3:
        factor = np.repeat(factor, K, axis=0)
    chol_M, Kmat = _engine._gain(factor, A.reshape(m * K, q, q))
    logdet = 2.0 * np.log(np.diagonal(chol_M, axis1=1, axis2=2)).sum(axis=1)
    return logdet.reshape(m, K), Kmat.reshape(m, K, q, q)


def _node_terms(data, sums, L, tk, gradient=False):
    """
    Every group's conditional log-likelihood at the nodes ``tk`` (m, K,
    q_w) from the group sums (V constant within groups): the engine's
    per-group algebra (``_small_gain``) with ``A = A0 / c``, ``e = (e0 -
    A0 o) / c`` and the quadratic form ``(Q0 - 2 o'e0 + o'A0 o) / c``,
    ``log c = v_i' L_ww t`` and ``o = L_uw t``.
    """
    L_ww, L_uw, L_uu = _split_factor(L, data.q_w)
    if L.ndim == 2:
        vl = data.v_group @ L_ww                              # (m, q_w)
    else:
        vl = np.einsum("ga,gab->gb", data.v_group, L_ww)
    log_c = np.clip(_dot(tk, vl[:, None, :]), -700.0, 700.0)
    c_inv = np.exp(-log_c)
    ci = c_inv[:, :, None]
    o = _times_factor(tk, L_uw, "k")                           # (m, K, q)
    A0, e0 = sums.A0[:, None], sums.e0[:, None]
    A0o = _mv(A0, o)
    A = A0 * ci[..., None]
    e = (e0 - A0o) * ci
    quad = (sums.Q0[:, None] - 2.0 * _dot(o, e0) + _dot(o, A0o)) * c_inv
    logdet_M, Kmat = _small_gain(L_uu, A)
    blup = _mv(Kmat, e)
    n_g = sums.sizes[:, None]
    f = -0.5 * (n_g * _LOG_2PI + sums.log_r[:, None] + n_g * log_c
                + logdet_M + quad - _dot(e, blup))
    if not gradient:
        return _NodeTerms(f)
    mean = o + blup
    zr = e - _mv(A, blup)                                      # = (e0 - A0 mean) / c
    grad_cov = 0.5 * (zr[..., :, None] * zr[..., None, :] - (A - _mm(_mm(A, Kmat), A)))
    # sum over the group's rows of d f / d log r_j (each row's r_j is c R0_j)
    resid_quad = (sums.Q0[:, None] - 2.0 * _dot(mean, e0) + _dot(mean, _mv(A0, mean))
                  + (Kmat * A0).sum(axis=(-2, -1))) * c_inv   # A0 symmetric
    vg = (0.5 * (resid_quad - n_g))[:, :, None] * data.v_group[:, None, :]
    return _NodeTerms(f, mean, Kmat, zr, vg, grad_cov, c_inv=c_inv)


def _node_terms_by_rows(data, beta, a, L, tk, gradient=False, fixed=True):
    """
    ``_node_terms`` when V varies within groups: one engine evaluation
    over the rows per node (no copy of the design: per node only the rows'
    scale factors, offsets and the engine's row vectors), reduced to
    per-group sums at once.  ``fixed=False``: without the fixed effects'
    and variance function's sums (``xr``, ``wg``), for the t-gradient only.
    """
    m, K, d = tk.shape
    gi = data.group_index
    f = np.empty((m, K))
    if gradient:
        X, Z, W, V = data.exog, data.exog_re, data.exog_var, data.exog_var_re
        q = Z.shape[1]
        p, k = (X.shape[1], W.shape[1]) if fixed else (0, 0)
        xz, wv = (np.hstack([X, Z]), np.hstack([W, V])) if fixed else (Z, V)
        r_sums = np.empty((m, K, p + q))
        g_sums = np.empty((m, K, k + d))
        mean = np.empty((m, K, q))
        cond_cov = np.empty((m, K, q, q))
        grad_cov = np.empty((m, K, q, q))
        L_uw = _split_factor(L, d)[1]
    for j in range(K):
        ev = conditional(data, tk[:, j][gi], beta, a, L, gradient=gradient)
        f[:, j] = ev.llf_groups
        if gradient:
            r_sums[:, j] = _engine.group_cross(data.single, xz,
                                               ev.vinv_resid[:, None], None)[:, :, 0]
            g_sums[:, j] = _engine.group_cross(data.single, wv,
                                               ev.grad_eta[:, None], None)[:, :, 0]
            mean[:, j] = ev.blup + _times_factor(tk[:, j], L_uw, "")
            cond_cov[:, j] = ev.cond_cov
            grad_cov[:, j] = ev.grad_cov_groups
    if not gradient:
        return _NodeTerms(f)
    return _NodeTerms(f, mean, cond_cov, r_sums[..., p:], g_sums[..., k:], grad_cov,
                      xr=r_sums[..., :p], wg=g_sums[..., :k])


def _gradient(data, sums, terms, weights, tk, L):
    """
    The gradient in (beta, a, L) of the weighted sum over groups and
    nodes of ``f`` (``weights`` (m, K): the rule's ``gradient_weights``)
    from the nodes' per-group pieces (``_NodeTerms``).  Without per-group
    sums of the fixed effects' and variance function's pieces (``_node_terms``,
    ``sums`` given), those are one pass over the rows with the nodes'
    factors summed per group first: row j of group i at node k has
    ``V^-1 resid = (r0_j - z_j' mean_k) / (c_k R0_j)`` and ``d f / d log
    r_j = ((r0_j - z_j' mean_k)^2 + z_j' K_k z_j) / (2 c_k R0_j) - 1/2``.
    """
    L_uu = _split_factor(L, data.q_w)[2]
    w = weights[:, :, None]
    gamma = (w[..., None] * terms.grad_cov).sum(axis=1)             # (m, q, q)
    wvg, wzr = w * terms.vg, w * terms.zr
    if L.ndim == 2:  # one factor: sums over groups
        d = tk.shape[2]
        flat_t = tk.reshape(-1, d)
        grad = {"L_ww": wvg.reshape(-1, d).T @ flat_t,
                "L_uw": wzr.reshape(-1, wzr.shape[2]).T @ flat_t,
                "L_uu": 2.0 * gamma.sum(axis=0) @ L_uu}
    else:  # one factor per group: per-group gradients
        grad = {"L_ww": (wvg[..., :, None] * tk[..., None, :]).sum(axis=1),
                "L_uw": (wzr[..., :, None] * tk[..., None, :]).sum(axis=1),
                "L_uu": 2.0 * gamma @ L_uu}
    if sums is None:
        grad["beta"] = (w * terms.xr).sum(axis=(0, 1))
        grad["a"] = (w * terms.wg).sum(axis=(0, 1))
        return grad
    single, gi, Z = data.single, data.group_index, data.exog_re
    wc = (weights * terms.c_inv)[:, :, None]
    a_g = wc[:, :, 0].sum(axis=1)                                   # (m,)
    wm = wc * terms.mean
    b_g = wm.sum(axis=1)                                            # (m, q)
    C_g = (wc[..., None] * terms.cond_cov
           + wm[..., :, None] * terms.mean[..., None, :]).sum(axis=1)
    zb = _engine.rows_times_group(single, Z, b_g)
    zcz = np.einsum("ja,ja->j", _engine.rows_times_group(single, Z, C_g), Z)
    resid, winv = sums.resid, sums.winv
    vinv_resid = winv * (resid * a_g[gi] - zb)
    grad_eta = 0.5 * (winv * (resid * (resid * a_g[gi] - 2.0 * zb) + zcz)
                      - weights.sum(axis=1)[gi])
    grad["beta"] = data.exog.T @ vinv_resid
    grad["a"] = data.exog_var.T @ grad_eta
    return grad


def _evaluate_nodes(data, beta, a, L, tk, gradient=False):
    """(``_GroupSums`` or None, ``_NodeTerms``) at the nodes ``tk``."""
    if data.v_group is None:
        return None, _node_terms_by_rows(data, beta, a, L, tk, gradient)
    sums = _GroupSums.build(data, beta, a)
    return sums, _node_terms(data, sums, L, tk, gradient)


def _h_and_grad(data, t, beta, a, L, sums=None):
    """h_i(t_i) = f_i(t_i) + log phi(t_i) and its gradient in t_i
    (``sums``: the ``_GroupSums`` at (beta, a), when V is constant within
    groups)."""
    if sums is not None:
        terms = _node_terms(data, sums, L, t[:, None, :], gradient=True)
    else:
        terms = _node_terms_by_rows(data, beta, a, L, t[:, None, :], gradient=True,
                                    fixed=False)
    grad = terms.t_gradient(L, data.q_w)[:, 0] - t
    h = terms.f[:, 0] - 0.5 * np.sum(t * t, axis=1) - 0.5 * data.q_w * _LOG_2PI
    return h, grad


def find_modes(data, beta, a, L, start=None, start_scale=None, tol=1e-10,
               max_iter=50, central=True):
    """
    Each group's mode of h_i and the Cholesky factor B_i of the inverse
    negative Hessian there (Newton steps with step halving, vectorised over
    groups; the Hessian by differences of the analytic gradient).

    Warm started (``start``, ``start_scale``: the modes and B of nearby
    parameters), the steps first use the previous curvature B B' (one
    gradient evaluation a step, linear convergence at the rate of the
    curvature's change) and switch to fresh Hessians if that stalls.

    Returns (modes (m, q_w), B (m, q_w, q_w), h at the modes).
    """
    m, d = data.n_groups, data.q_w
    sums = None if data.v_group is None else _GroupSums.build(data, beta, a)
    t = np.zeros((m, d)) if start is None else start.copy()
    h, g = _h_and_grad(data, t, beta, a, L, sums)
    eye = np.eye(d)
    chord = None if start_scale is None else start_scale @ np.swapaxes(start_scale, 1, 2)
    previous = np.inf
    for _ in range(max_iter):
        g_max = np.max(np.abs(g))
        if g_max < tol:
            break
        if chord is not None and g_max > 0.1 * previous:
            chord = None  # slow: use the current Hessian from now on
        previous = g_max
        if chord is not None:
            step = (chord @ g[:, :, None])[:, :, 0]
        else:
            hess = _hessian(data, t, g, beta, a, L, sums=sums)
            # Newton direction where -H is positive definite, else gradient ascent.
            neg = -hess
            ok = _linalg.is_positive_definite(neg)
            neg[~ok] = eye
            step = np.linalg.solve(neg, g[:, :, None])[:, :, 0]
        scale = np.ones(m)
        for _half in range(30):
            cand = t + scale[:, None] * step
            h_c, g_c = _h_and_grad(data, cand, beta, a, L, sums)
            better = h_c >= h - 1e-12 * np.abs(h)
            if better.all():
                break
            scale = np.where(better, scale, 0.5 * scale)
        accept = h_c >= h - 1e-12 * np.abs(h)
        t = np.where(accept[:, None], cand, t)
        h = np.where(accept, h_c, h)
        g = np.where(accept[:, None], g_c, g)
    hess = _hessian(data, t, g, beta, a, L, central=central, sums=sums)
    neg = -0.5 * (hess + hess.transpose(0, 2, 1))
    vals, vecs = np.linalg.eigh(neg)
    vals = np.maximum(vals, 1e-8)
    inv = (vecs / vals[:, None, :]) @ vecs.transpose(0, 2, 1)
    B = np.linalg.cholesky(inv)
    return t, B, h


def _hessian(data, t, g, beta, a, L, central=False, sums=None):
    """Hessian of h in t by differences of the analytic gradient: forward
    (for Newton directions) or central (accurate to about 1e-8, for the
    scale factors B, whose log det is part of the Laplace rule)."""
    m, d = t.shape
    hess = np.empty((m, d, d))
    step = 1e-4 if central else 1e-5
    for b in range(d):
        up = t.copy()
        up[:, b] += step
        g_up = _h_and_grad(data, up, beta, a, L, sums)[1]
        if central:
            down = t.copy()
            down[:, b] -= step
            hess[:, :, b] = (g_up - _h_and_grad(data, down, beta, a, L, sums)[1]) / (2 * step)
        else:
            hess[:, :, b] = (g_up - g) / step
    return 0.5 * (hess + hess.transpose(0, 2, 1))


@dataclass
class Quadrature:
    """Adapted nodes: modes and scale factors of every group."""

    modes: np.ndarray   # (m, q_w)
    B: np.ndarray       # (m, q_w, q_w)
    theta: np.ndarray = None  # the parameters they were adapted to (tight)

    def node_values(self, data):
        """t at every (group, node): (m, K, q_w)."""
        return self.modes[:, None, :] + np.einsum("iab,kb->ika", self.B, data.nodes)


def loglike(data, quad, beta, a, L, gradient=False):
    """
    The rule's log-likelihood with the nodes of ``quad`` held fixed,
    per group, and (optionally) its exact gradient in (beta, a, L lower
    triangle).

    Returns (llf_groups, gradient dict or None, posterior node weights).
    """
    d = data.q_w
    tk = quad.node_values(data)                      # (m, K, d)
    sums, terms = _evaluate_nodes(data, beta, a, L, tk, gradient)
    log_prior = -0.5 * np.sum(tk * tk, axis=2) - 0.5 * d * _LOG_2PI
    log_det_B = np.log(np.abs(np.diagonal(quad.B, axis1=1, axis2=2))).sum(axis=1)
    llf_groups, post = data.rule.log_integrals(terms.f, log_prior, log_det_B,
                                               data.nodes, data.log_weights)
    if not gradient:
        return llf_groups, None, post
    weights = data.rule.gradient_weights(post, lambda: terms.t_gradient(L, d),
                                         quad.B)
    return llf_groups, _gradient(data, sums, terms, weights, tk, L), post


def node_conditionals(data, quad, beta, a, L):
    """
    Mean and covariance of the mean's random effects given the data and
    the scale effects at each adapted node: ``E[u_i | t_ik, y_i]`` (m, K,
    q_u) and ``Var(u_i | t_ik, y_i)`` (m, K, q_u, q_u).
    """
    terms = _evaluate_nodes(data, beta, a, L, quad.node_values(data),
                            gradient=True)[1]
    return terms.mean, terms.cond_cov


# ----------------------------------------------------------------------
# Fitting
_DECREMENT_TOL = 1e-11


@dataclass
class LocationScaleFit:
    """Estimates of a location-scale model (natural scale and Cholesky)."""

    beta: np.ndarray
    var_params: np.ndarray
    factor: np.ndarray        # L, Sigma = L L', scale effects first
    llf: float
    llf_groups: np.ndarray
    quad: Quadrature
    posterior: np.ndarray     # (m, K) node weights given the data
    cov_theta: np.ndarray     # covariance of theta (inverse observed information)
    free: np.ndarray          # mask of estimated theta entries
    theta: np.ndarray         # the estimate in the layout's parameterisation
    converged: bool
    max_grad: float
    n_iter: int
    # Flat directions of the log-likelihood (rows, in theta), scaled so that
    # its curvature along each is at most 1: the data determine nothing
    # along them (an estimate on the boundary of the parameter space).
    flat_directions: np.ndarray = None
    decrement: float = None

    @property
    def n_flat(self):
        """Number of flat directions (0 for an interior maximum)."""
        return 0 if self.flat_directions is None else len(self.flat_directions)


def adapt(data, layout, theta, previous=None, quick=False):
    """
    Nodes adapted to ``theta``: every group's mode and scale factor.
    ``quick`` (for the quasi-Newton stage of ``fit``; ignored by rules
    whose value is their placement, ``rule.readapts``): modes to 1e-5 and
    scales by forward differences -- with several nodes the rule hardly
    depends on where they sit, and the gradient at fixed nodes stays exact
    for the rule in use.
    """
    beta, a, L = layout.unpack(theta)
    quick = quick and not data.rule.readapts
    kw = {"tol": 1e-5, "central": False} if quick else {}
    if previous is None:
        modes, B, _ = find_modes(data, beta, a, L, **kw)
    else:
        modes, B, _ = find_modes(data, beta, a, L, start=previous.modes,
                                 start_scale=previous.B, **kw)
    return Quadrature(modes, B, None if quick else np.array(theta, copy=True))


def _value_and_grad(data, layout, theta, quad):
    """
    Log-likelihood and gradient at ``theta``.  The nodes of ``quad`` are
    held fixed (the integral of a quadrature rule hardly depends on where
    they are placed), unless the rule is its nodes' placement
    (``rule.readapts``: Laplace), whose nodes are re-adapted here (warm
    started: usually no Newton step).
    """
    if data.rule.readapts and not (quad.theta is not None
                                   and np.array_equal(quad.theta, theta)):
        quad = adapt(data, layout, theta, quad)
    beta, a, L = layout.unpack(theta)
    llf_g, grad, post = loglike(data, quad, beta, a, L, gradient=True)
    g = layout.gradient(grad, theta)
    return llf_g.sum(), g, post, llf_g


def _hessian_fd(data, layout, theta, quad, g0, accurate=True):
    """
    Hessian of the free entries by differences of the analytic gradient
    (``_hessian``), along directions that whiten ``_rough_information``:
    about ``_hessian.STEP`` standard errors each, whatever the units of
    the covariates.  With fixed nodes the gradient is smooth to rounding:
    forward differences (measured error 5e-6 relative, against 5e-7 at
    steps ten times shorter, on 60 groups x 15 rows).  The rule sets the
    step (``rule.hessian_step``) and whether forward differences are
    accurate (``rule.forward_hessian_accurate``): the Laplace gradient
    re-adapts the nodes and takes second differences on its stencil,
    which leaves noise, so it takes central differences, or, when the
    Hessian only gives step directions (``accurate=False``), forward ones
    at half the cost.
    """
    idx = np.flatnonzero(layout.estimated)
    info, size = _rough_information(data, layout, theta)
    basis = _differences.whitening_basis(info[np.ix_(idx, idx)], size[idx])
    rule = data.rule
    hess = _differences.hessian(
        lambda t: _value_and_grad(data, layout, t, quad)[1], theta, g0, basis,
        step=rule.hessian_step,
        central=accurate and not rule.forward_hessian_accurate, free=layout.estimated)
    return hess[np.ix_(idx, idx)]


def _rough_information(data, layout, theta):
    """
    A rough information matrix of theta and typical sizes of its entries,
    for the difference steps of ``_hessian_fd``: that of the model without
    random effects for beta (``X' R^-1 X``) and the variance function
    (``W'W / 2``), and for the covariance parameters ``m / unit^2`` (m
    groups, ``layout.unit_scale``: a standard error of about the typical
    size over sqrt(m)), no cross terms.  The beta and variance-function
    blocks change with the units and origin of the covariates as the true
    information does, which makes the steps follow recodings.
    """
    p, k = layout.p, layout.k_var
    X, W = data.exog, data.exog_var
    resid_var = np.exp(np.clip(W @ theta[p:p + k], -700, 700))
    unit = layout.unit_scale(data)
    info = np.zeros((theta.size, theta.size))
    info[:p, :p] = X.T @ (X / resid_var[:, None])
    info[p:p + k, p:p + k] = 0.5 * W.T @ W
    cov = np.arange(p + k, theta.size)
    info[cov, cov] = data.n_groups / unit[cov] ** 2
    size = np.r_[_positive(np.std(data.endog)) / _column_rms(X),
                 1.0 / _column_rms(W), unit[cov]]
    return info, np.maximum(np.abs(theta), size)


def _value_or_minus_inf(data, layout, theta, quad):
    """The log-likelihood at fixed nodes, -inf where some group's joint
    covariance is not positive definite."""
    try:
        # Trial steps can overflow (a huge variance): that is -inf too.
        with np.errstate(over="ignore", invalid="ignore"):
            value = _value_and_grad(data, layout, theta, quad)[0]
    except np.linalg.LinAlgError:
        return -np.inf
    return value if np.isfinite(value) else -np.inf


def fit(data, layout, theta, optimise=True, maxiter=2000, covariance=True,
        trace=None):
    """
    Maximise the adaptive-quadrature log-likelihood.

    ``trace`` (a ``_progress.Trace``) is called after each quasi-Newton
    iteration and at each Newton step's new point with the
    log-likelihood, theta and the gradient of its estimated entries.

    ``covariance=False`` (refits whose standard errors are not wanted, such
    as profile points): convergence is accepted on the decrement of a
    reused Hessian, without the fresh one that would give the covariance,
    and ``cov_theta`` is NaN.

    A quasi-Newton run in which every evaluation re-adapts the nodes (warm
    started at the previous modes, so one or two Newton steps per group) and
    uses the gradient with those nodes held fixed -- which differs from the
    gradient of the adaptive approximation only by the quadrature error --
    then Newton steps with a finite-difference Hessian of the analytic
    gradient, the nodes re-adapted at each, until the Newton decrement is
    below tolerance.

    At the boundary of the parameter space the log-likelihood is flat in
    some directions of the covariance parameters (see ``_newton``).  The
    Newton steps and the decrement then work in the determined directions;
    the fit has converged when that decrement is below tolerance and the
    gradient along the flat directions is negligible too.  The flat
    directions are recorded (``LocationScaleFit.flat_directions``) and left
    out of the covariance.
    """
    from scipy import optimize

    idx = np.flatnonzero(layout.estimated)
    n_outer = int(np.sum(idx < layout.p + layout.k_var))
    scale = layout.unit_scale(data)[idx[n_outer:]]
    nobs = len(data.endog)
    state = {"quad": adapt(data, layout, theta)}
    n_iter = 0
    if optimise:
        # Quasi-Newton on the coarse rule (the adapted modes and scales
        # carry over: they do not depend on the nodes), started from the
        # finite-difference Hessian.
        fine, data = data, data.coarse_rule()
        _, g0, _, _ = _value_and_grad(data, layout, theta, state["quad"])
        h0 = _hessian_fd(data, layout, theta, state["quad"], g0, accurate=False)
        # Far from the optimum -H may be indefinite: use |eigenvalues|.
        vals, vecs = np.linalg.eigh(-h0)
        vals = np.maximum(np.abs(vals), 1e-8 * max(np.abs(vals).max(), 1e-300))
        hess_inv0 = (vecs / vals) @ vecs.T * nobs
        hess_inv0 = 0.5 * (hess_inv0 + hess_inv0.T)

        def fun(x):
            t = theta.copy()
            t[idx] = x
            try:
                quad = adapt(data, layout, t, state["quad"], quick=True)
                v, g, _, _ = _value_and_grad(data, layout, t, quad)
            except np.linalg.LinAlgError:
                return np.inf, np.zeros(idx.size)
            state["quad"] = quad
            state["last"] = (np.array(x), t, v, g[idx])
            return -v / nobs, -g[idx] / nobs

        def callback(xk, *args):
            # BFGS's last evaluation is normally at the accepted point
            if not np.array_equal(xk, state.get("last", (None,))[0]):
                fun(np.asarray(xk))
            _, t, v, g = state["last"]
            trace(v, t, g)

        with np.errstate(all="ignore"):
            res = optimize.minimize(fun, theta[idx], jac=True, method="BFGS",
                                    options={"gtol": 1e-7, "maxiter": maxiter,
                                             "hess_inv0": hess_inv0},
                                    callback=None if trace is None else callback)
        n_iter = int(res.nit)
        theta = theta.copy()
        theta[idx] = res.x
        coarse, data = data, fine
    quad = adapt(data, layout, theta, state["quad"])
    # Newton polish at adapted nodes; convergence by the Newton decrement.
    # The Hessian is reused for the next steps (chord steps: one gradient
    # each) while the decrement falls at least tenfold a step; convergence
    # is confirmed, and the covariance taken, at a fresh Hessian (an
    # accurate one: rules whose forward differences are not accurate,
    # such as Laplace, use cheaper ones for the steps).
    converged = False
    fresh, confirm, last_decrement = True, False, np.inf
    reported = None  # the theta last passed to trace
    if optimise and coarse is not data:
        # The first steps' Hessian from the coarse rule: nearly the same
        # curvature at a fraction of the cost.
        g_coarse = _value_and_grad(coarse, layout, theta, quad)[1]
        hess = _hessian_fd(coarse, layout, theta, quad, g_coarse)
        fresh = False
    for _ in range(30 if optimise else 0):
        value, g, post, llf_g = _value_and_grad(data, layout, theta, quad)
        if trace is not None and reported is not theta:
            trace(value, theta, g[idx])
            reported = theta
        try:
            if fresh:
                hess = _hessian_fd(data, layout, theta, quad, g, accurate=confirm)
                accurate = confirm or data.rule.forward_hessian_accurate
            newton = optim.newton_step(hess, g[idx], n_outer, scale)
        except np.linalg.LinAlgError:  # as below
            if fresh:
                break
            fresh = True
            continue
        decrement = max(newton.decrement, newton.flat_decrement)
        if decrement < _DECREMENT_TOL:
            if (fresh and accurate) or not covariance:
                converged = not newton.indefinite
                break
            fresh = confirm = True
            continue
        step_is_fresh = fresh
        confirm = False
        fresh = decrement > 0.1 * last_decrement
        last_decrement = decrement
        full_step = np.zeros_like(theta)
        full_step[idx] = newton.step
        # The line search's rounding allowance (as in the heteroskedastic
        # polish): near the optimum the predicted rise (the decrement,
        # ~1e-10) is as small as the evaluation's own noise (re-adapted
        # nodes, sums over rows: ~5e-11 on HSB), so requiring a strict rise
        # made rounding decide whether a good step is taken or a fresh
        # Hessian computed (47 or 57 evaluations for the same fit).
        found = optim.line_search(
            lambda t: _value_or_minus_inf(data, layout, t, quad),
            lambda t, x=theta, s=full_step: x + t * s, value, t_min=2.0 ** -20)
        if found is None:
            if step_is_fresh:
                break  # no step up: stop where the log-likelihood is known
            fresh = True  # try again with the current Hessian
            continue
        t_len, cand, cand_value = found
        if t_len == 1.0 and newton.flat_decrement >= _DECREMENT_TOL:
            # Along a flat direction the log-likelihood rises ever more
            # slowly towards its limit at the boundary, and the floored
            # curvature makes the step short: lengthen it (up to 64 times)
            # while the log-likelihood still rises by more than the
            # tolerance -- not further, where the covariance matrices of
            # some groups become singular to machine precision.
            for k in range(6):
                further = cand.copy()
                further[idx] += 2.0 ** k * newton.flat_step
                further_value = _value_or_minus_inf(data, layout, further, quad)
                if not further_value > cand_value + _DECREMENT_TOL:
                    break
                cand, cand_value = further, further_value
        theta = cand
        quad = adapt(data, layout, theta, quad)
    if not converged:  # else the loop's last evaluation is at theta already
        value, g, post, llf_g = _value_and_grad(data, layout, theta, quad)
        hess = newton = None
        if covariance:  # no Hessian when none is wanted
            try:
                hess = _hessian_fd(data, layout, theta, quad, g)
                newton = optim.newton_step(hess, g[idx], n_outer, scale)
            except np.linalg.LinAlgError:  # -hess indefinite, or a step not PD
                pass
    cov = np.zeros((layout.size, layout.size))
    if not covariance or (newton is None and hess is None):
        # not wanted, or a difference step left the parameter space
        cov[np.ix_(idx, idx)] = np.nan
    elif newton is not None:
        cov[np.ix_(idx, idx)] = newton.cov
    else:
        try:
            cov[np.ix_(idx, idx)] = np.linalg.inv(-hess)
        except np.linalg.LinAlgError:
            cov[np.ix_(idx, idx)] = np.linalg.pinv(-hess)
    if newton is None:
        flat, decrement = np.zeros((0, layout.size)), None
    else:
        flat = np.zeros((len(newton.flat), layout.size))
        flat[:, idx] = newton.flat
        decrement = newton.decrement
    beta, a, L = layout.unpack(theta)
    return LocationScaleFit(beta, a, L, float(value), llf_g, quad, post, cov,
                            layout.estimated.copy(), theta.copy(), converged,
                            float(np.max(np.abs(g[idx]), initial=0.0)), n_iter,
                            flat, decrement)
