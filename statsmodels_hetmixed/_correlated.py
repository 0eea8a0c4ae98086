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
information (no dense matrix).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _engine

__all__ = ["evaluate"]


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


def _whiten(data, block, natural, resid_var, derivative):
    """(whitened GroupedData, per-bucket factors, sum log|C_i|)."""
    s = np.sqrt(resid_var)
    X, Zc = data.exog, _engine._engine_z(data)
    p, q = X.shape[1], Zc.shape[1]
    parts = [X, Zc, data.endog[:, None]]
    separate_z = data.exog_zc is not None and data.exog_zc is not data.exog_z
    if separate_z:
        parts.append(data.exog_z)
    rows = np.hstack(parts) / s[:, None]
    out = np.empty_like(rows)
    factors, logdet = [], 0.0
    for bucket, at in zip(block.buckets, _bucket_rows(block)):
        factor = block.bucket_factor(natural, bucket, derivative)
        at.put(out, factor.whiten(at.take(rows)))
        logdet += factor.logdet
        factors.append(factor)
    Xw = np.ascontiguousarray(out[:, :p])
    Zw = np.ascontiguousarray(out[:, p:p + q])
    yw = np.ascontiguousarray(out[:, p + q])
    wdata = dataclasses.replace(
        data, endog=yw, exog=Xw, exog_zc=Zw,
        exog_z=np.ascontiguousarray(out[:, p + q + 1:]) if separate_z else Zw)
    return wdata, factors, logdet


def _t(a):
    return a.transpose(0, 2, 1)


def evaluate(data, block, natural, factor, resid_var, reml, fe_params=None,
             gradient=False, info_directions=None):
    """
    The engine's evaluation for correlated residuals (see the module
    docstring); arguments as ``_engine.evaluate``, plus the bound
    correlation ``block`` and its ``natural`` parameters.  The result's
    ``grad_eta`` is d llf / d log r_ij, ``grad_corr`` d llf / d natural
    correlation parameters, ``info`` the expected information in the
    order (G, variance, correlation); ``vinv_resid`` is V^-1 (y - X b) and
    ``resid_marginal`` y - X b in the data's rows (not whitened).

    Per group the work is O(n_i^2 (q + k)) beyond the structure's own
    factorisation: the products with C and C^-1 the formulas need are
    rank-q corrections (C Q = I - Z~ K Y', C Y = Z~ for Y = C^-1 Z~), and
    C^-1 times a matrix is the structure's (``inverse_dot``: a
    tridiagonal product for AR(1) / CAR(1)).

    Raises ``np.linalg.LinAlgError`` where a C_i is not positive definite.
    """
    wdata, factors, logdet_C = _whiten(data, block, natural, resid_var, gradient)
    n = data.nobs
    dirs = None
    if info_directions is not None:
        dirs = (info_directions[0], np.zeros((n, 1)))
    ev = _engine.evaluate(wdata, factor, np.ones(n), reml, fe_params=fe_params,
                          gradient=gradient, info_directions=dirs)
    ev.llf -= 0.5 * (np.log(resid_var).sum() + logdet_C)
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
    Xi_rows = None
    if reml:
        H = ev.xtvix if F is None else ev.xtvix_centred
        chol_H = np.linalg.cholesky(H)
        xh = wdata.exog - _engine.rows_times_group(wdata, Zw, K @ B)
        Xi_rows = np.linalg.solve(chol_H, xh.T).T  # x^ chol_H^-T: x^ H^-1 x^' = Xi Xi'
    k = block.k
    grad_eta = np.empty(n)
    grad_corr = np.zeros(k)
    vinv_resid = np.empty(n)
    with_info = info_directions is not None
    if with_info:
        E = np.asarray(info_directions[0])
        w = np.ascontiguousarray(info_directions[1], dtype=np.float64)
        k_cov, k_var = E.shape[0], w.shape[1]
        I_vv = np.zeros((k_var, k_var))
        I_vc = np.zeros((k_var, k))
        I_cc = np.zeros((k, k))
        I_Gv = np.zeros((k_cov, k_var))
        I_Gc = np.zeros((k_cov, k))
    for bucket, fac, at in zip(block.buckets, factors, _bucket_rows(block)):
        groups, idx = bucket[0], bucket[1]
        a_b = at.take(a)
        b = fac.whiten_t(a_b[:, :, None])[:, :, 0]          # S V^-1 r
        at.put(vinv_resid, b / at.take(s))
        if hasattr(fac, "gradient") and (not with_info or hasattr(fac, "information")):
            # a structure with its own O(n) gradient and information
            # (AR(1), CAR(1))
            Zw_b, Zt_b = at.take(Zw), at.take(Zt)
            g_eta, g_corr = fac.gradient(a_b, Zw_b, Zt_b, K[groups],
                                         None if Xi_rows is None else at.take(Xi_rows))
            at.put(grad_eta, g_eta)
            grad_corr += g_corr
            if not with_info:
                continue
            vv, vc, cc, Gv, Gc = fac.information(Zt_b, Zw_b, K[groups],
                                                 A[groups], at.take(w), E)
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
    if with_info:
        kk = k_cov + k_var + k
        info = np.zeros((kk, kk))
        info[:k_cov, :k_cov] = ev.info[:k_cov, :k_cov]
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
        ev.info = 0.5 * (info + info.T)
    return ev
