"""
Parameter layout of HetMixedLM: the one place that knows the k_* counts.

Two parameter vectors are used.

* The *natural* vector (``results.params``), in this order:
  fixed effects (``k_fe``), the lower triangle of the random-effects
  covariance matrix ``cov_re`` row by row as in MixedLM (``k_re2``), the
  variance-component variances (``k_vc``), and the residual variance
  function parameters (``k_var``).  Variances are on their natural scale
  (not divided by a residual scale as in ``MixedLMResults.params``).
* The *optimisation* vector (no fixed effects, which are profiled out by GLS):
  the lower triangle of the Cholesky factor of ``cov_re``, the standard
  deviation of each variance component, and the variance-function
  parameters (their square roots when they are variances, as with the
  identity link).  Every value of it gives a valid model, so it can be
  searched without constraints, and zero variances are reachable.
"""

from __future__ import annotations

import numpy as np

# Prefix that marks the residual variance function in ``params`` names.  The
# same regressor may appear in the mean and in the variance function, so the
# two blocks need distinct names (e.g. "female" and "var:female").
VAR_PREFIX = "var:"


class ParamLayout:
    """
    Sizes, slices and transforms of the HetMixedLM parameter vectors.

    Parameters
    ----------
    k_fe, k_re, k_vc, k_var : int
        Numbers of fixed effects, correlated random effects, variance
        components and variance-function parameters.
    vc_slots : list of ndarray
        For each variance component, the columns of the padded random-effects
        design (see ``_engine.GroupedData.exog_z``) that belong to it.
    var_square_root : bool
        Whether the optimisation vector holds square roots of the
        variance-function parameters (non-negative variances).
    """

    def __init__(self, k_fe, k_re, k_vc, k_var, vc_slots, var_square_root=False):
        self.var_square_root = bool(var_square_root)
        self.k_fe = int(k_fe)
        self.k_re = int(k_re)
        self.k_vc = int(k_vc)
        self.k_var = int(k_var)
        self.k_re2 = self.k_re * (self.k_re + 1) // 2
        self.vc_slots = [np.asarray(s, dtype=np.intp) for s in vc_slots]
        self.q = self.k_re + sum(len(s) for s in self.vc_slots)
        self.k_cov = self.k_re2 + self.k_vc  # random-effects covariance params
        self.k_params = self.k_fe + self.k_cov + self.k_var
        self._tril = np.tril_indices(self.k_re)

        o = self.k_fe
        self.fe = slice(0, o)
        self.re = slice(o, o + self.k_re2)
        self.vc = slice(o + self.k_re2, o + self.k_cov)
        self.var = slice(o + self.k_cov, self.k_params)
        # The same blocks inside a vector without the fixed effects.
        self.re_nofe = slice(0, self.k_re2)
        self.vc_nofe = slice(self.k_re2, self.k_cov)
        self.var_nofe = slice(self.k_cov, self.k_cov + self.k_var)

    # ------------------------------------------------------------------
    # Splitting and joining vectors
    def split(self, params):
        """Return (fe_params, cov_re, vcomp, var_params) of a natural vector.

        ``params`` may hold the fixed effects (length ``k_params``) or not
        (length ``k_params - k_fe``, fe_params is then None).
        """
        params = np.asarray(params, dtype=np.float64)
        if params.shape == (self.k_params,):
            fe = params[self.fe]
            rest = params[self.k_fe:]
        elif params.shape == (self.k_params - self.k_fe,):
            fe = None
            rest = params
        else:
            raise ValueError(
                f"params has length {params.size}; expected {self.k_params} "
                f"(with fixed effects) or {self.k_params - self.k_fe} (without)"
            )
        return (
            fe,
            self.cov_re_from_vech(rest[self.re_nofe]),
            rest[self.vc_nofe].copy(),
            rest[self.var_nofe].copy(),
        )

    def join(self, fe_params, cov_re, vcomp, var_params):
        """Natural vector from its parts (fe_params None: without them)."""
        parts = [] if fe_params is None else [np.asarray(fe_params, float)]
        parts += [
            np.asarray(cov_re, float)[self._tril],
            np.asarray(vcomp, float),
            np.asarray(var_params, float),
        ]
        return np.concatenate(parts)

    def cov_re_from_vech(self, vech):
        cov = np.zeros((self.k_re, self.k_re))
        cov[self._tril] = vech
        return cov + np.tril(cov, -1).T

    # ------------------------------------------------------------------
    # Optimisation vector <-> natural vector
    def factor(self, theta):
        """Common random-effects factor L (q x q), G = L L', from theta."""
        L = np.zeros((self.q, self.q))
        L[: self.k_re, : self.k_re][self._tril] = theta[self.re_nofe]
        for sd, slots in zip(theta[self.vc_nofe], self.vc_slots):
            L[slots, slots] = sd
        return L

    def var_from_theta(self, theta):
        """Variance-function parameters from theta."""
        v = theta[self.var_nofe]
        return v**2 if self.var_square_root else v.copy()

    def natural_from_theta(self, theta):
        """Natural vector (without fixed effects) from theta."""
        L = self.factor(theta)[: self.k_re, : self.k_re]
        return self.join(
            None, L @ L.T, theta[self.vc_nofe] ** 2, self.var_from_theta(theta)
        )

    def theta_from_natural(self, natural):
        """Theta from a natural vector (without fixed effects)."""
        _, cov_re, vcomp, var_params = self.split(natural)
        if np.any(vcomp < 0):
            raise ValueError("variance components must be non-negative")
        if self.var_square_root:
            if np.any(var_params < 0):
                raise ValueError("identity-link variances must be non-negative")
            var_params = np.sqrt(var_params)
        chol = psd_factor(cov_re)
        return np.concatenate(
            [chol[self._tril], np.sqrt(vcomp), var_params]
        )

    def factor_from_natural(self, natural):
        """L with G = L L' from a natural vector (without fixed effects)."""
        _, cov_re, vcomp, _ = self.split(natural)
        L = np.zeros((self.q, self.q))
        L[: self.k_re, : self.k_re] = psd_factor(cov_re)
        for v, slots in zip(vcomp, self.vc_slots):
            L[slots, slots] = np.sqrt(max(v, 0.0))
        return L

    # ------------------------------------------------------------------
    # Gradients
    def grad_theta(self, theta, grad_cov, grad_var):
        """Chain rule: gradient in theta from d llf/dG and d llf/d var_params."""
        L = self.factor(theta)
        dL = 2.0 * grad_cov @ L
        g_re = dL[: self.k_re, : self.k_re][self._tril]
        g_vc = [dL[s, s].sum() for s in self.vc_slots]
        if self.var_square_root:
            grad_var = 2.0 * theta[self.var_nofe] * grad_var
        return np.concatenate([g_re, g_vc, grad_var])

    def natural_jacobian(self, theta):
        """
        d natural / d theta (without fixed effects), analytic: the chain
        rule of ``natural_from_theta`` as a matrix, to carry an information
        matrix from the natural parameters to theta (``J' I J``).
        """
        k = self.k_cov + self.k_var
        jac = np.zeros((k, k))
        L = self.factor(theta)[: self.k_re, : self.k_re]
        jac[self.re_nofe, self.re_nofe] = gram_jacobian(L, self._tril)
        jac[self.vc_nofe, self.vc_nofe] = np.diag(2.0 * theta[self.vc_nofe])
        var = theta[self.var_nofe]
        jac[self.var_nofe, self.var_nofe] = (
            np.diag(2.0 * var) if self.var_square_root else np.eye(self.k_var))
        return jac

    def cov_directions(self):
        """
        dG / d(natural covariance parameter), one q x q matrix per parameter:
        ``e_i e_j' + e_j e_i'`` for cov_re entry (i, j) (``e_i e_i'`` on the
        diagonal), and the identity on its slots for a variance component.
        """
        dirs = np.zeros((self.k_cov, self.q, self.q))
        for k, (i, j) in enumerate(zip(*self._tril)):
            dirs[k, i, j] = dirs[k, j, i] = 1.0
        for k, slots in enumerate(self.vc_slots):
            dirs[self.k_re2 + k, slots, slots] = 1.0
        return dirs

    def grad_natural(self, grad_cov, grad_var):
        """Gradient in the natural vector (without fixed effects)."""
        g_cov = np.einsum("kab,ab->k", self.cov_directions(), grad_cov)
        return np.concatenate([g_cov, grad_var])


