"""
Fits on Dask DataFrames: the engine's per-group passes mapped over
partitions that hold whole groups, with only small summaries reduced on
the client.

Private module; the public entry is ``hetmixedlm(formula, ddf, ...)`` (or
``HetMixedLM.from_formula``) with a ``dask.dataframe.DataFrame``, which
returns a :class:`DaskHetMixedLM`.  Nothing here imports dask at import
time: the package works without it.

How a fit runs
--------------
*Construction* (three small reductions, then the designs persisted on the
workers):

1. the categories of the frame's string and categorical columns (and of
   ``var_by``), so that every partition's formula designs have the same
   columns;
2. whether partitions hold whole groups (the number of distinct groups
   summed over partitions against the frame's); if not, the frame is
   shuffled on the groups column, with a warning;
3. every partition's model (``HetMixedLM.from_formula`` on the pandas
   partition, exactly the in-memory code path) is built, and of it only
   the arrays the evaluations read are persisted (``_Part``: y, X, Z and
   W once each, the rows sorted by group); a reduction gives the row and
   group counts, the column sums and ranges that fix the centring of the
   fixed-effects, random-effects and variance designs for the whole data
   (every task centres its partition with these global means, so that
   the partitions' sums add up), the R factors of a tall-skinny QR of X
   and W (the rank checks of the in-memory model, decided on the stacked
   R factors), and the distinct rows of W (for the summary).

*Each evaluation* makes two passes over the partitions.  Pass 1 gives each
partition's ``X'V^-1 X`` and ``X'V^-1 y``; the client solves for the GLS
fixed effects ``b``.  Pass 2 evaluates every partition's ML log-likelihood
at ``b``, whose gradient at fixed ``b`` sums to the profile gradient (the
envelope theorem: ``b`` is the whole data's GLS estimate).  REML adds
``1/2 p log 2 pi - 1/2 log|X'V^-1 X|`` to the value and the terms of
``_engine.reml_gradient_terms`` (with a factor of the whole data's
``(X'V^-1 X)^-1``) to the gradient.  Each partition reduces its gradient
to the parameters itself (natural, conditioned and free scales: vectors of
the number of parameters), and the expected information (a k x k matrix),
so nothing of the size of the rows comes back.

*The observed information* (standard errors) of an ML fit with log-linear
variance blocks is the engine's analytic Hessian, one task per partition
(``_observed_part``) whose parts add up but for the profile term, which
the client completes (``DaskObjective._analytic_information``); REML and
the identity link difference the gradient.

The optimiser, inference and results are the in-memory ones:
:class:`DaskObjective` has the interface of
:class:`~.objective.HeteroskedasticObjective`.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ValueWarning

from . import _engine, _linalg
from .model import HetMixedLM
from .objective import HeteroskedasticObjective
from .structures import LogLinearVariance, VarianceBlock

__all__ = ["DaskHetMixedLM", "DaskObjective", "from_dask"]

# Distinct rows of W kept per partition for the summary's variance table
# (which refuses more than 200).
_MAX_VAR_ROWS = 201
# Rows of the first partition the client's model is built from.
_SAMPLE_ROWS = 100


def _dask():
    try:
        import dask
        import dask.dataframe  # noqa: F401
    except ImportError as exc:  # pragma: no cover - only without the extra
        raise ImportError(
            "Fits on Dask DataFrames need dask: pip install "
            "'statsmodels-hetmixed[dask]'") from exc
    return dask


def _client():
    """The active dask.distributed Client, or None (local scheduler)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_client
    try:
        return get_client()
    except ValueError:
        return None


def _compute(tasks, progress=False):
    """Compute delayed tasks with the active scheduler, with a progress
    bar when asked (the local scheduler's, or distributed's)."""
    dask = _dask()
    client = _client()
    if not progress:
        return list(dask.compute(*tasks))
    if client is not None:
        from distributed import progress as show
        futures = client.compute(list(tasks))
        show(futures)
        print(file=sys.stdout, flush=True)
        return client.gather(futures)
    from dask.diagnostics import ProgressBar
    with ProgressBar():
        return list(dask.compute(*tasks))


# ----------------------------------------------------------------------
# What runs on the workers
@dataclass
class _Spec:
    """The formulas and options every partition's model is built with."""

    formula: str
    groups: str
    kwargs: dict


def _build_model(pdf, spec: _Spec, number: int):
    """The partition's in-memory model (None for an empty partition)."""
    from .model import HetMixedLM

    if len(pdf) == 0:
        return None
    # a frame indexed by the groups repeats index labels, on which
    # MixedLM's variance-component designs (found by label) fail
    pdf = pdf.reset_index(drop=True)
    try:
        with warnings.catch_warnings():
            # the whole data's design is checked on the client
            warnings.simplefilter("ignore")
            return HetMixedLM.from_formula(spec.formula, pdf, groups=spec.groups,
                                           _partition=True, **spec.kwargs)
    except ValueError as exc:
        raise ValueError(f"In partition {number} of the Dask DataFrame: {exc}") from exc


@dataclass
class _Part:
    """
    A partition's rows as the evaluations need them, each array once and
    nothing derived from them: float64 ``endog``, the fixed-effects design
    ``exog`` (uncentred), the random-effects design ``exog_z`` and the
    variance function's design (held by the variance block of ``layout``),
    with the rows sorted by group so that ``sizes`` (rows per group) place
    them.  Where the variance design has the fixed-effects design's
    columns (``var_formula`` repeating the mean formula) the block holds
    ``exog`` itself; a random intercept alone (a column of ones) is not
    stored (``exog_z`` None).

    Every evaluation derives what the engine works with from these (see
    ``_objective``): the centred columns, the group index and the group
    indicator, freed when its task ends.  For ``y ~ x * g``,
    ``var_formula="~ x * g"`` and a random intercept that is 40 bytes a
    row; partitions that kept their in-memory model and centred copies
    held 143 bytes a row of the workers' memory (benchmarks/RESULTS.md).
    """

    endog: np.ndarray
    exog: np.ndarray
    exog_z: np.ndarray | None
    layout: object
    sizes: np.ndarray
    labels: np.ndarray
    names: tuple
    k_re: int

    @property
    def n(self) -> int:
        return self.endog.shape[0]

    @property
    def exog_var(self) -> np.ndarray:
        return self.layout.variance_blocks[0].exog_var

    def row_arrays(self) -> list:
        """The distinct row-sized arrays held (W once when it is X)."""
        arrays = [self.endog, self.exog, self.exog_var, self.exog_z]
        out = []
        for a in arrays:
            if a is not None and not any(a is b for b in out):
                out.append(a)
        return out

    def design_z(self) -> np.ndarray:
        """The random-effects design (padded variance-component columns
        included): a column of ones when not stored."""
        return np.ones((self.n, 1)) if self.exog_z is None else self.exog_z


