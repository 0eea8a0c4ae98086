"""
The heteroskedastic LMM's log-likelihood as an objective on a layout.

:class:`HeteroskedasticObjective` joins the Gaussian engine
(:mod:`._engine`: the per-group passes over the rows) and a
:class:`~.structures.Layout` (the blocks that map parameters to G and to
the residual variances).  It gives the value, the analytic gradient on the
natural and the free scales, the analytic expected information and the
observed information, for ML or REML.  It knows no structure by name and
no optimiser; :mod:`.optim` maximises it, and the location-scale model
uses it for its starting values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import _correlated, _engine, _hessian, _linalg
from .structures import CovarianceBlock, Layout, StartContext, VarianceBlock
from .structures.variance import LogLinearVariance

__all__ = ["HeteroskedasticObjective", "ObservedInformation"]


@dataclass
class ObservedInformation:
    """
    The observed information at an estimate, held in the conditioned
    coordinates ``u = T natural`` where it was computed, with what the
    fitter and inference need in the natural ones.

    Attributes
    ----------
    hess_u : ndarray (k, k)
        Hessian of the log-likelihood in ``u`` (zero outside the mask).
    conditioner : ndarray (k, k)
        T, block diagonal.
    grad_u : ndarray (k,)
        Gradient in ``u``.
    evaluation : _engine.Evaluation
        At the estimate.
    """

    hess_u: np.ndarray
    conditioner: np.ndarray
    grad_u: np.ndarray
    evaluation: _engine.Evaluation

    @property
    def hessian(self) -> np.ndarray:
        """The Hessian in the natural parameters, T' H_u T."""
        T = self.conditioner
        return T.T @ self.hess_u @ T

    @property
    def gradient(self) -> np.ndarray:
        """The gradient in the natural parameters, T' g_u."""
        return self.conditioner.T @ self.grad_u

    def covariance(self, idx, pseudo=False) -> np.ndarray:
        """
        Inverse observed information of the natural parameters ``idx``
        (whole conditioned blocks), T^-1 (-H_u)^-1 T^-T; with ``pseudo``
        the pseudo-inverse, for an information that is not positive
        definite.

        Raises LinAlgError when -H_u is not positive definite there
        (unless ``pseudo``).
        """
        idx = np.asarray(idx)
        info = -self.hess_u[np.ix_(idx, idx)]
        if pseudo:
            inverse = np.linalg.pinv(info)
        else:
            np.linalg.cholesky(info)
            inverse = np.linalg.inv(info)
        return _linalg.back_transform(self.conditioner[np.ix_(idx, idx)], inverse)


