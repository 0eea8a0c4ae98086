"""
Small-sample inference for the fixed effects: denominator degrees of
freedom and the Kenward-Roger adjusted covariance.

Methods (``fit(ddf=...)``):

``"satterthwaite"``
    lmerTest's: for a contrast l, ``df = 2 (l'Phi l)^2 / (g' A g)`` with
    ``g_k = l' dPhi/dtheta_k l`` and A the covariance of the covariance
    parameters (the inverse observed information of the fit's criterion,
    the fit's own ``cov_params`` block); F tests of several rows as
    lmerTest's ``contestMD`` (one Satterthwaite df per eigenvector of
    L Phi L', combined).
``"kenward-roger"``
    pbkrtest's (Kenward & Roger 1997): the adjusted covariance
    ``Phi_A = Phi + 2 Phi [sum_kl W_kl (Q_kl - P_k Phi P_l)] Phi`` with W
    the inverse *expected* information of the criterion, the df and the F
    scaling of ``pbkrtest:::.KR_adjust`` (pbkrtest 0.5.2).  The second
    derivatives of V (the ``R_kl`` terms of the 1997 paper) are left
    out, as in pbkrtest (whose parameterisation makes V linear, so that
    they vanish) and SAS's ``ddfm=kr(firstorder)``: the adjustment then
    does not depend on how the covariance parameters are parameterised
    (log variances or variances), which matters for the variance
    functions here.
``"residual"``
    ``n - rank(X)`` for every fixed effect (Stata's
    ``dfmethod(residual)``).
``"between-within"``
    SAS's ``ddfm=betwithin``: effects constant within every group get
    ``m - rank(X_between)`` (m groups), the others
    ``n - m - (rank(X) - rank(X_between))``.

Notation: for group i, ``V = Z G Z' + R``, ``R = diag(r)``,
``Phi = (X'V^-1 X)^-1``, theta the estimated covariance parameters on
their natural scale.  ``V_k = dV/dtheta_k`` is ``Z E_k Z'`` for a
random-effects parameter (``E_k = dG/dtheta_k``, the blocks'
``directions``) and ``diag(d_k)``, ``d_k = r * d log r / dtheta_k``, for a
parameter of a variance block.  Then

    P_k  = X'V^-1 V_k V^-1 X,                dPhi/dtheta_k = Phi P_k Phi
    Q_kl = X'V^-1 V_k V^-1 V_l V^-1 X
    I_kl = 1/2 tr(V^-1 V_k V^-1 V_l)                          (ML)
         = that - tr(Phi Q_kl) + 1/2 tr(Phi P_k Phi P_l)       (REML)

all exact.  Because R is diagonal, with ``X~ = V^-1 X`` (rows
``(x_j - B'K z_j) / r_j``), ``C_i = Z_i'V_i^-1 X_i = B_i - A_i K_i B_i``
and ``Z~ = V^-1 Z``, every term is a per-group q x q product or a row-wise
sum (``_engine.group_cross``): ``P_k = sum_i C_i'E_k C_i`` or
``X~' diag(d_k) X~``, and likewise for Q; no loop over groups.

With a residual correlation structure (``R = S C S``) the same terms come
from per-group dense V^-1 (Woodbury, from the structure's C^-1) and the
exact derivatives of V, a bucket of groups of equal size at a time
(``_correlated_terms``), and the information from the correlated engine:
``V_k`` is ``Z E_k Z'``,
``S (D C + C D) S`` (``D = diag(d log r / dtheta_k) / 2``) for a variance
parameter and ``S dC S`` for a correlation parameter (the structure's own
dC, ``CorrelationStructure.bucket_matrices``).  The residual and
between-within df need no derivatives; between-within takes the groups as
the subjects whether or not they carry random effects (SAS's
``repeated / subject=``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import _engine, _linalg
from .structures.correlation import _sub_bucket

__all__ = ["METHODS", "SmallSampleInference", "FixedDf", "Satterthwaite",
           "KenwardRoger", "normalise_method", "build"]

#: Accepted values of ``fit(ddf=...)`` and the name shown in summaries.
METHODS = {
    "satterthwaite": "Satterthwaite",
    "kenward-roger": "Kenward-Roger",
    "residual": "residual",
    "between-within": "between-within",
}


def normalise_method(ddf) -> str | None:
    """The method's key in ``METHODS`` (case and ``_`` / ``-`` ignored), or
    None; ValueError for anything else."""
    if ddf is None:
        return None
    key = str(ddf).lower().replace("_", "-").replace(" ", "-")
    if key not in METHODS:
        raise ValueError(
            f"ddf must be one of {sorted(METHODS)} (or None for z-tests), not "
            f"{ddf!r}.")
    return key


# ----------------------------------------------------------------------
# The contract every small-sample method follows (results read it only)
class SmallSampleInference:
    """
    What the results need of a small-sample method for the fixed effects.

    The results keep one instance (``results._ddf``; None for z-tests) and
    every consumer (``df_fe``, ``pvalues``, ``conf_int``, ``t_test``,
    ``wald_test``, ``summary``) reads it from there.  A method that also
    replaces the fixed effects' covariance (Kenward-Roger, cluster-robust)
    sets it in the results' ``cov_params`` at fit time and gives it here
    as ``cov_fe``.

    Attributes
    ----------
    name : str
        Shown in the summary ("Kenward-Roger", ...).
    df_fe : pandas.Series
        One denominator df per fixed effect (its unit contrast).
    cov_fe : ndarray (p, p) or None
        The fixed effects' covariance the tests use when it is not the
        model-based ``(X'V^-1 X)^-1``.
    """

    name: str = ""
    df_fe: pd.Series
    cov_fe: np.ndarray | None = None

    def contrast_df(self, contrast: np.ndarray) -> float:
        """The df of the t-test of one contrast ``l'beta`` (l: (p,))."""
        raise NotImplementedError

    def f_test(self, contrast: np.ndarray, diff: np.ndarray, cov_fe: np.ndarray
               ) -> tuple[float, float, float]:
        """
        ``(F, df_num, df_denom)`` of the hypothesis ``L beta = r`` with
        ``diff = L beta - r`` and the fixed effects' covariance ``cov_fe``
        (the results' own); default: the Wald statistic over its rank and
        the smallest contrast df of the rows.
        """
        wald, rank = _wald(contrast, diff, cov_fe)
        return wald / rank, rank, min(self.contrast_df(row) for row in contrast)


def _wald(contrast, diff, cov):
    """(diff' (L cov L')^-1 diff, rank of L cov L')."""
    middle = contrast @ cov @ contrast.T
    return float(diff @ np.linalg.pinv(middle) @ diff), int(
        np.linalg.matrix_rank(middle))


class FixedDf(SmallSampleInference):
    """One df per fixed effect; a contrast gets the smallest df of the
    effects it involves (residual, between-within)."""

    def __init__(self, name: str, df_fe: pd.Series) -> None:
        self.name = name
        self.df_fe = df_fe

    def contrast_df(self, contrast):
        used = np.abs(np.asarray(contrast, float)) > 0
        return float(self.df_fe.to_numpy()[used].min()) if used.any() else np.inf


class _DerivativeMethod(SmallSampleInference):
    """Satterthwaite and Kenward-Roger: Phi and its derivatives."""

    def __init__(self, names, phi, dphi):
        self.phi = phi
        self.dphi = dphi
        p = phi.shape[0]
        self.df_fe = pd.Series([self.contrast_df(e) for e in np.eye(p)],
                               index=list(names), name="df")


class Satterthwaite(_DerivativeMethod):
    """lmerTest's Satterthwaite df (``contest1D``, ``contestMD``)."""

    name = "Satterthwaite"

    def __init__(self, names, phi, dphi, theta_cov):
        self.theta_cov = theta_cov
        super().__init__(names, phi, dphi)

    def _df(self, contrast):
        var = float(contrast @ self.phi @ contrast)
        grad = np.einsum("p,kpr,r->k", contrast, self.dphi, contrast)
        denom = float(grad @ self.theta_cov @ grad)
        return 2.0 * var * var / denom if denom > 0 else np.inf

    def contrast_df(self, contrast):
        return self._df(np.asarray(contrast, float))

    def f_test(self, contrast, diff, cov_fe):
        # contestMD: the rows rotated to the eigenvectors of L Phi L', one
        # Satterthwaite df each, combined as the df of the mean of q
        # squared t statistics (lmerTest's get_Fstat_ddf).
        wald, rank = _wald(contrast, diff, cov_fe)
        values, vectors = np.linalg.eigh(contrast @ self.phi @ contrast.T)
        order = np.argsort(values)[::-1][:rank]
        nu = np.array([self._df(vectors[:, j] @ contrast) for j in order])
        return wald / rank, rank, combine_df(nu)


def combine_df(nu: np.ndarray) -> float:
    """lmerTest's ``get_Fstat_ddf``: the df of an F statistic that is the
    mean of q independent squared t statistics with df ``nu``."""
    nu = np.asarray(nu, float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < 1e-8):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    e = np.sum(nu / (nu - 2.0))
    return float(2.0 * e / (e - nu.size))


class KenwardRoger(_DerivativeMethod):
    """pbkrtest's Kenward-Roger df, F scaling and adjusted covariance."""

    name = "Kenward-Roger"

    def __init__(self, names, phi, dphi, weights, phi_adjusted):
        self.weights = weights
        self.cov_fe = phi_adjusted
        super().__init__(names, phi, dphi)

    def _terms(self, contrast):
        """(A1, A2, q) of pbkrtest's ``.KR_adjust`` / ``Lb_ddf``."""
        L = np.atleast_2d(contrast)
        middle = L @ self.phi @ L.T
        theta = L.T @ np.linalg.pinv(middle) @ L
        q = int(np.linalg.matrix_rank(middle))
        u = np.einsum("ab,kbc->kac", theta, self.dphi)   # Theta dPhi_k
        tr = np.trace(u, axis1=1, axis2=2)
        a1 = float(tr @ self.weights @ tr)
        a2 = float(np.einsum("kl,kab,lba->", self.weights, u, u))
        return a1, a2, q

    @staticmethod
    def _df_and_scaling(a1, a2, q):
        if a2 <= 0:  # no uncertainty in the covariance parameters
            return np.inf, 1.0
        b = (a1 + 6.0 * a2) / (2.0 * q)
        g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
        den = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
        v0, v1, v2 = 1 + c1 * b, 1 - c2 * b, 1 - c3 * b
        v0 = 0.0 if abs(v0) < 1e-10 else v0
        ratio = 1.0 if abs(1 - a2 / q) < 1e-14 and abs(v1) < 1e-14 else (1 - a2 / q) / v1
        rho = ratio**2 * v0 / (q * v2)
        df = 4 + (q + 2) / (q * rho - 1)
        scaling = 1.0 if abs(df - 2) < 1e-2 else df * (1 - a2 / q) / (df - 2)
        return float(df), float(scaling)

    def contrast_df(self, contrast):
        return self._df_and_scaling(*self._terms(np.asarray(contrast, float)))[0]

    def f_test(self, contrast, diff, cov_fe):
        wald, rank = _wald(contrast, diff, cov_fe)
        df, scaling = self._df_and_scaling(*self._terms(contrast))
        return scaling * wald / rank, rank, df


# ----------------------------------------------------------------------
# The derivatives
@dataclass
class Derivatives:
    """
    Phi and its derivatives at an estimate, original fixed-effect columns.

    Attributes
    ----------
    phi : ndarray (p, p)
    dphi : ndarray (k, p, p)
        dPhi / dtheta_k for the estimated parameters ``index``.
    index : ndarray of int
        Positions of those parameters in the natural vector.
    info : ndarray (k, k) or None
        Expected information of the fit's criterion (with ``second``).
    correction : ndarray (p, p) or None
        ``Phi [sum_kl W_kl (Q_kl - P_k Phi P_l)] Phi`` with W the inverse
        of ``info`` (with ``second``): Phi_A = Phi + 2 correction.
    """

    phi: np.ndarray
    dphi: np.ndarray
    index: np.ndarray
    info: np.ndarray | None = None
    correction: np.ndarray | None = None
    weights: np.ndarray | None = None


def derivatives(objective, natural, index=None, second=False) -> Derivatives:
    """
    Phi = (X'V^-1 X)^-1, dPhi / dtheta_k and (``second``) the expected
    information and the Kenward-Roger correction, analytically, at the
    natural vector ``natural`` of ``objective`` (a
    ``HeteroskedasticObjective``), for the parameters ``index`` (default
    all).
    """
    data, lay = objective.grouped, objective.layout
    natural = np.asarray(natural, float)
    index = np.arange(lay.k_structure) if index is None else np.asarray(index)
    if lay.correlation_block is not None:
        phi, P, Q, info = _correlated_terms(objective, natural, index, second)
        return _assemble(phi, P, Q, info, objective.reml, data.fe_basis, index,
                         second)
    X, Z = data.exog, data.exog_z  # X: the centred columns when fe_basis is set
    r = lay.resid_var(natural)
    winv = 1.0 / r
    ev = objective.evaluate(natural, gradient=second, info=second)
    K = ev.cond_cov
    A = _engine.group_cross(data, Z, Z, winv)
    A = 0.5 * (A + A.transpose(0, 2, 1))
    B = _engine.group_cross(data, Z, X, winv)
    KB = K @ B
    xt = (X - _engine.rows_times_group(data, Z, KB)) * winv[:, None]  # V^-1 X
    H = X.T @ xt
    phi = np.linalg.inv(0.5 * (H + H.T))
    C = B - A @ KB                                                    # Z'V^-1 X
    cov_dirs, var_dirs = lay.info_directions(natural)
    k_cov = cov_dirs.shape[0]
    E = cov_dirs[index[index < k_cov]]
    d = r[:, None] * var_dirs[:, index[index >= k_cov] - k_cov]       # dr/dtheta
    kc, kv = E.shape[0], d.shape[1]
    k, p = kc + kv, X.shape[1]
    EC = np.einsum("kab,ibp->ikap", E, C)
    P = np.empty((k, p, p))
    P[:kc] = np.einsum("iap,ikar->kpr", C, EC)
    for l in range(kv):
        P[kc + l] = (xt * d[:, l:l + 1]).T @ xt
    Q = info = None
    if second:
        Q = _second_products(data, Z, xt, winv, A, K, C, EC, d)
        info = ev.info[np.ix_(index, index)]
    return _assemble(phi, P, Q, info, objective.reml, data.fe_basis, index, second)


def _assemble(phi, P, Q, info, reml, basis, index, second) -> Derivatives:
    """Derivatives from Phi, the P_k, and (``second``) the Q_kl and the
    ML expected information: dPhi_k = Phi P_k Phi, the REML information
    and the Kenward-Roger correction, in the columns of X (``basis``:
    ``GroupedData.fe_basis``, X = X_c M)."""
    k = P.shape[0]
    dphi = phi @ P @ phi
    out = Derivatives(phi, dphi, index)
    if second:
        if reml:
            info = (info - np.einsum("ab,klba->kl", phi, Q)
                    + 0.5 * np.einsum("kab,lba->kl", phi @ P, phi @ P))
        info = 0.5 * (info + info.T)
        try:
            np.linalg.cholesky(info)
            weights = np.linalg.inv(info)
        except np.linalg.LinAlgError:
            weights = np.linalg.pinv(info)  # as pbkrtest's ginv
        PphiP = np.einsum("kab,bc,lcd->klad", P, phi, P)
        U = np.einsum("kl,klab->ab", weights, Q - PphiP)
        out.info, out.weights = info, weights
        out.correction = phi @ (0.5 * (U + U.T)) @ phi
    if basis is not None:  # back to the columns of X (X = X_c M)
        out.phi = _linalg.back_transform(basis, out.phi)
        out.dphi = np.stack([_linalg.back_transform(basis, m) for m in out.dphi]) \
            if k else out.dphi
        if out.correction is not None:
            out.correction = _linalg.back_transform(basis, out.correction)
    return out


def _parameter_kinds(lay, index):
    """For each estimated natural parameter ``index[j]``: ("G", position
    in the covariance directions), ("var", column of the variance
    directions) or ("corr", position in the correlation block)."""
    kinds, k_var = {}, 0
    for block, sl in zip(lay.blocks, lay.block_slices):
        for j, pos in enumerate(range(sl.start, sl.stop)):
            if block.role == "re_cov":
                kinds[pos] = ("G", pos)
            elif block is lay.correlation_block:
                kinds[pos] = ("corr", j)
            else:
                kinds[pos] = ("var", k_var + j)
        if block.role != "re_cov" and block is not lay.correlation_block:
            k_var += block.k
    return [kinds[int(j)] for j in index]


#: Bound on the (k, m, n, n) arrays of one chunk of a bucket (entries).
_CHUNK_ENTRIES = 2_000_000


def _correlated_terms(objective, natural, index, second):
    """
    (Phi, P, Q, ML information) with a residual correlation structure,
    for the parameters ``index`` (Q and the information None without
    ``second``).

    A bucket of groups of equal size at a time (the structure's
    ``buckets``, batched), per group ``V = Z G Z' + S C S`` and

        V^-1 = S^-1 (C^-1 - C^-1 Z~ K Z~' C^-1) S^-1,
        K = L (I + L'Z~'C^-1 Z~ L)^-1 L'      (Z~ = S^-1 Z, G = L L')

    with C^-1 the structure's factor's (``bucket_factor(...).inverse``:
    tridiagonal for AR(1) / CAR(1)), so that nothing beyond the factor
    costs O(n_i^3) and a singular G is no obstacle.  The derivatives of V
    are exact and dense: ``Z E_k Z'`` for G, ``S (D C + C D) S`` with
    ``D = diag(w / 2)``, ``w = d log r / dtheta``, for a variance
    parameter, and ``S dC S`` for a correlation parameter, dC the
    structure's own (as in the correlated engine's expected information).
    Then ``P_k = sum_i X'V^-1 V_k V^-1 X`` and
    ``Q_kl = sum_i X'V^-1 V_k V^-1 V_l V^-1 X`` (O(n_i^2 p) per group and
    parameter); the ML expected information
    ``1/2 sum_i tr(V^-1 V_k V^-1 V_l)`` is the correlated engine's
    (``objective.evaluate(info=True)``).
    """
    data, lay = objective.grouped, objective.layout
    corr = lay.correlation_block
    cn = natural[lay.corr_natural]
    X, Z = data.exog, data.exog_z
    L = lay.factor(natural)
    q = L.shape[0]
    r = lay.resid_var(natural)
    sd = np.sqrt(r)
    cov_dirs, var_dirs = lay.info_directions(natural)
    kinds = _parameter_kinds(lay, index)
    k, p = len(kinds), X.shape[1]
    with_dC = any(kind == "corr" for kind, _ in kinds)
    H = np.zeros((p, p))
    P = np.zeros((k, p, p))
    Q = np.zeros((k, k, p, p)) if second else None
    for bucket in corr.buckets:
        m, n = bucket[1].shape
        step = max(1, _CHUNK_ENTRIES // max(1, (k + 2) * n * n))
        for start in range(0, m, step):
            sub = _sub_bucket(bucket, slice(start, start + step))
            rows = sub[1]
            factor = corr.bucket_factor(cn, sub, with_dC)
            C, Ci = factor.C, factor.inverse
            s = sd[rows]
            ss = s[:, :, None] * s[:, None, :]
            Zb, Xb = Z[rows], X[rows]
            CiZ = Ci @ (Zb / s[:, :, None]) @ L                # C^-1 Z~ L
            M = np.eye(q) + _t(Zb / s[:, :, None] @ L) @ CiZ
            Vi = (Ci - CiZ @ np.linalg.solve(M, _t(CiZ))) / ss
            Vi = 0.5 * (Vi + _t(Vi))
            VX = Vi @ Xb
            H += np.einsum("map,mar->pr", Xb, VX)
            dV = np.empty((k,) + Vi.shape)
            for j, (kind, pos) in enumerate(kinds):
                if kind == "G":
                    dV[j] = Zb @ cov_dirs[pos] @ _t(Zb)
                elif kind == "var":
                    w = 0.5 * var_dirs[rows, pos]
                    dV[j] = (ss * C) * (w[:, :, None] + w[:, None, :])
                else:
                    dV[j] = ss * factor.dC[pos]
            Y = dV @ VX                                       # V_k V^-1 X
            P += np.einsum("map,kmar->kpr", VX, Y)
            if second:
                ViY = Vi @ Y                                  # V^-1 V_k V^-1 X
                Q += np.einsum("kmap,lmar->klpr", Y, ViY)
    phi = np.linalg.inv(0.5 * (H + H.T))
    P = 0.5 * (P + _t(P))
    info = None
    if second:
        # the engine's information is ordered (G, variance, correlation)
        k_cov, k_var = lay.k_cov, var_dirs.shape[1]
        at = [pos + {"G": 0, "var": k_cov, "corr": k_cov + k_var}[kind]
              for kind, pos in kinds]
        ev = objective.evaluate(natural, gradient=True, info=True)
        info = ev.info[np.ix_(at, at)]
    return phi, P, Q, info


def _t(a):
    return np.swapaxes(a, -1, -2)


def _second_products(data, Z, xt, winv, A, K, C, EC, d):
    """Q_kl = X'V^-1 V_k V^-1 V_l V^-1 X, (k, k, p, p)."""
    kc, kv = EC.shape[1], d.shape[1]
    p = xt.shape[1]
    Q = np.empty((kc + kv, kc + kv, p, p))
    zvz = A - A @ K @ A                                               # Z'V^-1 Z
    Q[:kc, :kc] = np.einsum("ikap,iab,ilbr->klpr", EC, zvz, EC)
    if kv:
        zt = (Z - _engine.rows_times_group(data, Z, K @ A)) * winv[:, None]  # V^-1 Z
        F = []
        for l in range(kv):
            D = _engine.group_cross(data, zt, xt, d[:, l])            # Z'V^-1 V_l V^-1 X
            Q[:kc, kc + l] = np.einsum("ikap,iar->kpr", EC, D)
            Q[kc + l, :kc] = Q[:kc, kc + l].transpose(0, 2, 1)
            F.append(_engine.group_cross(data, Z, xt, d[:, l] * winv))
        for l in range(kv):
            for m in range(kv):
                w = d[:, l] * d[:, m] * winv
                Q[kc + l, kc + m] = ((xt * w[:, None]).T @ xt
                                     - np.einsum("iap,iab,ibr->pr", F[l], K, F[m]))
    return Q


# ----------------------------------------------------------------------
def _between_columns(exog, group_index, n_groups):
    """Mask of the columns of X that are constant within every group."""
    sizes = np.maximum(np.bincount(group_index, minlength=n_groups), 1)
    means = np.stack([np.bincount(group_index, weights=col, minlength=n_groups)
                      for col in exog.T], axis=1) / sizes[:, None]
    spread = np.abs(exog - means[group_index]).max(axis=0)
    scale = np.maximum(np.abs(exog).max(axis=0), 1e-300)
    return spread <= 1e-10 * scale


def build(method: str, objective, natural, index, theta_cov, fe_names, exog,
          group_index, n_groups) -> SmallSampleInference:
    """
    The small-sample method ``method`` (a key of ``METHODS``) at a fit.

    Parameters
    ----------
    objective : HeteroskedasticObjective
        The fit's objective (its criterion, ML or REML).
    natural : ndarray
        The estimate (natural vector).
    index : ndarray of int
        The estimated covariance parameters (positions in ``natural``).
    theta_cov : ndarray (k, k)
        Their covariance (inverse observed information), for Satterthwaite.
    fe_names : list of str
    exog : ndarray (n, p)
        The fixed-effects design (for the residual and between-within df).
    group_index : ndarray (n,) of int
    n_groups : int
    """
    n, p = exog.shape
    if method == "residual":
        return FixedDf(METHODS[method], pd.Series(float(n - p), index=fe_names,
                                                  name="df"))
    if method == "between-within":
        between = _between_columns(exog, group_index, n_groups)
        rank_b = np.linalg.matrix_rank(exog[:, between]) if between.any() else 0
        df_b = n_groups - rank_b
        df_w = n - n_groups - (p - rank_b)
        if df_b <= 0 or df_w <= 0:
            raise ValueError(
                f"between-within df: {df_b} between groups and {df_w} within "
                "them; the design leaves no residual df at one level. Use "
                "ddf='satterthwaite' or 'kenward-roger'.")
        df = np.where(between, float(df_b), float(df_w))
        return FixedDf(METHODS[method], pd.Series(df, index=fe_names, name="df"))
    d = derivatives(objective, natural, index, second=(method == "kenward-roger"))
    if method == "satterthwaite":
        return Satterthwaite(fe_names, d.phi, d.dphi, theta_cov)
    return KenwardRoger(fe_names, d.phi, d.dphi, d.weights,
                        d.phi + 2.0 * d.correction)