def _make_part(pdf, spec: _Spec, number: int):
    """The partition's ``_Part`` (None for an empty partition): its model
    built by the in-memory ``from_formula``, of which only the arrays the
    evaluations read are kept."""
    model = _build_model(pdf, spec, number)
    if model is None:
        return None
    gi = np.asarray(model._group_index)
    order = None if np.all(gi[1:] >= gi[:-1]) else np.argsort(gi, kind="stable")

    def rows(a):
        a = np.asarray(a, dtype=np.float64)
        return np.ascontiguousarray(a if order is None else a[order])

    endog, exog = rows(model.endog), rows(model.exog)
    W = np.asarray(model.exog_var, dtype=np.float64)
    # the same columns in both designs: one array serves both
    exog_var = exog if (W.shape == model.exog.shape
                        and np.array_equal(W, model.exog)) else rows(W)
    Z = model._grouped.exog_z
    exog_z = None if Z.shape[1] == 1 and np.all(Z == 1.0) else rows(Z)
    layout = model.layout
    block = layout.variance_blocks[0]
    block.exog_var = exog_var
    # cached on the partition's W (the whole data's are set per task)
    for key in ("_centring", "_centred_design"):
        block.__dict__.pop(key, None)
    return _Part(endog, exog, exog_z, layout,
                 np.asarray(model._group_sizes, dtype=np.int64),
                 np.asarray(model.group_labels),
                 (list(model.exog_names), list(model.data.exog_var_names),
                  list(model.layout.names)),
                 int(model.k_re))


def _part_stats(part):
    """Counts, column sums and ranges, QR factors and distinct W rows."""
    if part is None:
        return None
    X, W = part.exog, part.exog_var
    n = part.n
    if part.k_re == 0:
        z = (np.zeros(0), np.zeros(0), np.zeros(0))
    elif part.exog_z is None:  # a random intercept
        z = (np.array([float(n)]), np.ones(1), np.ones(1))
    else:
        Zre = part.exog_z[:, :part.k_re]
        z = (Zre.sum(axis=0), Zre.min(axis=0), Zre.max(axis=0))
    return {
        "n": n, "labels": part.labels, "sizes": part.sizes,
        "names": part.names,
        "x": (X.sum(axis=0), X.min(axis=0), X.max(axis=0)),
        "z": z,
        "w_sum": W.sum(axis=0),
        "r_x": np.linalg.qr(X, mode="r"),
        # [W, 1]: W's R factor, and whether W spans the constant
        "r_w": np.linalg.qr(np.column_stack([W, np.ones(n)]), mode="r"),
        "w_rows": _distinct_rows(W),
    }


def _distinct_rows(W, limit=_MAX_VAR_ROWS):
    """The distinct rows of W, or ``limit`` of them where it has more (the
    summary's variance table refuses more than 200).  Hashed (pandas), on
    a first block of rows first, so that a continuous column ends it
    early: np.unique(W, axis=0) sorts all rows (2.9 s of the 3.3 s the
    partition's statistics took at 1,000,000 rows)."""
    head = pd.DataFrame(W[:8 * limit]).drop_duplicates()
    if len(head) >= limit:
        return head.to_numpy()[:limit]
    return pd.DataFrame(W).drop_duplicates().to_numpy()[:limit]


def _part_nbytes(part):
    """Bytes of the row-sized arrays the partition holds, and its rows."""
    if part is None:
        return 0, 0
    return sum(a.nbytes for a in part.row_arrays()), part.n


def _layout(part, var_c):
    """The partition's layout with a copy of its variance block centred
    as the whole data's (``_set_block_centring``); the copy shares W."""
    lay = part.layout.with_copies(part.layout.variance_blocks)
    for block, value in zip(lay.variance_blocks, var_c):
        _set_block_centring(block, value)
    return lay


def _objective(part, centring):
    """The ML objective of the partition's rows, in the whole data's
    centred coordinates (``centring``: fixed effects, random effects and
    the variance block's, of ``_global_centring``).  The centred designs,
    the group index and the group sums' offsets are made here and freed with
    the task: a pass over the rows each, against the several of an
    evaluation."""
    fe_c, re_c, var_c = centring
    X = part.exog
    exog_c, F, Fi = (_engine._centred(X, X.shape[1], fe_c) if fe_c is not None
                     else (X, None, None))
    Z = part.design_z()
    exog_zc, M, Mi = (_engine._centred(Z, part.k_re, _padded(re_c, Z.shape[1]))
                      if re_c is not None else (Z, None, None))
    sizes = part.sizes
    m = sizes.size
    group_index = np.repeat(np.arange(m, dtype=np.intp), sizes)
    # the engine's own construction on the centred designs (rows sorted by
    # group: segment sums, no indicator), with the whole data's bases
    grouped = _engine.GroupedData.build(part.endog, exog_c, exog_zc, group_index, m)
    grouped = replace(grouped, exog_z=Z, fe_basis=F, fe_basis_inverse=Fi,
                      re_basis=M, re_basis_inverse=Mi)
    return HeteroskedasticObjective(grouped, _layout(part, var_c), reml=False)


