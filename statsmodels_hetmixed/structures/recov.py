"""
Blocks of the random-effects covariance G (the mean's random effects).

* :class:`UnstructuredCovariance`: the correlated random effects of
  ``exog_re`` (``re_formula``), a full covariance matrix, searched through
  the lower triangle of its Cholesky factor (MixedLM's ``cov_re``);
* :class:`VarianceComponent`: one variance shared by several columns of the
  padded design (MixedLM's ``exog_vc`` / ``vc_formula``), searched through
  its standard deviation;
* :class:`JointCovariance`: the joint covariance of the mean's and the
  residual variance's random effects of a location-scale model, searched
  through the Cholesky factor of the matrix with the scale effects first.

Natural parameters are ordered as MixedLM's: the lower triangle of
``cov_re`` row by row, and the variance of each component, but on their
natural scale (not divided by a residual scale), and so named differently
(``covariance_names``: ``var(a)``, ``cov(a, b)``, not MixedLM's ``a Var``,
``a x b Cov``, which are relative to the scale).
"""

from __future__ import annotations

import numpy as np

from .._linalg import covariance_rank, is_positive_semidefinite
from .base import CovarianceBlock, SquareRootScale, StartContext

__all__ = ["UnstructuredCovariance", "VarianceComponent", "JointCovariance",
           "gram_jacobian", "psd_factor", "effect_units", "column_rms",
           "covariance_names"]


def covariance_names(effects, components=()) -> list[str]:
    """
    Names of natural-scale (co)variances, in MixedLM's order: the lower
    triangle of the effects' covariance matrix row by row (``var(a)``,
    ``cov(a, b)``, ``var(b)``), then each variance component
    (``var(c)``).  MixedLM's names for the same positions (``a Var``,
    ``a x b Cov``) mean covariances relative to the residual variance.
    """
    effects = list(effects)
    out = [f"var({effects[i]})" if i == j else f"cov({effects[j]}, {effects[i]})"
           for i in range(len(effects)) for j in range(i + 1)]
    return out + [f"var({c})" for c in components]


def positive(x):
    """x where positive, else 1 (a unit for an all-zero column)."""
    return np.where(x > 0, x, 1.0)


def column_rms(mat) -> np.ndarray:
    """Root mean square of each column (1 for an all-zero column)."""
    return positive(np.sqrt(np.mean(np.asarray(mat, float) ** 2, axis=0)))


def effect_units(endog, exog_re, exog_var_re) -> np.ndarray:
    """
    Typical SD of each random effect of a location-scale model in the
    units of its column, scale effects first: 1 / rms(v_k) for a scale
    effect (one unit of log variance), sd(y) / rms(z_k) for a mean effect.
    Rescaling a column rescales its unit alike, so comparisons with these
    units do not depend on how the covariates were coded.
    """
    return np.r_[1.0 / column_rms(exog_var_re),
                 positive(np.std(endog)) / column_rms(exog_re)]


def gram_jacobian(L: np.ndarray, entries) -> np.ndarray:
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


def psd_factor(cov: np.ndarray) -> np.ndarray:
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


