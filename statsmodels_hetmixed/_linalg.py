"""
Rank and positive-definiteness decisions, made in one place (private).

Every "is this design collinear / is this covariance matrix singular / can
this matrix be factored" question of the package is answered here, by rules
that do not depend on the units of the data and that are decided far from
the rounding level, so that the answer does not change with the BLAS kernel
or the machine.

Design matrices (``redundant_columns``, ``check_full_rank``)
    A column is redundant when its residual, after the least-squares
    projection on the columns kept before it, has at most
    ``COLLINEAR_RTOL`` times the column's own norm (R's ``lm`` and lme4 use
    the same tolerance, 1e-7, for their pivoted QR).  The residual fraction
    is unchanged by rescaling any column (it is the sine of the angle
    between the column and the span of the others), so a covariate recoded
    as ``x * 1e8`` gives the same decision as ``x``.  The computation works
    on the column-equilibrated matrix (each column divided by its norm), on
    the triangular factor of one QR decomposition.  An exactly collinear
    column has a residual fraction near the rounding level, 1e-15, eight
    orders of magnitude below the tolerance.

    Most designs are far from that tolerance, and for them the QR
    decomposition (a pass of 2 n k^2 flops over the rows, the largest cost
    of a model's construction at a million rows) is not needed: the
    smallest eigenvalue of the equilibrated Gram matrix ``C = D^-1/2 X'X
    D^-1/2`` bounds every squared residual fraction from below.  When it
    exceeds ``GRAM_SCREEN_RTOL`` plus a bound on the rounding of X'X
    (``k n`` machine epsilons, whatever the order of summation), every
    residual fraction is above 1e-3, four orders of magnitude above the
    tolerance, and the design is of full rank whichever way it is computed;
    otherwise the QR decides.  The screen only chooses the computation: both
    give the same answer wherever the screen passes.

Gram matrices such as X'V^-1 X (``cholesky_equilibrated``)
    The matrix is scaled to unit diagonal (by the square roots of its
    diagonal), factored, and the factor unscaled.  The pivots of the scaled
    factor are the residual fractions of the columns in the metric of the
    matrix (V^-1 for X'V^-1 X), so the same tolerance decides: a pivot at
    or below ``COLLINEAR_RTOL`` (or a failed factorisation, or a
    non-positive diagonal) raises ``NotPositiveDefiniteError``.  Without the
    scaling, columns of very different sizes (``x * 1e8`` next to an
    intercept) make the plain Cholesky fail on a well-determined problem.

Covariance matrices (``correlation``, ``covariance_rank``)
    The rank is decided on the correlation-scaled matrix
    ``D^-1/2 Sigma D^-1/2``, which does not change when a random effect's
    column is rescaled (a random slope on ``x * 1e6`` has a variance 1e12
    times smaller; rules relative to the largest eigenvalue of Sigma would
    call it zero).  Eigenvalues of the correlation matrix at or below
    ``COV_RTOL`` times its largest count as zero.  A variance counts as
    zero (and as one rank deficiency) when it is not positive or, given a
    reference variance for each random effect in the units of its column,
    when it is at most ``ZERO_VAR_RTOL`` times that reference.  Estimates
    at the boundary of the parameter space (a correlation of +-1, a random
    effect that is a combination of the others) have correlation
    eigenvalues near 1e-15; interior estimates, larger than 1e-4.  The
    tolerance also leaves room for the profile refits' representation of a
    correlation of +-1 by ``tanh(7)`` (an eigenvalue of about 1.7e-6): such
    a matrix counts as full rank.

Factors of covariance matrices (``cholesky_covariance``)
    A trial point of an optimiser is inside the parameter space when its
    covariance matrices can be factored: positive variances, and every
    squared pivot of the correlation matrix's Cholesky factor (the share
    of an effect's variance that the effects before it do not explain)
    above ``FACTOR_RTOL``, a bound a little above the rounding level (the
    factor is then computed to a few digits at least).  This decides only
    whether a trial step is taken, never what is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import cho_solve

__all__ = ["COLLINEAR_RTOL", "GRAM_SCREEN_RTOL", "COV_RTOL", "ZERO_VAR_RTOL", "FACTOR_RTOL",
           "NotPositiveDefiniteError", "redundant_columns", "check_full_rank",
           "cholesky_equilibrated", "chol_solve", "back_transform", "correlation",
           "covariance_rank", "is_positive_definite", "is_positive_semidefinite",
           "cholesky_covariance"]

# A column whose residual on the other columns is at most this fraction of
# its norm is a linear combination of them.
COLLINEAR_RTOL = 1e-7
# A design whose equilibrated Gram matrix has its smallest eigenvalue above
# this (plus a rounding bound) is of full rank without a QR decomposition:
# every residual fraction is then above 1e-3.
GRAM_SCREEN_RTOL = 1e-6
# Eigenvalues of a correlation matrix at most this times the largest are zero.
COV_RTOL = 1e-8
# A variance at most this times its reference variance is zero (an SD of
# 1e-6 in the units of its random effect's column).
ZERO_VAR_RTOL = 1e-12
# Smallest squared pivot of a correlation matrix's Cholesky factor for the
# covariance matrix to be factored (64 machine epsilons).
FACTOR_RTOL = 64 * np.finfo(float).eps


class NotPositiveDefiniteError(np.linalg.LinAlgError):
    """The GLS information matrix X'V^-1 X is not positive definite."""


