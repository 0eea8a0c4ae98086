"""
The Gaussian likelihood with correlated residuals, by whitening.

Private module.  For group i the residual covariance is
``R_i = S_i C_i S_i`` (``S_i = diag(s_ij)``, s_ij^2 the variance blocks'
r_ij, ``C_i`` a correlation block's matrix).  With ``C_i = U_i U_i'``
(Cholesky) and ``W_i = U_i^-1 S_i^-1`` the whitened rows ``X* = W X``,
``Z* = W Z``, ``y* = W y`` have residual covariance I, so the diagonal
engine (:func:`._engine.evaluate` with unit residual variances) gives the
fixed effects, X'V^-1 X, the BLUPs, their covariances and d llf / dG
exactly, and

    llf = llf* - 1/2 (sum_j log r_ij + sum_i log |C_i|).

Gradient of the residual parameters: d llf / d theta = 1/2 tr(Omega dR) with
``Omega = V^-1 r r' V^-1 - P`` (P = V^-1 for ML; REML subtracts
V^-1 X H^-1 X' V^-1).  Per group, with ``N = S Omega S`` (n_i x n_i),

    N = b b' - Q + xi xi'     (the last term REML only)

where ``b = S V^-1 r``, ``Q = S V^-1 S = C^-1 - Y K Y'`` (``Y = C^-1 Z/s``,
K the engine's Var(u | y)) and ``xi xi' = (S V^-1 X) H^-1 (S V^-1 X)'``.
Then d llf / d log r_ij = 1/2 (C N)_jj (reduces to the engine's grad_eta
when C = I) and d llf / d gamma = 1/2 tr(N dC / d gamma) for a
correlation parameter gamma.

Expected information ``I_ab = 1/2 tr(V^-1 dV_a V^-1 dV_b)``, per group with
``P = C Q``, ``Yq = Q Z/s`` and w_a = d log r / d a (rows):

* variance x variance: 1/2 w_a' H w_b, H = 1/2 [P o P' + (P C) o Q];
* variance x correlation: 1/2 sum_j w_aj (P (Q dC)')_jj;
* correlation x correlation: 1/2 tr(Q dC_k Q dC_l);
* G x variance: 1/2 sum_j w_aj (C Yq E Yq')_jj;
* G x correlation: 1/2 tr(E Yq' dC Yq);
* G x G: the engine's, on the whitened data.

Groups are bucketed by size (``CorrelationStructure.buckets``) and the
per-group algebra is batched over each bucket; there is no loop over
groups.  The structure gives each bucket's factor
(``CorrelationStructure.bucket_factor``): by default a batched Cholesky of
the dense C_i (``DenseFactor``, O(n_i^3)); AR(1) and CAR(1) a bidiagonal
L_i^-1 (``BidiagonalFactor``), with their own O(n_i) gradient and expected
information (no dense matrix), and an analytic observed information
(``observed_information``; the other structures' is differenced from the
gradient).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _engine
from ._linalg import chol_solve, cholesky_equilibrated
from .structures.correlation import (_by_direction, _group_sums, _outer_rows,
                                     _row_dot, _swap, _times_k, _tridiagonal_form)

__all__ = ["evaluate", "observed_information", "has_observed_information"]


class _Rows:
    """A bucket's rows (``CorrelationStructure.buckets``): ``take(v)``
    reads v's rows as (m, n, ...) -- a view where the rows are consecutive
    in the data (``bucket_rows``), else a gathered copy -- and
    ``put(out, v)`` writes them back."""

    def __init__(self, idx, rows):
        self.idx, self.rows = idx, rows

    def take(self, v):
        if self.rows is None:
            return v[self.idx]
        return v[self.rows].reshape(self.idx.shape + v.shape[1:])

    def put(self, out, v):
        if self.rows is None:
            out[self.idx] = v
        else:
            out[self.rows] = v.reshape((-1,) + v.shape[2:])


def _bucket_rows(block):
    return [_Rows(b[1], r) for b, r in zip(block.buckets, block.bucket_rows)]


class BucketDirections:
    """
    The variance directions w = d log r / d a (n, k_var) as the expected
    information reads them, bucket by bucket: ``rows`` (C order), and per
    bucket ``by_group`` (m, n, k_var) and ``by_direction`` (k_var, n, m),
    the position-major copy ``BidiagonalFactor.information`` reads.

    Built once per fit where w does not depend on the parameters (a
    log-linear variance function: the objective keeps it) instead of in
    every evaluation: the copies were a tenth of an AR(1) evaluation's
    time, most of it the page faults of their fresh memory.
    """

    def __init__(self, block, w):
        self.source = w
        self.rows = np.ascontiguousarray(w, dtype=np.float64)
        self.by_group, self.by_direction = [], []
        for at in _bucket_rows(block):
            wb = at.take(self.rows)
            self.by_group.append(wb)
            self.by_direction.append(
                _by_direction(wb) if getattr(block, "_sparse_inverse", False) else None)


def _whiten(data, block, natural, resid_var, derivative):
    """(whitened GroupedData, per-bucket factors, sum log|C_i|)."""
    inv_s = 1.0 / np.sqrt(resid_var)
    parts = [data.exog, _engine._engine_z(data), data.endog[:, None]]
    separate_z = data.exog_zc is not None and data.exog_zc is not data.exog_z
    if separate_z:
        parts.append(data.exog_z)
    # each part whitened into its own array, in the part's memory order
    # (the designs are Fortran-ordered, as the engine reads them: a
    # bucket's rows are then read and written a column at a time; into
    # C-ordered arrays each step read the columns 8 x n bytes apart, and
    # an evaluation of the value took about 2 ms longer at 100,000 rows),
    # the scaling S^-1 inside the factor's product
    outs = [np.empty_like(part, dtype=np.float64) for part in parts]
    factors, logdet = [], 0.0
    for bucket, at in zip(block.buckets, _bucket_rows(block)):
        factor = block.bucket_factor(natural, bucket, derivative)
        scale = at.take(inv_s)
        if hasattr(factor, "scaled_bands"):   # the same bands for every part
            scale = factor.scaled_bands(scale)
        for part, out in zip(parts, outs):
            if at.rows is not None:   # straight into the output's rows (a view)
                factor.whiten(at.take(part), scale, out=at.take(out))
            else:
                at.put(out, factor.whiten(at.take(part), scale))
        logdet += factor.logdet
        factors.append(factor)
    Xw, Zw, yw = outs[0], outs[1], outs[2][:, 0]
    wdata = dataclasses.replace(
        data, endog=yw, exog=Xw, exog_zc=Zw, exog_z=outs[3] if separate_z else Zw)
    return wdata, factors, logdet


def _t(a):
    return a.transpose(0, 2, 1)


def evaluate(data, block, natural, factor, resid_var, reml, fe_params=None,
             gradient=False, info_directions=None, log_resid_var_sum=None):
    """
    The engine's evaluation for correlated residuals (see the module
    docstring); arguments as ``_engine.evaluate``, plus the bound
    correlation ``block`` and its ``natural`` parameters.  The result's
    ``grad_eta`` is d llf / d log r_ij, ``grad_corr`` d llf / d natural
    correlation parameters, ``info`` the expected information in the
    order (G, variance, correlation); ``vinv_resid`` is V^-1 (y - X b) and
    ``resid_marginal`` y - X b in the data's rows (not whitened).
    ``log_resid_var_sum``: sum_j log r_j where the caller knows it (as
    ``_engine.evaluate``'s).

    Per group the work is O(n_i^2 (q + k)) beyond the structure's own
    factorisation: the products with C and C^-1 the formulas need are
    rank-q corrections (C Q = I - Z~ K Y', C Y = Z~ for Y = C^-1 Z~), and
    C^-1 times a matrix is the structure's (``inverse_dot``: a
    tridiagonal product for AR(1) / CAR(1)).

    Raises ``np.linalg.LinAlgError`` where a C_i is not positive definite.
    """
    wdata, factors, logdet_C = _whiten(data, block, natural, resid_var, gradient)
    n = data.nobs
    # unit residual variances: sum log r* = 0 needs no logarithms of rows;
    # the expected information is this module's (G's block too)
    ev = _engine.evaluate(wdata, factor, np.ones(n), reml, fe_params=fe_params,
                          gradient=gradient, log_resid_var_sum=0.0)
    if log_resid_var_sum is None:
        log_resid_var_sum = np.log(resid_var).sum()
    ev.llf -= 0.5 * (log_resid_var_sum + logdet_C)
    F = data.fe_basis
    fe_c = ev.fe_params if F is None else F @ ev.fe_params
    ev.resid_marginal = data.endog - data.exog @ fe_c
    if not gradient:
        return ev

    s = np.sqrt(resid_var)
    a = ev.vinv_resid                        # V*^-1 r*, whitened rows
    A, B, _, K, _ = ev.group_summaries       # engine's centred coordinates
    Zw = _engine._engine_z(wdata)
    Zt = _engine._engine_z(data) / s[:, None]    # Z~ = Z / s (centred columns)
    sparse = has_observed_information(block)   # AR(1), CAR(1)
    Xi_rows = chol_H_inv_t = None
    if reml:
        H = ev.xtvix if F is None else ev.xtvix_centred
        chol_H_inv_t = np.linalg.inv(np.linalg.cholesky(H)).T
        xh = wdata.exog - _engine.rows_times_group(wdata, Zw, K @ B)
        # x^ chol_H^-T (x^ H^-1 x^' = Xi Xi'), by the (p, p) inverse: a
        # product of the rows (np.linalg.solve with the n rows as right-hand
        # sides took 8 ms at 100,000 rows)
        Xi_rows = xh @ chol_H_inv_t
    coloured = _coloured_rows(data, ev, s, Zt, chol_H_inv_t) if sparse else None
    k = block.k
    grad_eta = np.empty(n)
    grad_corr = np.zeros(k)
    vinv_resid = np.empty(n)
    with_info = info_directions is not None
    if with_info:
        E = np.asarray(info_directions[0])
        dirs_b = info_directions[1]
        if not isinstance(dirs_b, BucketDirections):
            dirs_b = BucketDirections(block, dirs_b)
        w = dirs_b.rows
        k_cov, k_var = E.shape[0], w.shape[1]
        I_vv = np.zeros((k_var, k_var))
        I_vc = np.zeros((k_var, k))
        I_cc = np.zeros((k, k))
        I_Gv = np.zeros((k_cov, k_var))
        I_Gc = np.zeros((k_cov, k))
    for j_b, (bucket, fac, at) in enumerate(zip(block.buckets, factors,
                                                _bucket_rows(block))):
        groups, idx = bucket[0], bucket[1]
        a_b = at.take(a)
        b = fac.whiten_t(a_b[:, :, None])[:, :, 0]          # S V^-1 r
        at.put(vinv_resid, b / at.take(s))
        if sparse:
            # a structure with its own O(n) gradient and information
            Zw_b, Zt_b = at.take(Zw), at.take(Zt)
            La = at.take(coloured)
            K_b = K[groups]
            # B'Z* and Z~ K, which the gradient and the information share
            G_b, F_b = fac.whiten_t(Zw_b), _times_k(Zt_b, K_b)
            g_eta, g_corr = fac.gradient(
                a_b, La[..., 0], Zw_b, Zt_b, K_b,
                None if Xi_rows is None else at.take(Xi_rows),
                None if Xi_rows is None else La[..., 1:], b=b, ZK=F_b, Y=G_b)
            at.put(grad_eta, g_eta)
            grad_corr += g_corr
            if with_info:
                vv, vc, cc, Gv, Gc = fac.information(
                    Zt_b, Zw_b, K_b, A[groups], dirs_b.by_group[j_b], E,
                    dirs_b.by_direction[j_b], G=G_b, F=F_b)
                I_vv += vv
                I_vc += vc
                I_cc += cc
                I_Gv += Gv
                I_Gc += Gc
            continue
        C = fac.C
        Y = fac.whiten_t(Zw[idx])                          # C^-1 Z~
        YK = Y @ K[groups]
        Q = fac.inverse - YK @ _t(Y)                       # S V^-1 S
        N = b[:, :, None] * b[:, None, :] - Q
        if reml:
            Xi = fac.whiten_t(Xi_rows[idx])
            N += Xi @ _t(Xi)
        # diag(C N) and tr(N dC) as sums of elementwise products
        grad_eta[idx] = 0.5 * np.einsum("mjk,mjk->mj", C, N)
        if fac.index is not None:
            sel = fac.index >= 0
            grad_corr += 0.5 * np.bincount(fac.index[sel], weights=N[sel], minlength=k)
        else:
            grad_corr += 0.5 * np.einsum("kmab,mab->k", fac.dC, N)
        if not with_info:
            continue
        dC = fac.dC
        Zg = Zt[idx]
        ZK = Zg @ K[groups]
        P = -(ZK @ _t(Y))                                  # C Q = I - Z~ K Y'
        di = np.arange(P.shape[1])
        P[:, di, di] += 1.0
        PC = C - ZK @ _t(Zg)                               # C Q C
        Hm = 0.5 * (P * _t(P) + PC * Q)
        wb = w[idx]                                        # (m, n, k_var)
        I_vv += 0.5 * np.einsum("mja,mjb->ab", wb, Hm @ wb)
        QdC = fac.inverse_dot(dC) - YK @ (_t(Y)[None] @ dC)   # (k, m, n, n)
        kc = QdC.shape[0]
        # sums over groups and entries as BLAS products (einsum's own
        # loops cost several times more on these (k, m, n, n) arrays)
        I_cc += 0.5 * (QdC.reshape(kc, -1) @ np.ascontiguousarray(np.swapaxes(QdC, -1, -2)).reshape(kc, -1).T)
        I_vc += 0.5 * (wb.reshape(-1, wb.shape[-1]).T
                       @ (P[None] * QdC).sum(axis=-1).reshape(kc, -1).T)
        if k_cov:
            Yq = Y - YK @ A[groups]                        # Q Z~
            CYq = Zg - ZK @ A[groups]                      # C Q Z~
            CYqE = np.einsum("mjr,crs->cmjs", CYq, E)
            I_Gv += 0.5 * np.einsum("cmjs,mjs,mja->ca", CYqE, Yq, wb)
            YqE = np.einsum("mjr,crs->cmjs", Yq, E)
            I_Gc += 0.5 * np.einsum("cmjs,kmjl,mls->ck", YqE, dC, Yq, optimize=True)
    ev.grad_eta = grad_eta
    ev.grad_corr = grad_corr
    ev.vinv_resid = vinv_resid
    # what ``observed_information`` reads back: the whitened rows, the
    # factors and V*^-1 r* (and V*^-1 X* H^-1/2, REML) in the whitened rows,
    # and L times them
    ev.whitened = (wdata, factors, a, Xi_rows, coloured)
    if with_info:
        ev.info = _information_matrix(_cov_information(E, ev), I_vv, I_vc, I_cc,
                                      I_Gv, I_Gc)
    return ev


def _cov_information(cov_dirs, evaluation):
    """G's block of the expected information, the engine's formula on the
    whitened rows (``_engine.cov_information``) from the evaluation's
    per-group sums."""
    A, _, _, K, _ = evaluation.group_summaries
    return _engine.cov_information(cov_dirs, A - A @ K @ A)


def _information_matrix(I_GG, I_vv, I_vc, I_cc, I_Gv, I_Gc):
    """The expected information in the order (G, variance, correlation)
    from its blocks, symmetrised."""
    k_cov, k_var, k = I_GG.shape[0], I_vv.shape[0], I_cc.shape[0]
    kk = k_cov + k_var + k
    info = np.zeros((kk, kk))
    info[:k_cov, :k_cov] = I_GG
    v = slice(k_cov, k_cov + k_var)
    c = slice(k_cov + k_var, kk)
    info[v, v] = I_vv
    info[c, c] = I_cc
    info[v, c] = I_vc
    info[c, v] = I_vc.T
    info[:k_cov, v] = I_Gv
    info[v, :k_cov] = I_Gv.T
    info[:k_cov, c] = I_Gc
    info[c, :k_cov] = I_Gc.T
    return 0.5 * (info + info.T)


def cov_information_rows(data, block, evaluation, resid_var, cov_dirs,
                         var_dirs) -> np.ndarray:
    """
    The rows of G_c's parameters of the expected information (``evaluate``'s
    ``info``; k_cov, k_cov + k_var + k), what ``observed_information`` reads, from an AR(1) / CAR(1)
    evaluation with the gradient made without the information (Fisher
    scoring's last steps, ``optim.INFORMATION_REUSE_DECREMENT``): no
    recursion over the positions (``BidiagonalFactor.cov_rows``).
    """
    wdata, factors = evaluation.whitened[:2]
    A, _, _, K, _ = evaluation.group_summaries
    E = np.asarray(cov_dirs)
    w = np.asarray(var_dirs, dtype=np.float64)
    Zw = _engine._engine_z(wdata)
    Zt = _engine._engine_z(data) / np.sqrt(resid_var)[:, None]
    k_cov, k_var = E.shape[0], w.shape[1]
    rows = np.zeros((k_cov, k_cov + k_var + block.k))
    rows[:, :k_cov] = _cov_information(E, evaluation)
    for bucket, fac, at in zip(block.buckets, factors, _bucket_rows(block)):
        groups = bucket[0]
        Gv, Gc, _ = fac.cov_rows(at.take(Zt), at.take(Zw), K[groups], A[groups],
                                 at.take(w), E)
        rows[:, k_cov:k_cov + k_var] += Gv
        rows[:, k_cov + k_var:] += Gc
    return rows


def _coloured_rows(data, ev, s, Zt, chol_H_inv_t):
    """
    L a for a = V*^-1 r* (and L Xi for the REML rows Xi = (X* - Z* K B)
    chol_H^-T), (n, 1 [+ p]), without a recursion over the positions:
    with V*^-1 = I - Z* K Z*', a = r* - Z* u (u = K Z*'r*, the centred
    BLUPs) and Xi is X* - Z* K B times a matrix; L B S^-1 = S^-1 and
    L Z* = Z~, so L a = S^-1 r - Z~ u and L Xi = (S^-1 X - Z~ K B) chol_H^-T.
    """
    _, B, e, K, _ = ev.group_summaries
    La = ev.resid_marginal / s - _engine.rows_times_group(
        data, Zt, np.einsum("iab,ib->ia", K, e))
    if chol_H_inv_t is None:
        return La[:, None]
    xl = data.exog / s[:, None] - _engine.rows_times_group(data, Zt, K @ B)
    return np.column_stack([La, xl @ chol_H_inv_t])


def has_observed_information(block) -> bool:
    """Whether ``observed_information`` covers the structure ``block``
    (a bound correlation block): AR(1) and CAR(1), whose factors are
    bidiagonal."""
    return getattr(block, "_sparse_inverse", False)


def observed_information(data, block, evaluation, resid_var, reml, cov_dirs,
                         var_dirs, info_cov_rows):
    """
    Analytic Hessian of the log-likelihood profiled over the fixed effects
    (ML) or of the REML criterion for AR(1) / CAR(1) residuals
    (``BidiagonalFactor``), in the covariance parameters of G_c
    (``cov_dirs``, as ``_engine.observed_information``), parameters on
    which log r_j depends linearly (``var_dirs``: d log r_j / d param,
    (n, k_var)) and the natural correlation parameters.

    The formula is the engine's (``_engine.observed_information``):

        H_kl = I_kl - (V_k s)' P (V_l s) + 1/2 tr(Omega V_kl)
               [REML: - sum_a (V_k U_a)' V^-1 (V_l U_a) + 1/2 tr(N_k N_l)]

    with I the expected information (``info``, along the same
    directions), s = V^-1 r, Omega = s s' - V^-1 (REML: + U U'), U =
    V^-1 X L_H^-T and N_k = U' V_k U.  The vectors V_k u are taken to the
    whitened rows, x_k = B S^-1 V_k u (B = L^-1 bidiagonal), where
    V*^-1 = I - Z* K Z*'; with p the whitened form of u (p = a, and the
    columns of Xi = V*^-1 X* L_H^-T, REML), b = B'p = S u and L p = C b:

        variance: x = 1/2 [B (w o L p) + L'(w o b)]
        phi:      x = -dB (L p) - L'(dB' p)

    and the second derivatives of R = S C S, with N = S Omega S (the
    gradient's):

        1/2 tr(Omega R_ab) = 1/2 sum_j w_aj w_bj g_j + 1/4 w_a'(N o C)w_b
        1/2 tr(Omega R_a,phi) = 1/2 w_a' diag(dC N)
        1/2 tr(Omega R_phi,phi) = 1/2 tr(N d2C),
            d2C = C (2 dC^-1 C dC^-1 - d2C^-1) C

    (g_j = d llf / d log r_j).  The products with L' in x cancel against
    the b b' part of N, and the products with L' in the expected
    information's (L'(w_a o C^-1 Z~), ``BidiagonalFactor.info_parts``)
    against the -Q part of N (``_hessian_bucket``): so the block of the
    variance and correlation parameters is computed here as a whole, I_kl
    + 1/2 tr(Omega R_kl) - sum x_k'x_l, from sums over the rows of
    products of p, L p, b, dB' p, the rows of the design, C^-1 Z~ and dB
    Z~: O(n) per group, no recursion over the positions, no dense matrix.

    ``evaluation``: ``evaluate``'s with the gradient at the point (its
    ``whitened``); ``info_cov_rows``: the rows of G_c's parameters of the
    expected information along these directions, (k_cov, k_cov + k_var +
    k) (the rest of I enters the block computed here as a whole).
    """
    wdata, factors, a_w, Xi_rows, coloured = evaluation.whitened
    A, BX, _, K, _ = evaluation.group_summaries
    Xw, Zw = wdata.exog, _engine._engine_z(wdata)
    s = np.sqrt(resid_var)
    Zt = _engine._engine_z(data) / s[:, None]        # Z~ = Z / s
    # (in its own memory order: var_dirs is Fortran-ordered, and its
    # columns are what the passes below read)
    w = np.asarray(var_dirs, dtype=np.float64)
    k_cov, kv, k = cov_dirs.shape[0], w.shape[1], block.k
    kl = kv + k                                        # the row parameters
    n_groups, q = A.shape[0], Zw.shape[1]
    p = Xw.shape[1]
    ns = 1 + (p if reml else 0)                        # s, and U's columns
    # per group, by source: c = Z*'a (Z'u) and t_l = Z*'x_l
    c_all = np.zeros((n_groups, q, ns))
    t_all = np.zeros((n_groups, q, ns, kl))
    xX = np.zeros((p, kl))                             # X*'x_l (s)
    N_rows = np.zeros((kl, p, p))                      # x_l(U_j)' U*_i
    rows = np.zeros((kl, kl))       # I_kl + 1/2 tr(Omega R_kl) - sum x_k'x_l
    acc = (c_all, t_all, xX, N_rows, rows)
    # the sources [a, Xi] and L times them in Fortran order: a bucket's
    # (m, n, ns) rows are then a view whose every source is contiguous,
    # and the passes below (B'p, dB'p, sums over the sources per row, per
    # group sums) run along the rows; on the rows' C order each step's
    # inner loop was the ns = 1 + p sources, 2-3 times slower (REML)
    src = np.empty((Xw.shape[0], ns), order="F")
    src[:, 0] = a_w
    if reml:
        src[:, 1:] = Xi_rows
    coloured = np.asfortranarray(coloured)
    for bucket, fac, at in zip(block.buckets, factors, _bucket_rows(block)):
        _hessian_bucket(fac, bucket[0], *(at.take(v) for v in (
            src, coloured, w, Zw, Zt, Xw, data.exog, s, evaluation.grad_eta)),
            K, acc)
    rows[kv:, :kv] = rows[:kv, kv:].T
    # the quadratic forms (V_k u)' V^-1 (V_l u), summed over the sources
    # (in the row parameters only -t'K t here: their x_k'x_l are in
    # ``rows``)
    AK = A @ K
    zvz = A - AK @ A                                   # Z'V^-1 Z
    ika = np.eye(q) - AK
    kk = k_cov + kl
    Q = np.zeros((kk, kk))
    # (the sums over groups of products of q x q blocks as batched products:
    # einsum's loops over three or four operands took 0.3-0.8 ms each for
    # 500 groups, q = 2)
    aG = np.swapaxes(cov_dirs[:, None] @ c_all[None], 2, 3)  # E_k c (k_cov, m, ns, q)
    Q[:k_cov, :k_cov] = (aG.reshape(k_cov, -1)
                         @ (aG @ _swap(zvz)[None]).reshape(k_cov, -1).T)
    Q[:k_cov, k_cov:] = np.einsum("kisa,iasl->kl", aG,
                                  np.einsum("iab,ibsl->iasl", ika, t_all))
    Q[k_cov:, :k_cov] = Q[:k_cov, k_cov:].T
    # (sums over groups as one product of (groups q ns, kl) arrays: einsum's
    # loop over the three operands took 0.7 ms for 600 groups, q = 2)
    Kt = K @ t_all.reshape(n_groups, q, ns * kl)
    Q[k_cov:, k_cov:] = -(t_all.reshape(-1, kl).T @ Kt.reshape(-1, kl))
    hess = -Q
    hess[:k_cov] += info_cov_rows
    hess[k_cov:, :k_cov] += info_cov_rows[:, k_cov:].T
    hess[k_cov:, k_cov:] += rows
    # profiled over b (s only): + J' H^-1 J, J = -X'V^-1 V_k s
    J = np.empty((p, kk))
    J[:, :k_cov] = -np.einsum("iap,kia->pk", BX - AK @ BX, aG[:, :, 0])
    J[:, k_cov:] = -(xX - (K @ BX).reshape(-1, p).T @ t_all[:, :, 0].reshape(-1, kl))
    H = evaluation.xtvix if evaluation.fe_basis is None else evaluation.xtvix_centred
    hess += J.T @ chol_solve(cholesky_equilibrated(H, "X'V^-1 X"), J)
    if reml:
        N = np.empty((kk, p, p))
        cU = c_all[:, :, 1:]
        N[:k_cov] = cU.reshape(-1, p).T @ (cov_dirs[:, None] @ cU[None]).reshape(k_cov, -1, p)
        N[k_cov:] = N_rows
        hess += 0.5 * np.einsum("kab,lba->kl", N, N)
    return 0.5 * (hess + hess.T)


def _d2_sums(fac, M, M1):
    """
    Per group, tr(d2C^-1 M) + d2 log|C| / d phi^2 for the symmetric
    tridiagonal M (diagonal ``M`` (m, n), entries (j, j+1) ``M1`` (m,
    n-1)), in closed form from rho_j and its derivatives: d2C^-1 = d2B'B
    + 2 dB'dB + B'd2B has the diagonal 2 (al_j + al_j+1) and the entries
    (j-1, j) be_j, with A_j = rho_j'^2 / c_j^6, E_j = rho_j'' / c_j^4,

        al = (1 + 3 rho^2) A + rho E,  be = -rho (6 + 2 rho^2) A - (1 + rho^2) E,

    and d2 log(1 - rho_j^2) = -2 c_j^2 ((1 + rho^2) A + rho E); all are 0
    at a group's first row (rho = 0 there): fewer passes over the rows
    than building d2C^-1 from B's entries.
    """
    rho, r1, r2 = fac.rho[:, 1:], fac.drho[:, 1:], fac.d2rho[:, 1:]
    rr = rho * rho
    c2 = 1.0 - rr
    S = M[:, 1:] + M[:, :-1]
    one_rr = 1.0 + rr
    # per row, A (...) + E (...), the A and E terms collected
    per = (r1 * r1 / (c2 * c2 * c2)) * ((1.0 + 3.0 * rr) * S - rho * (6.0 + 2.0 * rr) * M1
                                        - c2 * one_rr)
    if r2.any():   # (rho'' is 0 for AR(1) without gaps and wherever d_j = 1)
        per += r2 / (c2 * c2) * (rho * (S - c2) - one_rr * M1)
    return 2.0 * per.sum(axis=1)


def _hessian_bucket(fac, groups, src, La, wb, Zw_b, Zt_b, Xw_b, X_b, s_b, ge, K, acc):
    """
    One bucket's terms of ``observed_information`` (its rows (m, n, ...)
    as ``_Rows.take`` reads them: ``src`` the sources [a, Xi] (Xi REML
    only), ``La`` = L src from
    ``_coloured_rows``, ``X_b`` the rows of the unwhitened X and ``s_b``
    of s), added to ``acc``.

    Per source p (a, and Xi's columns, REML), with Lp = L p, b = B'p,
    f_a = w_a o Lp, g_a = w_a o b and x as in ``observed_information``
    (L B = I, B'L' = I, L Z* = Z~); G = C^-1 Z~ = B'Z*, F = Z~ K, Q =
    C^-1 - G K G', P = C Q = I - F G', D = dC G = L BD (BD = -dB Z~ -
    L'(dB'Z*), ``BidiagonalFactor.info_parts``), of which only G'D = Z*'BD
    = -Z*'dB Z~ - Z~'dB'Z* and C^-1 D = B'BD = -B'dB Z~ - dB'Z* enter, so
    that BD itself (a recursion over the positions) is not formed:

    * Z*'x_a = 1/2 sum_j w_aj (G_j Lp_j + Z~_j b_j) and Z*'x_phi =
      -(dB'Z*)'Lp - Z~'(dB'p), and likewise with X* (L X* = X~ = S^-1 X)
      and Xi (B'Xi and L Xi are b's and Lp's columns);
    * variance x variance: x_a'x_b = 1/4 [f_a'C^-1 f_b + f_a'g_b + g_a'f_b
      + (L'g_a)'(L'g_b)], whose last term is 1/4 w_a'((b b') o C)w_b of
      1/2 tr(Omega R_ab); the -1/4 w'(C o Q)w there and I_ab = 1/4 w'(P o
      P' + (C - Z~ K Z~') o Q)w leave 1/4 w'(P o P' - (Z~ K Z~') o Q)w =
      1/4 [w'diag(1 - 2 F.G)w + tr(M_a M_b) - w'((Z~ K Z~') o C^-1)w +
      tr(Pm_a'K Pm_b K)] (M_a = Pm_a'K, Pm_a = sum_j w_aj Z~_j G_j'): a
      tridiagonal form in w and per-group q x q sums;
    * variance x phi: x_a'x_phi = 1/2 [f_a'B'x_phi + (L'g_a)'x_phi], whose
      last term is 1/2 w_a' diag(dC b b') (dC b = L x_phi), with B'x_phi
      = -B'dB Lp - dB'p; the -1/2 w_a'diag(dC Q) there is 1/2 w_a'[diag(C
      dC^-1) + (BD K U_a)] and I_a,phi = 1/2 w_a'[-diag(C dC^-1) - diag(F
      (B'BD)') + diag(F (G'D) K G')] - 1/2 (BD K U_a) (U_a = L'(w_a o G),
      ``BidiagonalFactor.information``): their sum needs neither U nor C
      dC^-1;
    * phi x phi: x_phi'x_phi against the 1/2 tr((b b') d2C) = x_phi'x_phi
      - 1/2 Lp'd2C^-1 Lp of 1/2 tr(N d2C); -1/2 tr(Q d2C) = 1/2 [-d2
      log|C| - tr((C^-1 dC)^2) + 2 tr(K BD'BD) - tr(K Z~'d2C^-1 Z~)] and
      I_phi,phi = 1/2 [tr((C^-1 dC)^2) - 2 tr(K BD'BD) + tr(K G'D K G'D)]
      (G'D = Z*'BD) sum to 1/2 [tr(K G'D K G'D) - d2 log|C| - tr(K
      Z~'d2C^-1 Z~)].

    ``acc`` gets I_kl + 1/2 tr(Omega R_kl) - sum_p x_k'x_l and the sums
    with Z*, X* and Xi.
    """
    c_all, t_all, xX, N_rows, rows = acc
    m, n = fac.shape
    kv, k = wb.shape[2], fac.k
    p, q = Xw_b.shape[2], Zw_b.shape[2]
    ns = src.shape[2]
    reml = ns > 1
    b = fac.whiten_t(src)                          # S u (La = L src = C b)
    d_src = fac.d_whiten_t(src)                    # dB' p
    Kg = K[groups]
    onehot = (fac.level[:, None] == np.arange(k)).astype(np.float64)
    G = fac.whiten_t(Zw_b)
    dZ = fac.d_whiten_t(Zw_b)                      # dB'Z*
    dBZ = fac.d_whiten(Zt_b)                       # dB Z~
    F = _times_k(Zt_b, Kg)
    # (per-group sums over the rows as batched products, ``_group_sums``:
    # summing broadcast products over the rows took 10-20 times longer
    # for several sources)
    # Z*'p and Z*'x per group
    c_all[groups] = _group_sums(Zw_b, src)
    tv = (G[..., :, None] * La[..., None, :]
          + Zt_b[..., :, None] * b[..., None, :]).reshape(m, n, q * ns)
    t_all[groups, :, :, :kv] = 0.5 * _group_sums(tv, wb).reshape(m, q, ns, kv)
    t_phi = -(_group_sums(dZ, La) + _group_sums(Zt_b, d_src))
    t_all[groups, :, :, kv:] = t_phi[..., None] * onehot[:, None, None, :]
    # X*'x for the source a; X*'x_phi = -X*'(dB La) - X~'(dB'a) summed by level
    Xt_b = X_b / s_b[..., None]                    # X~ = L X*
    xv = fac.whiten_t(Xw_b) * La[..., :1] + Xt_b * b[..., :1]
    xX[:, :kv] += 0.5 * (xv.reshape(-1, p).T @ wb.reshape(-1, kv))
    dBL = fac.d_whiten(La[..., :1])
    d_a = d_src[..., :1]
    if k > 1:
        dBL, d_a = dBL * onehot[:, None, :], d_a * onehot[:, None, :]
    xX[:, kv:] -= (Xw_b.reshape(-1, p).T @ dBL.reshape(-1, k)
                   + Xt_b.reshape(-1, p).T @ d_a.reshape(-1, k))
    if reml:
        # Xi_i'x_a(Xi_j) = 1/2 sum_r w_a (b_i Lp_j + Lp_i b_j), and
        # Xi_i'x_phi(Xi_j) = -(dB'Xi_i)'Lp_j - Lp_i'(dB'Xi_j); the first
        # as one product of rows-long columns (w_a Lp_j, (k_var p, rows)):
        # broadcasting the rows' outer products of 3 columns took 4 times
        # longer
        wt = np.ascontiguousarray(wb.reshape(-1, kv).T)
        Lt = np.ascontiguousarray(La[..., 1:].reshape(-1, p).T)
        Nv = ((wt[:, None, :] * Lt[None, :, :]).reshape(kv * p, -1)
              @ b[..., 1:].reshape(-1, p)).reshape(kv, p, p)
        N_rows[:kv] += 0.5 * (Nv + _swap(Nv))
        P = _group_sums(La[..., 1:], d_src[..., 1:])   # (m, p, p): Lp_j'(dB'Xi_i)
        N_rows[kv:] -= np.einsum("mji,ml->lji", P + _swap(P), onehot)
    # the sources and Z~ K Z~' enter through sums per row and pair of rows
    LL = _row_dot(La, La)                          # sum_p Lp_j^2
    LL1 = _row_dot(La[:, :-1], La[:, 1:])          # sum_p Lp_j Lp_j+1
    M = LL + _row_dot(F, Zt_b)                     # + (Z~KZ~')_jj
    M1 = LL1 + _row_dot(F[:, :-1], Zt_b[:, 1:])
    # variance x variance
    diag = (0.25 * (1.0 - 2.0 * _row_dot(F, G) - fac._diag * M)
            + 0.5 * (ge - _row_dot(La, b)))
    vv = _tridiagonal_form(_by_direction(wb), diag, -0.25 * fac._off * M1)
    Pm = _group_sums(_outer_rows(Zt_b, G), wb)     # (m, q q, k_var): Pm_a
    if q == 1:
        KP = (Kg[:, 0] * Pm[:, 0])                 # tr(M_a M_b) = tr(Pm_a'K Pm_b K)
        vv += 0.5 * (KP.T @ KP)
    else:
        Pm = Pm.reshape(m, q, q, kv)
        Ma = np.einsum("mrta,mru->mtua", Pm, Kg)
        Nb = np.einsum("muva,mvt->muta", Pm, Kg)
        vv += 0.25 * np.einsum("mtua,mutb->ab", Ma, Ma + Nb)
    # variance x phi: sum_p Lp_j (B'dB Lp + dB'p)_j - F_j.(B'BD)_j + (F
    # G'D K)_j.G_j weighted by w_aj, B'BD = -(B'dB Z~ + dB'Z*) and G'D =
    # Z*'BD = -(Z*'dB Z~ + its transpose); B'dB is tridiagonal: (j, j) 1/c_j
    # dBd_j - rho_j+1/c_j+1 dBs_j+1, (j, j+1) -rho_j+1/c_j+1 dBd_j+1,
    # (j, j-1) dBs_j / c_j
    GD = _group_sums(Zw_b, dBZ)
    GD = -(GD + _swap(GD))
    dBd, dBs = fac._dB
    rc = fac._rho_c[..., 0]                        # rho_j / c_j, j >= 1
    e = (dBd / fac.c * LL + _row_dot(La, d_src) + _row_dot(F, fac.whiten_t(dBZ) + dZ)
         + _row_dot(_times_k(_times_k(F, GD), Kg), G))
    e[:, :-1] -= rc * (dBs[:, 1:] * LL[:, :-1] + dBd[:, 1:] * LL1)
    e[:, 1:] += dBs[:, 1:] / fac.c[:, 1:] * LL1
    per_vc = 0.5 * _group_sums(e[..., None], wb)[:, 0]
    # phi x phi: 1/2 [tr(K G'D K G'D) - sum_p Lp'd2C^-1 Lp - tr(K Z~'d2C^-1
    # Z~) - d2 log|C|]
    KGD = Kg @ GD
    per_cc = 0.5 * (np.einsum("mrt,mtr->m", KGD, KGD) - _d2_sums(fac, M, M1))
    rows[:kv, :kv] += vv
    rows[:kv, kv:] += per_vc.T @ onehot
    rows[kv:, kv:] += np.diag(per_cc @ onehot)