def _set_block_centring(block, value):
    """A variance block's constant direction (W c = 1) and centring
    (``LogLinearVariance._centring``) set to the whole data's: those of a
    partition's or a sample's rows may differ (a group-level column
    constant in a few groups)."""
    const, centring = value
    block.const_direction = const
    if hasattr(type(block), "_centring"):
        block.__dict__["_centring"] = centring
        block.__dict__.pop("_centred_design", None)


def _evaluate_at(obj, natural, free, **kwargs):
    if free is None:
        return obj.evaluate(natural, **kwargs)
    lay = obj.layout
    return obj.evaluate(natural, factor=lay.factor_from_free(free), **kwargs)


def _pass1(part, centring, natural, free):
    """X_c'V^-1 X_c and X_c'V^-1 y of the partition (centred columns)."""
    if part is None:
        return None
    obj = _objective(part, centring)
    p = part.exog.shape[1]
    ev = _evaluate_at(obj, natural, free, fe_params=np.zeros(p))
    xtvix = ev.xtvix if ev.fe_basis is None else ev.xtvix_centred
    return xtvix, ev.group_summaries[4]


def _pass2(part, centring, natural, free, fe_params, hinv_c, info, final):
    """The partition's log-likelihood at ``fe_params``, its gradient
    reduced to the parameters and, with ``info``, its expected
    information; with ``final``, its BLUPs."""
    if part is None:
        return None
    obj = _objective(part, centring)
    lay = obj.layout
    ev = _evaluate_at(obj, natural, free, fe_params=fe_params, gradient=True,
                      info=info)
    resid_var = lay.resid_var(natural)
    if hinv_c is not None:  # REML
        extra_cov, extra_eta = _engine.reml_gradient_terms(
            obj.grouped, ev, resid_var, hinv_c)
        ev.grad_cov_centred = ev.grad_cov_centred + extra_cov
        ev.grad_cov = _engine._to_user_gradient(obj.grouped, ev.grad_cov_centred)
        ev.grad_eta = ev.grad_eta + extra_eta
    natural_grad = lay.natural_gradient(natural, ev.grad_cov, ev.grad_eta)
    out = {
        "llf": ev.llf,
        "natural": natural_grad,
        "conditioned": obj.conditioned_gradient(
            ev, natural, natural_grad, np.ones(natural.size, bool)),
        "free": (None if free is None
                 else lay.free_gradient(free, ev.grad_cov, ev.grad_eta)),
        "info": ev.info, "info_centred": ev.info_centred,
        "log_var": float(np.log(resid_var).sum()),
    }
    if final:
        out["blup"], out["cond_cov"] = ev.blup, ev.cond_cov
    return out


def _observed_part(part, centring, natural, fe_params, xtvix_c, t_var_inv):
    """The partition's part of ``DaskObjective._analytic_information``:
    the engine's analytic Hessian (ML, at the whole data's GLS fixed
    effects, with the whole data's ``X_c'V^-1 X_c``) along the in-memory
    fit's directions (the variance blocks' conditioned by ``t_var_inv``),
    and the fixed effects' score's derivatives there (``F' J_p``)."""
    if part is None:
        return None
    obj = _objective(part, centring)
    lay = obj.layout
    ev = obj.evaluate(natural, fe_params=fe_params, gradient=True)
    ev = (replace(ev, xtvix=xtvix_c) if ev.fe_basis is None
          else replace(ev, xtvix_centred=xtvix_c))
    cov_dirs, var_dirs = lay.info_directions(natural)
    if t_var_inv is not None:
        var_dirs = var_dirs @ t_var_inv
    factor = lay.factor(obj.centred(natural))
    resid_var = lay.resid_var(natural)
    hess, _ = _engine.observed_information(obj.grouped, factor, resid_var, False,
                                           cov_dirs, var_dirs, evaluation=ev)
    jac = _engine.fe_score_jacobian(obj.grouped, factor, resid_var, fe_params,
                                    cov_dirs, var_dirs, evaluation=ev)
    return hess, jac


def _log_var_sum(part, centring, natural):
    if part is None:
        return 0.0
    return float(np.log(_layout(part, centring[2]).resid_var(natural)).sum())


def _block_log_sum(part, centring, var_params):
    """Sum over the partition's rows of the log variance of its variance
    function (the only variance block of a Dask model)."""
    if part is None:
        return 0.0
    block = _layout(part, centring[2]).variance_blocks[0]
    return float(np.log(block.variance(var_params)).sum())


def dask_delayed(func):
    return _dask().delayed(func, pure=True)


def _fe_score_jacobian(part, centring, natural, fe_params):
    if part is None:
        return None
    return _objective(part, centring).fe_score_jacobian(natural, fe_params)


# Starting values: ``HeteroskedasticObjective.start`` of the whole data,
# its least-squares fits by the R factors of a tall-skinny QR (the R of
# stacked R factors is the whole data's, up to signs).
def _start_ols(part, centring):
    if part is None:
        return None
    g = _objective(part, centring).grouped
    return np.linalg.qr(np.column_stack([g.exog, g.endog]), mode="r")


def _start_resid(part, centring, beta_c):
    """Sum of squared OLS residuals and, per covariance block, each
    random-effects column's sum of squares and count of non-zero rows."""
    if part is None:
        return None
    obj = _objective(part, centring)
    g = obj.grouped
    resid = g.endog - g.exog @ beta_c
    cols = [g.exog_z[:, b.slots] for b in obj.layout.cov_blocks]
    return (float(resid @ resid),
            [((c**2).sum(axis=0), (c != 0).sum(axis=0)) for c in cols])


def _start_var(part, centring, beta_c, mean_sq):
    """R factor of [W, 1, log of squared residuals, squared residuals]
    (``LogLinearVariance.start_params``, ``AdditiveVariance``'s)."""
    if part is None:
        return None
    g = _objective(part, centring).grouped
    resid = g.endog - g.exog @ beta_c
    W = part.exog_var
    sq = resid**2
    logsq = np.log(sq + 1e-8 * mean_sq + 1e-300)
    return np.linalg.qr(np.column_stack([W, np.ones_like(sq), logsq, sq]), mode="r")