def gram_jacobian(L, entries):
    """
    Jacobian of entries of ``G = L L'`` with respect to the lower triangle
    of ``L`` (``np.tril_indices`` order): one row per ``(a, b)`` in
    ``entries`` (a pair of index arrays), from
    ``d G_ab / d L_cd = [a == c] L_bd + [b == c] L_ad``.
    """
    L = np.asarray(L, dtype=np.float64)
    rows, cols = (np.asarray(e) for e in entries)
    c, d = np.tril_indices(L.shape[0])
    jac = (rows[:, None] == c[None, :]) * L[cols[:, None], d[None, :]]
    jac = jac + (cols[:, None] == c[None, :]) * L[rows[:, None], d[None, :]]
    return jac


def psd_factor(cov):
    """
    A lower-triangular factor L with L L' = cov for a positive
    semi-definite matrix.

    The Cholesky factor when it exists; otherwise (a singular covariance
    matrix, e.g. a variance on the boundary) the triangular factor of the
    eigen decomposition with negative eigenvalues set to zero: with
    F = V sqrt(lambda) and F' = Q R, cov = F F' = R' R.
    """
    cov = np.asarray(cov, dtype=np.float64)
    if cov.size == 0:
        return cov.copy()
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
        root = vecs * np.sqrt(np.clip(vals, 0.0, None))
        lower = np.linalg.qr(root.T, mode="r").T
        return lower * np.where(np.diag(lower) < 0, -1.0, 1.0)