class UnstructuredCovariance(CovarianceBlock):
    """
    A full covariance matrix of ``len(slots)`` correlated random effects.

    Natural parameters: its lower triangle, row by row (as MixedLM packs
    ``cov_re``).  Free parameters: the lower triangle of a Cholesky factor
    L (G = L L'), so that every value is a valid (semi-definite) matrix.

    Parameters
    ----------
    names : list of str
        Parameter names, one per lower-triangle entry.
    slots : array_like of int
        Columns of the padded random-effects design.
    """

    def __init__(self, names: list[str], slots) -> None:
        self.slots = np.asarray(slots, dtype=np.intp)
        self.dim = len(self.slots)
        self._tril = np.tril_indices(self.dim)
        if len(names) != len(self._tril[0]):
            raise ValueError(f"{len(names)} names for a {self.dim} x {self.dim} "
                             "covariance matrix")
        self.names = list(names)
        # (i, i) entries in the row-by-row lower triangle
        self._diagonal = np.cumsum(np.arange(1, self.dim + 1)) - 1

    def matrix(self, natural: np.ndarray) -> np.ndarray:
        """The covariance matrix from its lower triangle."""
        # Both triangles by index (the diagonal twice, with the same
        # value): called at every evaluation, where np.tril's Python
        # wrapper and a second array cost more than the matrix.
        cov = np.zeros((self.dim, self.dim))
        cov[self._tril] = natural
        cov[self._tril[1], self._tril[0]] = natural
        return cov

    def vech(self, matrix: np.ndarray) -> np.ndarray:
        """The lower triangle of a matrix, row by row."""
        return np.asarray(matrix, dtype=np.float64)[self._tril]

    def start(self, context: StartContext) -> np.ndarray:
        zz = context.z_mean_square[self.slots]
        var = context.share_re * context.total / zz
        return self.vech(np.diag(var))

    def factor_from_free(self, free):
        L = np.zeros((self.dim, self.dim))
        L[self._tril] = free
        return L

    def factor(self, natural):
        return psd_factor(self.matrix(natural))

    def to_natural(self, free):
        L = self.factor_from_free(free)
        return self.vech(L @ L.T)

    def from_natural(self, natural):
        return self.vech(self.factor(natural))

    def jacobian(self, free):
        return gram_jacobian(self.factor_from_free(free), self._tril)

    def hold(self, mask, free):
        # Cholesky entries held at their value keep the matching covariance
        # entries fixed only in two cases, checked here: a random effect
        # held out entirely (its variance and covariances at zero), and
        # covariances held at zero in patterns without fill-in.
        k = self.dim
        fixed = np.zeros((k, k), bool)
        fixed[self._tril] = ~np.asarray(mask, bool)
        fixed = fixed | fixed.T
        start = self.matrix(self.to_natural(free))
        held_out = np.diag(fixed).copy()
        for i in np.flatnonzero(held_out):
            if not fixed[i].all() or not np.allclose(start[i], 0):
                raise NotImplementedError(
                    "A random-effect variance can only be held at zero, "
                    "together with all its covariances.")
        rng = np.random.default_rng(0)
        L = np.tril(rng.uniform(1, 2, (k, k))) * ~fixed
        L[held_out] = 0.0
        if not np.allclose(start[fixed], 0) or \
                not np.allclose((L @ L.T)[fixed], 0):
            raise NotImplementedError(
                "Covariances can only be held at zero, in a pattern of "
                "independent blocks of random effects.")
        chol = self.factor_from_free(free)
        chol[fixed] = 0.0
        chol[held_out] = 0.0
        return chol[self._tril]

    def directions(self):
        """``e_i e_j' + e_j e_i'`` for entry (i, j), ``e_i e_i'`` on the
        diagonal."""
        dirs = np.zeros((self.k, self.dim, self.dim))
        for k, (i, j) in enumerate(zip(*self._tril)):
            dirs[k, i, j] = dirs[k, j, i] = 1.0
        return dirs

    def free_gradient(self, free, grad_cov):
        # d llf / dL = 2 Gamma L for G = L L' and symmetric Gamma.
        return self.vech(2.0 * grad_cov @ self.factor_from_free(free))

    def conditioner(self, basis=None):
        # vech(M G M') = T vech(G): column k is vech(M E_k M') for the
        # direction E_k = dG / d natural_k.
        if basis is None or np.array_equal(basis, np.eye(len(basis))):
            return np.eye(self.k)
        return np.stack([self.vech(basis @ E @ basis.T) for E in self.directions()],
                        axis=1)

    @property
    def bounded(self):
        # One random effect: its variance alone, kept >= 0 by a box.  More:
        # the constraint is the semi-definite cone (see admissible).
        return np.full(self.k, self.dim == 1)

    @property
    def variances(self):
        mask = np.zeros(self.k, bool)
        mask[self._diagonal] = True
        return mask

    def singular(self, natural):
        # the rank of the correlations, whatever the effects' units
        # (variances at zero are reported by at_boundary)
        if self.dim < 2:
            return False
        return covariance_rank(self.matrix(natural))[0] < self.dim

    def admissible(self, natural):
        if self.dim < 2:
            return True
        # decided on the correlations, whatever the effects' units
        return is_positive_semidefinite(self.matrix(natural))


class VarianceComponent(SquareRootScale, CovarianceBlock):
    """
    One variance shared by independent random effects (MixedLM's variance
    components): G is ``variance * I`` on its slots.

    Parameters
    ----------
    name : str
        The parameter name (MixedLM's: ``"<component> Var"``).
    slots : array_like of int
        Columns of the padded random-effects design.
    """

    nonnegative_what = "variance components"

    def __init__(self, name: str, slots) -> None:
        self.names = [name]
        self.slots = np.asarray(slots, dtype=np.intp)
        self.dim = len(self.slots)

    def start(self, context: StartContext) -> np.ndarray:
        zz = context.z_mean_square[self.slots].mean()
        return np.array([context.share_re * context.total / zz])

    def factor_from_free(self, free):
        return float(free[0]) * np.eye(self.dim)

    def factor(self, natural):
        return np.sqrt(max(float(natural[0]), 0.0)) * np.eye(self.dim)

    def directions(self):
        return np.eye(self.dim)[None]

    def free_gradient(self, free, grad_cov):
        return np.array([2.0 * float(free[0]) * np.trace(grad_cov)])

    @property
    def bounded(self):
        return np.ones(1, bool)


def joint_factor_gradient(grad, q_w) -> np.ndarray:
    """
    d llf / dL of the joint factor (scale effects first; (d, d), or
    (m, d, d) for one factor per group) from the location-scale engine's
    gradient ``grad`` (its ``L_ww``, ``L_uw`` and ``L_uu`` blocks), lower
    triangle.
    """
    g_ww, g_uw, g_uu = grad["L_ww"], grad["L_uw"], grad["L_uu"]
    lead = np.shape(g_ww)[:-2]
    d = q_w + np.shape(g_uu)[-1]
    gL = np.zeros(lead + (d, d))
    gL[..., :q_w, :q_w] = g_ww
    gL[..., q_w:, :q_w] = g_uw
    gL[..., q_w:, q_w:] = g_uu
    return np.tril(gL)