def _equilibrate(mat):
    """Columns divided by their Euclidean norms (zero columns left at 0),
    and the norms.  Divided by the largest absolute value first, so that
    squaring cannot overflow or underflow."""
    mat = np.asarray(mat, dtype=float)
    big = np.max(np.abs(mat), axis=0, initial=0.0)
    big = np.where(big > 0, big, 1.0)
    scaled = mat / big
    norms = np.sqrt(np.sum(scaled * scaled, axis=0))
    return scaled / np.where(norms > 0, norms, 1.0), norms * big


def redundant_columns(mat) -> list[int]:
    """
    Indices of the columns of ``mat`` that are linear combinations of the
    columns before them (see the module docstring for the rule).

    Parameters
    ----------
    mat : array_like (n, k)

    Returns
    -------
    list of int
        Empty for a design of full column rank; the rank is ``k`` minus
        its length.
    """
    mat = np.asarray(mat, dtype=float)
    if mat.shape[1] == 0:
        return []
    if _gram_full_rank(mat):
        return []
    # Projections are preserved by the orthogonal factor: work on R, whose
    # columns have the design's column norms.  Householder QR is backward
    # stable column by column, so scaling R's columns afterwards decides as
    # scaling the design's first would, without two more copies of it;
    # only entries near the float limits are scaled first.
    extreme = max(abs(float(np.max(mat, initial=0.0))),
                  abs(float(np.min(mat, initial=0.0))))
    if extreme > 1e150 or 0 < extreme < 1e-150:
        mat = _equilibrate(mat)[0]
    R = np.linalg.qr(mat, mode="r")
    norms = np.sqrt(np.sum(R * R, axis=0))
    R = R / np.where(norms > 0, norms, 1.0)
    kept, redundant = [], []
    for j in range(R.shape[1]):
        col = R[:, j]
        if not norms[j] > 0:
            redundant.append(j)
            continue
        if kept:
            basis = R[:, kept]
            coef = np.linalg.lstsq(basis, col, rcond=None)[0]
            resid = np.linalg.norm(col - basis @ coef)
        else:
            resid = np.linalg.norm(col)
        if resid > COLLINEAR_RTOL:
            kept.append(j)
        else:
            redundant.append(j)
    return redundant


