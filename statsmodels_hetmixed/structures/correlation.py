"""
Residual correlation structures: C_i, the correlation matrix of group i's rows.

The residual covariance of group i is ``R_i = S_i C_i S_i`` with
``S_i = diag(sigma_ij)`` from the variance blocks (log-linear, additive,
``var_by``, power, ...) and ``C_i`` from one block of this module, of role
``"correlation"``: Stata's ``residuals(exchangeable | ar | ma | toeplitz |
banded | unstructured | exponential, t(time) by(g))`` and nlme's
``correlation = corCompSymm | corAR1 | corCAR1 | corARMA | corSymm``.

A structure is first an unbound *specification* (``AR1()``, ``"ar1"``);
the model binds it to its rows (``bind``: each row's time and group, and the
by-variable), which fixes its parameters and their names.  Bound, it is a
:class:`~.base.Block`: names, the natural scale (correlations, phi, ARMA
coefficients), the free scale searched without constraints, the Jacobian,
start values and admissibility, and the correlation matrices of the groups
with their derivatives (``bucket_matrices``) and their factorisation
(``bucket_factor``: ``DenseFactor`` or, for AR(1) and CAR(1),
``BidiagonalFactor``), which the correlated engine
(:mod:`statsmodels_hetmixed._correlated`) reads.  One group's C_i:
``group_matrix`` (``HetMixedLM._correlation_matrices``).

Free scales (every free vector a positive definite structure, except
``Banded`` and ``Toeplitz(q)`` with q below the longest lag, see there):

===================  ===========================  =============================
structure            natural                      free
===================  ===========================  =============================
``Exchangeable``     rho in (-1/(n_max-1), 1)     log((rho - lo) / (1 - rho)),
                                                  lo = -1/(n_max-1) (nlme's)
``AR1``              phi in (-1, 1)               atanh(phi)
``CAR1``             phi in (0, 1)                logit(phi)
``ARMA(p, q)``       phi_1..p, theta_1..q         atanh of the partial
                                                  autocorrelations (AR and MA
                                                  separately, nlme's up to a
                                                  factor 2)
``Toeplitz()``       rho(lag 1..L)                atanh of the partial
                                                  autocorrelations
``Unstructured()``   rho(t_a, t_b), all pairs     atanh of the canonical
                                                  partial correlations
``Banded(q)``,       rho per pair / lag up to q   atanh(rho); positive
``Toeplitz(q)``                                   definiteness by
                                                  ``admissible``
===================  ===========================  =============================

Times: without ``time=`` a row's place in its group is its position among
the group's rows (0, 1, ..., nlme's ``form = ~ 1 | g``); ``Exchangeable``
needs no times at all.  ``AR1``, ``ARMA``, ``Toeplitz``, ``Banded`` and
``Unstructured`` need integer times (gaps allowed); ``CAR1`` takes any
real times.
"""

from __future__ import annotations

import copy
import functools
import re

import numpy as np

from .._linalg import is_positive_definite, redundant_columns
from .base import Block, StartContext

__all__ = ["CorrelationStructure", "Exchangeable", "AR1", "CAR1", "ARMA",
           "Toeplitz", "Banded", "Unstructured", "make_correlation",
           "CORRELATION_STRUCTURES"]

# Groups per chunk of a size bucket: the dense per-group arrays of a chunk
# (C, its inverse, derivatives) keep about this many elements each; the
# structures with O(n) algebra (AR(1), CAR(1)) take chunks of about
# _CHUNK_ROWS rows, whose (rows x variance terms) temporaries stay small
# (with all 100,000 rows of the benchmark in one chunk, the kernel handed
# out some 20 MB of fresh zeroed pages per evaluation, a third of its time).
_CHUNK_ELEMENTS = 1 << 20
_CHUNK_ROWS = 1 << 14

_COMPLEX_STEP = 1e-30


def _complex_jacobian(fun, x):
    """d fun / d x by complex steps (exact to rounding for analytic fun)."""
    x = np.asarray(x, dtype=np.float64)
    cols = []
    for k in range(x.size):
        xc = x.astype(np.complex128)
        xc[k] += 1j * _COMPLEX_STEP
        cols.append(np.imag(fun(xc)) / _COMPLEX_STEP)
    return np.array(cols).T.reshape(-1, x.size)


def _pacf_to_coef(r, sign):
    """Coefficients from partial autocorrelations (Durbin-Levinson; nlme's
    ``ARMA_untransPar``: sign -1 for AR coefficients, +1 for MA)."""
    a = r[:0].copy()
    for i in range(len(r)):
        a = np.concatenate([a + sign * r[i] * a[::-1], r[i:i + 1]])
    return a


def _coef_to_pacf(a, sign, what):
    """Inverse of ``_pacf_to_coef``; ValueError when a partial
    autocorrelation is outside (-1, 1) (not stationary / invertible)."""
    a = np.array(a, dtype=np.float64)
    r = np.zeros(len(a))
    for i in range(len(a) - 1, -1, -1):
        r[i] = a[i]
        if not abs(r[i]) < 1:
            raise ValueError(f"{what} are not those of a stationary and "
                             "invertible process (a partial autocorrelation "
                             "is outside (-1, 1))")
        prev = a[:i]
        a = (prev - sign * r[i] * prev[::-1]) / (1.0 - r[i] ** 2)
    return r


def arma_acf(phi, theta, max_lag):
    """Autocorrelations at lags 0..max_lag of x_t = sum phi_a x_{t-a} + e_t
    + sum theta_b e_{t-b} (works on complex input, for complex steps)."""
    phi, theta = np.asarray(phi), np.asarray(theta)
    p, q = len(phi), len(theta)
    dtype = np.result_type(phi, theta, np.float64)
    r = max(p, q)
    th = np.concatenate([np.ones(1, dtype), theta.astype(dtype)])
    psi = np.zeros(q + 1, dtype)
    psi[0] = 1.0
    for j in range(1, q + 1):
        psi[j] = th[j] + sum(phi[i - 1] * psi[j - i] for i in range(1, min(j, p) + 1))
    A = np.eye(r + 1, dtype=dtype)
    rhs = np.zeros(r + 1, dtype)
    for k in range(r + 1):
        for i in range(1, p + 1):
            A[k, abs(k - i)] -= phi[i - 1]
        rhs[k] = sum(th[j] * psi[j - k] for j in range(k, q + 1))
    gam = np.linalg.solve(A, rhs)
    out = np.zeros(max(max_lag, r) + 1, dtype)
    out[:r + 1] = gam
    for k in range(r + 1, max_lag + 1):
        out[k] = sum(phi[i - 1] * out[k - i] for i in range(1, p + 1))
    return (out / gam[0])[:max_lag + 1]


def _acf_to_pacf(rho):
    """Partial autocorrelations of autocorrelations rho_1..rho_L
    (Durbin-Levinson); ValueError when the Toeplitz matrix is not positive
    definite."""
    rho = np.asarray(rho, dtype=np.float64)
    L = len(rho)
    pacf = np.zeros(L)
    coef = np.zeros(0)
    full = np.concatenate([[1.0], rho])
    for k in range(1, L + 1):
        num = full[k] - coef @ full[k - 1:0:-1] if k > 1 else full[1]
        den = 1.0 - coef @ full[1:k] if k > 1 else 1.0
        pk = num / den
        if not abs(pk) < 1:
            raise ValueError("the Toeplitz correlations are not positive "
                             "definite (a partial autocorrelation is outside "
                             "(-1, 1))")
        pacf[k - 1] = pk
        coef = np.concatenate([coef - pk * coef[::-1], [pk]])
    return pacf


def _is_pd(mat) -> bool:
    """Whether a correlation matrix is positive definite, by the package's
    one rule (``_linalg.is_positive_definite``: no eigenvalue at most
    ``COV_RTOL`` times the largest), not by whether a Cholesky factorisation
    happens to succeed, which rounding decides for a nearly singular one."""
    return bool(is_positive_definite(mat).all())