class JointCovariance(UnstructuredCovariance):
    """
    The joint covariance of a location-scale model's random effects: the
    mean's ``q_u`` (``exog_re``) and the residual log variance's ``q_w``
    (``exog_var_re``).

    Natural parameters: the lower triangle of the matrix with the mean
    effects first, row by row (the results' order, as
    :class:`UnstructuredCovariance`).  Free parameters: the lower triangle
    of the Cholesky factor L of the matrix reordered with the scale effects
    first (the order of the location-scale fitter, which integrates over
    the scale effects ``omega = L_ww t``).  The block's G (``factor``,
    ``directions``, the ``grad_cov`` of ``free_gradient``) is in that
    scale-first order too.

    Parameters
    ----------
    names : list of str
        Parameter names, one per lower-triangle entry (mean effects first).
    q_w, q_u : int
        Numbers of scale and mean random effects.
    independent : bool
        Hold the covariances between mean and scale effects at 0: the
        entries of L that couple them are not estimated (``estimated``).
    """

    def __init__(self, names: list[str], q_w: int, q_u: int,
                 independent: bool = False) -> None:
        super().__init__(names, np.arange(q_w + q_u))
        self.q_w, self.q_u = int(q_w), int(q_u)
        self.independent = bool(independent)
        d = self.dim
        # results (mean first) -> fitter (scale first) order, and back
        self.scale_first = np.r_[np.arange(self.q_u, d), np.arange(self.q_u)]
        self.mean_first = np.r_[np.arange(self.q_w, d), np.arange(self.q_w)]
        rows, cols = self._tril
        self._estimated = ~((rows >= self.q_w) & (cols < self.q_w)) \
            if independent else np.ones(self.k, bool)

    # location-scale designs are not centred: no basis but the identity
    conditioner = CovarianceBlock.conditioner

    @property
    def estimated(self) -> np.ndarray:
        """Free entries the fitter estimates (the mean-scale entries of L
        are held at 0 with ``independent``)."""
        return self._estimated.copy()

    @property
    def natural_estimated(self) -> np.ndarray:
        """Mask of natural entries the fit estimates: with ``independent``
        the covariances between mean and scale effects are held at 0."""
        rows, cols = self._tril
        if not self.independent:
            return np.ones(self.k, bool)
        return ~((rows >= self.q_u) & (cols < self.q_u))

    def free_from_factor(self, L: np.ndarray) -> np.ndarray:
        """The free vector of a joint factor L (scale effects first)."""
        return np.asarray(L, dtype=np.float64)[self._tril]

    def scale_first_matrix(self, natural: np.ndarray) -> np.ndarray:
        """The covariance matrix with the scale effects first."""
        return self.matrix(natural)[np.ix_(self.scale_first, self.scale_first)]

    def factor(self, natural):
        return psd_factor(self.scale_first_matrix(natural))

    def to_natural(self, free):
        L = self.factor_from_free(free)
        return self.vech((L @ L.T)[np.ix_(self.mean_first, self.mean_first)])

    def from_natural(self, natural):
        sigma = self.scale_first_matrix(natural)
        if not is_positive_semidefinite(sigma):
            vals = np.linalg.eigvalsh(sigma)
            raise ValueError(
                "the joint covariance matrix of the random effects is not "
                "positive semi-definite (eigenvalues "
                f"{np.array2string(vals, precision=3)}): give variances >= 0 "
                "and correlations within [-1, 1].")
        L = psd_factor(sigma)
        if not np.allclose(L[self._tril][~self._estimated], 0.0):
            raise ValueError("re_cov='independent' holds the covariances "
                             "between mean and scale effects at 0; give 0 for them.")
        return L[self._tril]

    def jacobian(self, free):
        rows, cols = self._tril
        return gram_jacobian(self.factor_from_free(free),
                             (self.mean_first[rows], self.mean_first[cols]))

    def directions(self):
        dirs = np.zeros((self.k, self.dim, self.dim))
        for k, (i, j) in enumerate(zip(*self._tril)):
            a, b = self.mean_first[i], self.mean_first[j]
            dirs[k, a, b] = dirs[k, b, a] = 1.0
        return dirs

    def hold(self, mask, free):
        if np.all(mask):
            return free
        raise NotImplementedError(
            "The joint covariance holds entries of its Cholesky factor "
            "(``estimated``), not of the covariance matrix.")

    def factor_gradient(self, free: np.ndarray, grad: dict) -> np.ndarray:
        """d llf / d free entries from the location-scale engine's gradient
        in the joint factor (``L_ww``, ``L_uw``, ``L_uu``)."""
        return joint_factor_gradient(grad, self.q_w)[self._tril]

    def unit_scale(self, data) -> np.ndarray:
        """
        Typical size of each free entry in the units of the data (``data``
        has ``endog``, ``exog_re`` and ``exog_var_re``): row k of L carries
        the units of random effect k (:func:`effect_units`).
        """
        units = effect_units(data.endog, data.exog_re, data.exog_var_re)
        return units[self._tril[0]]
