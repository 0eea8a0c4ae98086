"""
Dense reference computations of the small-sample df for the ddf tests
(``test_ddf``, ``test_ddf_correlation``): the textbook formulas on the
whole n x n V, independent of the package's per-group algebra.
"""

from __future__ import annotations

import numpy as np


def kenward_roger_parts(X, V, dV, Phi, reml):
    """
    Kenward and Roger's (SAS's ``kr(firstorder)``) pieces from the dense
    V (n, n), its derivatives ``dV`` (a list of (n, n), one per free
    covariance parameter) and Phi = (X'V^-1 X)^-1: ``(W, adjusted,
    dphi)``, W the inverse of the (REML-corrected) expected information,
    ``adjusted`` Phi_A = Phi + 2 Phi U Phi and ``dphi`` d Phi / d theta_i
    = Phi P_i Phi (as ``ddf.KenwardRoger`` takes them).
    """
    Vi = np.linalg.inv(V)
    k = len(dV)
    P = [X.T @ Vi @ D @ Vi @ X for D in dV]
    Q = [[X.T @ Vi @ Di @ Vi @ Dj @ Vi @ X for Dj in dV] for Di in dV]
    info = np.empty((k, k))
    for i in range(k):
        for j in range(k):
            info[i, j] = 0.5 * np.trace(Vi @ dV[i] @ Vi @ dV[j])
            if reml:
                info[i, j] += (-np.trace(Phi @ Q[i][j])
                               + 0.5 * np.trace(Phi @ P[i] @ Phi @ P[j]))
    W = np.linalg.inv(info)
    U = sum(W[i, j] * (Q[i][j] - P[i] @ Phi @ P[j]) for i in range(k) for j in range(k))
    adjusted = Phi + 2 * Phi @ U @ Phi
    dphi = np.stack([Phi @ Pi @ Phi for Pi in P])
    return W, adjusted, dphi