class CorrelationStructure(Block):
    """
    A residual correlation structure (unbound: a specification; bound by
    the model to its rows: a block of role ``"correlation"``).

    Subclasses define the structure for one set of parameters
    (``_setup``, ``_corr``, ``_to_natural``, ``_from_natural``,
    ``_start``); this class binds them to the data, repeats them per level
    of ``correlation_by`` and cuts the groups into buckets of equal size.
    """

    role = "correlation"
    #: Needs times (else: position within the group).
    uses_time = True
    #: Needs integer times.
    integer_time = True
    #: Name in summaries, e.g. "AR(1)".
    label = ""
    #: Whether the structure can add the same covariance to every pair of
    #: a group's rows, as a random intercept does: with residual variances
    #: constant within groups the two are then not separately identified
    #: (the model warns).
    absorbs_random_intercept = False
    #: Whether the engine's work per group is O(n) (a factor with
    #: ``gradient`` and ``information``): buckets are then cut by rows,
    #: not by n^2 elements.
    _sparse_inverse = False

    def __init__(self) -> None:
        self.names = []
        self._bound = False

    # ------------------------------------------------------------------
    # Binding to the data
    def bind(self, time, group_index, n_groups, by=None, by_name="by",
             time_given=True) -> "CorrelationStructure":
        """
        A copy of the structure bound to the model's rows.

        Parameters
        ----------
        time : ndarray (n,)
            Each row's place within its group.
        group_index : ndarray (n,) of int
        n_groups : int
        by : array_like (n,), optional
            Separate parameters per level (constant within groups).
        time_given : bool
            Whether ``time`` came from the user (else positions).
        """
        out = copy.copy(self)
        out._bind(np.asarray(time, dtype=np.float64), np.asarray(group_index),
                  int(n_groups), by, by_name, time_given)
        return out

    def _bind(self, time, gi, m, by, by_name, time_given):
        # per bucket, what does not change between evaluations (AR(1)'s
        # time gaps), by the identity of the bucket's row array
        self._gaps_kept = {}
        # (natural parameters, ``degenerate``'s message) at the last estimate
        self._degenerate_kept = None
        n = len(time)
        if time.shape != (n,) or gi.shape != (n,):
            raise ValueError("time must have one value per row")
        if not np.all(np.isfinite(time)):
            raise ValueError("time has missing or infinite values: drop those rows")
        if self.integer_time and np.any(time != np.round(time)):
            hint = " (use 'car1' for continuous times)" if isinstance(self, AR1) else ""
            raise ValueError(
                f"{self.label} needs integer times (gaps allowed), but time= has "
                f"non-integer values{hint}. Recode time to integer occasions.")
        order = np.lexsort((time, gi))
        ts, gs = time[order], gi[order]
        dup = (gs[1:] == gs[:-1]) & (ts[1:] == ts[:-1])
        if self.uses_time and dup.any():
            raise ValueError(
                "time has repeated values within a group (e.g. group index "
                f"{int(gs[1:][dup][0])}, time {ts[1:][dup][0]:g}): each row of "
                "a group needs its own time.")
        sizes = np.bincount(gi, minlength=m)
        # by-levels per group
        if by is None:
            self.levels = [None]
            level_of_group = np.zeros(m, dtype=np.intp)
        else:
            by = np.asarray(by)
            if by.shape != (n,):
                raise ValueError("correlation_by must have one value per row")
            labels, codes = np.unique(by, return_inverse=True)
            codes = codes.reshape(-1)
            cs = codes[order]
            if np.any((gs[1:] == gs[:-1]) & (cs[1:] != cs[:-1])):
                raise ValueError(
                    f"correlation_by ({by_name}) varies within a group: each "
                    "group needs one level (separate correlation parameters "
                    "per level of a group-level variable).")
            level_of_group = np.zeros(m, dtype=np.intp)
            level_of_group[gs] = cs
            self.levels = [str(v) for v in labels]
        self.by_name = by_name
        self.level_of_group = level_of_group
        # per level: the structure's parameters from that level's groups
        starts = np.concatenate([[0], np.cumsum(sizes)])
        self.time = time
        if sizes.max(initial=0) < 2:   # (by level: ``_check_identified``)
            raise ValueError(f"{self.label} correlation not identified: {_NO_PAIR_OF_ROWS}.")
        self._setup(ts, gs, starts, sizes)
        base = self._names()
        self.k_level = len(base)
        if len(self.levels) == 1 and self.levels[0] is None:
            self.names = list(base)
        else:
            self.names = [f"{b}:{lev}" for lev in self.levels for b in base]
        # buckets of equal group size, rows in (group, time) order
        self.buckets = []
        # per bucket: its rows as a slice where they are consecutive in
        # the data (rows sorted by group and time), else None: the
        # correlated engine then reads them as views, not gathered copies
        self.bucket_rows = []
        for size in np.unique(sizes):
            size = int(size)
            groups = np.flatnonzero(sizes == size)
            idx = order[starts[groups][:, None] + np.arange(size)]
            per_group = size if self._sparse_inverse else size * size
            limit = _CHUNK_ROWS if self._sparse_inverse else _CHUNK_ELEMENTS
            chunk = max(1, limit // max(per_group, 1))
            for s in range(0, len(groups), chunk):
                g = groups[s:s + chunk]
                t = time[idx[s:s + chunk]]
                # (groups, rows in time order, times, |time differences|);
                # the differences, n per row, only where the dense matrices
                # are the engine's (AR(1) and CAR(1) read the gaps: at
                # 1,000,000 rows of 50 occasions the differences were 400 MB
                # that their fits never read; ``bucket_matrices`` makes them)
                self.buckets.append((g, idx[s:s + chunk], t,
                                     None if self._sparse_inverse else _lags(t)))
                flat = idx[s:s + chunk].ravel()
                self.bucket_rows.append(
                    slice(int(flat[0]), int(flat[0]) + flat.size)
                    if np.array_equal(flat, flat[0] + np.arange(flat.size)) else None)
        self.nobs = n
        self._check_identified()
        self._bound = True

    def _check_identified(self):
        """
        Raise where the groups of a level (of ``correlation_by``; all groups
        without it) leave some of that level's parameters unidentified
        (``_unidentified``): their log-likelihood would be flat in them,
        and a fit would report them at their start with a standard error
        of zero.
        """
        base = self._names()
        for lev, label in enumerate(self.levels):
            of_level = [(t, self.level_of_group[groups] == lev)
                        for groups, _, t, _ in self.buckets if t.shape[1] > 1]
            of_level = [(t, sel) for t, sel in of_level if sel.any()]
            if of_level:
                # the groups' distinct sets of times (one in a balanced
                # design), not every group's pairs of rows; made only for
                # the structures that read them
                times = (np.unique(t[sel], axis=0) for t, sel in of_level)
                missing, reason = self._unidentified(times)
            else:
                missing, reason = list(range(len(base))), _NO_PAIR_OF_ROWS
            if not missing:
                continue
            names = self.names[lev * len(base):(lev + 1) * len(base)]
            where = level_hint = ""
            if label is not None:
                where = f" in the groups with {self.by_name} = {label}"
                level_hint = (f" (Or merge that level of {self.by_name} with "
                              "another, or fit without correlation_by.)")
            raise ValueError(
                f"{self.label} correlation{where}: {', '.join(names[j] for j in missing)} "
                f"not identified: {reason}.{level_hint}")

    def degenerate(self, natural) -> str | None:
        """
        Where some groups' correlation matrices C_i are singular at the
        estimate (by the package's one rule, ``is_positive_definite``), the
        likelihood grows without bound towards them (log |C_i| -> -inf
        with the group's residuals in C_i's range): there is no maximum,
        and the fit stopped on the way (an unstructured model with 45
        correlations for 40 groups of 4-7 rows, eigenvalues 1e-17, once
        with "Converged: Yes").  AR(1) and CAR(1) (the bidiagonal factor)
        are singular only at |phi| = 1, outside their free scale.
        """
        if self._sparse_inverse:
            return None
        # the fit, its warnings and the summary each ask at the same
        # estimate: the eigenvalues of every group's C_i once (166 ms for
        # Toeplitz(3) on 2,000 groups of 50 rows)
        key = np.asarray(natural, dtype=np.float64).tobytes()
        if self._degenerate_kept is not None and self._degenerate_kept[0] == key:
            return self._degenerate_kept[1]
        singular = sum(int((~is_positive_definite(
            self.bucket_matrices(natural, bucket)[0])).sum()) for bucket in self.buckets)
        message = None
        if singular:
            n_groups = sum(len(bucket[0]) for bucket in self.buckets)
            message = (f"The residual correlation matrices of {singular} of {n_groups} "
                       "groups are singular at the estimate: the likelihood grows "
                       "without bound towards such matrices, so it has no maximum "
                       "there. Use fewer correlation parameters (a structured "
                       "correlation, a band, or fewer distinct times).")
        self._degenerate_kept = (key, message)
        return message

    @property
    def free_scale_admissible(self) -> bool:
        """Whether every free vector maps to an admissible structure (all
        but Toeplitz(q) below the longest lag and banded(q), whose
        correlations over all times need not be positive definite)."""
        return True

    def _check_bound(self):
        if not self._bound:
            raise ValueError(f"{type(self).__name__} is not bound to data: give "
                             "it to HetMixedLM(correlation=...)")

    # ------------------------------------------------------------------
    # Subclass interface (one level)
    def _setup(self, ts, gs, starts, sizes):
        """Fix the parameters from the sorted times ``ts`` of groups ``gs``."""

    def _names(self) -> list[str]:
        raise NotImplementedError

    def _unidentified(self, times) -> tuple[list[int], str]:
        """
        The parameters of one level (indices into ``_names()``) that the
        times of its groups do not identify, and why (a phrase).

        ``times``: an iterable (read once) of the level's distinct sets of
        times of groups with two rows or more, per bucket (m, n).  Where a
        group has two rows, one parameter (AR(1), CAR(1), exchangeable) is
        identified: the default.
        """
        return [], ""

    def _corr(self, theta, t, derivative, lag):
        """(C, dC): correlation matrices (m, n, n) of groups with times t
        (m, n) (``lag``: |t_j - t_k|, (m, n, n)) and, with ``derivative``,
        dC / d theta (k, m, n, n)."""
        raise NotImplementedError

    def bucket_factor(self, natural, bucket, derivative=False):
        """The algebra of a bucket's C_i the correlated engine needs
        (``DenseFactor``: Cholesky per group; structures with a sparse
        inverse override it)."""
        C, dC = self.bucket_matrices(natural, bucket, derivative)
        return DenseFactor(C, dC)

    def _to_natural(self, free):
        return np.array(free, dtype=np.float64)

    def _from_natural(self, natural):
        return np.array(natural, dtype=np.float64)

    def _jacobian(self, free):
        return _complex_jacobian(self._to_natural, free)

    def _start(self) -> np.ndarray:
        raise NotImplementedError

    def _admissible(self, natural) -> bool:
        try:
            self._from_natural(natural)
        except ValueError:
            return False
        return True

    # ------------------------------------------------------------------
    # Block interface
    def _per_level(self, vector):
        v = np.asarray(vector)
        return [v[i * self.k_level:(i + 1) * self.k_level]
                for i in range(len(self.levels))]

    def start(self, context: StartContext) -> np.ndarray:
        return np.tile(self._start(), len(self.levels))

    def to_natural(self, free):
        return np.concatenate([self._to_natural(f) for f in self._per_level(free)]
                              or [np.zeros(0)])

    def from_natural(self, natural):
        return np.concatenate([self._from_natural(v) for v in self._per_level(natural)]
                              or [np.zeros(0)])

    def jacobian(self, free):
        out = np.zeros((self.k, self.k))
        for i, f in enumerate(self._per_level(free)):
            sl = slice(i * self.k_level, (i + 1) * self.k_level)
            out[sl, sl] = self._jacobian(f)
        return out

    def admissible(self, natural) -> bool:
        return all(self._admissible(v) for v in self._per_level(natural))

    def natural_gradient(self, grad_corr):
        """d llf / d natural: the engine's gradient is already in them."""
        return np.asarray(grad_corr, dtype=np.float64)

    def free_gradient(self, free, grad_corr):
        return self.jacobian(free).T @ np.asarray(grad_corr, dtype=np.float64)

    def bucket_matrices(self, natural, bucket, derivative=False):
        """
        (C, dC) of a bucket's groups: C (m, n, n), and with
        ``derivative`` dC / d natural (k, m, n, n).
        """
        groups, _, t, lag = bucket
        if lag is None:
            lag = _lags(t)
        m, n = t.shape
        thetas = self._per_level(natural)
        if len(thetas) == 1:
            return self._corr(thetas[0], t, derivative, lag)
        C = np.empty((m, n, n))
        dC = np.zeros((self.k, m, n, n)) if derivative else None
        lev = self.level_of_group[groups]
        for i, theta in enumerate(thetas):
            rows = np.flatnonzero(lev == i)
            if rows.size == 0:
                continue
            c, d = self._corr(theta, t[rows], derivative, lag[rows])
            C[rows] = c
            if derivative:
                dC[i * self.k_level:(i + 1) * self.k_level, rows] = d
        return C, dC

    def whiten_rows(self, natural, values) -> np.ndarray:
        """
        L_i^-1 v_i for every group i (C_i = L_i L_i', the group's rows in
        time order), as the correlated engine whitens.

        Parameters
        ----------
        natural : ndarray (k,)
            The structure's natural parameters.
        values : ndarray (n,) or (n, c)
            One row per row of the model's data, in the data's order.

        Returns
        -------
        ndarray
            Shaped as ``values``, in the data's row order.
        """
        self._check_bound()
        v = np.asarray(values, dtype=np.float64)
        v2 = v[:, None] if v.ndim == 1 else v
        out = np.empty_like(v2)
        natural = np.asarray(natural, dtype=np.float64)
        for bucket in self.buckets:
            rows = bucket[1]                     # (m, n) rows in time order
            out[rows] = self.bucket_factor(natural, bucket).whiten(v2[rows])
        return out[:, 0] if v.ndim == 1 else out

    def matrices_of(self, natural, groups):
        """
        The correlation matrices of some groups, a bucket of equal sizes at
        a time.

        Parameters
        ----------
        natural : ndarray (k,)
        groups : ndarray of bool (n_groups,)
            The groups wanted.

        Yields
        ------
        rows : ndarray (g, n) of int
            The row indices of each group of the bucket, in time order.
        C : ndarray (g, n, n)
        """
        self._check_bound()
        groups = np.asarray(groups, dtype=bool)
        for bucket in self.buckets:
            hit = np.flatnonzero(groups[bucket[0]])
            if hit.size:
                sub = _sub_bucket(bucket, hit)
                yield sub[1], self.bucket_matrices(natural, sub)[0]

    def group_matrix(self, natural, group):
        """(row indices, C) of one group (index into 0..n_groups-1), rows in
        time order: what the correlated engine uses for it."""
        wanted = np.zeros(len(self.level_of_group), dtype=bool)
        if 0 <= group < wanted.size:
            wanted[group] = True
        for rows, C in self.matrices_of(natural, wanted):
            return rows[0], C[0]
        raise ValueError(f"no group with index {group}")

    def describe(self) -> str:
        """A one-line description, e.g. "AR(1)"."""
        return self.label


_NO_PAIR_OF_ROWS = "no group has two rows or more, and a correlation needs two rows of a group"


def _lags(t):
    return np.abs(t[:, :, None] - t[:, None, :])


def _listed(lags, most=8):
    """Integer lags for a message: "1, 3, 5", the first ``most`` then "..."."""
    text = ", ".join(str(int(v)) for v in lags[:most])
    return text + (", ..." if len(lags) > most else "")


def _sub_bucket(bucket, groups):
    """Some of a bucket's groups (an index or slice into its groups), as a
    bucket: (groups, rows, times, |time differences| or None)."""
    return tuple(None if part is None else part[groups] for part in bucket)


def _power_matrices(phi, lag, derivative):
    """phi^lag and its derivative lag phi^(lag - 1), by exp/log (np.power
    on every entry costs several times more)."""
    if phi == 0.0:
        C = (lag == 0).astype(float)
        return C, ((lag == 1).astype(float)[None] if derivative else None)
    C = np.exp(lag * np.log(abs(phi)))
    if phi < 0:
        C *= np.where(np.fmod(lag, 2.0) == 1.0, -1.0, 1.0)
    dC = (lag * C / phi)[None] if derivative else None
    return C, dC


class DenseFactor:
    """
    C_i = L_i L_i' of a bucket of groups (m, n, n) by batched Cholesky: the
    operations the correlated engine needs.

    Attributes
    ----------
    C, dC : ndarray
        (m, n, n) and (k, m, n, n) (dC None without derivatives; given
        as a function, it is built when first read).
    index : ndarray (m, n, n) of int, optional
        For structures whose every entry of C is one parameter or a
        constant (unstructured, banded): the parameter of each entry, -1
        for constants, so that tr(N dC_k) is a sum of N's entries
        (``_correlated`` then reads the dense dC only for the expected
        information).
    logdet : float
        sum_i log |C_i|.
    """

    index = None

    def __init__(self, C, dC, index=None):
        self.C, self._dC, self.index = C, dC, index
        L = np.linalg.cholesky(C)   # LinAlgError: not positive definite
        self._Linv = np.linalg.inv(L)
        self.logdet = 2.0 * float(np.log(np.diagonal(L, axis1=1, axis2=2)).sum())

    @functools.cached_property
    def dC(self):
        return self._dC() if callable(self._dC) else self._dC

    def whiten(self, v, scale=None, out=None):
        """L^-1 v for v (m, n, c); with ``scale`` (m, n), L^-1 diag(scale) v;
        into ``out`` where given."""
        return np.matmul(self._Linv, v if scale is None else v * scale[..., None],
                         out=out)

    def whiten_t(self, v):
        """L^-T v."""
        return self._Linv.transpose(0, 2, 1) @ v

    @property
    def inverse(self):
        """C^-1 (m, n, n)."""
        return self.whiten_t(self._Linv)

    def inverse_dot(self, M):
        """C^-1 M for M (..., m, n, c)."""
        return self.inverse @ M


class BidiagonalFactor(DenseFactor):
    """
    AR(1)-type C_i (C_jk = phi^|t_j - t_k|, rows in time order, one
    parameter phi per level): L^-1 is bidiagonal, row j
    (x_j - rho_j x_{j-1}) / c_j with rho_j = phi^(t_j - t_{j-1}) (0 for a
    group's first row) and c_j = sqrt(1 - rho_j^2), so whitening is O(n),
    log |C_i| = sum_j log c_j^2 and C^-1 = B'B (B = L^-1) is tridiagonal.
    The gradient needs no dense matrix (``gradient``); C and dC are
    built only when asked for (the expected information).

    ``rho``, ``drho`` and ``d2rho`` are (m, n), one row per group, or
    (1, n) where every group of the bucket has the same rho (the same
    time gaps and phi: a balanced design): the arrays that depend on rho
    alone (B's bands, the derivatives of C^-1, traces) are then one
    group's, broadcast over the m groups, and cost 1/m of the work.
    ``shape`` is (m, n) either way; ``n_groups`` gives m for (1, n).
    """

    def __init__(self, matrices, rho, drho, level, k, d2rho=None, n_groups=None):
        self._matrices = matrices
        self.rho, self.drho, self.level, self.k = rho, drho, level, k
        self.shape = (rho.shape[0] if n_groups is None else int(n_groups), rho.shape[1])
        # d^2 rho / d phi^2, a function called when first needed (the
        # observed information only)
        self._d2rho = d2rho
        self.c = np.sqrt(1.0 - rho * rho)
        if not np.all(self.c > 0):
            raise np.linalg.LinAlgError("AR(1) correlation of 1 between rows")
        self.logdet = 2.0 * float(np.log(self.c).sum()) * (self.shape[0] // rho.shape[0])
        inv_c2 = 1.0 / self.c ** 2
        self._diag = inv_c2.copy()
        self._diag[:, :-1] += (rho * rho * inv_c2)[:, 1:]
        self._off = -(rho * inv_c2)[:, 1:]          # (j, j+1)

    @functools.cached_property
    def _dense(self):
        return self._matrices()

    @property
    def C(self):
        return self._dense[0]

    @property
    def dC(self):
        return self._dense[1]

    @functools.cached_property
    def _inv_c(self):
        return (1.0 / self.c)[:, :, None]

    @functools.cached_property
    def _rho_c(self):
        """rho_j / c_j for j >= 1 (B's subdiagonal, negated), (m, n-1, 1)."""
        return (self.rho[:, 1:] / self.c[:, 1:])[:, :, None]

    def scaled_bands(self, scale):
        """B diag(scale)'s diagonal scale_j / c_j and negated subdiagonal
        rho_j scale_{j-1} / c_j, (m, n, 1) and (m, n-1, 1): what ``whiten``
        takes as ``scale`` for several arrays with the same scale."""
        return ((scale / self.c)[:, :, None],
                (self.rho[:, 1:] * scale[:, :-1] / self.c[:, 1:])[:, :, None])

    def whiten(self, v, scale=None, out=None):
        if scale is None:
            out = np.multiply(v, self._inv_c, out=out)
            out[:, 1:] -= self._rho_c * v[:, :-1]
            return out
        # B diag(scale) v in two passes: row j is
        # (scale_j v_j - rho_j scale_{j-1} v_{j-1}) / c_j
        diag, sub = scale if isinstance(scale, tuple) else self.scaled_bands(scale)
        out = np.multiply(v, diag, out=out)
        out[:, 1:] -= sub * v[:, :-1]
        return out

    def whiten_t(self, v):
        out = v * self._inv_c
        out[:, :-1] -= self._rho_c * v[:, 1:]
        return out

    @functools.cached_property
    def _rho_by_position(self):
        return np.ascontiguousarray(self.rho.T)[:, None, :]      # (n, 1, m)

    @functools.cached_property
    def _c_by_position(self):
        return np.ascontiguousarray(self.c.T)[:, None, :]        # (n, 1, m)

    @property
    def inverse(self):
        m, n = self.shape
        out = np.zeros((m, n, n))
        i = np.arange(n)
        out[:, i, i] = self._diag
        out[:, i[:-1], i[:-1] + 1] = self._off
        out[:, i[:-1] + 1, i[:-1]] = self._off
        return out

    def inverse_dot(self, M):
        d, o = self._diag[..., None], self._off[..., None]
        out = d * M
        out[..., :-1, :] += o * M[..., 1:, :]
        out[..., 1:, :] += o * M[..., :-1, :]
        return out

    def gradient(self, a, La, Zw, Zt, K, Xi, LXi, b=None, ZK=None, Y=None):
        """
        (d llf / d log r_ij (m, n), d llf / d phi (k,)) without dense
        matrices.  With Omega* = a a' - I + Z* K Z*' (+ Xi Xi', REML) in
        the whitened rows and U = L: d llf / d log r_j = 1/2 (U Omega*
        U^-1)_jj, and d llf / d phi = -tr(dB U Omega*) for B = U^-1
        (bidiagonal, so only (U Omega*)_jj and (U Omega*)_{j-1, j} enter).

        ``La`` = L a and ``LXi`` = L Xi (REML) come from the caller, which
        has them without a recursion over the positions: a and Xi are
        whitened rows (B S^-1 times unwhitened ones) less Z* times a
        per-group vector, and L B = I, L Z* = Z~
        (``_correlated._coloured_rows``).

        ``b`` = B'a, ``ZK`` = Z~ K and ``Y`` = B'Z* where the caller has
        them (the expected information takes the same ``ZK`` and ``Y``).
        """
        if b is None:
            b = self.whiten_t(a[:, :, None])[:, :, 0]
        if ZK is None:
            ZK = _times_k(Zt, K)                      # (U Z*) K = Z~ K
        if Y is None:
            Y = self.whiten_t(Zw)
        g = La * b - 1.0 + _row_dot(ZK, Y)
        diag = La * a - self.c + _row_dot(ZK, Zw)
        sub = La[:, :-1] * a[:, 1:] + _row_dot(ZK[:, :-1], Zw[:, 1:])
        if Xi is not None:
            g += _row_dot(LXi, self.whiten_t(Xi))
            diag += _row_dot(LXi, Xi)
            sub += _row_dot(LXi[:, :-1], Xi[:, 1:])
        d_diag, d_sub = self._dB                      # d (1 / c_j), d (-rho_j / c_j)
        per_group = -((d_diag * diag).sum(axis=1) + (d_sub[:, 1:] * sub).sum(axis=1))
        grad_corr = np.bincount(self.level, weights=per_group, minlength=self.k)
        return 0.5 * g, grad_corr

    @functools.cached_property
    def d2rho(self):
        return self._d2rho() if callable(self._d2rho) else self._d2rho

    def d_whiten(self, v):
        """dB v for B = L^-1 (bidiagonal) and v (m, n, c)."""
        dBd, dBs = self._dB
        out = dBd[:, :, None] * v
        out[:, 1:] += dBs[:, 1:, None] * v[:, :-1]
        return out

    def d_whiten_t(self, v):
        """dB' v."""
        dBd, dBs = self._dB
        out = dBd[:, :, None] * v
        out[:, :-1] += dBs[:, 1:, None] * v[:, 1:]
        return out

    @functools.cached_property
    def _dB(self):
        """dB / d phi: its diagonal d(1 / c_j) and subdiagonal
        d(-rho_j / c_j) (entries (j, j-1))."""
        c3 = self.c * self.c * self.c      # (c ** 3 takes np.power's slow path)
        return self.rho * self.drho / c3, -self.drho / c3

    @functools.cached_property
    def _dCinv(self):
        """d C^-1 / d phi = dB'B + B'dB (tridiagonal): diagonal, and the
        entries (j, j+1)."""
        rho, c = self.rho, self.c
        Bd, Bs = 1.0 / c, -rho / c
        dBd, dBs = self._dB
        d = 2.0 * dBd * Bd
        d[:, :-1] += 2.0 * (dBs * Bs)[:, 1:]
        return d, (dBs * Bd + Bs * dBd)[:, 1:]

    @functools.cached_property
    def tr_cinv_dc_sq(self):
        """tr((C^-1 dC)^2) per group, in closed form from the bidiagonal
        factors."""
        rho, c = self.rho, self.c
        dBd, dBs = self._dB
        return self._per_group(2.0 * ((dBd * c) ** 2).sum(axis=1) + 2.0 * (
            dBd ** 2 + 2.0 * dBd * dBs * rho + dBs ** 2).sum(axis=1))

    def _per_group(self, v):
        """A per-group vector (m,) from one computed on ``rho``'s rows."""
        return np.broadcast_to(v, (self.shape[0],))

    @functools.cached_property
    def c_dcinv_diag(self):
        """diag(C dC^-1) (C tridiagonal-times-tridiagonal: only C's
        diagonal and first off-diagonal, rho, enter)."""
        rho = self.rho
        dCi_d, dCi_o = self._dCinv
        out = dCi_d.copy()
        out[:, 1:] += rho[:, 1:] * dCi_o
        out[:, :-1] += rho[:, 1:] * dCi_o
        return out

    def info_parts(self, Zw, Zt, w, G=None, w_by_direction=None):
        """
        What the expected information takes from L', in one back
        substitution (``lt_position_major``) over all its columns (each is
        a loop over the positions, whose cost is mostly per call):

        * G = C^-1 Z~ = B'Z* (m, n, q);
        * U_a = L'(w_a o G) per variance direction a, position-major (n,
          q, k_var, m): its uses (``w_c_q_w``, ``_bd_dot_u``) sum over
          rows, in any order;
        * BD = B dC G = -dB Z~ - L'(dB'Z*) (m, n, q): from dC = -L dB C
          - C dB'L' and L'C^-1 = B, dC G = -L dB Z~ - C dB'Z*, so that
          D = dC G = L BD and D'C^-1 D = BD'BD.

        ``G``: B'Z* where the caller has it; ``w_by_direction``: w as
        (k_var, n, m), C order (``_by_direction``), where the caller has it.

        The columns are written position-major, (n, columns, m), straight
        from their factors: each position's column is then a contiguous
        row of the m groups, which the products write and the recursion
        reads a row at a time (with the groups' columns interleaved,
        (n, m, columns), writing U_a took 4 times longer).
        """
        m, n = self.shape
        q, kv = Zw.shape[2], w.shape[2]
        qk = q * kv
        if G is None:
            G = self.whiten_t(Zw)
        if w_by_direction is None:
            w_by_direction = _by_direction(w)
        h = np.empty((n, qk + q, m))
        Ga = h[:, :qk].view()
        Ga.shape = (n, q, kv, m)      # a view (raises if it were a copy)
        np.multiply(G.transpose(1, 2, 0)[:, :, None, :],
                    w_by_direction.transpose(1, 0, 2)[:, None, :, :], out=Ga)
        h[:, qk:qk + q] = self.d_whiten_t(Zw).transpose(1, 2, 0)
        self.lt_position_major(h)
        BD = -self.d_whiten(Zt) - h[:, qk:qk + q].transpose(2, 0, 1)
        return G, Ga, BD

    def w_c_q_w(self, w, U, K, diag=None, up=None, down=None, w_by_direction=None):
        """
        sum over groups of w_a'(C o Q)w_b, Q = C^-1 - G K G' (w (m, n,
        k_var), G = C^-1 Z~ (m, n, q)): C o C^-1 is tridiagonal (C's first
        off-diagonal is rho), and w_a'(C o G K G')w_b =
        sum_jk (L' Ga)_ja K (L' Ga)_kb' (Ga_j = G_j w_j'), with
        U = L' Ga position-major (n, q, k_var, m) from ``info_parts``.

        ``diag``, ``up``, ``down`` (m, n), (m, n-1), (m, n-1): a
        tridiagonal matrix added to C o C^-1 (entries (j, j), (j, j+1),
        (j+1, j)), whose form in w costs no further pass.
        ``w_by_direction``: w as (k_var, n, m), as ``info_parts`` takes it.
        """
        d, o = self._diag, self._off * self.rho[:, 1:]
        if w_by_direction is None:
            w_by_direction = _by_direction(w)
        if up is None:
            T = _tridiagonal_form(w_by_direction, d, o)
        else:
            T = _tridiagonal_form(w_by_direction, d + diag, o + up, o + down)
        # sum over positions, groups and q of U K U'
        if U.shape[1] == 1:    # (K a number per group, along U's last axis)
            U1 = U[:, 0]
            return T - np.matmul(U1 * K[:, 0, 0], U1.transpose(0, 2, 1)).sum(axis=0)
        return T - np.einsum("jrag,grs,jsbg->ab", U, K, U, optimize=True)

    # --------------------------------------------------------------
    # Tridiagonal algebra for the expected information
    def lt_position_major(self, h):
        """L' V in place for V position-major (n, c, m), by back substitution
        of B' u = V:
        u_j = c_j (v_j + rho_{j+1} / c_{j+1} u_{j+1}), i.e. u = c o h with
        h_j = v_j + rho_{j+1} h_{j+1}, a recursion over the positions,
        vectorised over columns and groups.  Position-major, a
        position's columns and groups are one contiguous block (on (m, n,
        c) itself each step reads a strided (m, c) slice: 2-3 times slower
        for a few columns).  (A banded triangular solve, LAPACK's dtbtrs,
        over a bucket's rows as one bidiagonal matrix took 2 times longer
        for 4 columns: a chain of dependent steps per column;
        ``scipy.signal.lfilter`` along the positions, 3 times longer.)"""
        r = self._rho_by_position
        for j in range(h.shape[0] - 2, -1, -1):
            h[j] += r[j + 1] * h[j + 1]
        h *= self._c_by_position

    def information(self, Zt, Zw, K, A, w, E, w_by_direction=None, G=None, F=None):
        """
        The expected information's pieces (variance x variance, variance x
        phi, phi x phi, G x variance, G x phi) without dense matrices:
        with Q = C^-1 - G K G' (G = C^-1 Z~), P = C Q = I - F G'
        (F = Z~ K), C^-1 and dC^-1 tridiagonal, the products with L' in
        one recursion (``info_parts``), and traces of products of
        bidiagonal factors in closed form (see the
        module docstring of ``_correlated`` for the dense formulas these
        reduce).  ``w_by_direction``: w as (k_var, n, m) (``info_parts``);
        ``G`` = B'Z* and ``F`` = Z~ K where the caller has them
        (``gradient``'s).
        """
        m, n = self.shape
        k = self.k
        if w_by_direction is None:
            w_by_direction = _by_direction(w)
        G, U, BD = self.info_parts(Zw, Zt, w, G=G,      # G = C^-1 Z~
                                      w_by_direction=w_by_direction)
        if F is None:
            F = _times_k(Zt, K)
        Ci_d, Ci_o = self._diag, self._off
        lev = self.level
        kv = w.shape[2]
        q = G.shape[2]
        # variance x variance: 1/4 w'[P o P' + (C - F Z~') o (C^-1 - G K G')]w:
        #   w'(P o P')w = sum_j w_j w_j'(1 - 2 F_j.G_j) + tr(M_a M_b),
        #   M_a = sum_j w_aj F_j G_j' (q x q per group), and
        #   w'((C - F Z~') o Q)w = w'(C o Q)w - T3 + T4, T3 = w'((F Z~') o
        #   C^-1)w (tridiagonal weights, with the diagonal sum above in the
        #   same pass: ``w_c_q_w``), T4 = sum tr(M_a K P_b'), P_b = sum_j
        #   w_bj Z~_j G_j'
        # the three per-group sums over rows weighted by w (M_a, P_b and
        # the variance x phi diagonal below) in one pass over w
        qq = q * q
        cdci = self.c_dcinv_diag                      # diag(C dC^-1)
        # the rows of G's parameters, and G'D = Z*'BD
        I_Gv, I_Gc, GD = self.cov_rows(Zt, Zw, K, A, w, E, G)
        dPM = (-cdci - _row_dot(F, self.whiten_t(BD))
               + _row_dot(_times_k(_times_k(F, GD), K), G))
        sums = _group_sums(np.concatenate(
            [_outer_rows(F, G), _outer_rows(Zt, G), dPM[:, :, None]], axis=2), w)
        Ma, Pm = sums[:, :qq], sums[:, qq:2 * qq]     # (m, q*q, k_var)
        swap_rs = np.arange(q * q).reshape(q, q).T.ravel()  # (r, s) -> (s, r)
        trMM = np.einsum("mka,mkb->ab", Ma, Ma[:, swap_rs])
        # (per-group sums of small arrays: einsum's own loop suffices)
        T4 = np.einsum("mrsa,msu,mrub->ab", Ma.reshape(m, q, q, kv), K,
                       Pm.reshape(m, q, q, kv))
        up = Ci_o * _row_dot(F[:, :-1], Zt[:, 1:])
        dn = Ci_o * _row_dot(F[:, 1:], Zt[:, :-1])
        diag = (1.0 - 2.0 * _row_dot(F, G)) - Ci_d * _row_dot(F, Zt)
        CQ_T3 = self.w_c_q_w(w, U, K, diag, -up, -dn, w_by_direction)
        I_vv = 0.25 * (trMM + CQ_T3 + T4)
        # phi x phi: 1/2 tr(Q dC Q dC) = 1/2 [tr((C^-1 dC)^2)
        #   - 2 tr(K D'C^-1 D) + tr(K G'D K G'D)] with D = dC G = L BD:
        #   D'C^-1 D = BD'BD and G'D = Z*'BD (``cov_rows``)
        tr_cc = self.tr_cinv_dc_sq
        BDK = _times_k(BD, K)
        mid = (BDK * BD).sum(axis=(1, 2))
        KGD = K @ GD
        last = np.einsum("mrt,mtr->m", KGD, KGD)
        I_cc = np.diag(np.bincount(lev, weights=0.5 * (tr_cc - 2.0 * mid + last),
                                   minlength=k))
        # variance x phi: 1/2 sum_j w_aj (C Q dC Q)_jj, where
        #   C Q dC Q = -C dC^-1 - D K G' - Z~ K (C^-1 D)' + Z~ K (G'D) K G'
        #   (Q dC Q = -dC^-1 - C^-1 D K G' - G K D' C^-1 + G K G'D K G'),
        # C^-1 D = B'BD and sum_j w_aj (D K G')_jj = sum_j (BD K)_j U_aj
        # (D = L BD, U_a = L'(w_a o G))
        # (dPM above)
        per = 0.5 * (sums[:, 2 * qq] - _bd_dot_u(BDK, U))
        I_vc = np.stack([np.bincount(lev, weights=per[:, a], minlength=k)
                         for a in range(kv)])
        return I_vv, I_vc, I_cc, I_Gv, I_Gc

    def cov_rows(self, Zt, Zw, K, A, w, E, G=None):
        """
        The expected information's rows of G's parameters (``E``, (k_cov,
        q, q)) against the variance directions (k_cov, k_var) and phi
        (k_cov, k), and G'D per group (m, q, q), without a recursion over
        the positions: with G = C^-1 Z~ = B'Z* (``G``, where the caller
        has it) and D = dC G, G'D = Z*'BD = -(Z*'dB Z~ + Z~'dB'Z*) (BD =
        -dB Z~ - L'(dB'Z*) of ``info_parts``, L Z* = Z~).

        G x variance: 1/2 sum over rows of w_a (E_c o (C Q Z~)_j (Q
        Z~)_j'), as E_c times the rows' sums of the q x q products; G x
        phi: 1/2 tr(E_c (I - K A)' G'D (I - K A)) per group, by level.
        """
        q = Zw.shape[2]
        if G is None:
            G = self.whiten_t(Zw)
        GD = _cross(Zw, self.d_whiten(Zt))
        GD = -(GD + _swap(GD))
        IKA = np.eye(q) - K @ A
        Yq = _times_k(G, IKA)
        CYq = _times_k(Zt, IKA)
        kc = E.shape[0]
        I_Gv = 0.5 * (E.reshape(kc, q * q)
                      @ _rows_cross(_outer_rows(CYq, Yq), w))
        Mq = _swap(IKA) @ GD @ IKA
        per_c = 0.5 * np.einsum("crs,msr->cm", E, Mq)
        I_Gc = np.stack([np.bincount(self.level, weights=row, minlength=self.k)
                         for row in per_c]) if kc else np.zeros((0, self.k))
        return I_Gv, I_Gc, GD


def _swap(a):
    return np.swapaxes(a, -1, -2)


def _rows_cross(a, b):
    """sum over groups and rows of a_j b_j' ((m, n, k) each): one BLAS
    product (einsum's own loop is several times slower here)."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


# Per-group algebra with the q random effects of the rows.  With q = 1 (a
# random intercept) the products of numpy's batched matmul and einsum on
# 1 x 1 matrices cost 3-5 times a broadcast product of the same arrays
# (measured on a bucket of 16,384 rows), so they take that path then.
def _times_k(V, K, left=False):
    """V @ K (or K @ V with ``left``) per group: V (m, n, q) or (m, n, q,
    c) for ``left``, K (m, q, q) (broadcast as given)."""
    if K.shape[-1] == 1 and K.shape[-2] == 1:
        return V * K
    return K @ V if left else V @ K


def _row_dot(a, b):
    """sum_r a_jr b_jr per row, (m, n, q) each."""
    if a.shape[-1] == 1:
        return (a * b)[..., 0]
    return np.einsum("mjr,mjr->mj", a, b)


def _cross(a, b):
    """a'b per group (m, q, c) for a (m, n, q), b (m, n, c)."""
    if a.shape[-1] == 1:
        return (a * b).sum(axis=1, keepdims=True)
    return np.einsum("mjr,mjs->mrs", a, b)


def _outer_rows(a, b):
    """a_j b_j' per row, flattened: (m, n, q * q)."""
    m, n, q = a.shape
    if q == 1:
        return a * b
    return (a[..., :, None] * b[..., None, :]).reshape(m, n, q * q)


def _bd_dot_u(V, U):
    """sum_j V_j U_ja per group (m, k_var), for V (m, n, q) and the
    position-major U (n, q, k_var, m) of ``BidiagonalFactor.info_parts``."""
    if U.shape[1] == 1:     # a broadcast product along U's rows of groups
        return (U[:, 0] * V[..., 0].T[:, None, :]).sum(axis=0).T
    return np.einsum("mjr,jram->ma", V, U)


def _tridiagonal_form(w_by_direction, diag, up, down=None):
    """
    sum over groups of w_a'T w_b (k_var, k_var) for each group's
    tridiagonal T: ``diag`` (m, n), ``up`` and ``down`` (m, n-1) its
    entries (j, j+1) and (j+1, j) (``down`` None: T symmetric), each (m,
    ...) or one group's (1, ...) for all; w as (k_var, n, m)
    (``_by_direction``).  Each direction's values are one contiguous row,
    position-major, so that weighting them is a pass of long rows
    (weighting (rows, k_var) broadcasts over k_var, several times slower),
    and a group's pairs (j, j+1) are m entries apart.
    """
    kv, n, m = w_by_direction.shape
    wt = w_by_direction.reshape(kv, -1)

    def position_major(t, cols):
        return np.broadcast_to(t, (m, cols)).T.ravel()

    T = (wt * position_major(diag, n)) @ wt.T
    X = (wt[:, :-m] * position_major(up, n - 1)) @ wt[:, m:].T
    if down is None:
        return T + X + X.T
    return T + X + ((wt[:, :-m] * position_major(down, n - 1)) @ wt[:, m:].T).T


def _by_direction(w):
    """w (m, n, k_var) as (k_var, n, m), C order: each direction's values
    position-major (``BidiagonalFactor.info_parts``, ``w_c_q_w``)."""
    return np.ascontiguousarray(w.transpose(2, 1, 0))


def _group_sums(v, w):
    """sum_j v_jk w_ja per group, (m, k, k_var), for v (m, n, k) and w (m,
    n, k_var): a batched product (einsum's loop is 4 times slower)."""
    return _swap(v) @ w


class Exchangeable(CorrelationStructure):
    """
    Exchangeable (compound symmetry) correlation: C_jk = rho for j != k
    (Stata's ``exchangeable``, nlme's ``corCompSymm``).  No times needed.

    rho ranges over (-1/(n_max - 1), 1), n_max the largest group, where
    every group's C is positive definite; the free scale is nlme's
    ``log((rho - lo) / (1 - rho))``.

    With a random intercept, exchangeable residuals are not separately
    identified when the residual variances are constant within groups:
    V_i = tau^2 J + sigma^2 ((1 - rho) I + rho J) depends on
    (tau^2, sigma^2, rho) only through sigma^2 (1 - rho) and
    tau^2 + rho sigma^2, for negative rho too (a ridge of equal
    likelihood).  With variances that vary within groups (S_i not a
    multiple of I) the term rho S_i J S_i differs from tau^2 J and both are
    identified.  nlme's references fit exchangeable residuals without
    random effects (gls), which for rho >= 0 is the random-intercept
    model.
    A model with both gives a warning at construction.
    """

    uses_time = False
    integer_time = False
    label = "exchangeable"
    absorbs_random_intercept = True

    def _setup(self, ts, gs, starts, sizes):
        n_max = int(sizes.max())     # at least 2 (``_bind`` checked)
        self.lower = -1.0 / (n_max - 1)

    def _names(self):
        return ["rho"]

    def _corr(self, theta, t, derivative, lag):
        m, n = t.shape
        rho = theta[0]
        C = np.broadcast_to((1 - rho) * np.eye(n) + rho, (m, n, n)).copy()
        dC = (np.broadcast_to(1.0 - np.eye(n), (1, m, n, n)).copy()
              if derivative else None)
        return C, dC

    def _to_natural(self, free):
        e = np.exp(np.clip(free, -700, 700))
        return (self.lower + e) / (1.0 + e)

    def _from_natural(self, natural):
        rho = np.asarray(natural, dtype=np.float64)
        if not np.all((rho > self.lower) & (rho < 1)):
            raise ValueError(f"exchangeable rho must be in ({self.lower:.4g}, 1)")
        return np.log((rho - self.lower) / (1.0 - rho))

    def _start(self):
        return np.array([0.1])


class AR1(CorrelationStructure):
    """
    AR(1) correlation on integer times: C_jk = phi^|t_j - t_k| (gaps
    allowed; Stata's ``ar 1``, nlme's ``corAR1`` / ``corARMA(p = 1)``).
    Free scale atanh(phi).
    """

    label = "AR(1)"
    _sparse_inverse = True

    def _setup(self, ts, gs, starts, sizes):
        same = gs[1:] == gs[:-1]
        gaps = (ts[1:] - ts[:-1])[same]
        self._gap = float(np.median(gaps)) if gaps.size else 1.0
        # phi is the correlation one unit of time apart: in units far below
        # or above the typical gap it underflows to 0 or rounds to 1 (times
        # in units of 1e-6 gave a start of 0.1^(1e6) = 0 and an error from
        # the free scale)
        if not 1e-300 < self._start()[0] < 1.0 - 1e-12:
            raise ValueError(
                f"{self.label}: the typical gap between a group's times is "
                f"{self._gap:g} units of time, where phi (the correlation one "
                "unit apart) cannot be represented. Rescale time, e.g. divide "
                f"it by {self._gap:g}.")

    def _names(self):
        return ["ar1"]

    def _corr(self, theta, t, derivative, lag):
        return _power_matrices(theta[0], lag, derivative)

    def _bucket_gaps(self, bucket):
        """(time gaps d_j (m, n), 0 for a group's first row; whether all
        groups of the bucket have the same gaps), kept for the structure's
        own buckets (they do not change between evaluations)."""
        idx = bucket[1]
        kept = self._gaps_kept.get(id(idx))
        if kept is not None and kept[0] is idx:
            return kept[1], kept[2]
        t = bucket[2]
        gaps = np.zeros(t.shape)
        gaps[:, 1:] = t[:, 1:] - t[:, :-1]
        same = bool(np.all(gaps == gaps[:1]))
        if any(b[1] is idx for b in self.buckets):
            self._gaps_kept[id(idx)] = (idx, gaps, same)
        return gaps, same

    def bucket_factor(self, natural, bucket, derivative=False):
        # C^-1 is tridiagonal: C = L L' with L^-1 bidiagonal (row j:
        # (x_j - phi^d_j x_{j-1}) / sqrt(1 - phi^(2 d_j)), d_j the gap)
        groups, _, t, lag = bucket
        level = self.level_of_group[groups]
        phi = np.asarray(self._per_level(natural))[level, 0]
        gaps, same_gaps = self._bucket_gaps(bucket)
        n_groups = None
        if same_gaps and np.all(level == level[0]):
            # every group of the bucket has the same rho: the factor's
            # arrays are one group's, broadcast over the groups
            gaps, phi, n_groups = gaps[:1], phi[:1], len(groups)
        if np.all(gaps[:, 1:] == 1.0):
            # no gaps: rho_j = phi, d rho_j / d phi = 1, d2 = 0 (the same
            # numbers as the powers below, without np.power's cost, a
            # tenth of an evaluation)
            rho = np.repeat(phi[:, None], t.shape[1], axis=1)
            rho[:, 0] = 0.0
            drho = (gaps > 0).astype(np.float64) if derivative else None
            return BidiagonalFactor(
                lambda: self.bucket_matrices(natural, bucket, derivative), rho, drho,
                level, self.k, lambda: np.zeros(gaps.shape), n_groups)
        rho = np.where(gaps > 0, np.power(phi[:, None], gaps), 0.0)
        drho = d2rho = None
        if derivative:  # d rho_j / d phi = d_j phi^(d_j - 1), any gap d_j > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                drho = np.where(gaps > 0, gaps * np.power(phi[:, None], gaps - 1.0), 0.0)

            def second():  # d_j (d_j - 1) phi^(d_j - 2), zero for d_j = 1
                with np.errstate(divide="ignore", invalid="ignore"):
                    return np.where((gaps > 0) & (gaps != 1.0), gaps * (gaps - 1.0)
                                    * np.power(phi[:, None], gaps - 2.0), 0.0)
            d2rho = second
        return BidiagonalFactor(
            lambda: self.bucket_matrices(natural, bucket, derivative), rho, drho,
            level, self.k, d2rho, n_groups)

    def _to_natural(self, free):
        return np.tanh(free)

    def _from_natural(self, natural):
        phi = np.asarray(natural, dtype=np.float64)
        if not np.all(np.abs(phi) < 1):
            raise ValueError(f"{self.label} phi must be in (-1, 1)")
        return np.arctanh(phi)

    def _start(self):
        # a correlation of 0.1 at the typical gap between a group's times,
        # free of the time's units: with times in months two years apart
        # (gap 24) a start of 0.1 gave correlations of 0.1^24 between the
        # rows, where the log-likelihood is flat in phi, and scoring
        # stopped there (orthodont, REML: llf 0.6 below the maximum).  (A
        # strong start such as 0.3 let the correlation take over a random
        # intercept's part: bodyweight's CAR(1) fit with a random slope
        # stopped at phi = 0.997, G = 0, llf 6.6 below nlme's maximum.)
        return np.array([0.1 ** (1.0 / self._gap)])


class CAR1(AR1):
    """
    Continuous-time AR(1) (exponential) correlation: C_jk =
    phi^|t_j - t_k| for real times, phi in (0, 1) (nlme's ``corCAR1``;
    Stata's ``exponential``).  Free scale logit(phi).  Rescaling time by c
    turns phi into phi^(1/c).
    """

    integer_time = False
    label = "CAR(1)"

    def _names(self):
        return ["car1"]

    def _to_natural(self, free):
        return 1.0 / (1.0 + np.exp(-np.asarray(free)))

    def _from_natural(self, natural):
        phi = np.asarray(natural, dtype=np.float64)
        if not np.all((phi > 0) & (phi < 1)):
            raise ValueError("CAR(1) phi must be in (0, 1)")
        return np.log(phi / (1.0 - phi))


class _LagStructure(CorrelationStructure):
    """Shared: correlations as a function of the integer lag."""

    def _setup(self, ts, gs, starts, sizes):
        same = gs[1:] == gs[:-1]
        if same.any():
            first = ts[starts[:-1][sizes > 0]]
            last = ts[starts[1:][sizes > 0] - 1]
            self.max_lag = int(np.max(last - first))
        else:
            self.max_lag = 0

    def _acf(self, theta, max_lag):
        """Correlations at lags 0..max_lag (complex input allowed)."""
        raise NotImplementedError

    @staticmethod
    def _observed_lags(times) -> np.ndarray:
        """The distinct lags between two rows of a group, above 0."""
        lags = np.unique(np.concatenate([np.unique(_lags(t)) for t in times]))
        return lags[lags > 0].astype(np.intp)

    def _corr(self, theta, t, derivative, lag):
        lag = lag.astype(np.intp)
        L = int(lag.max()) if lag.size else 0
        acf = self._acf(theta, L).real
        C = acf[lag]
        dC = None
        if derivative:
            d = _complex_jacobian(lambda x: self._acf(x, L), theta)  # (L+1, k)
            dC = np.moveaxis(d[lag], -1, 0)
        return C, dC


class ARMA(_LagStructure):
    """
    ARMA(p, q) correlation on integer times (gaps allowed): C_jk =
    rho(|t_j - t_k|), the autocorrelation of x_t = sum_a phi_a x_{t-a} +
    e_t + sum_b theta_b e_{t-b} (nlme's ``corARMA``, MA sign +; Stata's
    ``ar p`` and ``ma q``).  Natural: phi_1..p (``ar1``..), theta_1..q
    (``ma1``..); free: atanh of the partial autocorrelations of the AR
    and of the MA part (stationary and invertible).
    """

    def __init__(self, p: int = 0, q: int = 0) -> None:
        super().__init__()
        p, q = int(p), int(q)
        if p < 0 or q < 0 or p + q == 0:
            raise ValueError("ARMA(p, q) needs p, q >= 0 and p + q >= 1")
        self.p, self.q = p, q
        self.label = (f"ARMA({p},{q})" if p and q else
                      f"AR({p})" if p else f"MA({q})")

    def _setup(self, ts, gs, starts, sizes):
        super()._setup(ts, gs, starts, sizes)
        if self.q > self.max_lag or self.p > max(self.max_lag, 1):
            raise ValueError(
                f"{self.label}: the order exceeds the longest lag between two "
                f"rows of a group ({self.max_lag}, i.e. the longest group minus "
                "one without gaps), so its parameters are not identified. "
                "Lower the order.")

    def _names(self):
        return ([f"ar{a}" for a in range(1, self.p + 1)]
                + [f"ma{b}" for b in range(1, self.q + 1)])

    def _unidentified(self, times):
        # The parameters enter the likelihood through the correlations at
        # the lags observed: where the Jacobian of these correlations is
        # not of full column rank (``redundant_columns``, the package's one
        # rank rule) they are not all identified; e.g. MA(1) on times two
        # apart, whose correlations at lags 2, 4, ... are all zero, or
        # ARMA(1,1) on groups of two rows (one lag).  Taken at a generic
        # stationary, invertible point (partial autocorrelations of
        # alternating sign, AR and MA apart so that no root cancels).
        lags = self._observed_lags(times)
        pacf = np.concatenate([0.3 * (-0.7) ** np.arange(self.p),
                               0.4 * (-0.6) ** np.arange(self.q)])
        theta = self._to_natural(np.arctanh(pacf))
        top = int(lags.max()) if lags.size else 0
        jac = _complex_jacobian(lambda x: self._acf(x, top), theta)[lags]
        rank = jac.shape[1] - len(redundant_columns(jac))
        if rank == jac.shape[1]:
            return [], ""
        # which parameters are redundant depends on their order: all are named
        return list(range(jac.shape[1])), (
            f"the rows of a group are {_listed(lags)} apart in time, and the correlations "
            f"at these lags determine only {rank} of the {jac.shape[1]} parameters; "
            "recode the times to consecutive occasions (e.g. divide them by their "
            "common step) or lower the order")

    def _acf(self, theta, max_lag):
        return arma_acf(theta[:self.p], theta[self.p:], max_lag)

    def _to_natural(self, free):
        r = np.tanh(free)
        return np.concatenate([_pacf_to_coef(r[:self.p], -1.0),
                               _pacf_to_coef(r[self.p:], 1.0)])

    def _from_natural(self, natural):
        nat = np.asarray(natural, dtype=np.float64)
        ar = _coef_to_pacf(nat[:self.p], -1.0, "AR coefficients")
        ma = _coef_to_pacf(nat[self.p:], 1.0, "MA coefficients")
        return np.arctanh(np.concatenate([ar, ma]))

    def _start(self):
        # a small AR part and no MA part where there is an AR part: at
        # equal small values the AR and MA terms nearly cancel, and fits of
        # ARMA(1,1) with a random intercept from there reached a worse
        # local maximum (orthodont: phi 0.94, theta -0.50, llf 3.5 lower)
        return self._to_natural(np.arctanh(np.r_[np.full(self.p, 0.1),
                                                 np.full(self.q, 0.0 if self.p else 0.1)]))


class Toeplitz(_LagStructure):
    """
    Toeplitz correlation on integer times: a free correlation rho(l) per
    lag l = 1..q, zero beyond (Stata's ``toeplitz q``); without q every
    lag observed in the data (nlme: ``corARMA(p = K - 1)``).

    Full Toeplitz (all lags): free scale atanh of the partial
    autocorrelations, every free vector a positive definite structure.
    With q below the longest lag: atanh of each correlation, positive
    definiteness of the longest group's matrix checked by ``admissible``
    (the likelihood is undefined outside).
    """

    def __init__(self, q: int | None = None) -> None:
        super().__init__()
        self.q_given = None if q is None else int(q)
        if self.q_given is not None and self.q_given < 1:
            raise ValueError("toeplitz(q) needs q >= 1")
        self.label = "Toeplitz" if q is None else f"Toeplitz({q})"

    def _setup(self, ts, gs, starts, sizes):
        super()._setup(ts, gs, starts, sizes)
        if self.q_given is not None and self.q_given > self.max_lag:
            raise ValueError(
                f"{self.label}: q is larger than the longest lag between two rows "
                f"of a group ({self.max_lag}; the longest group minus one without "
                "gaps), so the correlations beyond it are not identified. Lower q.")
        self.L = self.max_lag if self.q_given is None else self.q_given
        if self.L < 1:
            raise ValueError("Toeplitz correlation needs groups with two rows or more")
        self.full = self.L >= self.max_lag
        self.absorbs_random_intercept = self.full

    def _names(self):
        return [f"rho(lag {l})" for l in range(1, self.L + 1)]

    def _unidentified(self, times):
        missing = np.setdiff1d(np.arange(1, self.L + 1), self._observed_lags(times))
        if not missing.size:
            return [], ""
        return [int(l) - 1 for l in missing], (
            f"no two rows of a group are {_listed(missing)} apart in time; lower q, or recode "
            "the times to consecutive occasions (e.g. divide them by their common step)")

    @property
    def free_scale_admissible(self) -> bool:
        return self.full

    def _acf(self, theta, max_lag):
        out = np.zeros(max(max_lag, self.L) + 1, dtype=np.result_type(theta, 1.0))
        out[0] = 1.0
        out[1:self.L + 1] = theta
        return out[:max_lag + 1]

    def _to_natural(self, free):
        if not self.full:
            return np.tanh(free)
        r = np.tanh(free)
        return arma_acf(_pacf_to_coef(r, -1.0), np.zeros(0), self.L)[1:]

    def _from_natural(self, natural):
        nat = np.asarray(natural, dtype=np.float64)
        if not self.full:
            if not np.all(np.abs(nat) < 1):
                raise ValueError("Toeplitz correlations must be in (-1, 1)")
            return np.arctanh(nat)
        return np.arctanh(_acf_to_pacf(nat))

    def _admissible(self, natural):
        if not super()._admissible(natural):
            return False
        if self.full:
            return True
        L = self.max_lag
        acf = self._acf(np.asarray(natural, float), L)
        lag = np.abs(np.subtract.outer(np.arange(L + 1), np.arange(L + 1)))
        return _is_pd(acf[lag])

    def _start(self):
        return 0.2 ** np.arange(1, self.L + 1)


class Unstructured(CorrelationStructure):
    """
    Unstructured correlation between distinct time values: a free
    correlation rho(a, b) for every pair of time values a < b observed
    together in some group (Stata's ``unstructured``, nlme's
    ``corSymm``); with ``var_by`` the time variable (one variance per
    occasion) it is Stata's ``residuals(unstructured, t())``.  Integer
    times.  Free scale: atanh of the canonical partial correlations of
    the full matrix over all time values (every free vector positive
    definite).
    """

    label = "unstructured"
    _band = None  # Banded: the largest lag
    absorbs_random_intercept = True

    def _setup(self, ts, gs, starts, sizes):
        values = np.unique(ts)
        self.values = values
        K = len(values)
        iu = np.triu_indices(K, 1)
        lagv = values[iu[1]] - values[iu[0]]
        keep = np.ones(len(lagv), bool) if self._band is None else lagv <= self._band
        if self._band is not None and self._band > (values[-1] - values[0]):
            raise ValueError(
                f"{self.label}: q is larger than the longest lag between two time "
                f"values ({values[-1] - values[0]:g}). Lower q.")
        self.pairs = (iu[0][keep], iu[1][keep])
        if self._band is not None and not keep.any():
            gap = float(np.min(np.diff(values))) if K > 1 else 0.0
            raise ValueError(
                f"{self.label}: no two time values are at most {self._band} apart "
                f"(the closest are {gap:g} apart), so the band holds no "
                "correlation. Widen the band or recode the times.")
        self.K = K
        self._index = -np.ones((K, K), dtype=np.intp)
        for k, (a, b) in enumerate(zip(*self.pairs)):
            self._index[a, b] = self._index[b, a] = k

    def _unidentified(self, times):
        # every pair of time values observed together in some group
        seen = np.zeros((self.K, self.K), bool)
        for t in times:
            p = np.searchsorted(self.values, t)
            seen[p[:, :, None], p[:, None, :]] = True
        missing = [k for k, (a, b) in enumerate(zip(*self.pairs)) if not seen[a, b]]
        if not missing:
            return [], ""
        a, b = self.pairs[0][missing[0]], self.pairs[1][missing[0]]
        return missing, (
            f"times {self._fmt(self.values[a])} and {self._fmt(self.values[b])} never "
            f"occur in the same group ({len(missing)} such pairs); use a structured "
            "correlation (ar1, toeplitz) or drop rarely observed times")

    def _fmt(self, v):
        return str(int(v)) if float(v).is_integer() else f"{v:g}"

    def _names(self):
        return [f"rho({self._fmt(self.values[a])},{self._fmt(self.values[b])})"
                for a, b in zip(*self.pairs)]

    def _full(self, theta):
        R = np.eye(self.K, dtype=np.result_type(theta, 1.0))
        R[self.pairs] = theta
        R[self.pairs[1], self.pairs[0]] = theta
        return R

    def _corr(self, theta, t, derivative, lag):
        p = np.searchsorted(self.values, t)
        R = self._full(np.asarray(theta, float))
        C = R[p[:, :, None], p[:, None, :]]
        dC = None
        if derivative:
            ix = self._index[p[:, :, None], p[:, None, :]]  # (m, n, n)
            dC = (ix[None] == np.arange(self.k_level)[:, None, None, None]).astype(float)
        return C, dC

    def bucket_factor(self, natural, bucket, derivative=False):
        # every entry of C is one correlation (or 1 on the diagonal, 0
        # beyond a band): the gradient sums N's entries by parameter
        # (``DenseFactor.index``) instead of reading a one-hot dC
        C, _ = self.bucket_matrices(natural, bucket, False)
        if not derivative:
            return DenseFactor(C, None)
        groups, _, t, _ = bucket
        p = np.searchsorted(self.values, t)
        ix = self._index[p[:, :, None], p[:, None, :]]
        offset = (self.level_of_group[groups] * self.k_level)[:, None, None]
        return DenseFactor(C, lambda: self.bucket_matrices(natural, bucket, True)[1],
                           index=np.where(ix >= 0, ix + offset, -1))

    # canonical partial correlations (CPC) <-> correlations, full matrix
    def _to_natural(self, free):
        z = np.tanh(free)
        K = self.K
        L = np.zeros((K, K), dtype=z.dtype)
        L[0, 0] = 1.0
        cpc = np.zeros((K, K), dtype=z.dtype)
        cpc[np.triu_indices(K, 1)[1], np.triu_indices(K, 1)[0]] = z
        for i in range(1, K):
            # what row i has left of its unit length, 1 - sum_j L_ij^2, as
            # the product of the (1 - cpc^2): never below zero (the
            # difference fell below zero by rounding where a cpc is within
            # rounding of +-1, and its square root was NaN)
            rest = 1.0
            for j in range(i):
                L[i, j] = cpc[i, j] * np.sqrt(rest)
                rest = rest * (1.0 - cpc[i, j] ** 2)
            L[i, i] = np.sqrt(rest)
        R = L @ L.T
        return R[self.pairs]

    def _from_natural(self, natural):
        R = self._full(np.asarray(natural, float))
        try:
            L = np.linalg.cholesky(R)
        except np.linalg.LinAlgError:
            raise ValueError("the unstructured correlations are not positive "
                             "definite") from None
        K = self.K
        iu = np.triu_indices(K, 1)
        z = np.zeros(len(iu[0]))
        for k, (j, i) in enumerate(zip(*iu)):   # (row i > column j)
            rest = 1.0 - np.sum(L[i, :j] ** 2)
            z[k] = L[i, j] / np.sqrt(rest)
        return np.arctanh(np.clip(z, -1 + 1e-16, 1 - 1e-16))

    def _start(self):
        return np.full(self.k_level, 0.1)


class Banded(Unstructured):
    """
    Banded unstructured correlation (Stata's ``banded q``): a free
    correlation for every pair of time values at most q apart, zero
    beyond.  Integer times.  Free scale: atanh of each correlation;
    ``admissible`` checks that the matrix over all time values is
    positive definite.
    """

    def __init__(self, q: int) -> None:
        super().__init__()
        self._band = int(q)
        if self._band < 1:
            raise ValueError("banded(q) needs q >= 1")
        self.label = f"banded({self._band})"
        self.absorbs_random_intercept = False

    def _to_natural(self, free):
        return np.tanh(free)

    def _from_natural(self, natural):
        nat = np.asarray(natural, dtype=np.float64)
        if not np.all(np.abs(nat) < 1):
            raise ValueError("banded correlations must be in (-1, 1)")
        return np.arctanh(nat)

    free_scale_admissible = False

    def _admissible(self, natural):
        return super()._admissible(natural) and _is_pd(self._full(np.asarray(natural, float)))


#: Names accepted by ``correlation=`` (with their option syntax).
CORRELATION_STRUCTURES = ("independent", "exchangeable", "ar1", "car1",
                          "exponential", "ma(q)", "arma(p,q)", "toeplitz",
                          "toeplitz(q)", "banded(q)", "unstructured")


def make_correlation(spec) -> CorrelationStructure | None:
    """
    A structure from ``correlation=``: None / "independent" (no structure),
    a string of ``CORRELATION_STRUCTURES`` or a structure object (a fresh
    unbound copy is returned).
    """
    if spec is None:
        return None
    if isinstance(spec, CorrelationStructure):
        out = copy.copy(spec)
        out.names, out._bound = [], False
        return out
    if not isinstance(spec, str):
        raise TypeError("correlation must be a string such as 'ar1' or a "
                        f"correlation structure object, not {type(spec).__name__}")
    s = spec.strip().lower().replace(" ", "")
    m = re.fullmatch(r"([a-z0-9]+?)(?:\((\d+)(?:,(\d+))?\))?", s)
    name, a, b = (m.groups() if m else (None, None, None))
    simple = {"independent": None, "exchangeable": Exchangeable, "ar1": AR1,
              "car1": CAR1, "exponential": CAR1, "unstructured": Unstructured}
    if name in simple and a is None:
        cls = simple[name]
        return None if cls is None else cls()
    if name == "toeplitz" and b is None:
        return Toeplitz(None if a is None else int(a))
    if name == "ma" and a is not None and b is None:
        return ARMA(0, int(a))
    if name == "ar" and a is not None and b is None:
        return ARMA(int(a), 0)
    if name == "arma" and a is not None and b is not None:
        return ARMA(int(a), int(b))
    if name == "banded" and a is not None and b is None:
        return Banded(int(a))
    raise ValueError(
        f"correlation={spec!r} is not a known structure; use one of "
        f"{', '.join(CORRELATION_STRUCTURES)} (q, p integers), or a structure "
        "object of statsmodels_hetmixed.structures.")