def _gram_full_rank(mat) -> bool:
    """
    Whether ``mat`` is of full column rank by a wide margin, decided on its
    Gram matrix (see the module docstring); False means "let the QR
    decide", not "rank deficient".
    """
    n, k = mat.shape
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        gram = mat.T @ mat
    diag = gram.diagonal().copy()
    # Overflowing or underflowing squares (entries beyond about 1e150 or
    # below 1e-150) and zero columns go to the QR, which scales first.
    if not (np.isfinite(gram).all() and (diag > 1e-290).all()):
        return False
    d = 1.0 / np.sqrt(diag)
    corr = gram * d[:, None] * d[None, :]
    # |error of each entry of corr| <= n eps (Cauchy-Schwarz on the
    # rounding of any summation order), so of its eigenvalues <= k n eps;
    # eigvalsh adds a few k eps.
    rounding = (k * n + 10 * k) * np.finfo(float).eps
    lam_min = np.linalg.eigvalsh(corr)[0]
    return bool(lam_min > GRAM_SCREEN_RTOL + rounding)


def check_full_rank(mat, what: str, names: Sequence[str], hint: str) -> None:
    """
    Raise a ValueError naming the redundant columns when ``mat`` is not of
    full column rank (``redundant_columns``).

    Parameters
    ----------
    mat : array_like (n, k)
    what : str
        The design's name for the message, e.g. "The fixed-effects design
        (exog)".
    names : sequence of str
        Column names (a column without a name is named by its index).
    hint : str
        What to do, appended to the message.
    """
    mat = np.asarray(mat, dtype=float)
    if mat.shape[1] == 0:
        return
    redundant = redundant_columns(mat)
    if redundant:
        rank = mat.shape[1] - len(redundant)
        labels = [names[j] if j < len(names) else str(j) for j in redundant]
        raise ValueError(
            f"{what} is singular (rank {rank} < {mat.shape[1]} columns): "
            f"{labels} are linear combinations of the other columns. {hint}"
        )


def cholesky_equilibrated(a, what: str = "the matrix") -> np.ndarray:
    """
    Lower Cholesky factor of a symmetric positive definite Gram matrix,
    computed on the matrix scaled to unit diagonal (see the module
    docstring).

    Parameters
    ----------
    a : ndarray (p, p)
    what : str
        Used in the error message.

    Returns
    -------
    ndarray (p, p)
        ``L`` with ``L @ L.T == a``.

    Raises
    ------
    NotPositiveDefiniteError
        When a column of the underlying design is (within
        ``COLLINEAR_RTOL``) a combination of the others in the matrix's
        metric.
    """
    a = np.asarray(a, dtype=float)
    diag = a.diagonal()
    if not (diag > 0).all():  # also NaN
        raise NotPositiveDefiniteError(f"{what} has a diagonal entry that is "
                                       "not positive")
    d = np.sqrt(diag)
    try:
        chol = np.linalg.cholesky(a / d[:, None] / d[None, :])
    except np.linalg.LinAlgError as exc:
        raise NotPositiveDefiniteError(f"{what} is not positive definite") from exc
    if not (chol.diagonal() > COLLINEAR_RTOL).all():
        raise NotPositiveDefiniteError(f"{what} is singular to within "
                                       f"{COLLINEAR_RTOL:g}")
    return d[:, None] * chol


def back_transform(T, cov):
    """T^-1 cov T^-T: a covariance matrix of ``u = T x`` as one of ``x``,
    by solves with T (no inverse of T formed)."""
    inner = np.linalg.solve(T, cov)
    return np.linalg.solve(T, inner.T).T


def chol_solve(chol, rhs):
    """Solve (C C') x = rhs for a lower Cholesky factor C."""
    rhs = np.asarray(rhs)
    if rhs.size == 0:
        # An empty block (a Newton step with no outer parameters): scipy
        # 1.12's potrs wrapper rejects empty arrays (ValueError).
        return np.zeros(rhs.shape, dtype=np.result_type(chol, rhs, float))
    return cho_solve((chol, True), rhs, check_finite=False)