def _tsqr(factors):
    return np.linalg.qr(np.vstack([f for f in factors if f is not None]), mode="r")


# ----------------------------------------------------------------------
# The client
class DaskObjective(HeteroskedasticObjective):
    """
    The heteroskedastic LMM's ML or REML criterion of data held in the
    partitions of a Dask DataFrame, with the interface of
    :class:`~.objective.HeteroskedasticObjective` (what ``optim`` and
    ``inference`` call).  Its evaluations carry the gradient already
    reduced to the parameters (``dask_gradients``) instead of one entry
    per row.

    Parameters
    ----------
    parts : list of dask.delayed.Delayed
        The persisted ``_Part`` of each partition.
    part_centring : tuple
        The whole data's centring of the designs (``_global_centring``),
        which every task applies to its partition.
    layout : Layout
        The client's layout (its variance blocks centred as the data's).
    reml : bool
    nobs, k_fe : int
    fe_basis, fe_basis_inverse : ndarray or None
        The whole data's centring of the fixed effects' columns.
    centring : ndarray or None
        natural -> natural parameters of G_c (``Layout.centring``).
    """

    def __init__(self, parts, layout, reml, nobs, k_fe, fe_basis,
                 fe_basis_inverse, centring, progress=False, part_centring=None):
        self.parts = parts
        self.part_centring = part_centring
        self.layout = layout
        self.reml = bool(reml)
        self._nobs = int(nobs)
        self.k_fe = int(k_fe)
        self.fe_basis = fe_basis
        self.fe_basis_inverse = fe_basis_inverse
        self._centring = centring
        self._last_info = None
        self._conditioning = {}
        self._log_scale = {}
        self.progress = progress
        self.grouped = None  # no rows on the client

    @property
    def nobs(self) -> int:
        return self._nobs

    def observed_information(self, natural, mask=None, central=False):
        """The observed information.  ML with log-linear variance blocks:
        the engine's analytic Hessian, as the in-memory fit takes it, each
        partition's part summed (``_analytic_information``: one evaluation
        and the Hessian's passes, against two evaluations per parameter
        for central differences).  Else by differences of the gradient
        (REML's Hessian of log |X'V^-1 X| does not add up over
        partitions): central differences away from the boundary, accurate
        to about 1e-9, so that the two fits' SEs agree where the in-memory
        fit has the analytic Hessian; else (and where a variance is at
        zero) the in-memory fit's own forward differences."""
        natural = np.asarray(natural, dtype=np.float64)
        if self.layout.log_linear and not self.reml:
            mask = (np.ones(natural.size, bool) if mask is None
                    else np.asarray(mask, bool))
            return self._analytic_information(natural, mask, self.conditioner(mask))
        lay = self.layout
        # a singular G (a variance near zero, a correlation near +-1, as
        # the fit's warning decides it) is as near the boundary: a central
        # difference's backward step leaves the parameter space there (a
        # random slope's variance at 1.9e-7: its SE was 42% off the
        # analytic one, against 1% for forward steps)
        singular = any(b.singular(v) for b, v in
                       zip(lay.blocks, lay.parts(self.centred(natural))))
        central = central or (lay.log_linear and not singular
                              and not self.at_boundary(natural).any())
        return super().observed_information(natural, mask, central=central)

    def _analytic_information(self, natural, mask, T):
        """
        ``HeteroskedasticObjective._analytic_information`` with the rows in
        the partitions (ML).  The engine's Hessian of the profiled
        log-likelihood is a sum over groups but for its profile term
        ``J' (X'V^-1 X)^-1 J`` (``J``: the fixed effects' score's
        derivatives), quadratic in the whole data's ``J``: each partition
        (``_observed_part``) gives its Hessian, with that term of its own
        ``J_p`` and the whole data's ``X'V^-1 X``, and ``J_p``; the client
        swaps the sum of the partitions' terms for the whole data's.  The
        directions and coordinates are the in-memory fit's.
        """
        lay = self.layout
        k_cov = lay.k_cov
        T_var = T[k_cov:, k_cov:]
        conditioned = not np.array_equal(T_var, np.eye(T_var.shape[0]))
        ev = self._evaluation_at(natural)
        if ev is None or ev.info is None:
            ev = self.evaluate_natural(natural, info=True)[0]
        H = ev.xtvix if ev.fe_basis is None else ev.xtvix_centred
        outs = [o for o in self._map(_observed_part, natural, ev.fe_params, H,
                                     np.linalg.inv(T_var) if conditioned else None)
                if o is not None]
        hess_w = sum(h for h, _ in outs)
        F = ev.fe_basis
        # J of the engine's (centred) columns: fe_score_jacobian gives F' J
        Js = [j if F is None else np.linalg.solve(F.T, j) for _, j in outs]
        chol = _linalg.cholesky_equilibrated(H, "X'V^-1 X")
        J = sum(Js)
        hess_w = hess_w + J.T @ _linalg.chol_solve(chol, J)
        for Jp in Js:
            hess_w = hess_w - Jp.T @ _linalg.chol_solve(chol, Jp)
        self._last_info = (natural.copy(), ev)
        g_u = self.conditioned_gradient(ev, natural, self.natural_gradient(ev, natural),
                                        mask)
        return self._information_from_w(hess_w, mask, T, g_u, ev)

    def _map(self, func, *args):
        dask = _dask()
        task = dask.delayed(func, pure=True)
        return _compute([task(p, self.part_centring, *args) for p in self.parts],
                        self.progress)

    # ------------------------------------------------------------------
    def evaluate(self, natural, factor=None, fe_params=None, gradient=False,
                 info=False, free=None, final=False) -> _engine.Evaluation:
        """
        Two passes over the partitions (see the module docstring).

        ``free`` replaces ``factor`` (the free vector whose own factor of
        G the partitions use: each partition's layout makes it); ``final``
        also gathers the groups' BLUPs and their covariances (group-sized,
        for the results).
        """
        if factor is not None:
            raise ValueError("DaskObjective takes the free vector (free=), "
                             "not a factor of G")
        natural = np.asarray(natural, dtype=np.float64)
        free = None if free is None else np.asarray(free, dtype=np.float64)
        ones = self._map(_pass1, natural, free)
        ones = [o for o in ones if o is not None]
        xtvix_c = sum(o[0] for o in ones)
        xtvix_c = 0.5 * (xtvix_c + xtvix_c.T)
        score_c = sum(o[1] for o in ones)
        try:
            chol = _linalg.cholesky_equilibrated(xtvix_c, "X'V^-1 X")
        except _linalg.NotPositiveDefiniteError as exc:
            raise _linalg.NotPositiveDefiniteError(
                "X'V^-1 X is singular: the fixed-effects design is collinear"
            ) from exc
        beta_c = _linalg.chol_solve(chol, score_c)
        F, Fi = self.fe_basis, self.fe_basis_inverse
        beta = beta_c if F is None else Fi @ beta_c
        if fe_params is not None and not self.reml:
            beta = np.asarray(fe_params, dtype=np.float64)
        # REML: the partitions' terms take H^-1 = F F', F = L^-T (H = L L')
        hinv_c = np.linalg.inv(chol).T if self.reml else None
        twos = [t for t in self._map(_pass2, natural, free, beta, hinv_c, info,
                                     final) if t is not None]
        llf = float(sum(t["llf"] for t in twos))
        if self.reml:
            p = chol.shape[0]
            llf += 0.5 * p * np.log(2.0 * np.pi) - np.log(chol.diagonal()).sum()
        xtvix = xtvix_c if F is None else F.T @ xtvix_c @ F
        blup = cond_cov = None
        if final:
            blup = np.concatenate([t["blup"] for t in twos])
            cond_cov = np.concatenate([t["cond_cov"] for t in twos])
        ev = _engine.Evaluation(llf, beta, xtvix, blup, cond_cov, None, None,
                                fe_basis=F, xtvix_centred=None if F is None else xtvix_c)
        ev.dask_gradients = {
            key: (None if twos[0][key] is None else sum(t[key] for t in twos))
            for key in ("natural", "conditioned", "free")}
        if info:
            ev.info = sum(t["info"] for t in twos)
            ev.info_centred = sum(t["info_centred"] for t in twos)
        self._log_scale[natural.tobytes()] = (
            sum(t["log_var"] for t in twos) / self._nobs)
        return ev

    def natural_gradient(self, ev, natural) -> np.ndarray:
        return ev.dask_gradients["natural"]

    def free_value_and_gradient(self, free) -> tuple[float, np.ndarray]:
        try:
            ev = self.evaluate_free(free, gradient=True)
        except np.linalg.LinAlgError:
            return -np.inf, np.zeros_like(free)
        return ev.llf, ev.dask_gradients["free"]

    def conditioned_gradient(self, ev, natural, g, mask) -> np.ndarray:
        """The conditioned blocks' gradient (reduced by the partitions)
        where ``mask`` keeps a block whole, the natural one elsewhere."""
        lay = self.layout
        g_u = np.array(g, dtype=np.float64)
        conditioned = ev.dask_gradients["conditioned"]
        for block, sl in zip(lay.blocks, lay.block_slices):
            if mask[sl].all() and (isinstance(block, VarianceBlock)
                                   or self._centring is not None):
                g_u[sl] = conditioned[sl]
        return g_u

    def evaluate_free(self, free, **kwargs) -> _engine.Evaluation:
        """``evaluate`` at a free vector (the partitions take the factor
        of G from it)."""
        return self.evaluate(self.layout.to_natural(free), free=free, **kwargs)

    def fe_score_jacobian(self, natural, fe_params, evaluation=None) -> np.ndarray:
        return sum(j for j in self._map(_fe_score_jacobian, np.asarray(natural),
                                        np.asarray(fe_params)) if j is not None)

    def start(self) -> np.ndarray:
        """The starting values of the in-memory fit of the same data
        (``HeteroskedasticObjective.start``), from three reductions: OLS,
        the residuals' and random-effects columns' mean squares, and the
        variance function's regression of (log) squared residuals on W."""
        from scipy.linalg import solve_triangular
        from scipy.optimize import nnls

        from .structures import AdditiveVariance, StartContext
        from .structures.variance import _LOG_CHI2_1_MEAN

        lay = self.layout
        R = _tsqr(self._map(_start_ols))
        p = R.shape[1] - 1
        beta_c = np.linalg.lstsq(R[:p, :p], R[:p, p], rcond=None)[0]
        sums = [s for s in self._map(_start_resid, beta_c) if s is not None]
        mean_sq = sum(s[0] for s in sums) / self._nobs
        total = max(mean_sq, 1e-12)
        share_re = 0.25 if lay.cov_blocks else 0.0
        # each block's columns by position (a variance component's are
        # padded to its most columns in a group: the same positions in
        # every partition, fewer in some)
        z_ms = []
        for j in range(len(lay.cov_blocks)):
            width = max(s[1][j][0].size for s in sums)
            sq, nonzero = np.zeros(width), np.zeros(width)
            for s in sums:
                a, b = s[1][j]
                sq[:a.size] += a
                nonzero[:b.size] += b
            z_ms.append(np.maximum(sq / np.maximum(nonzero, 1), 1e-12))
        var_block = lay.variance_blocks[0]
        k = var_block.k
        Rv = _tsqr(self._map(_start_var, beta_c, mean_sq))[:k]
        share = 1.0 - share_re
        if isinstance(var_block, AdditiveVariance):
            var_start = nnls(Rv[:, :k], Rv[:, k + 2])[0] * share
            var_start = np.maximum(var_start, 0.05 * share * mean_sq)
        else:
            var_start = solve_triangular(Rv[:, :k], Rv[:, k + 1])
            if var_block.const_direction is not None:
                const = solve_triangular(Rv[:, :k], Rv[:, k])
                var_start = var_start + (np.log(share) - _LOG_CHI2_1_MEAN) * const
        out, j = [], 0
        for block in lay.blocks:
            if isinstance(block, VarianceBlock):
                out.append(var_start)
                continue
            values = z_ms[j]
            j += 1
            if values.size != block.slots.size:  # a variance component's
                values = np.full(block.slots.size, values.mean())
            zz = np.zeros(max(lay.q, int(block.slots.max()) + 1))
            zz[block.slots] = values
            out.append(block.start(StartContext(None, total, share_re, zz)))
        return lay.from_natural(np.concatenate(out))

    def scale(self, natural) -> float:
        natural = np.asarray(natural, dtype=np.float64)
        key = natural.tobytes()
        if key not in self._log_scale:
            self._log_scale[key] = sum(self._map(_log_var_sum, natural)) / self._nobs
        return float(np.exp(self._log_scale[key]))


