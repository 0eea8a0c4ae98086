"""
Batched per-group linear algebra for heteroskedastic linear mixed models.

Private module: nothing here is public API.

For group i the marginal covariance is ``V_i = Z_i G Z_i' + R_i`` with
``R_i = diag(r_ij)`` and ``G = L L'`` (the same factor ``L`` for every group;
variance components are padded into one common random-effects dimension
``q``).  Because ``R_i`` is diagonal, every quantity the likelihood and its
gradient need reduces to q x q algebra on weighted cross products of the rows:

    A_i = Z_i' R_i^-1 Z_i,  B_i = Z_i' R_i^-1 X_i,  e_i = Z_i' R_i^-1 (y_i - X_i b)

and, with ``M_i = I + L' A_i L`` (always positive definite, even when ``G`` is
singular) and ``K_i = L M_i^-1 L'``,

    V_i^-1       = R_i^-1 - R_i^-1 Z_i K_i Z_i' R_i^-1
    log |V_i|    = sum_j log r_ij + log |M_i|
    X'V^-1 X     = sum_i (X_i' R_i^-1 X_i - B_i' K_i B_i)
    BLUP u_i     = K_i e_i,   Var(u_i | y) = K_i.

The cross products are segment sums (``segment_sums``: sums of contiguous
segments where the rows come sorted by group, else a product with a sparse
group-indicator matrix), and the q x q algebra is broadcast over groups: a
fit costs a few vectorised passes over the rows, with no Python loop over
groups.  The designs are held column by column in memory (Fortran order),
so that a product with one column, the unit of every pass, reads contiguous
memory; with a random intercept and sorted rows, the sums of an evaluation
that share their weighted rows are taken in one pass over blocks of whole
groups (``_fe_sums``, ``_intercept_variance_sums``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from ._linalg import NotPositiveDefiniteError, back_transform, cholesky_equilibrated
from ._linalg import chol_solve as _chol_solve
from ._validate import rows_array

_LOG_2PI = np.log(2.0 * np.pi)

# Largest number of float64 elements a temporary array may hold (64 MiB).
_CHUNK_ELEMENTS = 1 << 23


# Per-group sums use a padded (groups x largest group x columns) layout and
# batched matrix products when there are many random effects (q, e.g.
# variance components with a column per observation) and padding at most
# doubles the rows; otherwise row-wise products summed by a sparse
# group-indicator matrix, which is faster for small q (measured: 100,000
# rows with q = 1, 0.13 s against 0.15 s per fit).
_MAX_PADDING = 2.0
_MIN_Q_PADDED = 4


@dataclass(frozen=True)
class GroupedData:
    """
    Row-level data and group structure, built once per model.

    Attributes
    ----------
    endog : ndarray (n,)
    exog : ndarray (n, p)
    exog_z : ndarray (n, q)
        Random-effects design: ``exog_re`` columns followed by the
        variance-component columns, each component padded to the largest
        number of columns it has in any group.
    group_index : ndarray (n,) of int
        Index of each row's group in ``0 .. n_groups - 1``.
    indicator : scipy.sparse.csr_array (n_groups, n) or None
        ``indicator[i, j] = 1`` when row ``j`` belongs to group ``i``
        (sparse layout, rows not sorted by group; see ``starts``).
    pad_index : ndarray (n,) of int or None
        Position of each row in the flattened padded array of shape
        (n_groups, max_size) (padded layout).
    fe_basis : ndarray (p, p) or None
        With ``centre``: M such that ``exog`` holds the centred columns
        X_c = X M^-1 (the intercept column kept, the others less their
        means), so that X beta = X_c (M beta).  A covariate far from its
        origin is nearly collinear with the intercept; in the centred
        columns the GLS solve and the residuals keep their digits.
        ``evaluate`` takes and returns the fixed effects of X.
    exog_zc : ndarray (n, q)
        The random-effects design the engine evaluates with: with
        ``re_basis``, Z_c = Z M_z^-1 (the ``exog_re`` columns centred as
        the fixed effects' columns, the variance components' untouched),
        so that Z b = Z_c (M_z b) and the centred effects have covariance
        G_c = M_z G M_z'; else ``exog_z`` itself.  A random slope on a
        covariate far from its origin makes G's intercept entries huge and
        the intercept and slope correlated to within rounding; G_c keeps
        them apart.
    re_basis : ndarray (q, q) or None
        M_z.  ``evaluate`` takes a factor of G_c (``centred_factor``), and
        gives the BLUPs, their covariances and the gradient in the user's
        coordinates (those of G and ``exog_z``).
    """

    endog: np.ndarray
    exog: np.ndarray
    exog_z: np.ndarray
    group_index: np.ndarray
    n_groups: int
    max_size: int
    indicator: sp.csr_array | None
    pad_index: np.ndarray | None
    fe_basis: np.ndarray | None = None
    #: M^-1, known in closed form: M = I + e_j0 a' with a_j0 = 0, so
    #: M^-1 = I - e_j0 a' (no solve per evaluation).
    fe_basis_inverse: np.ndarray | None = None
    exog_zc: np.ndarray | None = None
    re_basis: np.ndarray | None = None
    re_basis_inverse: np.ndarray | None = None
    #: rows per group, and whether the rows come sorted by group (then a
    #: per-group value reaches its rows by np.repeat, ``expand``)
    sizes: np.ndarray | None = None
    sorted_groups: bool = False
    #: first row of each group when the rows come sorted by group and no
    #: group is empty: per-group sums are then sums of contiguous segments
    #: (``segment_sums``), and no indicator is built
    starts: np.ndarray | None = None
    #: the engine's random-effects design itself (``exog_zc``) when it is a
    #: single column of ones (a random intercept): products with it are
    #: then skipped (``unit_design``).  Held by identity, so that a copy
    #: with other rows (``dataclasses.replace``, e.g. whitened) is not
    #: taken for it.
    unit_z: np.ndarray | None = None

    @classmethod
    def build(cls, endog, exog, exog_z, group_index, n_groups, layout="auto",
              centre=False, k_re=0):
        """
        Parameters
        ----------
        layout : {"auto", "padded", "sparse"}
            How per-group sums are computed (see ``_MAX_PADDING``).
        centre : bool
            Centre the fixed-effects columns when one column is a constant
            (see ``fe_basis``), and the first ``k_re`` columns of ``exog_z``
            (``exog_re``) when one of them is (see ``re_basis``).
        k_re : int
            Number of leading ``exog_z`` columns that are ``exog_re``.
        """
        n = len(endog)
        group_index = np.asarray(group_index, dtype=np.intp)
        sizes = np.bincount(group_index, minlength=n_groups)
        max_size = int(sizes.max()) if n else 0
        if layout == "auto":
            padded = (np.shape(exog_z)[1] >= _MIN_Q_PADDED
                      and n_groups * max_size <= _MAX_PADDING * n)
            layout = "padded" if padded else "sparse"
        sorted_groups = bool(n == 0 or np.all(group_index[1:] >= group_index[:-1]))
        starts = None
        if sorted_groups and n and sizes.min() > 0:
            starts = np.zeros(n_groups, dtype=np.intp)
            np.cumsum(sizes[:-1], out=starts[1:])
        indicator = pad_index = None
        if layout == "padded":
            order = np.argsort(group_index, kind="stable")
            first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            within = np.arange(n) - first[group_index[order]]
            pad_index = np.empty(n, dtype=np.intp)
            pad_index[order] = group_index[order] * max_size + within
        elif layout == "sparse":
            if starts is None:
                indicator = sp.csr_array(
                    (np.ones(n), (group_index, np.arange(n))), shape=(n_groups, n))
        else:
            raise ValueError(f"unknown layout {layout!r}")
        endog = np.ascontiguousarray(endog, dtype=np.float64)
        exog = np.asarray(exog, dtype=np.float64)
        fe_basis = fe_basis_inverse = None
        if centre:
            exog, fe_basis, fe_basis_inverse = _centred(exog, exog.shape[1])
        else:
            exog = np.asfortranarray(exog)
        # a random intercept's column of ones (a broadcast): not expanded
        exog_z = rows_array(exog_z, order="F")
        exog_zc, re_basis, re_basis_inverse = (
            _centred(exog_z, k_re) if centre and k_re > 0
            else (exog_z, None, None))
        return cls(
            endog,
            exog,
            exog_z,
            group_index,
            int(n_groups),
            max_size,
            indicator,
            pad_index,
            fe_basis,
            fe_basis_inverse,
            exog_zc,
            re_basis,
            re_basis_inverse,
            sizes,
            sorted_groups,
            starts,
            exog_zc if exog_zc.shape[1] == 1 and np.all(exog_zc == 1.0) else None,
        )

    @property
    def nobs(self):
        return self.endog.shape[0]

    def expand(self, per_group):
        """Each row's value of a per-group array ((m,) or (m, k) -> (n,)
        or (n, k)), a new array."""
        per_group = np.ascontiguousarray(per_group)
        if self.sorted_groups:
            return np.repeat(per_group, self.sizes, axis=0)
        return np.take(per_group, self.group_index, axis=0)

    def pad(self, rows):
        """(n, k) rows -> (n_groups, max_size, k), zeros in the padding."""
        out = np.zeros((self.n_groups * self.max_size, rows.shape[1]))
        out[self.pad_index] = rows
        return out.reshape(self.n_groups, self.max_size, -1)


def _centred(mat, k, centring=None):
    """
    ``(mat_c, M, M^-1)`` with the first ``k`` columns of ``mat`` centred
    (``_centring``), ``mat = mat_c M``; ``(mat, None, None)`` when they
    have no intercept column or nothing to centre.  M = I + e_j0 a' with
    a_j0 = 0, so M^-1 = I - e_j0 a' (known in closed form).

    ``centring``: ``(j0, means)`` of the whole data, for a part of the
    rows (a Dask partition), so that every part has the same M.
    """
    if centring is None:
        centring = _centring(mat[:, :k])
    if centring is None:
        return rows_array(mat, order="F"), None, None
    j0, means = centring
    shift = np.zeros(mat.shape[1])
    shift[:k] = means
    # A new array in one pass, column by column in memory (Fortran order):
    # the engine's products take whole columns (``group_cross``,
    # ``_weighted_gram``), which are then contiguous.
    out = np.subtract(mat, shift, order="F")
    basis = np.eye(mat.shape[1])
    basis[j0] += shift / mat[0, j0]
    inverse = np.eye(mat.shape[1])
    inverse[j0] -= shift / mat[0, j0]
    return out, basis, inverse


def _centring(exog):
    """(intercept column, column means with 0 for it), or None when no
    column is a non-zero constant or no other column varies."""
    if exog.shape[0] == 0 or exog.shape[1] < 2:
        return None
    constant = np.all(exog == exog[0], axis=0) & (exog[0] != 0)
    if not constant.any():
        return None
    j0 = int(np.argmax(constant))
    means = exog.mean(axis=0)
    means[j0] = 0.0
    means[constant] = 0.0  # other constant columns: collinear anyway
    return j0, means


def _scale_rows(a, v):
    """``a * v[:, None]`` for an (n, k) array with few columns, returned
    as an F-ordered (n, k) array: numpy runs a C-ordered broadcast product
    with its inner loop over a row's k entries, at a cost per row that
    exceeds the arithmetic (several times, measured for k = 2, 3); along
    the columns the inner loop spans the n rows.  The products are the
    same."""
    return np.multiply(a.T, v, order="C").T


# Rows per block of the products over the rows (``_weighted_gram``,
# ``rows_matmul``, ``rows_tmatvec``): a block at a time the products stay
# in cache, need no n x k temporary, and the BLAS runs them on one thread.
# On one tall (n, k) operand with few columns OpenBLAS splits the work
# over its threads, which on a loaded machine wait for each other:
# measured at 1,000,000 rows with 2 threads and a load average of 6,
# X @ H (4 x 4) took 342 ms in one product and 6 ms in blocks, X @ b
# 16 ms against 6 ms.
_GRAM_ROWS = 1 << 15


def rows_matmul(a, b, out=None):
    """``a @ b`` for a tall (n, k) ``a`` with few columns and a small
    ``b`` ((k,) or (k, l)), a block of rows at a time; an (n, l) result
    in Fortran order (its columns contiguous, as the engine's designs':
    measured 2.1 ms against 5.6 ms in C order for l = 4 at 1,000,000
    rows).  ``out``: an (n,) array for the result of a vector ``b``."""
    if np.ndim(b) == 1:
        out = np.empty(a.shape[0]) if out is None else out
        for start in range(0, a.shape[0], _GRAM_ROWS):
            stop = start + _GRAM_ROWS
            np.matmul(a[start:stop], b, out=out[start:stop])
        return out
    out_t = np.empty((np.shape(b)[1], a.shape[0]))
    for start in range(0, a.shape[0], _GRAM_ROWS):
        stop = start + _GRAM_ROWS
        np.matmul(b.T, a[start:stop].T, out=out_t[:, start:stop])
    return out_t.T


def rows_tmatvec(a, v):
    """``a' v`` for a tall (n, k) ``a`` and an n-vector (or (n, l) array)
    ``v``, summed over blocks of rows."""
    out = np.zeros((a.shape[1],) + np.shape(v)[1:])
    for start in range(0, a.shape[0], _GRAM_ROWS):
        stop = start + _GRAM_ROWS
        out += a[start:stop].T @ v[start:stop]
    return out


def _rows_quadratic(a, M):
    """``a_j' M a_j`` for every row of a tall (n, k) ``a``, a block of rows
    at a time."""
    out = np.empty(a.shape[0])
    for start in range(0, a.shape[0], _GRAM_ROWS):
        stop = start + _GRAM_ROWS
        blk = a[start:stop]
        np.einsum("ij,ij->i", blk @ M, blk, out=out[start:stop])
    return out


def _weighted_gram(a, v, b=None):
    """``a' diag(v) b`` (``b = a`` by default) for (n, k) arrays with few
    columns, summed over blocks of rows: no n x k temporary."""
    b = a if b is None else b
    out = np.zeros((a.shape[1], b.shape[1]))
    for start in range(0, a.shape[0], _GRAM_ROWS):
        stop = start + _GRAM_ROWS
        out += (a[start:stop] * v[start:stop, None]).T @ b[start:stop]
    return out


def unit_design(data, rows):
    """Whether ``rows`` is the data's random-effects design and that is a
    single column of ones (``GroupedData.unit_z``)."""
    return data.unit_z is not None and rows is data.unit_z


def segment_sums(data, rows):
    """
    Per-group sums of the rows of an (n,) or (n, k) array: (n_groups,) or
    (n_groups, k).

    Rows sorted by group (``GroupedData.starts``): sums of contiguous
    segments (np.add.reduceat; a column at a time in memory, so an (n, k)
    array is best given in Fortran order); otherwise one product with the
    sparse group indicator (padded layout: sums over the padded array).
    Measured at 1,000,000 rows in 20,000 groups: 0.33 ms a column against
    0.8 ms for the indicator's product.
    """
    if data.starts is not None:
        if rows.ndim == 2 and not rows.flags.f_contiguous:
            rows = np.asfortranarray(rows)
        return np.add.reduceat(rows, data.starts, axis=0)
    if data.indicator is not None:
        return data.indicator @ rows
    padded = data.pad(rows.reshape(rows.shape[0], -1)).sum(axis=1)
    return padded.reshape((data.n_groups,) + rows.shape[1:])


def _group_blocks(data):
    """Blocks of whole groups of about ``_GRAM_ROWS`` rows, for rows sorted
    by group (``GroupedData.starts``): ``(groups, rows, starts)`` of each,
    two slices and the first row of each group within the block."""
    n, starts, m = data.nobs, data.starts, data.n_groups
    first = np.unique(np.searchsorted(starts, np.arange(0, n, _GRAM_ROWS),
                                      side="right") - 1)
    bounds = np.append(first, m)
    for g0, g1 in zip(bounds[:-1], bounds[1:]):
        r0 = starts[g0]
        r1 = starts[g1] if g1 < m else n
        yield slice(g0, g1), slice(r0, r1), starts[g0:g1] - r0


def _fe_sums(data, Z, wz, X, winv, extra=None, y=None):
    """
    ``(B, b, X'diag(v) X, X'diag(v) y)`` with ``v = winv * extra``
    (``winv`` without ``extra``), B = Z'diag(v) X and b = Z'diag(v) y per
    group (``wz`` = R^-1 Z); ``b`` and ``X'diag(v) y`` None without ``y``.

    For a random intercept (``unit_design``) and rows sorted by group
    (``GroupedData.starts``): one pass over blocks of whole groups
    (``_group_blocks``), in which the weighted rows diag(v) X of a block
    (in cache) serve both its segment sums and its part of the Gram
    matrix; else ``group_cross`` and ``_weighted_gram``, two passes with
    their own products.
    """
    v = winv if extra is None else winv * extra
    if not (unit_design(data, Z) and data.starts is not None):
        B = group_cross(data, wz, X, extra)
        b = xtvy = None
        if y is not None:
            b = group_cross(data, wz, y[:, None], extra)[:, :, 0]
            xtvy = rows_tmatvec(X, y * v)
        return B, b, _weighted_gram(X, v), xtvy
    p = X.shape[1]
    B = np.empty((data.n_groups, 1, p))
    b = None if y is None else np.empty((data.n_groups, 1))
    xtvx, xtvy = np.zeros((p, p)), None if y is None else np.zeros(p)
    for groups, rows, local in _group_blocks(data):
        xb, vb = X[rows], v[rows]
        vx = _scale_rows(xb, vb)
        xtvx += vx.T @ xb
        B[groups, 0, :] = np.add.reduceat(vx, local, axis=0)
        if y is not None:
            yb = y[rows]
            xtvy += vx.T @ yb
            b[groups, 0] = np.add.reduceat(yb * vb, local)
    return B, b, xtvx, xtvy


def _constant_column(a, j):
    """Whether column ``j`` of ``a`` is one number (the first rows first:
    another column differs there at once)."""
    c = a[0, j]
    return bool(np.all(a[:8, j] == c) and np.all(a[:, j] == c))


def _fe_sums_by_columns(data, Z, wz, X, winv, D, constant_sums=None, summed=None):
    """``_fe_sums`` with ``extra`` each column of ``D`` (n, k): per group
    Z'R^-1 diag(d_l) X, (k, m, q, p), and X'R^-1 diag(d_l) X, (k, p, p);
    for a random intercept and rows sorted by group in one pass over
    blocks of whole groups (a block of X read once for all columns,
    ``_fe_columns_block``).

    ``constant_sums``: ``(B, X'R^-1 X)``, the sums without ``D`` (an
    evaluation's).  A constant column c of D (a variance function's
    intercept) then gives c B and c X'R^-1 X without a pass over the
    rows.  ``summed``: ``(P, xtvx)`` whose other columns a pass over the
    rows has already summed (``_fe_columns_to_sum``,
    ``_intercept_information_rows``): only the constant ones are added."""
    k, p = D.shape[1], X.shape[1]
    if summed is None:
        P = np.empty((k, data.n_groups, Z.shape[1], p))
        xtvx = np.zeros((k, p, p))
    else:
        P, xtvx = summed
    columns = _fe_columns_to_sum(D, constant_sums is not None)
    for l in set(range(k)) - set(columns):
        c = D[0, l]
        P[l], xtvx[l] = c * constant_sums[0], c * constant_sums[1]
    if summed is not None:
        return P, xtvx
    if not (unit_design(data, Z) and data.starts is not None):
        for l in columns:
            P[l], _, xtvx[l], _ = _fe_sums(data, Z, wz, X, winv, D[:, l])
        return P, xtvx
    for groups, rows, local in _group_blocks(data) if columns else ():
        _fe_columns_block(X[rows], _scale_rows(D[rows], winv[rows]), columns,
                          groups, local, P, xtvx)
    return P, xtvx


def _fe_columns_to_sum(D, constants_known):
    """The columns of ``D`` that ``_fe_sums_by_columns`` sums over the rows:
    all, or with the constant sums known only the non-constant ones."""
    return [l for l in range(D.shape[1])
            if not (constants_known and _constant_column(D, l))]


def _fe_columns_block(xb, fb, columns, groups, local, P, xtvx):
    """One block of whole groups of ``_fe_sums_by_columns`` (random
    intercept): ``xb`` its rows of X, ``fb`` of D / r (columns
    contiguous)."""
    for l in columns:
        vx = _scale_rows(xb, fb[:, l])
        xtvx[l] += vx.T @ xb
        P[l, groups, 0, :] = np.add.reduceat(vx, local, axis=0)


def _intercept_variance_sums(data, D, winv, v):
    """``(T, D'diag(v)D)`` with T = sum_j d_j / r_j per group, (m, k), for
    a random intercept and rows sorted by group: the expected
    information's two passes over D in one (``_group_blocks``)."""
    k = D.shape[1]
    T, gram = np.empty((data.n_groups, k)), np.zeros((k, k))
    for groups, rows, local in _group_blocks(data):
        _variance_block(D[rows], winv[rows], v[rows], local, T[groups], gram)
    return T, gram


def _variance_block(db, wb, vb, local, T_out, gram):
    """One block of ``_intercept_variance_sums``: the block's groups' T
    into ``T_out`` and its rows' part of the Gram matrix added to
    ``gram``.  Returns the block's D / r (columns contiguous), for a
    caller that sums more with it."""
    fb = _scale_rows(db, wb)
    T_out[...] = np.add.reduceat(fb, local, axis=0)
    gram += _scale_rows(db, vb).T @ db
    return fb


def _spare_rows(a, n):
    """Whether ``a`` can hold an evaluation's row-sized results: a float64
    (n,) array of its own (no view of another)."""
    return (isinstance(a, np.ndarray) and a.shape == (n,) and a.dtype == np.float64
            and a.base is None and a.flags.c_contiguous and a.flags.writeable)


def _intercept_rows(data, X, y, winv, resid_var, fe_params, K, gradient, D=None,
                    B=None, spare=None, log_sum=True, reml_factor=None):
    """
    The rows' part of ``evaluate`` after the fixed effects, for a random
    intercept with rows sorted by group, in one pass over blocks of whole
    groups (``_group_blocks``): each block's residuals give its groups'
    sums e = Z'R^-1 (y - X b), their BLUPs K e at once, and from those the
    block's gradient rows and expected-information sums, while the block
    is in cache.  Row-sized arrays are only the results kept (the
    residuals, and with the gradient V^-1 (y - X b) and the gradient
    rows): no temporaries of the rows' size, each of which a fresh
    allocation (page faults) at 10,000,000 rows.

    Returns a dict: ``resid`` (n,), ``e`` (m, 1), ``blup`` (m, 1),
    ``quad`` = r'R^-1 r - e'K e, ``logsum`` = sum log r_j,
    ``xtwr`` = X'R^-1 r; with ``gradient`` also ``vinv_resid``, ``g``
    = (y - X b - Z u)_j^2 / r_j - 1 + K / r_j (the ML gradient rows,
    twice d llf / d log r_j) and, with ``D`` (the variance directions,
    (n, k_var)), ``_intercept_variance_sums``' T and Gram matrix of the
    rows with v = 1 - 2 K / r_j.  ``D`` a slice: the columns ``X[:, D]``
    (``evaluate``'s ``info_directions``), read from the block of X in
    cache, T their columns of the per-group sums ``B`` = Z'R^-1 X, and
    ``xtg`` = X[:, D]'g.
    ``resid_var`` None: sum log r_j = - sum log (1 / r_j) (``winv``
    written over it); ``log_sum`` False: not taken (``logsum`` 0).
    ``spare``: arrays (``_spare_rows``) taken (popped) for the row-sized
    results instead of new ones.  ``reml_factor`` (F, K B) with ``H^-1 =
    F F'`` (REML, with ``gradient``): also ``reml_rows``, ``_reml_rows``'
    x~_j' H^-1 x~_j / r_j from the block's product with X that gives its
    residuals, added to ``g`` (and to ``xtg``) as REML's gradient rows.
    """
    n, p = X.shape
    m = data.n_groups
    k_gain = K[:, 0, 0]
    spare = [] if spare is None else spare

    def rows_array():
        return spare.pop() if spare else np.empty(n)

    resid = rows_array()
    e, blup = np.empty((m, 1)), np.empty((m, 1))
    quad = logsum = 0.0
    xtwr = np.zeros(p)
    out = {"resid": resid, "e": e, "blup": blup}
    if gradient:
        out["vinv_resid"] = vinv_resid = rows_array()
        out["g"] = g = rows_array()
        columns = isinstance(D, slice)
        if columns:   # T of X's columns: their sums B = Z'R^-1 X
            T = B[:, 0, D]
            gram = np.zeros((T.shape[1],) * 2)
            xtg = np.zeros(T.shape[1])
        elif D is not None:
            T, gram = np.empty((m, D.shape[1])), np.zeros((D.shape[1],) * 2)
    if reml_factor is not None:
        left, c_reml = _reml_block_operands(*reml_factor, fe_params)
        out["reml_rows"] = reml_rows = rows_array()
    for groups, rows, local in _group_blocks(data):
        rb = resid[rows]
        xb = X[rows]
        wb = winv[rows]
        if reml_factor is None:
            np.subtract(y[rows], xb @ fe_params, out=rb)
        else:
            hb = reml_rows[rows]
            _reml_block(left, xb, c_reml[groups, 0, :], data.sizes[groups], hb,
                        (y[rows], rb))
            hb *= wb
        rwb = rb * wb
        eb = np.add.reduceat(rwb, local)
        e[groups, 0] = eb
        ub = k_gain[groups] * eb
        blup[groups, 0] = ub
        quad += rwb @ rb - eb @ ub
        if log_sum:
            logsum += (np.log(resid_var[rows]).sum() if resid_var is not None
                       else -np.log(wb).sum())
        xtwr += xb.T @ rwb
        if not gradient:
            continue
        sizes = data.sizes[groups]
        cb = rb - np.repeat(ub, sizes)               # y - X b - Z u
        vb = vinv_resid[rows]
        np.multiply(cb, wb, out=vb)                  # V^-1 (y - X b)
        zkz = np.repeat(k_gain[groups], sizes)
        zkz *= wb                                    # z'K z / r
        gb = g[rows]
        np.multiply(cb, vb, out=gb)
        gb -= 1.0
        gb += zkz
        if reml_factor is not None:
            gb += hb
        if columns:
            db = xb[:, D]
            gram += _scale_rows(db, 1.0 - 2.0 * zkz).T @ db
            xtg += db.T @ gb
        elif D is not None:
            _variance_block(D[rows], wb, 1.0 - 2.0 * zkz, local, T[groups], gram)
    out.update(quad=quad, logsum=logsum, xtwr=xtwr)
    if gradient and D is not None:
        out["T"], out["rowpart"] = T.reshape(-1, 1, 1, T.shape[1]), gram
        if columns:
            out["xtg"] = xtg
    return out


def group_cross(data, left, right, weights):
    """
    Per-group weighted cross products ``sum_j w_j left_j right_j'``
    (unweighted when ``weights`` is None).

    Returns an array of shape (n_groups, k_left, k_right).  Sparse layout:
    for each left column, the products with a block of right columns are
    formed column by column in memory (Fortran order, ``_scale_rows``),
    within ``_CHUNK_ELEMENTS``, and summed by ``segment_sums``.
    """
    if data.pad_index is not None:
        wleft = left if weights is None else left * weights[:, None]
        return data.pad(wleft).transpose(0, 2, 1) @ data.pad(right)
    n, k_left = left.shape
    k_right = right.shape[1]
    out = np.empty((data.n_groups, k_left, k_right))
    unit = weights is not None and unit_design(data, left)
    if data.starts is not None:
        # rows sorted by group: blocks of whole groups, whose products stay
        # in cache (no n x k temporary)
        for groups, rows, local in _group_blocks(data):
            wb = None if weights is None else weights[rows]
            lb, rb = left[rows], right[rows]
            for a in range(k_left):
                v = wb if unit else (lb[:, a] if wb is None else lb[:, a] * wb)
                out[groups, a, :] = np.add.reduceat(_scale_rows(rb, v), local, axis=0)
        return out
    block = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for a in range(k_left):
        if unit:  # a column of ones: the weights themselves
            v = weights
        else:
            v = left[:, a] if weights is None else left[:, a] * weights
        for start in range(0, k_right, block):
            stop = min(k_right, start + block)
            prods = _scale_rows(right[:, start:stop], v)
            out[:, a, start:stop] = segment_sums(data, prods)
    return out


def rows_times_group(data, rows, per_group):
    """
    For every row j of group g: ``sum_a rows[j, a] * per_group[g, a, ...]``.

    ``rows`` is (n, q) and ``per_group`` is (n_groups, q) or
    (n_groups, q, k); the result is (n,) or (n, k).  The per-group values
    reach the rows by ``GroupedData.expand`` (a contiguous gather, or
    np.repeat when the rows are sorted by group): indexing the (m, q, k)
    array with the rows' group index and a slice at once takes numpy's
    slow path (measured: 11 ms against 1-2 ms per gather at 1,000,000
    rows).
    """
    n, q = rows.shape
    vector = per_group.ndim == 2
    pg = per_group[:, :, None] if vector else per_group
    k = pg.shape[2]
    if data.pad_index is not None:
        out = (data.pad(rows) @ pg).reshape(-1, k)[data.pad_index]
        return out[:, 0] if vector else out
    if q == 1:
        unit = unit_design(data, rows)
        if vector:
            values = data.expand(per_group[:, 0])
            return values if unit else rows[:, 0] * values
        out = np.empty((n, k), order="F")  # column by column (_scale_rows)
        for c in range(k):
            if unit:
                out[:, c] = data.expand(pg[:, 0, c])
            else:
                np.multiply(rows[:, 0], data.expand(pg[:, 0, c]), out=out[:, c])
        return out
    out = np.empty((n, k))
    step = max(1, _CHUNK_ELEMENTS // max(q * k, 1))
    gi = data.group_index
    pg = np.ascontiguousarray(pg)
    for start in range(0, n, step):
        stop = min(n, start + step)
        out[start:stop] = np.einsum(
            "ia,iak->ik", rows[start:stop], np.take(pg, gi[start:stop], axis=0))
    return out[:, 0] if vector else out


def subtract_rows_times_group(data, out, rows, per_group):
    """``out -= rows_times_group(data, rows, per_group)`` for an (n, k)
    ``out`` and (n_groups, q, k) ``per_group``, in place: with one random
    effect a column at a time (no n x k temporary)."""
    if rows.shape[1] != 1 or data.pad_index is not None:
        out -= rows_times_group(data, rows, per_group)
        return out
    unit = unit_design(data, rows)
    for c in range(out.shape[1]):
        values = data.expand(per_group[:, 0, c])
        if not unit:
            values *= rows[:, 0]
        out[:, c] -= values
    return out


def _reml_rows(data, F, KB, winv, y=None, fe_params=None):
    """
    The REML rows ``x~_j' H^-1 x~_j / r_j`` (x~ = X - Z K B), (n,), as
    ``||x_j'F - z_j' c_g||^2 / r_j`` with ``c = K B F`` for a factor F of
    ``H^-1 = F F'`` (``L^-T`` for H = L L'); with ``y`` and ``fe_params``
    also the residuals ``y - X b`` (the same pass over X: ``(rows,
    resid)``).

    A random intercept with rows sorted by group: a block of whole groups
    at a time, transposed (p x rows, in cache: no n x p temporary; the
    residuals one more row of the block's product); else the (n, p)
    product column-major, reduced over its contiguous columns.
    """
    X, Z = data.exog, _engine_z(data)
    left, c = _reml_block_operands(F, KB, None if y is None else fe_params)
    resid = None
    if unit_design(data, Z) and data.starts is not None:
        out = np.empty(X.shape[0])
        if y is not None:
            resid = np.empty(X.shape[0])
        for groups, rows, _ in _group_blocks(data):
            _reml_block(left, X[rows], c[groups, 0, :], data.sizes[groups],
                        out[rows], None if y is None else (y[rows], resid[rows]))
    else:
        Ut = subtract_rows_times_group(data, rows_matmul(X, F), Z, c).T
        out = np.einsum("kn,kn->n", Ut, Ut)  # Ut (p, n) C-contiguous
        if y is not None:
            resid = y - rows_matmul(X, fe_params)
    out *= winv
    return out if y is None else (out, resid)


def _reml_block_operands(F, KB, fe_params=None):
    """``(left, c)`` of ``_reml_block``: F' (with b' stacked under it when
    the residuals are wanted too) and ``c = K B F`` (m, q, p), the
    products with F as one of the stacked (m q, p) rows (a stack of (q, p)
    matrices times one (p, p) is a loop of small products)."""
    p = F.shape[0]
    left = F.T if fe_params is None else np.vstack([F.T, fe_params])
    return left, (KB.reshape(-1, p) @ F).reshape(KB.shape)


def _reml_block(left, xb, c_groups, sizes, out, resid=None):
    """``_reml_rows`` for one block of whole groups (random intercept, rows
    sorted by group) before the division by r_j: ``||x_j'F - c_g||^2``
    into ``out`` from one product of ``left`` (F' stacked on b' when
    ``resid`` = (y, out) is given: the residuals y - X b into its out)
    with the block of X, transposed (in cache, no n x p temporary)."""
    ub = left @ xb.T
    if resid is not None:
        p = left.shape[0] - 1
        np.subtract(resid[0], ub[p], out=resid[1])
        ub = ub[:p]
    ub -= np.repeat(c_groups.T, sizes, axis=1)
    np.einsum("kn,kn->n", ub, ub, out=out)


def _reml_cov_terms(A, B, KB, F):
    """What the REML criterion adds to the ML gradient in G at the GLS
    fixed effects, twice: ``sum_i (Q_i F)(Q_i F)'`` with ``Q_i = Z_i'V_i^-1
    X_i = B_i - A_i K_i B_i`` (per-group sums, ``evaluate``'s) and a
    factor F of ``H^-1 = F F'``, (q, q).  (Its term in the log residual
    variances: ``_reml_rows``.)"""
    p = F.shape[0]
    QF = ((B - A @ KB).reshape(-1, p) @ F).reshape(B.shape)   # (see _reml_rows)
    return np.tensordot(QF, QF, axes=([0, 2], [0, 2]))


def group_forms(data, rows, per_group):
    """``z_j' P_g z_j`` for every row j of group g: ``rows`` (n, q), the
    symmetric ``per_group`` (n_groups, q, q); an (n,) array."""
    if rows.shape[1] == 1 and data.pad_index is None:
        values = data.expand(per_group[:, 0, 0])  # a new array
        if not unit_design(data, rows):
            values *= rows[:, 0] * rows[:, 0]
        return values
    return np.einsum("ia,ia->i", rows_times_group(data, rows, per_group), rows)


@dataclass
class Evaluation:
    """Likelihood pieces at one parameter value (see module docstring)."""

    llf: float
    fe_params: np.ndarray
    xtvix: np.ndarray            # X' V^-1 X
    blup: np.ndarray             # (m, q)  K_i e_i
    cond_cov: np.ndarray         # (m, q, q) K_i
    resid_marginal: np.ndarray   # (n,) y - X b
    score_fe: np.ndarray         # (p,) X' V^-1 (y - X b), zero when profiled
    # Gradient pieces, present when requested:
    grad_cov: np.ndarray | None = None   # (q, q) d llf / d G (symmetric form)
    grad_eta: np.ndarray | None = None   # (n,) d llf / d log r_j
    # d llf / d natural residual-correlation parameters (correlated models,
    # ``_correlated``); None without a correlation structure
    grad_corr: np.ndarray | None = None
    info: np.ndarray | None = None       # expected information, if requested
    # the same in the coordinates of the centred effects' covariance G_c
    # (set by the objective, which asks the engine for it)
    info_centred: np.ndarray | None = None
    llf_groups: np.ndarray | None = None       # (m,) per-group llf (ML)
    vinv_resid: np.ndarray | None = None       # (n,) V^-1 (y - X b)
    grad_cov_groups: np.ndarray | None = None  # (m, q, q) per-group grad_cov
    # d llf / dG_c of the centred effects (GroupedData.re_basis; grad_cov
    # without it): the covariance blocks' conditioned gradient
    grad_cov_centred: np.ndarray | None = None
    # variance directions given as columns of X (``evaluate``'s
    # ``info_directions``) and the random intercept's pass: X[:, cols]' of
    # grad_eta (REML's rows included), taken in that pass (a log-linear block's conditioned
    # gradient W_c'g where W_c is those centred columns)
    grad_var_centred: np.ndarray | None = None
    # REML with the gradient: x~_j' H^-1 x~_j / r_j (x~ = X - Z K B, H =
    # X'V^-1 X), the REML criterion's term of d llf / d log r_j (twice it);
    # observed_information reads it instead of passing over the rows again
    reml_row_terms: np.ndarray | None = None
    # Centred fixed-effects columns (GroupedData.fe_basis): M and X_c'V^-1X_c
    fe_basis: np.ndarray | None = None
    xtvix_centred: np.ndarray | None = None
    # per group, in the engine's (centred) columns: Z'R^-1 Z, Z'R^-1 X,
    # Z'R^-1 (y - X b), K; and X'V^-1 (y - X b) there (fe_score_jacobian
    # reads them instead of passing over the rows again)
    group_summaries: tuple | None = None

    def fe_covariance(self) -> np.ndarray:
        """(X'V^-1 X)^-1, inverted in the centred columns where the data
        have them (M^-1 (X_c'V^-1 X_c)^-1 M^-T): accurate for covariates
        far from their origin."""
        if self.fe_basis is None:
            return np.linalg.inv(self.xtvix)
        return back_transform(self.fe_basis, np.linalg.inv(self.xtvix_centred))


def evaluate(data, factor, resid_var, reml, fe_params=None, gradient=False,
             info_directions=None, endog=None, per_group=False,
             fe_summaries=True, reuse=None, log_resid_var_sum=None):
    """
    Log-likelihood (and optionally its gradient) of the Gaussian LMM.

    Parameters
    ----------
    data : GroupedData
    factor : ndarray (q, q) or (n_groups, q, q)
        Any ``L`` with ``G = L L'`` (lower triangular in practice), common to
        all groups or one per group; with ``data.re_basis``, of the centred
        effects' ``G_c = M_z G M_z'`` (what ``Layout.factor(natural,
        data.re_basis)`` gives).  The BLUPs, their covariances and the
        gradient are returned in the user's coordinates (of G and
        ``data.exog_z``).
    resid_var : ndarray (n,)
        Residual variances ``r_j > 0``.
    reml : bool
        Restricted likelihood if True.
    fe_params : ndarray (p,), optional
        Fixed effects for the ML likelihood; profiled out by GLS when None.
        Ignored for REML, whose criterion does not depend on them.
    gradient : bool
        Also compute the gradient with respect to ``G`` (as the symmetric
        matrix ``Gamma`` with ``d llf = trace(Gamma dG)``) and with respect to
        ``log r_j`` for every row.  With ``fe_params`` given and ML, this is
        the gradient at fixed ``fe_params``; with profiling the envelope
        theorem makes it the profile gradient.
    info_directions : tuple (cov_dirs, var_dirs), optional
        With ``gradient``: also the expected information, see
        ``_expected_information``; with ``data.re_basis``, ``cov_dirs`` are
        derivatives of G_c (``centred_directions`` maps dG / d param to
        them; the natural parameters of G_c take its own directions).
        ``var_dirs`` a slice: the columns ``data.exog[:, var_dirs]`` of the
        engine's (centred) fixed-effects design, whose per-group sums
        the fixed effects' pass has already taken.
    endog : ndarray (n,), optional
        Replaces ``data.endog`` (e.g. the response minus a per-group offset).
    per_group : bool
        Also return each group's log-likelihood (``llf_groups``) and, with
        ``gradient``, each group's ``grad_cov`` (``grad_cov_groups``).  ML
        only.
    fe_summaries : bool
        Compute ``xtvix`` and ``score_fe``.  False (ML with ``fe_params``
        given only) skips them and the cross products only they need, for
        callers that use neither (the location-scale quadrature); they are
        then None.
    reuse : list, optional
        Arrays the evaluation may overwrite instead of allocating new ones
        of the rows' size (each a fresh allocation, with its page faults,
        at 10,000,000 rows), for a random intercept with rows sorted by
        group: ``resid_var`` itself when it is in the list (its reciprocals
        are written over it), and float64 (n,) arrays of the list for the
        residuals, V^-1 (y - X b) and the gradient rows.  The caller holds
        no other reference to them, and drops them after the call (some
        may then be the evaluation's).
    log_resid_var_sum : float, optional
        sum_j log r_j where the caller knows it (a log-linear variance:
        the sum of its linear predictor), instead of the logarithms of
        the rows.

    Raises
    ------
    NotPositiveDefiniteError
        When X'V^-1 X is singular (collinear fixed-effects design).
    """
    X, Z = data.exog, _engine_z(data)
    fe_basis = data.fe_basis
    if fe_basis is not None and fe_params is not None:
        fe_params = fe_basis @ np.asarray(fe_params, dtype=np.float64)  # of X_c
    if info_directions is not None and isinstance(info_directions[1], slice):
        # read from X in the one pass of a random intercept (its sums B
        # are then the T needed, ``_intercept_rows``); else a view of X
        if not (unit_design(data, Z) and data.starts is not None
                and fe_summaries and not per_group):
            info_directions = (info_directions[0], X[:, info_directions[1]])
    y = data.endog if endog is None else np.asarray(endog, dtype=np.float64)
    if per_group and reml:
        raise ValueError("per-group log-likelihoods are for ML only")
    n, p = X.shape
    fusing = unit_design(data, Z) and data.starts is not None and not per_group
    if fusing and reuse and any(a is resid_var for a in reuse):
        # sum log r_j below is then - sum log (1 / r_j)
        winv = np.divide(1.0, resid_var, out=resid_var)
        resid_var = None
    else:
        winv = 1.0 / resid_var
    spare = [] if not fusing or reuse is None else [
        a for a in reuse if a is not winv and _spare_rows(a, n)]

    # Per-group cross products: A = Z'R^-1 Z, B = Z'R^-1 X, b = Z'R^-1 y,
    # each a product of a column of R^-1 Z (formed once) with the rows.
    unit = unit_design(data, Z)
    if unit:  # a random intercept: A = sum_j 1 / r_j
        wz = winv[:, None]
        A = segment_sums(data, winv).reshape(-1, 1, 1)
    else:
        wz = _scale_rows(Z, winv)
        A = group_cross(data, wz, Z, None)
        A = 0.5 * (A + A.transpose(0, 2, 1))
    if not fe_summaries and (reml or fe_params is None):
        raise ValueError("fe_summaries=False needs ML with fe_params given")
    if fe_summaries:
        B, b, xtwx, xtwy = _fe_sums(data, Z, wz, X, winv, y=y)
    else:
        B = b = None
    chol_M, K = _gain(factor, A)  # K = L M^-1 L'
    logdet_M_groups = 2.0 * np.log(np.diagonal(chol_M, axis1=1, axis2=2)).sum(axis=1)
    logdet_M = logdet_M_groups.sum()
    if fe_summaries:
        KB = K @ B
        xtvix = xtwx - np.einsum("iqp,iqr->pr", B, KB)
        xtvix = 0.5 * (xtvix + xtvix.T)
    else:
        xtvix = None
    if reml:
        fe_params = None
    if fe_params is None:
        # Equilibrated, so that columns of very different sizes are no
        # reason to fail: only collinearity is (see _linalg).
        try:
            chol_H = cholesky_equilibrated(xtvix, "X'V^-1 X")
        except NotPositiveDefiniteError as exc:
            raise NotPositiveDefiniteError(
                "X'V^-1 X is singular: the fixed-effects design is collinear"
            ) from exc
    if fe_params is None:
        xtviy = xtwy - np.einsum("iqp,iq->p", KB, b)
        fe_params = _chol_solve(chol_H, xtviy)

    # the REML rows of the gradient are taken in the residuals' pass over
    # X, with the factor F of H^-1 = F F'
    F_reml = np.linalg.inv(chol_H).T if reml and gradient else None
    reml_rows = None
    # a random intercept with rows sorted by group: the rows' part in one
    # pass (residuals, BLUPs, gradient rows with REML's, information sums)
    fused = None
    if fusing:
        fused = _intercept_rows(
            data, X, y, winv, resid_var, fe_params, K, gradient,
            None if info_directions is None else info_directions[1], B, spare,
            log_sum=log_resid_var_sum is None,
            reml_factor=None if F_reml is None else (F_reml, KB))
        resid, e, blup = fused["resid"], fused["e"], fused["blup"]
        quad, logsum = fused["quad"], fused["logsum"]
        reml_rows = fused.get("reml_rows")
        if log_resid_var_sum is not None:
            logsum = log_resid_var_sum
    else:
        if F_reml is not None:
            reml_rows, resid = _reml_rows(data, F_reml, KB, winv, y, fe_params)
        else:
            resid = y - rows_matmul(X, fe_params)
        resid_w = resid * winv  # R^-1 (y - X b)
        e = (segment_sums(data, resid_w)[:, None] if unit
             else group_cross(data, wz, resid[:, None], None)[:, :, 0])
        blup = np.einsum("iab,ib->ia", K, e)
        quad = np.dot(resid_w, resid) - np.einsum("ia,ia->", e, blup)
        logsum = (np.log(resid_var).sum() if log_resid_var_sum is None
                  else log_resid_var_sum)

    logdet_V = logsum + logdet_M
    if reml:
        logdet_H = 2.0 * np.log(chol_H.diagonal()).sum()
        llf = -0.5 * ((n - p) * _LOG_2PI + logdet_V + logdet_H + quad)
    else:
        llf = -0.5 * (n * _LOG_2PI + logdet_V + quad)

    xtwr = rows_tmatvec(X, resid_w) if fused is None else fused["xtwr"]
    score_fe = (xtwr - np.einsum("iqp,iq->p", B, blup)
                if fe_summaries else None)
    # the centred effects' BLUPs and covariances back to Z's: M^-1 u_c
    Mi = data.re_basis_inverse
    blup_z, K_z = (blup, K) if Mi is None else (blup @ Mi.T, Mi @ K @ Mi.T)
    summaries = (A, B, e, K, score_fe) if fe_summaries else None
    if fe_basis is None:
        ev = Evaluation(llf, fe_params, xtvix, blup_z, K_z, resid, score_fe)
    else:  # back to the fixed effects of X
        F = fe_basis
        ev = Evaluation(llf, data.fe_basis_inverse @ fe_params,
                        None if xtvix is None else F.T @ xtvix @ F, blup_z, K_z,
                        resid, None if score_fe is None else F.T @ score_fe,
                        fe_basis=F, xtvix_centred=xtvix)
    ev.group_summaries = summaries
    if per_group:
        gi, m = data.group_index, data.n_groups
        sizes = np.bincount(gi, minlength=m)
        row_terms = np.log(resid_var) + resid * resid_w
        ev.llf_groups = -0.5 * (sizes * _LOG_2PI + logdet_M_groups
                                + np.bincount(gi, weights=row_terms, minlength=m)
                                - np.einsum("ia,ia->i", e, blup))
    if not gradient:
        return ev

    # d llf / dG = 1/2 sum_i [s s' - Z'V^-1 Z (+ REML: Q H^-1 Q')]
    AK = A @ K
    s = e - np.einsum("iab,ib->ia", A, blup)
    zvz = A - AK @ A
    grad_cov_groups = 0.5 * (s[:, :, None] * s[:, None, :] - zvz)
    grad_cov = grad_cov_groups.sum(axis=0)
    if per_group:
        ev.grad_cov_groups = _to_user_gradient(data, grad_cov_groups)
    # d llf / d log r_j = 1/2 [(y - X b - Z u)_j^2 / r_j - 1 + z_j'K z_j / r_j]
    # (+ REML), in place on as few row vectors as possible
    info_sums = {}
    if fused is not None:
        ev.vinv_resid, g, zkz_w = fused["vinv_resid"], fused["g"], None
        if info_directions is not None:
            info_sums = {"T": fused["T"], "rowpart": fused["rowpart"]}
    else:
        cond_resid = rows_times_group(data, Z, blup)
        np.subtract(resid, cond_resid, out=cond_resid)     # y - X b - Z u
        ev.vinv_resid = cond_resid * winv                  # V^-1 (y - X b)
        zkz_w = group_forms(data, Z, K)
        zkz_w *= winv                                      # z'K z / r
        g = cond_resid
        g *= ev.vinv_resid
        g -= 1.0
        g += zkz_w
    if reml:
        grad_cov += 0.5 * _reml_cov_terms(A, B, KB, F_reml)
        if fused is None:   # (the fused pass added them to its rows)
            g += reml_rows
        ev.reml_row_terms = reml_rows
    g *= 0.5
    if fused is not None and "xtg" in fused:
        ev.grad_var_centred = 0.5 * fused["xtg"]   # X[:, cols]' g
    grad_cov = 0.5 * (grad_cov + grad_cov.T)
    ev.grad_cov = _to_user_gradient(data, grad_cov)
    ev.grad_cov_centred = grad_cov
    ev.grad_eta = g
    if info_directions is not None:
        cov_dirs, var_dirs = info_directions
        if isinstance(var_dirs, slice):
            var_dirs = X[:, var_dirs]   # a view (its sums are info_sums')
        ev.info = _expected_information(data, Z, wz, K, A, zvz, zkz_w,
                                        cov_dirs, var_dirs, **info_sums)
    return ev


def _engine_z(data):
    """The random-effects design the engine evaluates with (``exog_zc``)."""
    return data.exog_z if data.exog_zc is None else data.exog_zc


def _to_user_gradient(data, grad_c):
    """d llf / dG = M_z' (d llf / dG_c) M_z (G_c = M_z G M_z'), for one
    (q, q) gradient or a stack."""
    M = data.re_basis
    return grad_c if M is None else M.T @ grad_c @ M


def centred_directions(data, cov_dirs):
    """dG_c / d param = M_z (dG / d param) M_z', (k, q, q): derivatives of
    the user's G as ``evaluate`` and ``fe_score_jacobian`` take them."""
    M = data.re_basis
    return cov_dirs if M is None else M @ cov_dirs @ M.T


def fe_score_jacobian(data, factor, resid_var, fe_params, cov_dirs, var_dirs,
                      evaluation=None):
    """
    Derivatives of the fixed effects' score ``X'V^-1 (y - X b)`` at fixed
    ``b`` with respect to covariance and variance parameters: the cross
    block ``d^2 llf / d b d param`` of the Hessian (the same for ML and
    for MixedLM's REML function of b and the covariances).

    ``d/d param_k X'V^-1 r = -X'V^-1 V_k V^-1 r`` with ``V_k = Z E_k Z'``
    for covariance parameters (``cov_dirs``: (k_cov, q, q), dG / d param;
    ``factor`` and ``cov_dirs`` of G_c with ``data.re_basis``, as
    ``evaluate``'s)
    and ``V_l = diag(r_j d log r_j / d param_l)`` for variance parameters
    (``var_dirs``: (n, k_var)).  Per group, ``Z'V^-1 X = B - A K B`` and
    ``Z'V^-1 r = e - A K e``; row by row, ``V^-1 X = R^-1 (X - Z K B)``
    and ``V^-1 r = R^-1 (r - Z K e)``.

    ``evaluation``: the engine's evaluation at the same parameters and
    ``fe_params`` (its ``group_summaries``).  Where every column of
    ``var_dirs`` is constant (a residual variance common to all rows, the
    model MixedLM fits) the block then needs no pass over the rows: with
    ``V_l = c_l R``, ``X'V^-1 V_l V^-1 r = c_l (X'V^-1 r - sum_i B_i'K_i
    Z_i'V_i^-1 r_i)``.

    Returns
    -------
    ndarray (p, k_cov + k_var)
        In the fixed effects of the original (uncentred) design.
    """
    F = data.fe_basis
    var_dirs = np.asarray(var_dirs, dtype=np.float64)
    summaries = None if evaluation is None else evaluation.group_summaries
    if summaries is not None and np.all(var_dirs == var_dirs[:1]):
        A, B, e, K, score_fe = summaries
        zvx = B - A @ (K @ B)                                       # (m, q, p)
        zvr = e - np.einsum("iab,ib->ia", A, np.einsum("iab,ib->ia", K, e))
        cov_part = -np.einsum("iap,kab,ib->pk", zvx, cov_dirs, zvr)
        xvr = score_fe - np.einsum("iqp,iqr,ir->p", B, K, zvr)     # X'V^-1 R V^-1 r
        var_part = -np.outer(xvr, var_dirs[0])
        out = np.hstack([cov_part, var_part])
        return out if F is None else F.T @ out
    X, Z = data.exog, _engine_z(data)
    b = np.asarray(fe_params, dtype=np.float64)
    if F is not None:
        b = F @ b  # the fixed effects of the centred columns
    winv = 1.0 / resid_var
    resid = data.endog - X @ b
    A = group_cross(data, Z, Z, winv)
    A = 0.5 * (A + A.transpose(0, 2, 1))
    B = group_cross(data, Z, X, winv)
    e = group_cross(data, Z, resid[:, None], winv)[:, :, 0]
    K = _gain(factor, A)[1]
    KB, Ke = K @ B, np.einsum("iab,ib->ia", K, e)
    zvx = B - A @ KB                          # (m, q, p)
    zvr = e - np.einsum("iab,ib->ia", A, Ke)  # (m, q)
    cov_part = -np.einsum("iap,kab,ib->pk", zvx, cov_dirs, zvr)
    vinv_x = (X - rows_times_group(data, Z, KB)) * winv[:, None]
    vinv_r = (resid - rows_times_group(data, Z, Ke)) * winv
    var_part = -(vinv_x * (vinv_r * resid_var)[:, None]).T @ var_dirs
    out = np.hstack([cov_part, var_part])
    return out if F is None else F.T @ out


def _gain(factor, A):
    """``(cholesky(M), K)`` with ``M = I + L'A L`` and ``K = L M^-1 L'``
    per group (see the module docstring)."""
    q = A.shape[-1]
    if q == 1:  # in closed form: M = 1 + l^2 A, K = l^2 / M
        l2 = np.square(factor[..., 0, 0])
        M = 1.0 + l2 * A[:, 0, 0]
        return np.sqrt(M)[:, None, None], (l2 / M)[:, None, None]
    Lt = np.swapaxes(factor, -1, -2)  # one factor, or one per group
    M = Lt @ A @ factor
    M[:, np.arange(q), np.arange(q)] += 1.0
    chol_M = np.linalg.cholesky(M)
    K = factor @ np.linalg.solve(M, np.broadcast_to(Lt, M.shape))
    return chol_M, 0.5 * (K + K.transpose(0, 2, 1))


def _variance_cross(data, Z, wz, var_dirs):
    """T_l = sum_j z_j z_j' (var_dirs)_jl / r_j per group, (m, q, q, k_var),
    from the random-effects design ``Z`` and ``wz`` = R^-1 Z."""
    n, q = wz.shape
    k_var = var_dirs.shape[1]
    if q == 1:
        T = (group_cross(data, wz, var_dirs, None) if unit_design(data, Z)
             else group_cross(data, Z, var_dirs, wz[:, 0]))
        return T.reshape(-1, 1, 1, k_var)
    zd = (Z[:, :, None] * var_dirs[:, None, :]).reshape(n, q * k_var)
    return group_cross(data, wz, zd, None).reshape(-1, q, q, k_var)


def _variance_sums(data, Z, wz, var_dirs, zkz_w):
    """``(T, D'diag(1 - 2 z'Kz / r) D)``: ``_variance_cross``'s T and the
    expected information's Gram matrix of the rows (D = ``var_dirs``),
    for a random intercept with sorted rows in one pass
    (``_intercept_variance_sums``)."""
    v = 1.0 - 2.0 * zkz_w
    if unit_design(data, Z) and data.starts is not None:
        T, gram = _intercept_variance_sums(data, var_dirs, wz[:, 0], v)
        return T.reshape(-1, 1, 1, var_dirs.shape[1]), gram
    return _variance_cross(data, Z, wz, var_dirs), _weighted_gram(var_dirs, v)


def cov_information(cov_dirs, zvz) -> np.ndarray:
    """The expected information's block of G's parameters,
    1/2 sum_i tr(E_k C_i E_l C_i) with C_i = Z_i'V_i^-1 Z_i (``zvz``,
    (m, q, q)) and E_k = dG / d param_k (``cov_dirs``)."""
    F = np.einsum("kab,ibc->kiac", cov_dirs, zvz)
    return 0.5 * np.einsum("kiac,lica->kl", F, F)


def _expected_information(data, Z, wz, K, A, zvz, zkz_w, cov_dirs, var_dirs,
                          T=None, rowpart=None):
    """
    Expected (Fisher) information of the ML log-likelihood,
    ``I_kl = 1/2 tr(V^-1 V_k V^-1 V_l)``, for parameters whose derivatives
    of V are ``Z E_k Z'`` (``cov_dirs``: (k_cov, q, q)) and
    ``diag(d_l)`` with ``d_l = d sigma2 / d param_l``, given as
    ``var_dirs = d log sigma2 / d param = d / r`` ((n, k_var); for the log
    link that is simply W).  ``Z`` is the engine's random-effects design,
    ``wz`` R^-1 Z and ``zkz_w`` the rows' ``z_j'K z_j / r_j``
    (``evaluate``'s); ``T`` and ``rowpart``, if given, ``_variance_sums``'.

    Per group, with C = Z'V^-1 Z and T_l = sum_j d_jl z_j z_j' / r_j^2:

        I(E_k, E_k') = 1/2 tr(E_k C E_k' C)
        I(d_l, E_k)  = 1/2 tr(E_k (I - A K) T_l (I - K A))
        I(d_l, d_m)  = 1/2 [sum_j d_jl d_jm (1 - 2 z_j'K z_j / r_j) / r_j^2
                            + tr(K T_l K T_m)]

    It is used as the scoring matrix of the optimiser (for REML too, where
    it differs by O(p / n)); standard errors use the observed information.
    """
    q = wz.shape[1]
    k_cov, k_var = cov_dirs.shape[0], var_dirs.shape[1]
    if T is None or rowpart is None:
        T, rowpart = _variance_sums(data, Z, wz, var_dirs, zkz_w)
    ika = np.eye(q) - K @ A
    info = np.empty((k_cov + k_var, k_cov + k_var))
    info[:k_cov, :k_cov] = cov_information(cov_dirs, zvz)
    # M_l = sum_i (I - K A)' T_il (I - K A), as batched matrix products.
    ikat = ika.transpose(0, 2, 1)
    Mv = np.stack([(ikat @ T[..., l] @ ika).sum(axis=0) for l in range(k_var)])
    info[k_cov:, :k_cov] = 0.5 * np.einsum("kdb,lbd->lk", cov_dirs, Mv)
    info[:k_cov, k_cov:] = info[k_cov:, :k_cov].T
    KT = np.einsum("iab,ibcl->iacl", K, T)
    info[k_cov:, k_cov:] = 0.5 * (rowpart + np.einsum("iacl,icam->lm", KT, KT))
    return info


def observed_information(data, factor, resid_var, reml, cov_dirs, var_dirs,
                         evaluation=None):
    """
    Analytic Hessian of the log-likelihood profiled over the fixed effects
    (ML) or of the REML criterion, in parameters on which G depends
    linearly (``cov_dirs``: dG / d param, (k_cov, q, q); of G_c with
    ``data.re_basis``, as ``evaluate``'s) and the log residual variances
    linearly (``var_dirs``: d log r_j / d param, (n, k_var)), with the
    evaluation (gradient and expected information) at the same point.

    With ``s = V^-1 (y - X b)``, ``V_k = dV / d param_k`` and, for two
    variance parameters, ``V_lm = diag(r d_l d_m)``, the Hessian at fixed
    ``b`` is

        H_kl = I_kl - (V_k s)' V^-1 (V_l s) + 1/2 (s' V_kl s - tr V^-1 V_kl)

    (I the expected information), each term per group q x q algebra on
    segment sums of ``Z'(d_l s)``.  Profiling over ``b`` adds
    ``J' (X'V^-1 X)^-1 J`` with ``J_k = -X'V^-1 V_k s`` (the cross block).
    REML subtracts half the Hessian of ``log |X'V^-1 X|``: with
    ``U = V^-1 X L^-T`` (``X'V^-1 X = L L'``) and ``N_k = U' V_k U``,

        + 1/2 tr(N_k N_l) - sum_a (V_k U_a)' V^-1 (V_l U_a)
        + 1/2 sum_a U_a' V_kl U_a,

    the same quadratic forms with the columns of U in place of ``s``.  No
    differences are taken: the result is exact to rounding and costs about
    two passes over the rows (REML: about two more), where differencing
    the gradient takes one evaluation per parameter.

    ``evaluation``: the engine's evaluation with the gradient at the same
    parameters (profiled fixed effects, the same ``reml``; with REML its
    ``reml_row_terms``), e.g. the last
    of a scoring run; its passes are then not repeated (the expected
    information is taken along these directions).  The returned
    evaluation is a copy of it with ``info`` set.

    Returns
    -------
    (ndarray (k_cov + k_var, k_cov + k_var), Evaluation)
    """
    if evaluation is None:
        ev = evaluate(data, factor, resid_var, reml, gradient=True,
                      info_directions=(cov_dirs, var_dirs))
    else:
        ev = replace(evaluation, info=None, info_centred=None)
    X, Z = data.exog, _engine_z(data)
    A, B, e, K, _ = ev.group_summaries
    n, p = X.shape
    k_cov, k_var = cov_dirs.shape[0], var_dirs.shape[1]
    D = np.asfortranarray(var_dirs, dtype=np.float64)  # columns contiguous
    winv = 1.0 / resid_var
    # only winv is read below: the caller's resid_var (usually made for
    # this call) is not held through the passes, the fit's peak memory
    del resid_var
    AK = A @ K
    C = A - AK @ A                      # Z'V^-1 Z per group
    ika = np.eye(Z.shape[1]) - AK       # I - A K
    wz = winv[:, None] if unit_design(data, Z) else _scale_rows(Z, winv)
    s = ev.vinv_resid
    fe_columns = None
    if unit_design(data, Z) and data.starts is not None:
        # a random intercept, rows sorted by group: the sums over the rows
        # below in one pass (``_intercept_information_rows``), with REML's
        # rows and its sums of X by the columns of D
        zkz_w = rows = None
        if reml:
            fe_columns = (_fe_columns_to_sum(D, True), np.empty((k_var, len(A), 1, p)),
                          np.zeros((k_var, p, p)))
        T, rowpart, t, xsd, row_gram = _intercept_information_rows(
            data, D, winv, s, K, X, ev.reml_row_terms if reml else None, fe_columns)
    else:
        zkz_w = group_forms(data, Z, K)
        zkz_w *= winv                   # z'K z / r
        T, rowpart = _variance_sums(data, Z, wz, D, zkz_w)
        t = group_cross(data, Z, D, s)                       # Z'(d_l s)
        # the variance block's row sums: - D'diag(r s^2)D of Q and
        # 1/2 (s'V_lm s - tr V^-1 V_lm) = 1/2 D'diag(r s^2 - 1 + z'Kz / r)D
        rows = -0.5 * (s * s / winv + 1.0 - zkz_w)
        xsd = _weighted_gram(X, s, D)
    if ev.info is None:
        ev.info = _expected_information(data, Z, wz, K, A, C, zkz_w, cov_dirs, D,
                                        T=T, rowpart=rowpart)

    def quadratic_forms(c_u, t):
        """Q_kl = sum_a (V_k u_a)' V^-1 (V_l u_a) for n-vectors u_a from
        their per-group sums c_u = Z'u_a, (m, q, J), and t = Z'(d_l u_a),
        (k_var, m, q, J) (directions first); or for one vector, (m, q)
        and (m, q, k_var); but for the row sums ``D' diag(r u^2) D`` of
        its variance block (the caller adds those of all its vectors in
        one pass); and a = E_k c_u, (k_cov, m, q[, J]).  Batched products
        over the groups, then one matrix product over groups and vectors
        for each block of Q (no transposed copies)."""
        one = c_u.ndim == 2
        if one:
            c_u, t = c_u[..., None], np.moveaxis(t, -1, 0)[..., None]
        a = np.matmul(cov_dirs[:, None], c_u)                 # E_k c_u
        a2 = a.reshape(k_cov, -1)
        Q = np.empty((k_cov + k_var, k_cov + k_var))
        Q[:k_cov, :k_cov] = a2 @ np.matmul(C, a).reshape(k_cov, -1).T
        prod = np.matmul(ika, t)                              # (I - A K) t
        Q[:k_cov, k_cov:] = a2 @ prod.reshape(k_var, -1).T
        Q[k_cov:, :k_cov] = Q[:k_cov, k_cov:].T
        prod = np.matmul(K, t)                                # K t
        Q[k_cov:, k_cov:] = -(t.reshape(k_var, -1) @ prod.reshape(k_var, -1).T)
        return Q, (a[..., 0] if one else a)

    c = e - np.einsum("iab,ib->ia", A, np.einsum("iab,ib->ia", K, e))  # Z'V^-1 r
    Q, a = quadratic_forms(c, t)
    hess = ev.info - Q
    # profiled over b: + J' H^-1 J, J = d score_b / d param
    zvx = B - AK @ B
    J = np.empty((p, k_cov + k_var))
    J[:, :k_cov] = -np.einsum("iap,kia->pk", zvx, a)
    J[:, k_cov:] = -(xsd - np.einsum("iqp,iqr,irl->pl", B, K, t))
    H = ev.xtvix if ev.xtvix_centred is None else ev.xtvix_centred
    chol_H = cholesky_equilibrated(H, "X'V^-1 X")
    hess += J.T @ _chol_solve(chol_H, J)
    if reml:
        # The same for the columns of U = V^-1 X L^-T = R^-1 X~ L^-T
        # (X~ = X - Z K B, H = L L'), from per-group sums of the rows
        # instead of U itself: Z'U = (B - A K B) L^-T,
        # Z'diag(d_l) U = (P_l - T_l K B) L^-T with P_l = Z'R^-1 diag(d_l) X,
        # N_l = U'diag(r d_l) U
        #     = L^-1 [X'R^-1 diag(d_l) X - sum_i (P_il'K_i B_i
        #             + B_i'K_i P_il - B_i'K_i T_il K_i B_i)] L^-T,
        # and sum_a r U_a^2 = x~'H^-1 x~ / r (the evaluation's REML rows).
        # (products with L^-T as one matrix product of the stacked rows:
        # a stack of (q, p) matrices times one (p, p) is a loop of small ones)
        Li = np.linalg.inv(chol_H)
        KB = K @ B
        c_U = ((B - A @ KB).reshape(-1, p) @ Li.T).reshape(B.shape)   # (m, q, p)
        # X'R^-1 X = H + sum_i B_i'K_i B_i, for D's constant columns
        xtwx = H + np.tensordot(B, KB, axes=([0, 1], [0, 1]))
        P, XVX = _fe_sums_by_columns(data, Z, wz, X, winv, D, (B, xtwx),
                                     None if fe_columns is None else fe_columns[1:])
        TKB = np.einsum("iabl,ibp->liap", T, KB)                # T_l K B
        N = np.empty((k_cov + k_var, p, p))
        # sums over the groups as products of the stacked (m q, p) rows
        c_U2, KB2 = c_U.reshape(-1, p), KB.reshape(-1, p)
        Ec = np.matmul(cov_dirs[:, None], c_U)                  # E_k c_U
        N[:k_cov] = np.matmul(c_U2.T, Ec.reshape(k_cov, -1, p))
        cross = np.matmul(P.reshape(k_var, -1, p).transpose(0, 2, 1), KB2)
        inner = (XVX - cross - cross.transpose(0, 2, 1)
                 + np.matmul(KB2.T, TKB.reshape(k_var, -1, p)))
        N[k_cov:] = Li @ inner @ Li.T
        # t_U = (P_l - T_l K B) L^-T, (k_var, m, q, p), with as few stacks
        # of its size alive at once as can be (the fit's peak memory)
        P -= TKB
        del TKB
        t_U = (P.reshape(-1, p) @ Li.T).reshape(P.shape)
        del P
        hess -= quadratic_forms(c_U, t_U)[0]
        del t_U
        # - D'diag(r u^2)D of each Q, + 1/2 of it from U_a' V_lm U_a
        # (in place, no n-sized temporary: scaling by 2 and 1/2 is exact;
        # the one-pass route has them in its row_gram)
        if rows is not None:
            rows *= 2.0
            rows -= ev.reml_row_terms
            rows *= 0.5
        hess += 0.5 * (N.reshape(len(N), -1)
                       @ N.transpose(0, 2, 1).reshape(len(N), -1).T)
    hess[k_cov:, k_cov:] += row_gram if rows is None else _weighted_gram(D, rows)
    return 0.5 * (hess + hess.T), ev


def _intercept_information_rows(data, D, winv, s, K, X, reml_rows=None,
                                fe_columns=None):
    """
    ``observed_information``'s sums over the rows for a random intercept
    with rows sorted by group, in one pass over blocks of whole groups
    (``_group_blocks``; no temporaries of the rows' size):
    ``_intercept_variance_sums``' T and Gram matrix (v = 1 - 2 K / r_j),
    t = Z'(d_l s) per group (m, 1, k_var), X'diag(s) D, and
    D'diag(rows) D with rows = -1/2 (s^2 r + 1 - K / r_j) (ML), less
    1/2 ``reml_rows`` (REML: the evaluation's x~'H^-1 x~ / r).
    ``fe_columns``: ``(columns, P, xtvx)`` (REML), into which the same
    pass sums ``_fe_sums_by_columns``' columns ``columns`` of D.
    """
    m, k = data.n_groups, D.shape[1]
    k_gain = K[:, 0, 0]
    T, t = np.empty((m, k)), np.empty((m, k))
    rowpart, row_gram = np.zeros((k, k)), np.zeros((k, k))
    xsd = np.zeros((X.shape[1], k))
    for groups, rows, local in _group_blocks(data):
        db, wb, sb, xb = D[rows], winv[rows], s[rows], X[rows]
        zkz = np.repeat(k_gain[groups], data.sizes[groups])
        zkz *= wb                                     # z'K z / r
        fb = _variance_block(db, wb, 1.0 - 2.0 * zkz, local, T[groups], rowpart)
        sdb = _scale_rows(db, sb)
        t[groups] = np.add.reduceat(sdb, local, axis=0)
        xsd += xb.T @ sdb
        vb = sb * sb / wb + 1.0 - zkz
        if reml_rows is not None:
            vb += reml_rows[rows]
        vb *= -0.5
        row_gram += _scale_rows(db, vb).T @ db
        if fe_columns is not None and fe_columns[0]:
            _fe_columns_block(xb, fb, fe_columns[0], groups, local, *fe_columns[1:])
    return T.reshape(-1, 1, 1, k), rowpart, t[:, None, :], xsd, row_gram


def reml_gradient_terms(data, evaluation, resid_var, xtvix_inv_factor):
    """
    What the REML criterion adds to the ML gradient at the GLS fixed
    effects, for the rows of ``data`` when ``X'V^-1 X`` is that of more
    rows (the partitions of a Dask fit, whose sum it is):

        d / dG:         1/2 sum_i Q_i H^-1 Q_i',  Q_i = Z_i'V_i^-1 X_i
        d / d log r_j:  1/2 x~_j' H^-1 x~_j / r_j,  x~ = X - Z K B

    (``evaluate``'s REML terms, ``_reml_cov_terms`` and ``_reml_rows``,
    with ``H^-1`` given).
    ``evaluation``: the engine's ML evaluation of these rows at the GLS
    fixed effects (its ``group_summaries``); ``xtvix_inv_factor``: F
    with ``H^-1 = F F'`` in the engine's (centred) columns (``L^-T`` for
    a Cholesky factor ``H = L L'``).

    Returns
    -------
    grad_cov_centred : ndarray (q, q)
        Of G_c (``GroupedData.re_basis``; G without it).
    grad_log_var : ndarray (n,)
    """
    A, B, _, K, _ = evaluation.group_summaries
    F = np.asarray(xtvix_inv_factor, dtype=np.float64)
    KB = K @ B
    cov = _reml_cov_terms(A, B, KB, F)
    rows = _reml_rows(data, F, KB, 1.0 / resid_var)
    rows *= 0.5
    return 0.25 * (cov + cov.T), rows