class HeteroskedasticObjective:
    """
    Log-likelihood (or REML criterion) of the heteroskedastic LMM.

    Parameters
    ----------
    grouped : _engine.GroupedData
        Response, fixed-effects design and padded random-effects design,
        with the group structure.
    layout : Layout
        The model's blocks.
    reml : bool
        REML criterion if True, else the log-likelihood.
    var_columns : slice, optional
        The columns of the fixed-effects design that the (single) variance
        block's design W is, ``W = X[:, var_columns]`` (the model's
        ``_exog_var_columns``): W's centred columns W T^-1 are then the
        engine's centred columns of X there, which the expected and the
        observed information take as their directions (and the engine's
        pass over X gives the block's conditioned gradient) instead of
        forming them (``_centred_var_columns``).
    """

    #: (see ``var_columns``; None also for subclasses with their own rows)
    var_columns: slice | None = None

    def __init__(self, grouped: _engine.GroupedData, layout: Layout, reml: bool,
                 var_columns: slice | None = None) -> None:
        self.grouped = grouped
        self.layout = layout
        self.reml = bool(reml)
        self.var_columns = var_columns
        self._last_info = None  # (natural, evaluation with the information)
        # row-sized arrays of a released evaluation, which the next one
        # writes its results into (the engine's ``reuse``)
        self._spare_rows = []
        self._resid_var_array = None  # the last evaluation's, reused
        # the variance directions as a correlation structure's buckets read
        # them (``_bucket_directions``)
        self._kept_directions = None
        self._conditioning = {}  # the conditioning maps' inverses, by masks
        # natural -> the natural parameters of the centred effects'
        # covariance G_c = M_z G M_z' (grouped.re_basis), what the engine
        # takes a factor of; None without centred random-effects columns
        basis = grouped.re_basis
        self._centring = None if basis is None else layout.centring(basis)

    @property
    def nobs(self) -> int:
        return self.grouped.nobs

    # ------------------------------------------------------------------
    def evaluate(self, natural, factor=None, fe_params=None, gradient=False,
                 info=False) -> _engine.Evaluation:
        """
        Engine evaluation at a natural vector (without fixed effects).

        ``factor`` replaces the layout's factor of G (the optimiser's own
        Cholesky factor, which a singular G has too); ``fe_params`` (ML)
        holds the fixed effects instead of profiling them out; ``info``
        adds the expected information (needs ``gradient``).

        The engine takes a factor of the centred effects' covariance G_c
        (``GroupedData.re_basis``): factored from G_c itself, or M_z L for
        a given factor L of G.
        """
        lay = self.layout
        basis = self.grouped.re_basis
        if factor is None:
            factor = lay.factor(self.centred(natural))
        elif basis is not None:
            factor = basis @ factor
        directions = lay.info_directions(natural) if info else None
        centred_var = self._centred_var_columns() if info else None
        if centred_var is not None:
            # the engine takes the variance directions' centred columns
            # W T^-1 as its own X_c columns, in the pass over X it makes
            # anyway; its information is then in u = T a, and in a it is
            # R' I_u R (R: T on the variance block)
            directions = (directions[0], centred_var[0])
        corr = lay.correlation_block
        if corr is None:
            # resid_var is made for this call (into the last call's array,
            # which no evaluation holds): the engine may write over it
            resid_var, log_sum = lay.resid_var_into(natural, self._resid_var_array)
            reuse, self._spare_rows = [resid_var, *self._spare_rows], []
            self._resid_var_array = None
            ev = _engine.evaluate(self.grouped, factor, resid_var,
                                  self.reml, fe_params=fe_params, gradient=gradient,
                                  info_directions=directions, reuse=reuse,
                                  log_resid_var_sum=log_sum)
            if _engine._spare_rows(resid_var, self.nobs):
                self._resid_var_array = resid_var
            del resid_var, reuse
        else:  # correlated residuals: the engine on whitened rows
            if directions is not None:
                directions = (directions[0], self._bucket_directions(directions[1]))
            resid_var, log_sum = lay.resid_var_into(natural, None)
            ev = _correlated.evaluate(
                self.grouped, corr, np.asarray(natural)[lay.corr_natural], factor,
                resid_var, self.reml, fe_params=fe_params,
                gradient=gradient, info_directions=directions,
                log_resid_var_sum=log_sum)
        if info:
            if centred_var is not None:
                R = np.eye(ev.info.shape[0])
                k_cov, T_var = lay.k_cov, centred_var[1]
                R[k_cov:k_cov + len(T_var), k_cov:k_cov + len(T_var)] = T_var
                ev.info = R.T @ ev.info @ R
            self._natural_information(ev)
        return ev

    def _natural_information(self, ev) -> None:
        """``ev.info`` (the engine's, in the natural parameters of G_c) to
        the natural parameters, kept as ``ev.info_centred``: the blocks'
        own directions are those of G_c's natural parameters, v = C natural
        (``centred``), where the information is computed without the
        cancellation of the natural coordinates; the natural parameters'
        is C' I_v C."""
        ev.info_centred = ev.info
        if self._centring is not None:
            ev.info = self._centring.T @ ev.info @ self._centring

    @property
    def defers_information(self) -> bool:
        """Whether Fisher scoring may evaluate points near the optimum
        without the expected information, scoring the steps with one
        computed a little earlier (``optim.fisher_scoring``): AR(1) / CAR(1)
        residuals, whose information costs more than the rest of an
        evaluation, and of which the observed information at the estimate
        reads only the rows of G's parameters, computed from an evaluation
        without it (``_correlated.cov_information_rows``)."""
        corr = self.layout.correlation_block
        return corr is not None and _correlated.has_observed_information(corr)

    def _bucket_directions(self, var_dirs):
        """The variance directions by bucket of the correlation structure
        (``_correlated.BucketDirections``), kept while they are the same
        array (a log-linear variance function's W)."""
        kept = self._kept_directions
        if kept is None or kept.source is not var_dirs:
            kept = _correlated.BucketDirections(self.layout.correlation_block, var_dirs)
            self._kept_directions = kept
        return kept

    def fe_score_jacobian(self, natural, fe_params, evaluation=None) -> np.ndarray:
        """d (X'V^-1 (y - X b)) / d natural at fixed ``fe_params``: the
        cross block of the Hessian in the fixed effects and the natural
        parameters, (k_fe, k_structure).  ``evaluation``: the engine's at
        ``natural`` and ``fe_params``, whose per-group sums it reuses where
        it can (``_engine.fe_score_jacobian``)."""
        lay = self.layout
        if lay.correlation_block is not None:
            raise NotImplementedError("the fixed effects' score Jacobian is not "
                                      "available with correlated residuals")
        cov_dirs, var_dirs = lay.info_directions(natural)
        return _engine.fe_score_jacobian(
            self.grouped, lay.factor(self.centred(natural)), lay.resid_var(natural),
            fe_params, _engine.centred_directions(self.grouped, cov_dirs), var_dirs,
            evaluation=evaluation)

    def natural_gradient(self, ev: _engine.Evaluation, natural) -> np.ndarray:
        """d llf / d natural from an evaluation with the gradient; the
        variance block's W'g as T' (W_c'g) where the engine took W_c'g
        (``Evaluation.grad_var_centred``; W = W_c T): no pass over W."""
        known = None
        if ev.grad_var_centred is not None:
            known = self._centred_var_columns()[1].T @ ev.grad_var_centred
        return self.layout.natural_gradient(natural, ev.grad_cov, ev.grad_eta,
                                            ev.grad_corr, variance_gradient=known)

    def evaluate_natural(self, natural, info=False):
        """(Evaluation with the gradient, d llf / d natural); one with the
        expected information is kept for ``observed_information`` (its
        difference directions, or the analytic one's evaluation at the
        estimate), and so is one without it where the observed information
        can do without it (``defers_information``)."""
        ev = self.evaluate(natural, gradient=True, info=info)
        if info or self.defers_information:
            self._last_info = (np.array(natural, copy=True), ev)
        return ev, self.natural_gradient(ev, natural)

    def evaluate_free(self, free, **kwargs) -> _engine.Evaluation:
        """``evaluate`` at a free vector, with the layout's factor of G
        from it (which a singular G has too)."""
        lay = self.layout
        return self.evaluate(lay.to_natural(free), factor=lay.factor_from_free(free),
                             **kwargs)

    def free_value_and_gradient(self, free) -> tuple[float, np.ndarray]:
        """The log-likelihood and its gradient on the free scale; -inf
        where the engine cannot evaluate (a collinear GLS system) and
        where the correlation structure rejects the point: the free scale
        of Toeplitz(q) and banded(q) also reaches correlations that are not
        positive definite over all times, outside the model, though each
        group's own matrix may be (a BFGS fit of banded(2) ended at a
        matrix with eigenvalue -0.06)."""
        lay = self.layout
        corr = lay.correlation_block
        if corr is not None and not corr.free_scale_admissible and \
                not corr.admissible(lay.to_natural(free)[lay.corr_natural]):
            return -np.inf, np.zeros_like(free)
        try:
            ev = self.evaluate_free(free, gradient=True)
        except np.linalg.LinAlgError:
            return -np.inf, np.zeros_like(free)
        return ev.llf, lay.free_gradient(free, ev.grad_cov, ev.grad_eta,
                                         ev.grad_corr)

    # ------------------------------------------------------------------
    # Conditioned coordinates u = T natural (the blocks' conditioners):
    # where scoring steps are solved and the observed information taken.
    def centred(self, natural) -> np.ndarray:
        """The natural vector with the covariance blocks' parameters those
        of the centred effects' G_c = M_z G M_z' (``GroupedData.re_basis``)
        where the engine centres the random-effects columns."""
        natural = np.asarray(natural, dtype=np.float64)
        return natural if self._centring is None else self._centring @ natural

    def admissible(self, natural) -> bool:
        """Whether the blocks accept ``natural``, the covariance matrices
        judged as G_c (``centred``): whether G is semi-definite is decided
        on G_c's correlations, which the origin of a random slope's
        covariate leaves within rounding of +-1 in G."""
        return self.layout.admissible(self.centred(natural))

    def conditioner(self, mask) -> np.ndarray:
        """T, block diagonal: each block's conditioner (a variance block's
        ``conditioner``, a covariance block's centring, ``centred``) where
        ``mask`` keeps all its parameters, else the identity (a held
        parameter keeps its natural coordinate)."""
        lay = self.layout
        T = np.eye(lay.k_structure)
        for block, sl in zip(lay.blocks, lay.block_slices):
            if not mask[sl].all():
                continue
            if isinstance(block, VarianceBlock):
                T[sl, sl] = block.conditioner()
            elif self._centring is not None and isinstance(block, CovarianceBlock):
                T[sl, sl] = self._centring[sl, sl]
        return T

    def conditioner_inverse(self, mask, work) -> np.ndarray:
        """(T_w)^-1 for the rows and columns ``work`` of
        ``conditioner(mask)``: what takes a step solved in the conditioned
        coordinates back to the natural ones; inverted once per masks (it
        depends on nothing else)."""
        mask = np.asarray(mask, bool)
        work = np.asarray(work)
        key = ("T", mask.tobytes(), work.tobytes())
        if key not in self._conditioning:
            T = self.conditioner(mask)
            self._conditioning[key] = np.linalg.inv(T[np.ix_(work, work)])
        return self._conditioning[key]

    def conditioned_information(self, ev, mask, work=None) -> np.ndarray:
        """
        The expected information of an evaluation with it in the
        coordinates ``u = conditioner(mask) natural``, over the entries
        ``work`` (all by default; the other entries held): from the
        engine's information in G_c's coordinates (``ev.info_centred``),
        by the map S from those to u (``u = S v``): the identity on the
        covariance blocks that ``mask`` keeps whole, a variance block's
        conditioner, C^-1 on a covariance block with held parameters.
        Transforming the natural information instead would cancel to
        nothing when C is ill conditioned (a slope's covariate 1e7 from
        its origin: C spans 1e14).
        """
        mask = np.asarray(mask, bool)
        work = np.arange(mask.size) if work is None else np.asarray(work)
        key = ("S", mask.tobytes(), work.tobytes())
        if key not in self._conditioning:  # S depends on the masks only
            S = self._conditioning_map(mask)
            ix = np.ix_(work, work)
            self._conditioning[key] = (np.linalg.inv(S[ix]), ix)
        S_inv, ix = self._conditioning[key]
        info = S_inv.T @ ev.info_centred[ix] @ S_inv
        return 0.5 * (info + info.T)

    def _conditioning_map(self, mask) -> np.ndarray:
        """S with u = S v, from the natural parameters of G_c (v, the
        engine's coordinates) to the conditioned ones (``conditioner``):
        the identity on the covariance blocks that ``mask`` keeps whole,
        C^-1 on a covariance block with held parameters, a variance
        block's conditioner (other blocks: the identity)."""
        S = self.conditioner(mask)
        if self._centring is not None:
            for block, sl in zip(self.layout.blocks, self.layout.block_slices):
                if isinstance(block, CovarianceBlock):
                    S[sl, sl] = (np.eye(block.k) if mask[sl].all()
                                 else np.linalg.inv(self._centring[sl, sl]))
        return S

    def conditioned_gradient(self, ev, natural, g, mask) -> np.ndarray:
        """d llf / du from an evaluation (natural gradient ``g``): the
        conditioned blocks' own gradient, which does not cancel (a
        covariance block's from d llf / dG_c)."""
        lay = self.layout
        g_u = np.array(g, dtype=np.float64)
        for block, sl in zip(lay.blocks, lay.block_slices):
            if not mask[sl].all():
                continue
            if isinstance(block, VarianceBlock):
                # taken by the engine in its pass over X where W_c is
                # columns of X (``_centred_var_columns``; one such block)
                g_u[sl] = (block.conditioned_gradient(natural[sl], ev.grad_eta)
                           if ev.grad_var_centred is None else ev.grad_var_centred)
            elif self._centring is not None and isinstance(block, CovarianceBlock):
                ix = np.ix_(block.slots, block.slots)
                g_u[sl] = block.natural_gradient(ev.grad_cov_centred[ix])
        return g_u

    # ------------------------------------------------------------------
    # Observed information, by the one Hessian routine (_hessian): forward
    # differences of the analytic gradient along directions that whiten the
    # analytic expected information, so that it does not depend on the
    # units or origin of the covariates.
    def observed_information(self, natural, mask=None, central=False
                             ) -> "ObservedInformation":
        """
        The observed information of the log-likelihood (profiled over the
        fixed effects) in the natural parameters ``mask`` marks, and the
        evaluation at ``natural``; by central differences with ``central``
        (twice the gradients, accurate to about 1e-9 instead of 1e-5; not
        at the boundary, where a step would leave the parameter space).

        It is differenced in the blocks' conditioned coordinates
        ``u = T natural`` (``conditioner``: centred covariates), where the
        gradient does not cancel, along directions that whiten the expected
        information there; a block with a held parameter keeps its natural
        coordinates.  ``central`` differences take twice the gradients and
        cut the truncation error from about 1e-5 to about 1e-10 relative
        (score tests, whose statistic is compared with a direct
        computation, use them).
        """
        mask = np.ones(natural.size, bool) if mask is None else np.asarray(mask, bool)
        T = self.conditioner(mask)
        # the engine's analytic Hessian is one more pass over the rows; an
        # objective without them here (a Dask fit's) differences gradients
        if self.grouped is not None and self._has_analytic_information():
            return self._analytic_information(natural, mask, T)
        T_inv = np.linalg.inv(T)

        def grad_u(u):
            x = T_inv @ u
            ev, g = self.evaluate_natural(x)
            return self.conditioned_gradient(ev, x, g, mask), ev

        with_info = self._nearby_information(natural)
        if with_info is None:
            with_info = self.evaluate_natural(natural, info=True)[0]
        u0 = T @ natural
        g0_u, ev0 = grad_u(u0)
        info_u = self.conditioned_information(with_info, mask)
        idx = np.flatnonzero(mask)
        basis = _hessian.whitening_basis(
            info_u[np.ix_(idx, idx)], self._typical_size(natural, u0)[idx],
            bounded=self.at_boundary(natural)[idx])
        try:
            hess_u = _hessian.hessian(lambda u: grad_u(u)[0], u0, g0_u, basis, free=mask,
                                      central=central)
        except np.linalg.LinAlgError:
            # steps both ways leave the parameter space (a correlation
            # matrix singular to within the step): no Hessian, and the
            # fit is not converged (standard errors NaN)
            hess_u = np.full((natural.size, natural.size), np.nan)
        return ObservedInformation(hess_u, T, g0_u, ev0)

    def _has_analytic_information(self) -> bool:
        """Whether the observed information is analytic: every variance
        block log-linear, and residuals independent or with a correlation
        structure ``_correlated.observed_information`` covers (AR(1),
        CAR(1)); other structures difference the gradient."""
        lay = self.layout
        corr = lay.correlation_block
        return (all(b.log_linear for b in lay.variance_blocks)
                and (corr is None or _correlated.has_observed_information(corr)))

    def _analytic_information(self, natural, mask, T) -> "ObservedInformation":
        """
        ``observed_information`` from the engine's analytic Hessian
        (``_engine.observed_information``; every variance block
        log-linear), or its counterpart for AR(1) / CAR(1) residuals
        (``_correlated.observed_information``, the correlation parameters
        in their natural coordinates).  The engine takes it along directions w: the natural
        parameters of G_c for the covariance blocks, the conditioned ones
        u of the variance blocks (their directions d log sigma2 / du =
        W T^-1, the centred columns: the Hessian in the natural ones would
        cancel there as the gradient does).  The map from w to u is linear
        (``_conditioning_map`` on the covariance blocks), so the Hessian
        carries as S^-T H_w S^-1.
        """
        lay = self.layout
        natural = np.asarray(natural, dtype=np.float64)
        k_cov = lay.k_cov
        cov_dirs, var_dirs = lay.info_directions(natural)
        natural_var_dirs = var_dirs
        k_var = var_dirs.shape[1]
        T_var = T[k_cov:k_cov + k_var, k_cov:k_cov + k_var]
        conditioned = not np.array_equal(T_var, np.eye(k_var))
        if conditioned:
            var_dirs = self._conditioned_directions(var_dirs, T_var)
        R = np.eye(T.shape[0])    # from w to G_c's and the natural coordinates
        R[k_cov:k_cov + k_var, k_cov:k_cov + k_var] = T_var
        corr = lay.correlation_block
        if corr is not None:
            # the evaluation at the estimate (the last scoring step's), and
            # the rows of G's parameters of its expected information (what
            # the formula reads), taken to w: R is the identity on G's
            # block, so they are rows @ R^-1
            ev = self._evaluation_at(natural)
            if ev is None or getattr(ev, "whitened", None) is None:
                ev = self.evaluate(natural, gradient=True, info=True)
            resid_var = lay.resid_var(natural)
            if ev.info is None:   # scoring's last steps went without it
                info_rows = _correlated.cov_information_rows(
                    self.grouped, corr, ev, resid_var, cov_dirs, natural_var_dirs)
            else:
                info_rows = ev.info_centred[:k_cov]
            hess_w = _correlated.observed_information(
                self.grouped, corr, ev, resid_var, self.reml,
                cov_dirs, var_dirs, info_rows @ np.linalg.inv(R))
            ev.whitened = None   # the whitened rows are not kept with the results
            g_u = self.conditioned_gradient(ev, natural,
                                            self.natural_gradient(ev, natural), mask)
        else:
            # the evaluation at the estimate (the last scoring step's) unless
            # none is kept, or an earlier call kept it without its rows
            ev = self._evaluation_at(natural)
            if ev is None or ev.grad_eta is None:
                ev = self.evaluate(natural, gradient=True)
            # the gradient first: its rows (grad_eta) are then released
            # before the information's passes, the fit's peak memory
            g_u = self.conditioned_gradient(ev, natural,
                                            self.natural_gradient(ev, natural), mask)
            ev, self._last_info = replace(ev, grad_eta=None), None
            hess_w, ev = _engine.observed_information(
                self.grouped, lay.factor(self.centred(natural)),
                self._resid_var_once(natural), self.reml, cov_dirs, var_dirs,
                evaluation=ev)
            if conditioned:
                ev.info = R.T @ ev.info @ R
            ev.info_centred = ev.info
            if self._centring is not None:
                ev.info = self._centring.T @ ev.info @ self._centring
        self._last_info = (natural.copy(), ev)
        return self._information_from_w(hess_w, mask, T, g_u, ev)

    def _centred_var_columns(self):
        """
        ``(cols, T)`` where the variance block's centred design W T^-1 is
        the engine's centred columns ``grouped.exog[:, cols]``, else None.

        A single log-linear block (its directions d log sigma2 / da are W)
        whose W is columns of the fixed-effects design (``var_columns``),
        with an intercept (T, its ``conditioner``, not the identity): then
        W T^-1 = W - 1 m' (m the columns' means, 0 for the intercept) is
        the engine's X_c = X M^-1 (X's columns less their means, its
        intercept kept) there.
        """
        lay, cols = self.layout, self.var_columns
        if (cols is None or self.grouped.fe_basis is None
                or lay.correlation_block is not None
                or len(lay.variance_blocks) != 1
                or not isinstance(lay.variance_blocks[0], LogLinearVariance)):
            return None
        T_var = lay.variance_blocks[0].conditioner()
        if np.array_equal(T_var, np.eye(len(T_var))):
            return None
        return cols, T_var

    def _conditioned_directions(self, var_dirs, T_var) -> np.ndarray:
        """
        The variance blocks' directions in the conditioned coordinates,
        W T^-1 (W = ``var_dirs``), in Fortran order as the engine's
        designs: a view of the engine's centred X where they are its
        columns (``_centred_var_columns``), not an n x k copy (320 MB at
        10,000,000 rows and four columns).
        """
        centred_var = self._centred_var_columns()
        if centred_var is not None:
            return self.grouped.exog[:, centred_var[0]]
        return _engine.rows_matmul(var_dirs, np.linalg.inv(T_var))

    def _resid_var_once(self, natural) -> np.ndarray:
        """The residual variances for one call that drops them, written
        into the evaluations' array (``_resid_var_array``, taken: no
        reference is kept here, so the callee frees it)."""
        spare, self._resid_var_array = self._resid_var_array, None
        return self.layout.resid_var_into(natural, spare)[0]

    def _information_from_w(self, hess_w, mask, T, g_u, ev) -> "ObservedInformation":
        """The engine's Hessian along the directions w (``_analytic_information``)
        in the conditioned coordinates u: ``S^-T H_w S^-1``, with S the
        covariance blocks' conditioning map (w is u for the variance
        blocks), the held parameters' rows and columns zero."""
        k_cov = self.layout.k_cov
        S = self._conditioning_map(mask)
        S[k_cov:, k_cov:] = np.eye(S.shape[0] - k_cov)  # w is u there
        S_inv = np.linalg.inv(S)
        idx = np.flatnonzero(mask)
        hess_u = np.zeros_like(hess_w)
        hess_u[np.ix_(idx, idx)] = (S_inv.T @ hess_w @ S_inv)[np.ix_(idx, idx)]
        return ObservedInformation(0.5 * (hess_u + hess_u.T), T, g_u, ev)

    def release_evaluation(self) -> None:
        """Forget the evaluation kept for the observed information (the
        optimiser calls this when it moves on from a point, holding no
        other reference to that evaluation): the next evaluation writes
        its row-sized results into its arrays (the residuals, V^-1 r, the
        gradient rows and REML's rows) instead of new ones."""
        last, self._last_info = self._last_info, None
        if last is not None and self.layout.correlation_block is None:
            ev = last[1]
            self._spare_rows = [ev.resid_marginal, ev.vinv_resid, ev.grad_eta,
                                ev.reml_row_terms]

    def _evaluation_at(self, natural):
        """The evaluation last kept by ``evaluate_natural`` (by Fisher
        scoring, usually the last step; with the expected information, or
        where ``defers_information`` perhaps without) if it was at
        ``natural``, to rounding (the round trip through the free scale, a
        few units in the last place), else None."""
        last = self._last_info
        if last is None or last[0].shape != natural.shape:
            return None
        close = np.abs(last[0] - natural) <= 1e-14 * np.abs(natural)
        return last[1] if close.all() else None

    def _nearby_information(self, natural):
        """
        The evaluation with the expected information last computed (by
        Fisher scoring, usually at this very point) if it was within 0.1
        standard errors of ``natural`` (a distance in its own metric, free
        of units), else None.  The difference directions need only an approximate
        information, and computing it costs twice a gradient evaluation.
        """
        last = self._last_info
        if last is None or last[0].shape != natural.shape:
            return None
        info = getattr(last[1], "info_centred", None)
        if info is None:
            return None
        delta = self.centred(natural) - self.centred(last[0])
        dist2 = float(delta @ info @ delta)
        return last[1] if np.isfinite(dist2) and dist2 <= 1e-2 else None

    def _typical_size(self, natural, values):
        """Typical size of each parameter (the step unit where the
        information gives none): the absolute value of ``values`` (the
        parameters in the differenced coordinates), floored by a thousandth
        of the residual scale (covariances) or 1 (the variance blocks'
        parameters)."""
        floor = np.full(natural.size, 1e-3 * self.scale(natural))
        floor[self.layout.var_natural] = 1.0
        return np.maximum(np.abs(values), floor)

    def free_basis(self, free, mask):
        """
        Difference directions on the free scale over the entries ``mask``
        marks: they whiten the expected information there (``J' I J``,
        J = d natural / d free); None where the likelihood is not defined.
        """
        lay = self.layout
        try:
            ev = self.evaluate_free(free, gradient=True, info=True)
        except np.linalg.LinAlgError:
            return None
        jac = lay.natural_jacobian(free)
        idx = np.flatnonzero(mask)
        info = (jac.T @ ev.info @ jac)[np.ix_(idx, idx)]
        return _hessian.whitening_basis(info, np.maximum(np.abs(free[idx]), 1e-2))

    def free_hessian(self, free, mask, basis, g0):
        """Hessian of the log-likelihood on the free scale over the
        entries ``mask`` marks, along ``basis`` (``free_basis``);
        ``g0`` is the free gradient at ``free``."""
        idx = np.flatnonzero(mask)
        hess = _hessian.hessian(lambda t: self.free_value_and_gradient(t)[1],
                                free, g0, basis, free=mask)
        return hess[np.ix_(idx, idx)]

    # ------------------------------------------------------------------
    def start(self) -> np.ndarray:
        """Starting free vector: OLS, with the residuals' mean square
        shared between the random effects (a quarter) and the residual
        variance function (the blocks' own ``start``)."""
        y, X = self.grouped.endog, self.grouped.exog
        # OLS by the normal equations: X is the engine's design, centred
        # where it has an intercept (well conditioned) and of full rank
        # (the model's check); one pass instead of an SVD of the rows.
        # (a nearly collinear design without an intercept: least squares)
        try:
            chol = _linalg.cholesky_equilibrated(_engine.rows_tmatvec(X, X), "X'X")
            beta = _linalg.chol_solve(chol, _engine.rows_tmatvec(X, y))
        except np.linalg.LinAlgError:
            beta = np.linalg.lstsq(X, y, rcond=None)[0]
        resid = _engine.rows_matmul(X, beta)
        np.subtract(y, resid, out=resid)  # in place: one array of the rows' size
        total = max(float(np.mean(resid**2)), 1e-12)
        Z = self.grouped.exog_z
        share_re = 0.25 if Z.shape[1] > 0 else 0.0
        if self.grouped.unit_z is not None:
            zz = np.ones(1)  # a random intercept's column of ones
        else:
            # Mean square of each random-effects column over the rows where
            # it is non-zero: columns of a variance component often touch
            # few rows.
            nonzero = np.maximum((Z != 0).sum(axis=0), 1)
            zz = np.maximum((Z**2).sum(axis=0) / nonzero, 1e-12)
        context = StartContext(resid=resid, total=total, share_re=share_re,
                               z_mean_square=zz)
        return self.layout.from_natural(self.layout.start(context))

    def scale(self, natural) -> float:
        """Geometric mean of the residual variances."""
        return float(np.exp(self.layout.log_scale(natural)))

    def at_boundary(self, natural) -> np.ndarray:
        """Mask of variances at zero (relative to the residual scale)."""
        return self.layout.at_boundary(natural, self.scale(natural))