# ----------------------------------------------------------------------
def _known_categories(ddf, columns):
    """The frame with the given columns categorical with the categories
    of the whole data (one reduction for all of them)."""
    if not columns:
        return ddf
    dask = _dask()
    # split_out=1: a tree reduction (the distinct values are few), no shuffle
    uniques = dask.compute(*[ddf[c].dropna().unique(split_out=1) for c in columns])
    dtypes = {}
    for col, values in zip(columns, uniques):
        values = pd.Series(np.asarray(values))
        if isinstance(ddf[col].dtype, pd.CategoricalDtype) and \
                ddf[col].cat.known:
            cats = list(ddf[col].dtype.categories)
        else:
            cats = sorted(values.tolist())
        dtypes[col] = pd.CategoricalDtype(cats, ordered=getattr(
            ddf[col].dtype, "ordered", False) or False)
    return ddf.astype(dtypes)


def _whole_groups(ddf, groups):
    """Whether every group's rows sit in one partition (the distinct
    groups counted per partition add up to the frame's)."""
    dask = _dask()
    per_part = ddf[groups].map_partitions(
        lambda s: pd.Series([s.nunique()]), meta=(groups, "int64"))
    # split_out=1: a tree reduction of the distinct labels (group-sized,
    # on a worker), no shuffle
    total, counts = dask.compute(ddf[groups].nunique(split_out=1), per_part)
    return int(np.sum(counts)) == int(total)


