"""
Level-2 variance functions of location-scale models, as a block.

The log variance of every random effect and the atanh of every correlation
are linear in group-level variables S (``re_var_formula``):

    log var(effect k)_i = S_i c_k,     atanh corr(k, l)_i = S_i e_kl.

:class:`Level2Functions` owns S, the coefficients C and E (unbounded:
natural and free scales coincide), each group's covariance
Sigma_i = D_i R_i D_i and its Cholesky factor, the chain rule from the
per-group factors to the coefficients, and the coefficients held at 0.
:class:`Level2Coefficients` is the results' view of it: the coefficients
the model estimates, by name.
"""

from __future__ import annotations

import numpy as np

from .. import _linalg
from .base import Block, IdentityScale, StartContext
from .recov import column_rms, joint_factor_gradient

__all__ = ["Level2Functions", "Level2Coefficients"]


class Level2Functions(IdentityScale, Block):
    """
    The level-2 functions of a location-scale model's joint random effects.

    Random effects are ordered scale effects first (as the location-scale
    fitter's joint factor).  The functions are the log variance of each
    effect, then the atanh correlation of each pair ``(k, l)``, ``k > l``,
    in ``pairs`` order; each has one coefficient per column of S.  The
    parameter vector is C (functions x columns, row by row) then E.

    Each group's Sigma_i is positive definite for two random effects; with
    more, ``factor_from_free`` raises ``np.linalg.LinAlgError`` for a group
    whose matrix is not.

    Parameters
    ----------
    functions : list of str
        A label per function (``logvar(<effect>)``, ``atanh corr(<a>,
        <b>)``), in the order above.
    columns : list of str
        Names of the columns of S; a coefficient is named
        ``<function>:<column>``.
    q_w, q_u : int
        Numbers of scale and mean random effects.
    S : array_like (m, k_s)
        The group-level design, intercept first.
    independent : bool
        Hold the correlations between mean and scale effects at 0.
    terms : array_like of bool (functions x columns), optional
        The coefficients in the model; the others are held at 0.
    """

    role = "re_cov"
    title = "Level-2 variance functions"

    def __init__(self, functions: list[str], columns: list[str], q_w: int, q_u: int,
                 S, independent: bool = False, terms=None) -> None:
        self.q_w, self.q_u = int(q_w), int(q_u)
        self.d = d = self.q_w + self.q_u
        self.S = np.asarray(S, float)
        self.k_s = self.S.shape[1]
        self.pairs = [(k, l) for k in range(d) for l in range(k)]
        n_functions = d + len(self.pairs)
        if len(functions) != n_functions or len(columns) != self.k_s:
            raise ValueError(
                f"{len(functions)} functions and {len(columns)} columns for "
                f"{d} random effects ({n_functions} functions) and a level-2 "
                f"design with {self.k_s} columns")
        self.names = [f"{f}:{c}" for f in functions for c in columns]
        estimated = np.ones((n_functions, self.k_s), bool)
        if terms is not None:
            estimated &= np.asarray(terms, bool)
        if independent:  # correlations between mean and scale effects held at 0
            for j, (k, l) in enumerate(self.pairs):
                if (k < self.q_w) != (l < self.q_w):
                    estimated[d + j] = False
        self._estimated = estimated.ravel()

    @property
    def estimated(self) -> np.ndarray:
        return self._estimated.copy()

    @property
    def correlations(self) -> np.ndarray:
        """Mask of the coefficients of the atanh correlations."""
        out = np.zeros(self.k, bool)
        out[self.d * self.k_s:] = True
        return out

    def component(self, k: int, l: int) -> int:
        """The level-2 function of random effects k and l: the log variance
        of k when k == l (0..d-1), else their correlation (d + its index
        in ``pairs``)."""
        if k == l:
            return k
        return self.d + self.pairs.index((max(k, l), min(k, l)))

    def coefficient(self, k: int, l: int, column: int = 0) -> int:
        """Where the coefficient of a column of S in the function of random
        effects k and l sits in the block's vector."""
        return self.component(k, l) * self.k_s + column

    def split(self, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(C, E) from the block's vector."""
        d, ks = self.d, self.k_s
        return free[:d * ks].reshape(d, ks), free[d * ks:].reshape(len(self.pairs), ks)

    def pack(self, C, E) -> np.ndarray:
        """The block's vector from C and E."""
        return np.concatenate([np.ravel(C), np.ravel(E)])

    def start(self, context: StartContext) -> np.ndarray:
        return np.zeros(self.k)


    def sigma(self, free, S=None):
        """Each group's Sigma_i, SDs and correlations (pair order); or at
        the level-2 design rows ``S``."""
        C, E = self.split(np.asarray(free, dtype=np.float64))
        S = self.S if S is None else np.atleast_2d(S)
        sd = np.exp(0.5 * S @ C.T)                           # (m, d)
        rho = np.tanh(S @ E.T)                               # (m, pairs)
        R = np.broadcast_to(np.eye(self.d), (len(sd), self.d, self.d)).copy()
        for j, (k, l) in enumerate(self.pairs):
            R[:, k, l] = R[:, l, k] = rho[:, j]
        return sd[:, :, None] * R * sd[:, None, :], sd, rho

    def factor_from_free(self, free) -> np.ndarray:
        """Each group's Cholesky factor of Sigma_i, (m, d, d)
        (``np.linalg.LinAlgError`` where one is not positive definite)."""
        return _linalg.cholesky_covariance(self.sigma(free)[0])

    def factor_gradient(self, free, grad: dict) -> np.ndarray:
        """Chain rule: per-group d llf / dL (the location-scale engine's
        ``L_ww``, ``L_uw``, ``L_uu``) -> d llf / dSigma_i (backward
        Cholesky: Sigma-bar = L^-T sym(Phi(L' L-bar)) L^-1) -> (C, E)."""
        d = self.d
        sigma, sd, rho = self.sigma(free)
        L = _linalg.cholesky_covariance(sigma)
        Lbar = joint_factor_gradient(grad, self.q_w)
        P = np.tril(np.swapaxes(L, 1, 2) @ Lbar)
        P[:, np.arange(d), np.arange(d)] *= 0.5
        Linv = np.linalg.inv(L)
        sig_bar = np.swapaxes(Linv, 1, 2) @ (0.5 * (P + np.swapaxes(P, 1, 2))) @ Linv
        eta_bar = (sig_bar * sigma).sum(axis=2)              # d / d log var_k
        zeta_bar = np.stack([2.0 * sig_bar[:, k, l] * (1 - rho[:, j] ** 2)
                             * sd[:, k] * sd[:, l]
                             for j, (k, l) in enumerate(self.pairs)], axis=1) \
            if self.pairs else np.zeros((len(sd), 0))
        return np.concatenate([(eta_bar.T @ self.S).ravel(),
                               (zeta_bar.T @ self.S).ravel()])

    def unit_scale(self, data=None) -> np.ndarray:
        """A level-2 coefficient per unit of its column of S changes a log
        variance or an atanh correlation, both free of the data's units."""
        return np.tile(1.0 / column_rms(self.S), self.d + len(self.pairs))


class Level2Coefficients(IdentityScale, Block):
    """The coefficients of the level-2 variance functions a model estimates,
    as its results show them (``Level2Functions`` holds all of them, and
    the per-group covariances).

    Parameters
    ----------
    names : list of str
        One per coefficient estimated.
    """

    role = "re_cov"

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)

    def start(self, context: StartContext) -> np.ndarray:
        return np.zeros(self.k)