def correlation(sigmas, reference=None):
    """
    Correlation-scaled covariance matrices and their zero variances.

    Parameters
    ----------
    sigmas : ndarray (d, d) or (n, d, d)
    reference : array_like (d,), optional
        A reference variance for each random effect, in the units of its
        column; a variance at most ``ZERO_VAR_RTOL`` times it counts as
        zero.  Without it only variances that are not positive do.

    Returns
    -------
    R : ndarray (n, d, d)
        Correlation matrices; the rows and columns of zero variances are
        those of the identity (they count once, in ``zero``).
    zero : ndarray (n, d) of bool
    """
    sig = np.asarray(sigmas, dtype=float)
    if sig.ndim == 2:
        sig = sig[None]
    var = np.diagonal(sig, axis1=1, axis2=2)
    zero = ~(var > 0)
    if reference is not None:
        zero |= var <= ZERO_VAR_RTOL * np.asarray(reference, dtype=float)
    sd = np.where(zero, 1.0, np.sqrt(np.where(zero, 1.0, var)))
    R = sig / sd[:, :, None] / sd[:, None, :]
    keep = ~zero
    R = np.where(keep[:, :, None] & keep[:, None, :], R, 0.0)
    d = sig.shape[-1]
    R[:, np.arange(d), np.arange(d)] = 1.0
    return 0.5 * (R + np.swapaxes(R, 1, 2)), zero


def _ranks(sigmas, reference=None, rtol=COV_RTOL):
    R, zero = correlation(sigmas, reference)
    eig = np.linalg.eigvalsh(R)
    small = eig <= rtol * eig[:, -1:]
    # A zero variance is its own eigenvalue 1 in R: count it once.
    return R.shape[-1] - small.sum(axis=1) - zero.sum(axis=1)


def covariance_rank(sigmas, reference=None) -> tuple[int, int]:
    """
    Numerical rank of a covariance matrix (the smallest over a stack) and
    its size, decided on the correlation-scaled matrix (module docstring).

    Parameters
    ----------
    sigmas : ndarray (d, d) or (n, d, d)
    reference : array_like (d,), optional
        See ``correlation``.

    Returns
    -------
    (int, int)
        A rank below the size is a singular matrix.
    """
    d = np.shape(sigmas)[-1]
    return int(_ranks(sigmas, reference).min(initial=d)), d


def is_positive_definite(sigmas) -> np.ndarray:
    """Whether each matrix of a stack (n, d, d) is of full rank by
    ``covariance_rank``'s rule: (n,) bool."""
    sig = np.asarray(sigmas, dtype=float)
    return _ranks(sig) == sig.shape[-1]


def is_positive_semidefinite(sigma) -> bool:
    """
    Whether a covariance matrix (d, d) is a covariance matrix: variances
    not negative, and its correlation matrix (``correlation``; zero
    variances left out) without an eigenvalue below ``-COV_RTOL`` times its
    largest, so that the decision does not depend on the effects' units
    (an indefinite matrix of variances 1e-6 is as indefinite as one of
    variances 1e6).
    """
    sig = np.asarray(sigma, dtype=float)
    var = np.diagonal(sig)
    if not np.all(var >= 0):  # also NaN
        return False
    R, _ = correlation(sig)
    eig = np.linalg.eigvalsh(R[0])
    return bool(eig[0] >= -COV_RTOL * eig[-1])


def cholesky_covariance(sigmas) -> np.ndarray:
    """
    Lower Cholesky factors of covariance matrices (a stack (n, d, d), or
    one), through their correlation matrices.

    Raises
    ------
    numpy.linalg.LinAlgError
        When a matrix is not clearly positive definite: a variance that is
        not positive (or not finite), or a squared pivot of the correlation
        matrix's factor (the share of an effect's variance not explained by
        the effects before it) at most ``FACTOR_RTOL``.
    """
    sig = np.asarray(sigmas, dtype=float)
    var = np.diagonal(sig, axis1=-2, axis2=-1)
    if not np.all(var > 0):
        raise np.linalg.LinAlgError("a variance is not positive")
    sd = np.sqrt(var)
    chol = np.linalg.cholesky(sig / sd[..., :, None] / sd[..., None, :])
    pivots = np.diagonal(chol, axis1=-2, axis2=-1)
    if not np.all(pivots * pivots > FACTOR_RTOL):  # also NaN
        raise np.linalg.LinAlgError("a covariance matrix is singular")
    return sd[..., :, None] * chol