def from_dask(formula, ddf, groups, re_formula=None, vc_formula=None,
              var_formula=None, missing="none", *, var_by=None, var_link=None,
              eval_env=None, disp=False, **kwargs):
    """
    The model of a formula on a Dask DataFrame (see :class:`DaskHetMixedLM`
    and the documentation page "Dask").
    """
    dask = _dask()
    for key in ("var_re_formula", "re_var_formula", "variance_blocks", "subset",
                "correlation", "time", "correlation_by", "var_power",
                "var_const_power"):
        if kwargs.get(key) is not None:
            raise NotImplementedError(
                f"{key} is not available for Dask DataFrames: fit the "
                "heteroskedastic model (mean, random effects, variance "
                "components, var_formula / var_by), or load the data into "
                "pandas.")
        kwargs.pop(key, None)
    if kwargs:
        raise TypeError(f"unexpected arguments for a Dask fit: {sorted(kwargs)}")
    if not isinstance(groups, str):
        raise TypeError("groups must be the name of a column of the Dask "
                        f"DataFrame, not {type(groups).__name__}")
    if groups not in ddf.columns:
        raise ValueError(f"groups column {groups!r} is not in the Dask DataFrame "
                         f"(columns: {list(ddf.columns)})")
    if var_by is not None and var_by not in ddf.columns:
        raise ValueError(f"var_by column {var_by!r} is not in the Dask DataFrame")
    # 1. categories known to every partition
    categorical = [c for c in ddf.columns if c != groups and (
        isinstance(ddf[c].dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(ddf[c].dtype)
        or pd.api.types.is_string_dtype(ddf[c].dtype))]
    if var_by is not None and var_by not in categorical and var_by != groups:
        categorical.append(var_by)
    ddf = _known_categories(ddf, categorical)
    # 2. whole groups in each partition
    if not _whole_groups(ddf, groups):
        warnings.warn(
            f"The partitions of the Dask DataFrame split groups of {groups!r}: "
            "repartitioned by the groups column (a shuffle). Partition the "
            "data by group when writing them (e.g. sort by the groups "
            "column) to avoid it.", ValueWarning, stacklevel=3)
        ddf = ddf.shuffle(on=groups)
    # 3. the partitions' models, then the whole data's centring
    spec_kwargs = {"re_formula": re_formula, "vc_formula": vc_formula,
                   "var_formula": var_formula, "missing": missing,
                   "var_by": var_by,
                   # the workers have no caller's frame: a dict, or numpy
                   "eval_env": eval_env if isinstance(eval_env, dict) else {"np": np}}
    if var_link is not None:
        spec_kwargs["var_link"] = var_link
    spec = _Spec(formula, groups, spec_kwargs)
    build = dask.delayed(_make_part, pure=True)
    parts = [build(part, spec, j) for j, part in enumerate(ddf.to_delayed())]
    parts = list(dask.persist(*parts))
    stats = _compute([dask.delayed(_part_stats)(p) for p in parts], disp)
    sizes = [0 if s is None else s["n"] for s in stats]
    stats_ = [s for s in stats if s is not None]
    if not stats_:
        raise ValueError("The Dask DataFrame has no rows")
    names = stats_[0]["names"]
    for j, s in enumerate(stats):
        if s is not None and s["names"] != names:
            raise ValueError(
                f"Partition {j} of the Dask DataFrame gives design columns "
                f"{s['names'][0] + s['names'][1]}, partition 0 gives "
                f"{names[0] + names[1]}: a variable is categorical in some "
                "partitions only. Make it a categorical column with known "
                "categories (ddf[c].astype('category').cat.as_known()).")
    n = sum(sizes)
    labels = np.concatenate([s["labels"] for s in stats_])
    group_sizes = np.concatenate([s["sizes"] for s in stats_])
    if len(pd.unique(labels)) != len(labels):  # after a shuffle: cannot be
        raise RuntimeError("groups split across partitions after repartitioning")

    # the client's model: that of a few rows (names, blocks, formulas),
    # with the whole data's facts
    first = next(j for j, n_j in enumerate(sizes) if n_j)
    client_model = _build_model(ddf.partitions[first].head(_SAMPLE_ROWS), spec, first)
    _check_design(stats_, names, client_model, group_sizes)
    centring = _global_centring(stats_, n, client_model)
    if centring[2][0][0] is None:
        warnings.warn(
            "The variance design (exog_var / var_formula) does not span a "
            "constant, so the residual variance has no free overall scale. "
            "Add an intercept to the variance formula unless this is "
            "intended.", ValueWarning, stacklevel=3)
    return DaskHetMixedLM._make(client_model, parts, sizes, labels, group_sizes,
                                centring, stats_, disp)


def _check_design(stats, names, model, group_sizes):
    """The in-memory model's checks of the whole data: full column rank
    of X and W (on the stacked R factors of the partitions' QR), and
    groups of more than one row."""
    for key, what, cols, hint in (
            ("r_x", "The fixed-effects design (exog)", names[0],
             "Remove or recode those terms of the mean formula."),
            ("r_w", "The variance design (exog_var)", names[1],
             "Remove those terms from var_formula / exog_var.")):
        R = np.vstack([s[key] for s in stats])[:, :len(cols)]
        _linalg.check_full_rank(R, what, cols, hint)
    if len(group_sizes) < 2 and model.k_vc == 0:
        raise ValueError("groups has a single level: a mixed model needs at "
                         "least two groups.")
    if model.k_re + model.k_vc > 0 and group_sizes.max() < 2:
        raise ValueError(
            "Every group has a single observation, so the random effects "
            "cannot be told apart from the residual variance. Check the "
            "groups variable.")


def _constant_centring(sums, mins, maxs, n):
    """``_engine._centring`` of the whole data from the partitions' column
    sums and ranges: the first non-zero constant column and the means."""
    if sums.size < 2:
        return None
    constant = (mins == maxs) & (mins != 0)
    if not constant.any():
        return None
    j0 = int(np.argmax(constant))
    means = sums / n
    means[j0] = 0.0
    means[constant] = 0.0
    return j0, means


def _global_centring(stats, n, model):
    x = [np.sum([s["x"][0] for s in stats], axis=0),
         np.min([s["x"][1] for s in stats], axis=0),
         np.max([s["x"][2] for s in stats], axis=0)]
    fe_c = _constant_centring(*x, n)
    re_c = None
    if model.k_re:
        z = [np.sum([s["z"][0] for s in stats], axis=0),
             np.min([s["z"][1] for s in stats], axis=0),
             np.max([s["z"][2] for s in stats], axis=0)]
        re_c = _constant_centring(*z, n)
    return fe_c, re_c, [_variance_centring(stats, n)]


def _variance_centring(stats, n):
    """The variance function's ``const_direction`` and ``_centring`` of
    the whole data (``LogLinearVariance``'s rules), from the R factor of
    [W, 1]: c solves W c = 1 where the constant's residual is nil."""
    from scipy.linalg import solve_triangular

    R = np.linalg.qr(np.vstack([s["r_w"] for s in stats]), mode="r")
    k = R.shape[1] - 1
    const = None
    # the constant's RMS residual off W's span (in-memory: W c = 1 to 1e-8)
    if R.shape[0] <= k or abs(R[k, k]) <= 1e-8 * np.sqrt(n):
        const = solve_triangular(R[:k, :k], R[:k, k])
    centring = None
    if const is not None:
        carriers = np.flatnonzero(np.abs(const) > 1e-8)
        if len(carriers) == 1:
            j0 = int(carriers[0])
            means = np.sum([s["w_sum"] for s in stats], axis=0) / n
            means[j0] = 0.0
            centring = (j0, means)
    return const, centring


def _padded(centring, q):
    """A random-effects centring ``(j0, means of exog_re)`` for a padded
    design of ``q`` columns (the variance components' are not centred)."""
    j0, means = centring
    out = np.zeros(q)
    out[:means.size] = means
    return j0, out


class _MeanLogVariance:
    """The variance function's ``log_scale`` on the client: the mean over
    all rows of log sigma2, from W's column means (log link) or reduced
    over the partitions."""

    def __init__(self, nobs, w_mean, parts, centring):
        self.nobs, self.w_mean, self.parts = nobs, w_mean, parts
        self.centring = centring

    def __call__(self, var_params):
        if self.w_mean is not None:
            return float(self.w_mean @ var_params)
        if self.parts is None:
            raise ValueError("the mean log variance needs the Dask data")
        sums = _compute([dask_delayed(_block_log_sum)(p, self.centring, var_params)
                         for p in self.parts])
        return float(sum(sums) / self.nobs)

    def __getstate__(self):
        return {**self.__dict__, "parts": None}


class _Grouping:
    """What the results read of the model's grouped data on the client:
    the random-effects centring (for the fit's warnings)."""

    def __init__(self, re_basis):
        self.re_basis = re_basis


class DaskHetMixedLM(HetMixedLM):
    """
    A :class:`~statsmodels_hetmixed.HetMixedLM` whose data stay in the
    partitions of a Dask DataFrame (``hetmixedlm(formula, ddf, ...)``).

    Its ``fit`` returns the usual results (``summary``, ``params``,
    ``bse``, ``wald_test``, ``random_effects``, ``predict`` on new
    pandas or Dask data); what needs the fitted rows themselves
    (``fittedvalues``, ``resid``, small-sample ``ddf``, cluster-robust
    covariances, profile refits) is not available: predict on the Dask
    DataFrame instead (``results.predict(ddf)``).
    """

    @classmethod
    def from_formula(cls, formula, data, re_formula=None, vc_formula=None,
                     var_formula=None, subset=None, use_sparse=False,
                     missing="none", *args, **kwargs) -> "DaskHetMixedLM":
        """
        The model of formulas on a Dask DataFrame (arguments as
        :meth:`HetMixedLM.from_formula`; ``groups`` must be a column name).

        Builds every partition's designs on the workers and keeps them
        there (persisted); a few reductions collect the categories of the
        string and categorical columns, check that partitions hold whole
        groups (if not, the frame is shuffled on the groups column, with a
        ``ValueWarning``) and the designs' rank.  ``disp=True`` shows Dask's
        progress while the partitions are built.  Not available:
        ``subset``, random scale effects (``var_re_formula``,
        ``re_var_formula``) and extra ``variance_blocks``.
        """
        if args:
            raise TypeError("give DaskHetMixedLM.from_formula's options as keywords")
        if "groups" not in kwargs:
            raise TypeError("'groups' is a required keyword argument of from_formula")
        if use_sparse:
            raise NotImplementedError("use_sparse is not available for Dask fits")
        return from_dask(formula, data, kwargs.pop("groups"), re_formula=re_formula,
                         vc_formula=vc_formula, var_formula=var_formula,
                         missing=missing, subset=subset, **kwargs)

    @classmethod
    def _make(cls, model, parts, sizes, labels, group_sizes, centring,
              stats, disp):
        model.__class__ = cls
        model._partition = False
        model._dask_parts = parts
        model._dask_sizes = sizes
        order = np.argsort(labels, kind="stable")
        model._dask_order = order
        model.group_labels = labels[order].tolist()
        model.n_groups = len(labels)
        model._group_sizes = group_sizes[order]
        model.nobs = model.n_totobs = int(sum(sizes))
        model._dask_progress = bool(disp)
        model._dask_part_centring = centring
        fe_c, re_c, var_c = centring
        k = model.exog.shape[1]
        F = Fi = None
        if fe_c is not None:
            one = np.asarray(model.exog)[0, fe_c[0]]
            shift = fe_c[1]
            F, Fi = np.eye(k), np.eye(k)
            F[fe_c[0]] += shift / one
            Fi[fe_c[0]] -= shift / one
        model._dask_fe_basis = (F, Fi)
        M = None
        if re_c is not None:
            j0, means = _padded(re_c, model._grouped.exog_z.shape[1])
            M = np.eye(means.size)
            M[j0] += means / np.asarray(model.exog_re)[0, j0]
        model._grouped = _Grouping(M)
        model._dask_centring = (None if M is None
                                else model.layout.centring(M))
        for block, value in zip(model.layout.variance_blocks, var_c):
            _set_block_centring(block, value)
        # the mean log variance of the whole data (Layout.log_scale): from
        # W's column means for the log link, else a reduction
        w_mean = np.sum([s["w_sum"] for s in stats], axis=0) / model.nobs
        vf = model.variance_function
        vf.log_scale = _MeanLogVariance(
            model.nobs, w_mean if isinstance(vf, LogLinearVariance) else None,
            parts, centring)
        # the summary's distinct rows of W, of the whole data
        rows = np.unique(np.vstack([s["w_rows"] for s in stats]), axis=0)
        model.variance_function.exog_var = rows
        model.variance_function.nobs = model.nobs
        # no rows on the client; a random intercept's design stays one
        # row of ones (what predictions on new data look for)
        intercept = (model.k_re == 1 and model.exog_re is not None
                     and np.all(model.exog_re == 1))
        for name in ("endog", "exog", "exog_re", "groups", "row_indices",
                     "_group_index"):
            setattr(model, name, None)
        if intercept:
            model.exog_re = np.ones((1, 1))
        return model

    def __getstate__(self):
        # pickled to the workers for predictions: without the partitions
        state = super().__getstate__()
        state["_dask_parts"] = None
        return state

    def _objective(self, reml=None):
        if self._dask_parts is None:
            raise ValueError("This Dask model was unpickled without its data: "
                             "build it again from the Dask DataFrame.")
        reml = self.reml if reml is None else reml
        F, Fi = self._dask_fe_basis
        obj = DaskObjective(self._dask_parts, self.layout, reml, self.nobs,
                            self.k_fe, F, Fi, self._dask_centring,
                            progress=self._dask_progress,
                            part_centring=self._dask_part_centring)
        obj._sizes = self._dask_sizes
        return obj

    def _dask_row_nbytes(self) -> int:
        """Bytes of the row-sized arrays the partitions hold on the workers
        (``_Part.row_arrays``; one small reduction)."""
        return int(sum(b for b, _ in _compute(
            [dask_delayed(_part_nbytes)(p) for p in self._dask_parts])))

    def fit(self, start_params=None, reml=True, **kwargs):
        """As :meth:`HetMixedLM.fit`, without ``ddf`` and
        ``cov_type="cluster"`` (they need the rows on the client).
        ``disp=True`` also shows Dask's progress."""
        if kwargs.get("ddf") is not None:
            raise NotImplementedError(
                "ddf (small-sample inference) is not available for Dask "
                "fits: with data this large the z-tests are the same.")
        if kwargs.get("cov_type", "nonrobust") != "nonrobust":
            raise NotImplementedError(
                "cov_type='cluster' is not available for Dask fits.")
        for key in ("fe_pen", "cov_pen"):
            if kwargs.get(key) is not None:
                raise NotImplementedError(f"{key} is not available for Dask fits")
        self._dask_progress = bool(kwargs.get("disp", False))
        res = super().fit(start_params=start_params, reml=reml, **kwargs)
        # the groups' BLUPs (group-sized), in the order of group_labels
        ev = self._objective(reml).evaluate(
            res._results._natural, final=True)
        order = self._dask_order
        res._results._blup = ev.blup[order]
        res._results._cond_cov = ev.cond_cov[order]
        return res

    def loglike(self, params, profile_fe=True):
        _, natural = self._split_any(params)
        return self._objective().evaluate(natural).llf
