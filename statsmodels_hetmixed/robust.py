"""
Cluster-robust (sandwich) covariance of the fixed effects.

The fixed effects solve the GLS equations ``sum_j X_j' W_j (y_j - X_j b) = 0``
with the fitted model's working covariance ``V_j = Z_j G Z_j' + R_j`` and
``W_j = V_j^-1`` (R_j the fitted residual covariance: the diagonal of the
possibly heteroskedastic residual variances, or ``S_i C_i S_i`` per group
with a residual correlation structure, ``correlation=``).  Their sandwich
covariance over clusters j = 1..m is

    M [ sum_j X_j' W_j A_j e_j e_j' A_j' W_j X_j ] M,   M = (X'V^-1 X)^-1,

with ``e_j = y_j - X_j b`` the marginal residuals and the adjustment ``A_j``:

* ``CR0``: ``A_j = I`` (Liang and Zeger).
* ``CR1``: ``A_j = sqrt(m / (m - 1)) I``.
* ``CR1S``: ``A_j = sqrt(m (N - 1) / ((m - 1) (N - p))) I``, the multiplier of
  Stata's ``regress, vce(cluster)``.
* ``CR2``: ``A_j = T_j' [T_j (V_j - X_j M X_j') T_j']^(-1/2) T_j`` for any
  ``T_j`` with ``T_j' T_j = V_j`` (Bell and McCaffrey 2002; Pustejovsky and
  Tipton 2018), the bias-reduced linearisation: unbiased when the working
  model is correct.  The inverse square root is a pseudo-inverse: eigenvalues
  at or below ``CR2_RTOL`` times the largest of the cluster are set to zero (a
  fixed effect identified within one cluster alone makes ``V_j - X_j M X_j'``
  singular).

These are the definitions of R's ``clubSandwich::vcovCR`` for ``nlme::lme``
fits (``vcovCR.lme``: the target is the fitted ``V_j``, ``inverse_var =
TRUE``, the residuals those of level 0); clubSandwich's ``CR1`` is ``m / (m -
1)`` and its ``CR1S`` Stata's regression multiplier.  clubSandwich sets
eigenvalues below an absolute 1e-12 (of ``V / sigma^2``) to zero in CR2; the
relative rule here does not depend on the data's units.

Degrees of freedom (``ClusterRobust.satterthwaite_df``): the Satterthwaite
approximation of Bell and McCaffrey as generalised by Pustejovsky and Tipton
(clubSandwich's ``coef_test(test = "Satterthwaite")`` and
``linear_contrast``): for a contrast c, ``c' V_R c`` is a quadratic form in
the residuals, ``sum_j (c' M E_j e_j)^2`` with ``E_j = X_j' W_j A_j``; under
the working model its first two moments give

    df = (tr P)^2 / ||P||_F^2,   P_jl = delta_jl g_j - h_j' h_l,
    g_j = c' M E_j V_j E_j' M c,   h_j = L_M' Q_j' M c,   Q_j = E_j X_j,

with ``L_M L_M' = M``.  Tests of several rows C (``ClusterRobust.htz_test``,
``wald_test`` / ``f_test`` under CR2): Pustejovsky and Tipton's Hotelling
T2 approximation ("HTZ", clubSandwich's ``Wald_test``), whose df come from
the same moments for pairs of rows (``ClusterRobust._moments``).

Clusters must nest the model's groups: the working covariance is then
block-diagonal across clusters (clubSandwich refuses the other case too).

Computation: CR0, CR1 and CR1S need per-group sums only (``_engine``'s
segment sums and the Woodbury form of V_j^-1), with no loop over groups.
With correlated residuals the same sums are taken over the whitened rows
(``W_i = L_i^-1 S_i^-1`` with ``C_i = L_i L_i'``, the correlated engine's
whitening, ``CorrelationStructure.whiten_rows``): X' V^-1 e =
X*' (Z* G Z*' + I)^-1 e*.  CR2 needs each cluster's V_j as a matrix:
clusters are bucketed by size, padded to the largest size of their bucket
(padding rows have no design, no residual and a variance of their own,
uncorrelated with the cluster's rows, which leaves every cluster's A_j on its
own rows unchanged) and processed as batched matrix algebra; a correlation
structure adds the R_i of each chunk's groups (``s_j s_k (C_i)_jk``, from
the structure's C_i) to the clusters' matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from . import _engine
from ._linalg import back_transform, correlation, covariance_rank
from .ddf import SmallSampleInference

__all__ = ["CORRECTIONS", "ClusterRobust", "cluster_robust", "cluster_codes"]

#: Corrections by name (clubSandwich's names).
CORRECTIONS = ("CR0", "CR1", "CR1S", "CR2")

#: Relative eigenvalue threshold of the CR2 inverse square root.  Exactly
#: singular directions have eigenvalues at the rounding level (1e-16 of the
#: largest); genuine ones are far above 1e-10.
CR2_RTOL = 1e-10

# Buckets of cluster sizes for CR2: sizes within a factor _BUCKET_RATIO are
# padded to the bucket's largest (at most ~1.56 times the elements of
# unpadded matrices), in chunks of at most _CHUNK_ELEMENTS per n x n array.
_BUCKET_RATIO = 1.25
_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class ClusterRobust:
    """
    A cluster-robust covariance of the fixed effects and what its
    Satterthwaite degrees of freedom need.

    Attributes
    ----------
    cov : ndarray (p, p)
        The sandwich covariance.
    correction : str
        One of ``CORRECTIONS``.
    n_clusters : int
    model_cov : ndarray (p, p)
        M = (X'V^-1 X)^-1, the model-based covariance (the bread).
    cross : ndarray (m, p, p)
        Q_j = X_j' W_j A_j X_j per cluster (A_j without CR1's constant).
    spread : ndarray (m, p, p)
        F_j = X_j' W_j A_j V_j A_j' W_j X_j per cluster (idem).
    fe_basis : ndarray (p, p) or None
        F when ``model_cov``, ``cross`` and ``spread`` belong to the
        centred design X_c = X F^-1 (``_engine.GroupedData.fe_basis``);
        ``cov`` is always that of the fixed effects of X.
    """

    cov: np.ndarray
    correction: str
    n_clusters: int
    model_cov: np.ndarray
    cross: np.ndarray
    spread: np.ndarray
    fe_basis: np.ndarray | None = None

    def satterthwaite_df(self, contrasts) -> np.ndarray:
        """
        Satterthwaite degrees of freedom of ``c' b`` for each row c of
        ``contrasts`` (Bell-McCaffrey, Pustejovsky-Tipton; see the module
        docstring).  Unchanged by the constant factors of CR1 and CR1S.

        Parameters
        ----------
        contrasts : array_like (r, p) or (p,)

        Returns
        -------
        ndarray (r,)
        """
        omega, var = self._moments(contrasts, full=False)
        return 2.0 * omega * omega / var

    def htz_test(self, contrasts, diff) -> HTZResult:
        """
        Hotelling's T2 test of ``C b = r`` with estimated degrees of freedom
        (Pustejovsky and Tipton 2018, "HTZ"; clubSandwich's ``Wald_test(...,
        test = "HTZ")``).

        With ``Q = d' (C V_R C')^-1 d`` (``d = C b - r``, V_R this
        sandwich) and q rows, ``Q`` is taken as Hotelling's T2 of a
        Wishart matrix whose degrees of freedom ``nu`` match the sum of
        the variances of ``Omega^-1/2 C V_R C' Omega^-1/2`` under the
        working model (``Omega = E[C V_R C']``; the variances are those of
        ``satterthwaite_df``'s quadratic forms):

            nu = q (q + 1) / sum_st Var(entry st),
            F = (nu - q + 1) / (nu q) Q  ~  F(q, nu - q + 1).

        For one row this is the squared t statistic with its Satterthwaite
        df.  Rows that are linear combinations of others are dropped (the
        test depends on the row space of C only).

        Parameters
        ----------
        contrasts : array_like (q, p) or (p,)
        diff : array_like (q,)
            ``C b - r``.

        Returns
        -------
        HTZResult
        """
        C = self._contrasts(contrasts)
        d = np.atleast_1d(np.asarray(diff, dtype=float))
        if d.shape != (C.shape[0],):
            raise ValueError(f"diff needs one value per row of the contrasts "
                             f"({C.shape[0]}), got shape {d.shape}")
        middle = C @ self.cov @ C.T
        rank, q = covariance_rank(middle)
        if rank < q:
            # a basis of the row space (the test is invariant to the basis),
            # from the correlation-scaled matrix that decided the rank
            R, zero = (x[0] for x in correlation(middle))
            if zero.all():
                raise ValueError("The constraint has no row with a nonzero "
                                 "variance.")
            R, C, d = R[np.ix_(~zero, ~zero)], C[~zero], d[~zero]
            sd = np.sqrt(np.diag(middle)[~zero])
            keep = np.linalg.eigh(R)[1][:, ::-1][:, :rank] / sd[:, None]
            C, d = keep.T @ C, keep.T @ d
            middle, q = C @ self.cov @ C.T, rank
        values, vectors = np.linalg.eigh(0.5 * (middle + middle.T))
        stat = float(d @ vectors @ ((vectors.T @ d) / values))
        # Omega^-1/2 C: the moments of a covariance estimate normalised to I
        ow, ov = np.linalg.eigh(self._moments(C, full=True, variance=False)[0])
        C = (ov / np.sqrt(ow)) @ ov.T @ C
        nu = q * (q + 1) / float(self._moments(C, full=True)[1].sum())
        df = nu - q + 1.0
        scale = max(df / nu, 0.0)
        F = scale * stat / q
        pvalue = float(stats.f.sf(F, q, df)) if df > 0 else np.nan
        return HTZResult(F, q, df, pvalue, scale, stat)

    def _contrasts(self, contrasts) -> np.ndarray:
        C = np.atleast_2d(np.asarray(contrasts, dtype=float))
        p = self.model_cov.shape[0]
        if C.ndim != 2 or C.shape[1] != p:
            raise ValueError(f"contrasts need {p} columns (one per fixed effect), "
                             f"got shape {np.shape(contrasts)}")
        return C

    def _moments(self, contrasts, full: bool, variance: bool = True):
        """
        ``Omega = E[C V_R C']`` and the variances of the entries of ``C V_R
        C'`` under the working model (Gaussian residuals; the module
        docstring's P_jl, here for pairs of rows s, t): diagonals (r,) if
        not ``full``, else (r, r) matrices, the variances those of
        clubSandwich's ``total_variance_mat``:

            Var_st = K(s,t,t,s) + K(s,s,t,t),
            K(s,t,u,v) = sum_jl P^st_jl P^uv_jl
                       = sum_j (g_st g_uv - g_st d_uv - g_uv d_st)_j
                         + tr(M S_tv M S_us),

        ``g_st,j = c_s' M F_j M c_t``, ``a_sj = Q_j' M c_s``, ``d_st,j =
        a_sj' M a_tj``, ``S_st = sum_j a_sj a_tj'``.  Unchanged by the
        constant factors of CR1 and CR1S.  ``variance=False``: Omega only
        (None for the variances).
        """
        C = self._contrasts(contrasts)
        M = self.model_cov
        if self.fe_basis is not None:  # c'b = c'F^-1 b_c
            C = np.linalg.solve(self.fe_basis.T, C.T).T
        Mc = C @ M                                             # (r, p)
        a = np.einsum("jqp,rq->rjp", self.cross, Mc)           # a_sj = Q_j' M c_s
        if not full:
            g = np.einsum("rp,jpq,rq->rj", Mc, self.spread, Mc)
            d = np.einsum("rjp,pq,rjq->rj", a, M, a)
            omega = g.sum(axis=1) - d.sum(axis=1)
            if not variance:
                return omega, None
            MS = M @ np.einsum("rjp,rjq->rpq", a, a)           # M S_ss
            K = ((g * g).sum(axis=1) - 2.0 * (g * d).sum(axis=1)
                 + np.einsum("rpq,rqp->r", MS, MS))
            return omega, 2.0 * K
        g = np.einsum("sp,jpq,tq->stj", Mc, self.spread, Mc)
        d = np.einsum("sjp,pq,tjq->stj", a, M, a)
        omega = g.sum(axis=2) - d.sum(axis=2)
        if not variance:
            return omega, None
        MS = M @ np.einsum("sjq,tjr->stqr", a, a)              # M S_st
        gg, dg = g.diagonal().T, d.diagonal().T                # g_ss,j, d_ss,j
        # g and d are symmetric in s, t
        k_tts = ((g * g).sum(axis=2) - 2.0 * (g * d).sum(axis=2)
                 + np.einsum("tspq,tsqp->st", MS, MS))
        k_stt = (gg @ gg.T - gg @ dg.T - dg @ gg.T
                 + np.einsum("stpq,tsqp->st", MS, MS))
        return omega, k_tts + k_stt


@dataclass(frozen=True)
class HTZResult:
    """
    Hotelling's T2 test with estimated df (``ClusterRobust.htz_test``).

    Attributes
    ----------
    F : float
        ``scale * Q / df_num``.
    df_num : int
        The rank q of the constraint.
    df_denom : float
        ``nu - q + 1``.
    pvalue : float
        Of F(df_num, df_denom); NaN when ``df_denom <= 0``.
    scale : float
        ``max((nu - q + 1) / nu, 0)``, clubSandwich's ``delta``.
    wald : float
        The Wald statistic Q.
    """

    F: float
    df_num: int
    df_denom: float
    pvalue: float
    scale: float
    wald: float


def cluster_codes(labels, group_index, n_groups: int):
    """
    Integer codes 0..m-1 of cluster labels, checked against the groups.

    Parameters
    ----------
    labels : array_like (n,)
        A cluster label per row (the rows of the model's data).
    group_index : ndarray (n,) of int
        The model's group of each row.
    n_groups : int

    Returns
    -------
    codes : ndarray (n,) of int
    names : list
        The labels of the clusters, sorted.

    Raises
    ------
    ValueError
        For labels of the wrong length, missing labels, a single cluster,
        or clusters that split one of the model's groups.
    """
    labels = pd.Series(np.asarray(labels)) if not isinstance(labels, pd.Series) \
        else labels.reset_index(drop=True)
    n = len(group_index)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(
            f'cov_kwds["groups"] needs one cluster label per row of the model\'s '
            f"data ({n} rows, after dropping missing values), got {len(labels)}.")
    if labels.isna().any():
        raise ValueError('cov_kwds["groups"] has missing values; every row needs '
                         "a cluster.")
    codes, names = pd.factorize(labels, sort=True)
    m = len(names)
    if m < 2:
        raise ValueError("A cluster-robust covariance needs at least two clusters; "
                         f'cov_kwds["groups"] has {m}.')
    # Each group must sit in one cluster: the working covariance is then
    # block-diagonal across clusters.
    first = np.full(n_groups, -1)
    first[group_index[::-1]] = codes[::-1]
    split = np.flatnonzero(first[group_index] != codes)
    if split.size:
        raise ValueError(
            "The clusters do not nest the model's groups: rows of one group "
            f"(e.g. the group of row {split[0]}) are in different clusters. The "
            "model's random effects correlate all rows of a group, so the "
            "clusters must be the groups or a coarser level that contains whole "
            "groups (as clubSandwich requires).")
    return codes.astype(np.intp), list(names)


def _multiplier(correction, m, n, p):
    if correction == "CR1":
        return m / (m - 1.0)
    if correction == "CR1S":
        return m * (n - 1.0) / ((m - 1.0) * (n - p))
    return 1.0


def cluster_robust(exog, exog_z, group_index, factor, resid_var, resid, model_cov,
                   clusters=None, correction: str = "CR1",
                   grouped: _engine.GroupedData | None = None,
                   fe_basis=None, correlation=None) -> ClusterRobust:
    """
    Cluster-robust covariance of GLS fixed effects under a working
    covariance ``V_j = Z_j L L' Z_j' + R_j``, ``R_j = diag(resid_var)`` or,
    with ``correlation``, ``S_i C_i S_i`` for each group i of the cluster.

    Parameters
    ----------
    exog : ndarray (n, p)
        Fixed-effects design X.
    exog_z : ndarray (n, q)
        Random-effects design Z (variance components padded, as the engine's).
    group_index : ndarray (n,) of int
        The model's group of each row, 0 .. n_groups - 1.
    factor : ndarray (q, q)
        L with G = L L'.
    resid_var : ndarray (n,)
        Residual variances.
    resid : ndarray (n,)
        Marginal residuals y - X b.
    model_cov : ndarray (p, p)
        (X'V^-1 X)^-1 at the same parameters.
    clusters : ndarray (n,) of int, optional
        Cluster codes 0..m-1 (from ``cluster_codes``); the groups by default.
    correction : {"CR0", "CR1", "CR1S", "CR2"}
    grouped : GroupedData, optional
        The engine's data of the same rows and groups (for its per-group
        sums); built when not given.
    fe_basis : ndarray (p, p), optional
        F when ``exog`` and ``model_cov`` are those of the centred design
        X F^-1 (the engine's ``fe_basis``, which keeps the digits of
        covariates far from their origin); the covariance returned is that
        of the fixed effects of X.
    correlation : tuple, optional
        ``(structure, natural)``: a residual correlation structure bound to
        the same rows (``structures.CorrelationStructure``) and its natural
        parameters; R_i = S_i C_i S_i with S_i = diag(sqrt(resid_var)).

    Returns
    -------
    ClusterRobust
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"Unknown correction {correction!r}: use one of "
                         f"{', '.join(CORRECTIONS)}.")
    X = np.asarray(exog, dtype=float)
    Z = np.asarray(exog_z, dtype=float)
    n, p = X.shape
    group_index = np.asarray(group_index, dtype=np.intp)
    n_groups = int(group_index.max()) + 1
    clusters = group_index if clusters is None else np.asarray(clusters, np.intp)
    m = int(clusters.max()) + 1
    if m < 2:
        raise ValueError("A cluster-robust covariance needs at least two clusters.")
    M = np.asarray(model_cov, dtype=float)
    resid = np.asarray(resid, dtype=float)
    resid_var = np.asarray(resid_var, dtype=float)
    if correction == "CR2":
        score, cross, spread = _cr2_pieces(X, Z, group_index, clusters, m, factor,
                                           resid_var, resid, M, correlation)
    else:
        if grouped is None:
            grouped = _engine.GroupedData.build(resid, X, Z, group_index, n_groups)
        if correlation is None:
            score, cross = _gls_pieces(grouped, X, Z, factor, resid_var, resid)
        else:
            # the whitened rows have residual covariance I
            block, natural = correlation
            rows = np.column_stack([X, Z, resid]) / np.sqrt(resid_var)[:, None]
            rows = block.whiten_rows(natural, rows)
            score, cross = _gls_pieces(grouped, rows[:, :p], rows[:, p:-1], factor,
                                       np.ones(n), rows[:, -1])
        if m != n_groups or not np.array_equal(clusters, group_index):
            # sum the groups' pieces within clusters
            of_group = np.zeros(n_groups, dtype=np.intp)
            of_group[group_index] = clusters
            score = _sum_by(of_group, score, m)
            cross = _sum_by(of_group, cross, m)
        spread = cross  # X'W V W X = X'W X when A = I
    meat = score.T @ score
    cov = _multiplier(correction, m, n, p) * (M @ meat @ M)
    if fe_basis is not None:
        fe_basis = np.asarray(fe_basis, dtype=float)
        cov = back_transform(fe_basis, cov)
    return ClusterRobust(0.5 * (cov + cov.T), correction, m, M, cross, spread,
                         fe_basis)


def _sum_by(codes, values, m):
    out = np.zeros((m,) + values.shape[1:])
    np.add.at(out, codes, values)
    return out


def _gls_pieces(grouped, X, Z, factor, resid_var, resid):
    """Per group: X_g' V_g^-1 e_g and X_g' V_g^-1 X_g, from the Woodbury form
    V^-1 = R^-1 - R^-1 Z K Z' R^-1 with K = L (I + L'Z'R^-1 Z L)^-1 L'."""
    winv = 1.0 / resid_var
    q = Z.shape[1]
    xe = np.column_stack([X, resid])
    xtx = _engine.group_cross(grouped, X, xe, winv)          # (g, p, p+1)
    if q == 0:
        return xtx[:, :, -1], xtx[:, :, :-1]
    A = _engine.group_cross(grouped, Z, Z, winv)
    B = _engine.group_cross(grouped, Z, xe, winv)            # (g, q, p+1)
    L = np.asarray(factor, dtype=float)
    Mg = L.T @ A @ L
    Mg[:, np.arange(q), np.arange(q)] += 1.0
    K = L @ np.linalg.solve(Mg, np.broadcast_to(L.T, Mg.shape))
    full = xtx - np.swapaxes(B[:, :, :-1], 1, 2) @ K @ B
    return full[:, :, -1], full[:, :, :-1]


def _buckets(sizes):
    """Cluster ids in groups of similar size (each padded to its largest)."""
    order = np.argsort(sizes, kind="stable")
    out, start = [], 0
    while start < len(order):
        top = sizes[order[start]] * _BUCKET_RATIO
        stop = start
        while stop < len(order) and sizes[order[stop]] <= top:
            stop += 1
        stop = max(stop, start + 1)
        width = int(sizes[order[stop - 1]])
        step = max(1, _CHUNK_ELEMENTS // max(width * width, 1))
        for s in range(start, stop, step):
            out.append((order[s:min(stop, s + step)], width))
        start = stop
    return out


def _cr2_pieces(X, Z, group_index, clusters, m, factor, resid_var, resid, M,
                correlation=None):
    """X_j'W_j A_j e_j, Q_j and F_j of CR2 for every cluster (module
    docstring); ``correlation``: ``(structure, natural)`` as in
    ``cluster_robust``."""
    n, p = X.shape
    sizes = np.bincount(clusters, minlength=m)
    order = np.lexsort((group_index, clusters))   # rows by cluster, then group
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    ZL = Z @ np.asarray(factor, dtype=float)
    if correlation is not None:
        block, natural = correlation[0], np.asarray(correlation[1], dtype=float)
        s = np.sqrt(resid_var)
        cluster_of_group = np.empty(int(group_index.max()) + 1, dtype=np.intp)
        cluster_of_group[group_index] = clusters
        in_chunk = np.zeros(m, dtype=bool)
        slot = np.empty(n, dtype=np.intp)     # a row's cluster within its chunk
        place = np.empty(n, dtype=np.intp)    # and its position there
    score = np.empty((m, p))
    cross = np.empty((m, p, p))
    spread = np.empty((m, p, p))
    for ids, width in _buckets(sizes):
        k = len(ids)
        pos = np.arange(width)
        valid = pos < sizes[ids][:, None]                          # (k, w)
        rows = order[(starts[ids][:, None] + np.where(valid, pos, 0))[valid]]
        Xp = np.zeros((k, width, p))
        Xp[valid] = X[rows]
        ep = np.zeros((k, width))
        ep[valid] = resid[rows]
        ZLp = np.zeros((k, width, ZL.shape[1]))
        ZLp[valid] = ZL[rows]
        gp = np.full((k, width), -1)
        gp[valid] = group_index[rows]
        rp = np.zeros((k, width))
        V = (ZLp @ np.swapaxes(ZLp, 1, 2)) * (gp[:, :, None] == gp[:, None, :])
        if correlation is None:
            rp[valid] = resid_var[rows]
        else:
            # R_i = S_i C_i S_i of the chunk's groups, from the structure
            slot[rows], place[rows] = np.nonzero(valid)
            in_chunk[ids] = True
            for g_rows, C in block.matrices_of(natural, in_chunk[cluster_of_group]):
                sg = s[g_rows]
                a = np.broadcast_to(g_rows[:, :, None], C.shape)
                b = np.broadcast_to(g_rows[:, None, :], C.shape)
                V[slot[a], place[a], place[b]] += C * sg[:, :, None] * sg[:, None, :]
            in_chunk[ids] = False
        # Padding rows get the cluster's mean variance: unit-free, and an
        # eigenvalue of the cluster's own size for the relative threshold.
        mean_var = (np.einsum("kii->ki", V) + rp).sum(axis=1) / sizes[ids]
        rp[~valid] = np.broadcast_to(mean_var[:, None], rp.shape)[~valid]
        V[:, pos, pos] += rp
        LV = np.linalg.cholesky(V)                                 # V = LV LV'
        WX = np.linalg.solve(V, Xp)                                # W X
        B = V - Xp @ M @ np.swapaxes(Xp, 1, 2)
        Gm = np.swapaxes(LV, 1, 2) @ B @ LV                        # T B T', T = LV'
        Gm = 0.5 * (Gm + np.swapaxes(Gm, 1, 2))
        w, U = np.linalg.eigh(Gm)
        keep = w > CR2_RTOL * w[:, -1:]
        inv_sqrt = np.where(keep, 1.0 / np.sqrt(np.where(keep, w, 1.0)), 0.0)
        # A = T' G^-1/2 T applied to [W X, e] only (A is symmetric): products
        # with p + 1 columns instead of three more n x n products
        rhs = np.swapaxes(LV, 1, 2) @ np.concatenate([WX, ep[:, :, None]], axis=2)
        rhs = U @ (inv_sqrt[:, :, None] * (np.swapaxes(U, 1, 2) @ rhs))
        rhs = LV @ rhs
        AWX, Ae = rhs[:, :, :p], rhs[:, :, p]
        score[ids] = np.einsum("kwp,kw->kp", WX, Ae)               # X'W A e
        cross[ids] = np.swapaxes(AWX, 1, 2) @ Xp
        spread[ids] = np.swapaxes(AWX, 1, 2) @ V @ AWX
    return score, cross, spread


# ----------------------------------------------------------------------
# Results: cov_type / cov_kwds as statsmodels names them

class CR2Satterthwaite(SmallSampleInference):
    """
    The tests' degrees of freedom under a CR2 covariance, in the interface
    the results read (``ddf.SmallSampleInference``): ``df_fe`` per fixed
    effect and ``contrast_df`` for ``t_test`` (Satterthwaite,
    ``ClusterRobust.satterthwaite_df``), ``cov_fe`` the sandwich, and
    ``f_test`` for ``wald_test`` / ``f_test`` of several rows:
    Pustejovsky and Tipton's Hotelling T2 approximation with estimated df
    (``ClusterRobust.htz_test``; clubSandwich's ``Wald_test(test =
    "HTZ")``), which reduces to ``t^2`` with the Satterthwaite df for one
    row.
    """

    name = "Satterthwaite (CR2, Bell-McCaffrey)"

    def __init__(self, robust: ClusterRobust, names):
        self.robust = robust
        self.cov_fe = robust.cov
        k = robust.cov.shape[0]
        self.df_fe = pd.Series(robust.satterthwaite_df(np.eye(k)), index=names,
                               name="df")

    def contrast_df(self, contrast) -> float:
        return float(self.robust.satterthwaite_df(contrast)[0])

    def f_test(self, contrast, diff, cov_fe):
        # the sandwich of the robust fit: the results' own covariance
        test = self.robust.htz_test(contrast, diff)
        return test.F, test.df_num, test.df_denom


#: Covariance types of ``fit(cov_type=...)`` and ``get_robustcov_results``.
COV_TYPES = ("nonrobust", "cluster")

_COV_KWDS = ("correction", "groups")

NONROBUST_DESCRIPTION = (
    "Standard errors assume that the covariance matrix of the errors is "
    "correctly specified: (X'V^-1 X)^-1 for the fixed effects, the inverse "
    "observed information for the covariance parameters.")


def check_cov_args(cov_type, cov_kwds) -> tuple[str, dict]:
    """
    Validate ``cov_type`` and ``cov_kwds``.

    Returns
    -------
    cov_type : str
    options : dict
        ``{"correction": "CR0" | "CR1" | "CR1S" | "CR2", "groups": labels or
        None}`` for ``"cluster"``; empty for ``"nonrobust"``.
    """
    if not isinstance(cov_type, str) or cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {', '.join(map(repr, COV_TYPES))}, "
                         f"not {cov_type!r}.")
    cov_kwds = {} if cov_kwds is None else cov_kwds
    if not isinstance(cov_kwds, dict):
        raise TypeError("cov_kwds must be a dict, e.g. {'correction': 'CR2'}, not "
                        f"{type(cov_kwds).__name__}.")
    if cov_type == "nonrobust":
        if cov_kwds:
            raise ValueError(f"cov_kwds {sorted(cov_kwds)} apply to cov_type="
                             "'cluster' only; cov_type='nonrobust' takes none.")
        return cov_type, {}
    unknown = sorted(set(cov_kwds) - set(_COV_KWDS))
    if unknown:
        raise ValueError(f"Unknown cov_kwds {unknown} for cov_type='cluster': the "
                         f"keys are {', '.join(map(repr, _COV_KWDS))}.")
    correction = cov_kwds.get("correction", "CR1")
    if not isinstance(correction, str) or correction.upper() not in CORRECTIONS:
        raise ValueError(f'cov_kwds["correction"] must be one of '
                         f"{', '.join(CORRECTIONS)}, not {correction!r}.")
    return cov_type, {"correction": correction.upper(),
                      "groups": cov_kwds.get("groups")}


def cluster_labels(model, groups):
    """
    Cluster codes, their count and their name (a column's, or None) from
    ``cov_kwds["groups"]``: a column of the formula's data or one label per
    row; None: the model's groups.  ValueError for labels that
    ``cluster_codes`` refuses.
    """
    if groups is None:
        return model._group_index, model.n_groups, None
    name = None
    if isinstance(groups, str):
        frame = getattr(model.data, "frame", None)
        if frame is None or groups not in frame:
            raise ValueError(
                f'cov_kwds["groups"] = {groups!r} is not a column of the model\'s '
                "data; give a column name of the formula's data frame or one "
                "cluster label per row.")
        name, groups = groups, frame[groups]
    codes, names = cluster_codes(groups, model._group_index, model.n_groups)
    return codes, len(names), name


def apply_cov_type(results, cov_type, cov_kwds) -> None:
    """
    Set ``results``' covariance of the fixed effects to the one asked for
    (in place, before anything is cached): ``cov_type``, ``cov_kwds``,
    ``cov_params_default`` (fixed-effect block: the sandwich; the
    covariance-parameter block: unchanged, model-based; the cross block:
    zero) and the small-sample df the tests read (``results._ddf``): for
    CR2 its Satterthwaite df (``CR2Satterthwaite``), for CR0, CR1 and CR1S
    none (z-tests, as Stata's ``vce(robust)``); ``"nonrobust"`` restores
    the fit's own.
    """
    cov_type, options = check_cov_args(cov_type, cov_kwds)
    if "_ddf_model" not in vars(results):
        # the df of the model-based covariance (None: z-tests), to restore
        results._ddf_model = getattr(results, "_ddf", None)
    results.cov_type = cov_type
    if cov_type == "nonrobust":
        results.cov_kwds = {"description": NONROBUST_DESCRIPTION}
        results._ddf = results._ddf_model
        return
    model = results.model
    if getattr(model, "k_var_re", 0):
        raise NotImplementedError(
            "cov_type='cluster' is not available for location-scale models "
            "(random scale effects): their fixed effects are not GLS estimates "
            "under one working covariance.")
    correction = options["correction"]
    codes, m, label = cluster_labels(model, options["groups"])
    robust = results_cluster_robust(results, codes, correction)
    k_fe = results.k_fe
    full = np.array(results.cov_params(), dtype=float)
    full[:k_fe, :] = 0.0
    full[:, :k_fe] = 0.0
    full[:k_fe, :k_fe] = robust.cov
    results.cov_params_default = full
    results._cluster_robust = robust
    clusters = f"{m} clusters" + ("" if label is None else f" of {label}")
    results.cov_kwds = {
        "correction": correction,
        "n_clusters": m,
        "groups": label,
        "description": (
            f"Standard errors of the fixed effects are cluster-robust "
            f"({correction}, {clusters}); those of the covariance and "
            "variance-function parameters are model-based."),
        "summary": f"cluster-robust ({correction}, {clusters})",
    }
    # model-based df do not belong to a sandwich: CR2 has its own, the
    # others z-tests
    results._ddf = (CR2Satterthwaite(robust, list(model.exog_names)[:k_fe])
                    if correction == "CR2" else None)


def results_cluster_robust(results, clusters, correction) -> ClusterRobust:
    """``cluster_robust`` at a fit's estimates: its working covariance
    (with its residual correlation structure, if any), marginal residuals
    and (X'V^-1 X)^-1, in the engine's centred columns."""
    model = results.model
    grouped = model._grouped
    lay = results.layout
    natural = results._natural
    factor = lay.factor(natural)
    resid_var = lay.resid_var(natural)
    # the objective's own evaluation (diagonal or correlated engine)
    ev = model._objective(reml=True).evaluate(natural)
    xtvix = ev.xtvix if ev.fe_basis is None else ev.xtvix_centred
    fe = np.asarray(results.fe_params, dtype=float)
    resid = grouped.endog - model.exog @ fe
    block = lay.correlation_block
    correlation = None if block is None else (block, np.asarray(natural)[lay.corr_natural])
    return cluster_robust(grouped.exog, grouped.exog_z, grouped.group_index, factor,
                          resid_var, resid, np.linalg.inv(xtvix), clusters,
                          correction, grouped=grouped, fe_basis=grouped.fe_basis,
                          correlation=correlation)
