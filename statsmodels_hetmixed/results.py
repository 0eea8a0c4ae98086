"""Results of a HetMixedLM fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.base import data as wrap_data
from statsmodels.base import wrapper as wrap
from statsmodels.regression.mixed_linear_model import (
    MixedLMParams,
    MixedLMResults,
    MixedLMResultsWrapper,
)
from statsmodels.tools._decorators import cache_readonly

from . import _engine, _formula, optim, robust
from ._validate import fit_options
from .delta import delta_method
from .inference import correlation_transforms, transformed_interval
from .lrtest import LRTestResult
from .scoretest import ScoreTestResult
from .structures import VAR_PREFIX, covariance_names

__all__ = ["HetMixedLMResults", "HetMixedLMResultsWrapper", "mixedlm_parameters"]


class HetMixedLMResults(MixedLMResults):
    """
    Results of fitting a :class:`HetMixedLM`.

    Everything of ``MixedLMResults`` is available; in addition:

    Attributes
    ----------
    params : ndarray or Series
        Without a variance formula (``model.has_common_scale``): MixedLM's
        parameters, under MixedLM's names -- the fixed effects, the
        ``cov_re`` lower triangle and the variance components, both divided
        by ``scale``; ``bse`` and ``cov_params()`` are MixedLM's too (the
        inverse Hessian of the log-likelihood profiled over the scale, in
        those parameters).  With one: ``params_natural``.
    params_natural : ndarray or Series
        Fixed effects, ``cov_re`` lower triangle, variance components, and
        the variance-function coefficients (``var:<name>``), variances on
        their natural scale, named by ``model.layout.names``;
        ``bse_natural`` and ``cov_params_natural()`` are their standard
        errors and covariance (``(X'V^-1 X)^-1`` for the fixed effects).
    var_params : ndarray or Series
        The log-linear variance coefficients ``a`` (log sigma2 = W a),
        indexed by the columns of W (e.g. ``Intercept``, ``female``).
    bse_var : ndarray or Series
        Their standard errors.
    scale : float
        Geometric mean of the fitted residual variances
        ``exp(mean(log sigma2_ij))``; with no variance formula, the residual
        variance (as in MixedLM).
    llf : float
        Log-likelihood, or the REML criterion for REML fits (as in R).
    converged : bool
        Whether the optimiser reached a point where the gradient vanishes
        (judged by the Newton decrement of the analytic gradient).
    max_grad : float
        Largest absolute gradient component at the estimates (variances on
        the boundary excluded).

    Notes
    -----
    Standard errors: the fixed effects use ``(X'V^-1 X)^-1`` (as nlme and
    lme4), the covariance and variance-function parameters the inverse of
    the observed information of the log-likelihood profiled over the fixed
    effects (REML: of the REML criterion), with zero covariance between the
    two blocks.
    """

    def __init__(self, model, params, cov_params):
        # MixedLMResults.__init__ but for its SVD of exog (rank for
        # df_resid, a pass over the rows that cost 25-50 ms at 1,000,000
        # rows): the model has checked that exog has full column rank
        # (HetMixedLM's construction; a Dask fit's check of the whole data).
        super(MixedLMResults, self).__init__(model, params,
                                             normalized_cov_params=cov_params)
        self.nobs = self.model.nobs
        self.df_resid = self.nobs - self.model.k_fe

    def _finish(self, ev, converged, max_grad, decrement, n_iter, hist, method,
                free, reml, layout=None, natural=None):
        """``natural``: ``(params_natural, cov_params_natural())`` when
        ``params`` reports MixedLM's parameters instead."""
        model = self.model
        # The parameter layout of this fit (the model's, or that of a
        # location-scale fit, whose random effects are joint).
        self.layout = lay = model.layout if layout is None else layout
        model.data.cov_param_names = list(
            model.data.param_names[lay.k_fe:lay.k_fe + lay.k_cov])
        model.data.natural_param_names = list(lay.names)
        if natural is not None:
            self._params_natural = np.asarray(natural[0], dtype=float)
            self._cov_natural = np.asarray(natural[1], dtype=float)
        # remove_data() stores into _cache (missing in MixedLMResults of
        # statsmodels 0.15, whose own remove_data fails) and wipes the
        # model's data attributes, ours included.
        self._cache = {}
        for name in ("_grouped", "exog_var", "variance_function.exog_var"):
            if name not in model._data_attr:
                model._data_attr.append(name)
        fe, natural = lay.split(self.params_natural_array)
        cov_re, vcomp = lay.cov_re(natural), lay.vcomp(natural)
        self.fe_params = fe
        self.cov_re = cov_re
        self.vcomp = vcomp
        self._natural = natural
        self._var_params = self.params_natural_array[self._vf_slice]
        self.scale = float(np.exp(lay.log_scale(natural)))
        self.cov_re_unscaled = cov_re / self.scale
        # As MixedLM's: the covariances relative to the scale, which
        # loglike(params_object) profiles out.
        self.params_object = MixedLMParams.from_components(
            fe_params=fe, cov_re=self.cov_re_unscaled, vcomp=vcomp / self.scale)
        # The fit's own criterion: the model's flag changes with its next fit.
        self.method = "REML" if reml else "ML"
        self.reml = bool(reml)
        self.converged = bool(converged)
        self.max_grad = max_grad
        self.newton_decrement = decrement
        self.n_iter = n_iter
        self.hist = hist
        self.optim_method = method
        self.cov_pen = None
        self.k_fe = model.k_fe
        self.k_re = model.k_re
        self.k_re2 = model.k_re2
        self.k_vc = model.k_vc
        self.k_var = model.k_var
        self.use_sqrt = model.use_sqrt
        self.freepat = free
        self._llf = float(ev.llf)
        self._blup = ev.blup
        self._cond_cov = ev.cond_cov
        self.df_modl = int(lay.k_params if free is None
                           else lay.k_fe + np.sum(free))
        # statsmodels' names; fit(cov_type=...) changes them (robust.py)
        self.cov_type = "nonrobust"
        self.cov_kwds = {"description": robust.NONROBUST_DESCRIPTION}

    # ------------------------------------------------------------------
    # The natural-scale parameters
    @property
    def reports_mixedlm_params(self) -> bool:
        """Whether ``params``, ``bse`` and ``cov_params()`` are MixedLM's
        (covariances relative to ``scale``) rather than ``params_natural``."""
        return hasattr(self, "_params_natural")

    @property
    def params_natural_array(self) -> np.ndarray:
        """``params_natural`` as a plain array (what internal code reads)."""
        if self.reports_mixedlm_params:
            return self._params_natural
        return np.asarray(self.params, dtype=float)

    @cache_readonly
    def params_natural(self):
        """
        Every parameter on its natural scale, in ``model.layout``'s order
        and named by ``model.layout.names``: fixed effects, the ``cov_re``
        lower triangle, the variance components (variances in the units
        of the data), then the variance-function coefficients
        (``var:<name>``).  Equal to ``params`` when the model has a
        variance formula.
        """
        return self.params_natural_array.copy()

    def cov_params_natural(self):
        """
        Covariance matrix of ``params_natural``: ``(X'V^-1 X)^-1`` for the
        fixed effects (as nlme), the inverse observed information of the
        log-likelihood profiled over the fixed effects (REML: of the REML
        criterion) for the others, zero between the two sets.  Equal to
        ``cov_params()`` when the model has a variance formula.

        Returns
        -------
        ndarray, or DataFrame labelled by ``model.layout.names`` for
        pandas input.
        """
        if self.reports_mixedlm_params:
            cov = self._cov_natural.copy()
        else:  # cov_params itself (location-scale fits refine it)
            cov = np.asarray(self.cov_params(), dtype=float)
        if isinstance(self.model.data, wrap_data.PandasData):
            names = list(self.layout.names)
            return pd.DataFrame(cov, index=names, columns=names)
        return cov

    def _cov_natural_array(self):
        return np.asarray(self.cov_params_natural(), dtype=float)

    @cache_readonly
    def bse_natural(self):
        """Standard errors of ``params_natural``."""
        with np.errstate(invalid="ignore"):  # nan where the variance is < 0, as bse
            return np.sqrt(np.diag(self._cov_natural_array()))

    @property
    def correlation_params(self) -> pd.Series:
        """The residual correlation structure's parameters on their
        natural scale (correlations, phi, ARMA coefficients), named as in
        ``params``; empty without ``correlation=``."""
        lay = self.layout
        block = lay.correlation_block
        if block is None:
            return pd.Series([], dtype=float)
        sl = lay.slice_of(block)
        return pd.Series(self.params_natural_array[sl], index=lay.names[sl])

    def _correlation_intervals(self, alpha=0.05):
        """(lower, upper) of ``correlation_params`` on the scale of
        ``inference.correlation_transforms`` (empty without correlation=)."""
        block = self.layout.correlation_block
        if block is None:
            return np.empty(0), np.empty(0)
        sl = self.layout.slice_of(block)
        est = self.params_natural_array[sl]
        se = np.asarray(self.bse_natural, dtype=float)[sl]
        se = np.where(se > 0, se, np.nan)  # held fixed: no interval
        q = stats.norm.ppf(1 - alpha / 2)
        lo, hi = np.empty(block.k), np.empty(block.k)
        for j, kind in enumerate(correlation_transforms(block)):
            lo[j], hi[j] = transformed_interval(est[j], se[j], q, kind)
        return lo, hi

    @property
    def var_params(self):
        """Variance-function coefficients a (log sigma2 = W a)."""
        return self._var_params

    @cache_readonly
    def bse_var(self):
        """Standard errors of ``var_params``."""
        return np.asarray(self.bse_natural)[self._vf_slice]

    @property
    def _vf_slice(self):
        """Where the variance function's coefficients sit in params."""
        return self.layout.slice_of(self.model.variance_function)

    @property
    def _extra_variance_blocks(self):
        """Variance blocks besides the variance function."""
        vf = self.model.variance_function
        return [b for b in self.layout.variance_blocks if b is not vf]

    def _refuse_extra_variance_blocks(self, what):
        if self._extra_variance_blocks:
            names = [n for b in self._extra_variance_blocks for n in b.names]
            raise NotImplementedError(
                f"{what} is not available for models with further variance "
                f"functions (variance_blocks, var_power, var_const_power: "
                f"{names}): the residual variance depends on them too. Use "
                "resid_var for the fitted variances, or predict_variance with "
                "a DataFrame for new rows of var_power / var_const_power "
                "models.")

    def _extra_variance_factors(self, exog, transform, what="predict_variance",
                                fitted=None):
        """The further variance blocks' factors of new rows (``exog``): a
        block of a covariate reads its column of a DataFrame, a block of
        the fitted values takes the rows' predicted mean: ``fitted()`` when
        given (get_prediction's, with its groups= argument), else
        conditional on their groups' predicted random effects where
        ``exog`` names them, as the fitted values it was estimated with,
        and marginal otherwise.
        ``what`` names the caller in messages."""
        factors = []
        for block in self._extra_variance_blocks:
            if not hasattr(block, "new_covariate"):
                self._refuse_extra_variance_blocks(f"{what} on new data")
            natural = self.params_natural_array[self.layout.slice_of(block)]
            if block.depends_on_fitted:
                v = (fitted() if fitted is not None else
                     self.predict(exog, transform=transform, conditional=None))
            elif isinstance(exog, pd.DataFrame) and block.covariate_name in exog:
                v = exog[block.covariate_name]
            else:
                raise ValueError(
                    f"{what} on new data needs the covariate "
                    f"{block.covariate_name!r} of {block.names}: pass a "
                    "DataFrame with that column.")
            factors.append(block.variance(natural, np.asarray(v, dtype=float)))
        return factors

    @cache_readonly
    def bse_fe(self):
        """Standard errors of the fixed effects (from ``cov_params``; also
        after ``remove_data``)."""
        with np.errstate(invalid="ignore"):
            return np.sqrt(np.diag(self.cov_params())[:self.k_fe])

    @cache_readonly
    def bse_re(self):
        """Standard errors of the ``cov_re`` lower triangle and the
        variance components (on the variances' natural scale)."""
        return np.asarray(self.bse_natural)[self.layout.cov]

    @cache_readonly
    def llf(self):
        return self._llf

    @cache_readonly
    def aic(self):
        """Akaike information criterion.

        For REML fits of a model without a variance formula ``nan``, as in
        MixedLM (REML criteria of different mean structures are not
        comparable); with one, and in ``aic_reml``, from the REML criterion
        (R's value), for comparing variance structures fitted by REML."""
        if self.reml and self.reports_mixedlm_params:
            return np.nan
        return self.aic_reml if self.reml else self._aic()

    @cache_readonly
    def bic(self):
        """Bayesian information criterion (``nan`` for REML fits as ``aic``;
        ``bic_reml`` has R's value, with n - k_fe observations as nlme)."""
        if self.reml and self.reports_mixedlm_params:
            return np.nan
        return self.bic_reml if self.reml else self._bic()

    @cache_readonly
    def aic_reml(self):
        """AIC from the REML criterion, as R reports it (``nan`` for ML)."""
        return self._aic() if self.reml else np.nan

    @cache_readonly
    def bic_reml(self):
        """BIC from the REML criterion with n - k_fe observations, as nlme
        (``nan`` for ML)."""
        return self._bic() if self.reml else np.nan

    def _aic(self):
        return -2.0 * self.llf + 2.0 * self.df_modl

    def _bic(self):
        n = self.nobs - (self.k_fe if self.reml else 0)
        return -2.0 * self.llf + np.log(n) * self.df_modl

    # ------------------------------------------------------------------
    # Random effects
    def _group_re_layout(self, group_ix):
        """Columns of the padded design used by one group, and their names."""
        model = self.model
        cols = list(range(self.k_re))
        names = list(model.data.exog_re_names) if self.k_re else []
        for j, slots in enumerate(self.layout.vc_slots):
            colnames = model.exog_vc.colnames[j][group_ix]
            cols.extend(slots[: len(colnames)])
            names.extend(f"{model.exog_vc.names[j]}[{c}]" for c in colnames)
        return cols, names

    @cache_readonly
    def random_effects(self):
        """
        Conditional means (BLUPs) of the random effects given the data.

        Returns
        -------
        dict
            Maps each group label to a Series of its predicted random
            effects (as ``MixedLMResults.random_effects``).
        """
        out = {}
        simple = self.k_vc == 0
        names = list(self.model.data.exog_re_names)
        for i, lab in enumerate(self.model.group_labels):
            if simple:
                out[lab] = pd.Series(self._blup[i], index=names)
            else:
                cols, nm = self._group_re_layout(i)
                out[lab] = pd.Series(self._blup[i, cols], index=nm)
        return out

    @cache_readonly
    def random_effects_cov(self):
        """
        Conditional covariance matrices of the random effects given the
        data (dict of DataFrames by group label).
        """
        out = {}
        for i, lab in enumerate(self.model.group_labels):
            cols, nm = self._group_re_layout(i)
            mat = self._cond_cov[i][np.ix_(cols, cols)]
            out[lab] = pd.DataFrame(mat, index=nm, columns=nm)
        return out

    def remove_data(self):
        """
        Remove the data arrays from the results and the model, to make them
        smaller to store (statsmodels' ``remove_data``).

        Everything computed from the estimates keeps working: ``params``,
        ``bse``, ``cov_params()``, ``conf_int()``, ``summary()``,
        ``random_effects``, ``llf`` and the information criteria,
        ``residual_variance_table()``, tests of
        the parameters, and ``predict`` / ``get_prediction`` /
        ``predict_variance`` on new data.  What needs the fitted rows
        raises a ValueError that says so: the per-observation quantities
        (``fittedvalues``, ``resid``, ``resid_var``, ``resid_pearson``,
        ``residuals()``), in-sample predictions, and the methods that
        refit or re-evaluate the model on its data: compute and keep those
        before ``remove_data()`` (statsmodels' ``remove_data`` also drops
        the cached ``fittedvalues`` and ``resid``).
        """
        # what the summary reads from W, found while the data are here
        self._distinct_var_rows()
        super().remove_data()

    def _needs_data(self, what):
        """A clear error for ``what`` after ``remove_data()``."""
        if getattr(self.model, "_grouped", None) is None or self.model.endog is None:
            raise ValueError(
                f"{what} needs the model's data, which remove_data() removed: "
                "compute it before calling remove_data(), or fit again.")

    @cache_readonly
    def fittedvalues(self):
        """Fitted values: fixed effects plus predicted random effects."""
        self._needs_data("fittedvalues")
        grouped = self.model._grouped
        return self.model.exog @ self.fe_params + _engine.rows_times_group(
            grouped, grouped.exog_z, self._blup)

    @cache_readonly
    def resid(self):
        """Response residuals y - fitted values (conditional on the BLUPs)."""
        self._needs_data("resid")
        return self.model.endog - self.fittedvalues

    @cache_readonly
    def resid_var(self):
        """Fitted residual variances sigma2_ij of the observations."""
        self._needs_data("resid_var")
        return self.layout.resid_var(self._natural)

    @cache_readonly
    def resid_pearson(self):
        """Response residuals divided by their standard deviation sigma_ij."""
        return self.resid / np.sqrt(self.resid_var)

    @cache_readonly
    def resid_normalized(self):
        """
        Normalized residuals, as nlme's ``residuals(type="normalized")``:
        the Pearson residuals of each group pre-multiplied by L_i^-1, with
        L_i the lower Cholesky factor of the group's estimated residual
        correlation matrix C_i (C_i = L_i L_i').  Under the model they are
        independent with variance 1 (given the random effects).

        The factor is taken with the group's rows in time order (``time=``;
        without it, in the data's order), as nlme's when the data are sorted
        by time within groups; the result is in the rows' original order.
        Without ``correlation=``, C_i = I and they equal ``resid_pearson``.
        """
        pearson = np.asarray(self.resid_pearson, dtype=float)
        block = self.layout.correlation_block
        if block is None:
            return pearson
        natural = self.params_natural_array[self.layout.slice_of(block)]
        return block.whiten_rows(natural, pearson)

    def _group_position(self, group) -> int:
        """Index of a group label in ``model.group_labels``; a clear error
        for an unknown label."""
        labels = list(self.model.group_labels)
        try:
            return labels.index(group)
        except ValueError:
            shown = ", ".join(repr(g) for g in labels[:5])
            more = ", ..." if len(labels) > 5 else ""
            raise KeyError(
                f"{group!r} is not a group label of this model (labels: "
                f"{shown}{more}; {len(labels)} groups)") from None

    def _group_correlation(self, group):
        """(rows, labels, C_i): the group's row indices (time order), the
        labels of its rows (times, or positions within the group without
        ``time=``) and its estimated correlation matrix (I without
        ``correlation=``)."""
        self._needs_data("resid_cov")
        g = self._group_position(group)
        model = self.model
        block = self.layout.correlation_block
        if block is None:
            rows = np.flatnonzero(model._group_index == g)
            return rows, list(range(rows.size)), np.eye(rows.size)
        natural = self.params_natural_array[self.layout.slice_of(block)]
        rows, C = model._correlation_matrices(natural, g)
        if model.time is None:
            labels = list(range(rows.size))
        else:
            t = np.asarray(block.time)[rows]
            labels = [int(v) if v == round(v) else float(v) for v in t]
        return rows, labels, C

    def resid_cov(self, group) -> pd.DataFrame:
        """
        The estimated residual covariance matrix of one group,
        R_i = S_i C_i S_i, with S_i = diag(sigma_ij) from the variance
        function and C_i the residual correlation matrix (nlme's
        ``getVarCov(fit, individual=, type="conditional")``).

        Parameters
        ----------
        group : label
            A label of ``model.group_labels``.

        Returns
        -------
        DataFrame
            Rows and columns labelled by the group's times (``time=``; its
            rows' positions 0, 1, ... within the group otherwise), in time
            order.

        Raises
        ------
        KeyError
            For a label that is not a group of the model.
        """
        rows, labels, C = self._group_correlation(group)
        s = np.sqrt(np.asarray(self.resid_var, dtype=float)[rows])
        return pd.DataFrame(s[:, None] * C * s[None, :], index=labels,
                            columns=labels)

    def resid_corr(self, group) -> pd.DataFrame:
        """
        The estimated residual correlation matrix C_i of one group,
        labelled as ``resid_cov``; the identity without ``correlation=``.

        Parameters
        ----------
        group : label
            A label of ``model.group_labels``.

        Returns
        -------
        DataFrame
        """
        _, labels, C = self._group_correlation(group)
        return pd.DataFrame(C, index=labels, columns=labels)

    def residuals(self, type="response"):  # noqa: A002 - nlme's name
        """
        Residuals of the given type, as nlme's ``residuals.lme``.

        Parameters
        ----------
        type : {"response", "pearson", "normalized"}

        Returns
        -------
        ndarray or Series
        """
        kinds = {"response": "resid", "pearson": "resid_pearson",
                 "normalized": "resid_normalized"}
        if type not in kinds:
            raise ValueError(f"type must be one of {sorted(kinds)}, not {type!r}")
        return getattr(self, kinds[type])

    def predict(self, exog=None, transform: bool = True, groups=None,
                exog_re=None, conditional: bool | None = False,
                new_groups: str = "marginal"):
        """
        Predicted means: marginal (the fixed part, as MixedLM's) by default;
        conditional on the groups' predicted random effects for rows of
        groups in the fit with ``conditional=None`` or ``True``.

        nlme's ``predict(level = 1)`` and ``level = 0``, lme4's
        ``re.form = NULL`` and ``NA``.

        Parameters
        ----------
        exog : DataFrame or array_like, optional
            New data (default: the fitted rows).  Formula models take a
            DataFrame with the columns the formulas use; arrays have the
            columns of the model's ``exog``.  A Dask DataFrame gives a
            Dask Series, predicted partition by partition.
        transform : bool
            Pass a DataFrame through the model's formulas.
        groups : array_like or str, optional
            The rows' group labels, or the name of a column of ``exog``.
            Formula models read the groups' column of ``exog`` when it has
            one and ``groups`` is not given.
        exog_re : array_like, optional
            The rows' random-effects design (columns of ``exog_re``); only
            needed for array models with a design other than a random
            intercept (formula models rebuild it from ``re_formula``).
        conditional : bool or None
            ``False`` (default): the fixed part only for every row, what
            ``MixedLMResults.predict`` returns, so that code written for
            MixedLM gets the same numbers.  ``None``: conditional wherever
            the rows' groups are known (``groups`` given or found in
            ``exog``; for the fitted rows, always: ``predict(conditional=
            None)`` equals ``fittedvalues``), marginal otherwise (nlme's and
            lme4's default).  ``True``: conditional, an error when no groups
            are known.
        new_groups : {"marginal", "raise"}
            Rows of groups the fit has not seen, or with a missing group
            label: predicted marginally (default; as lme4's
            ``allow.new.levels = TRUE``), or an error.

        Returns
        -------
        ndarray or Series
            Indexed like ``exog`` when it is a DataFrame or Series.  Rows
            with a missing value in a column the formulas use are NaN.
            ``get_prediction(...).conditional`` tells which rows were
            conditional; ``get_prediction`` adds standard errors and
            intervals.

        Notes
        -----
        Not available for location-scale models (random scale effects or
        level-2 variance functions), where the random effects'
        posterior is not Gaussian; use ``random_effects`` there.
        """
        from ._daskframe import is_dask_frame, predict_partitions
        from .prediction import predicted_mean, prediction_rows

        self._refuse_location_scale("predict")
        if is_dask_frame(exog):  # each partition predicted on its worker
            return predict_partitions(self, exog, transform=transform,
                                      groups=groups, exog_re=exog_re,
                                      conditional=conditional,
                                      new_groups=new_groups)
        if exog is None:
            self._needs_data("predict() for the fitted rows")
        rows = prediction_rows(self, exog, transform=transform, groups=groups,
                               exog_re=exog_re, conditional=conditional,
                               new_groups=new_groups)
        mean = predicted_mean(self, rows)
        return mean if rows.index is None else pd.Series(mean, index=rows.index)

    def get_prediction(self, exog=None, transform: bool = True, groups=None,
                       exog_re=None, exog_var=None,
                       conditional: bool | None = False,
                       new_groups: str = "marginal"):
        """
        Predictions with standard errors, confidence intervals of the mean
        and prediction intervals of new observations.

        Parameters
        ----------
        exog, transform, groups, exog_re, conditional, new_groups
            As in ``predict``.
        exog_var : array_like, optional
            The rows' variance design (columns of ``exog_var``), for the
            prediction intervals; only needed for array models with a
            variance design (formula models rebuild it from
            ``var_formula``).

        Returns
        -------
        MixedPredictionResults
            ``summary_frame(alpha=0.05)`` gives ``mean``, ``mean_se``,
            ``mean_ci_lower``, ``mean_ci_upper``, ``obs_ci_lower``,
            ``obs_ci_upper`` and ``conditional``; ``conf_int(obs=, alpha=)``
            as in statsmodels.

        Notes
        -----
        Variance parameters are treated as known (as nlme and lme4 treat
        them for BLUPs).  With ``C`` the fixed-effect block of
        ``cov_params()``:

        * conditional rows (group in the fit): ``mean_se^2 = c' C c +
          z' K_i z`` with ``c = x - A_i' z``, ``K_i`` the group's
          ``random_effects_cov`` and ``A_i = K_i Z_i' R_i^-1 X_i`` --
          Henderson's prediction error variance (uncertainty of the fixed
          effects, of the BLUP and their covariance);
        * marginal rows: ``mean_se^2 = x' C x``;
        * new observation: ``mean_se^2 + sigma2 (+ z' G z for marginal
          rows)``, with ``sigma2`` the row's residual variance from the
          variance function (``predict_variance``) and ``G = cov_re``.

        With a residual correlation structure, ``R_i`` is the group's
        ``resid_cov``.  A new row of a fitted group is predicted as
        ``x' b + z' u_i``, as nlme's ``predict(level = 1)``: the residual's
        conditional mean given the group's observed residuals is not
        added, and the new observation's interval uses the marginal
        ``sigma2`` (the new residual treated as uncorrelated with the
        group's observed ones).

        Intervals use normal quantiles, or t quantiles when the results
        have small-sample degrees of freedom ``df_fe`` (the smallest among
        the fixed effects the row uses).
        """
        from .prediction import get_prediction, prediction_rows

        self._refuse_location_scale("get_prediction")
        if exog is None:
            self._needs_data("get_prediction() for the fitted rows")
        rows = prediction_rows(self, exog, transform=transform, groups=groups,
                               exog_re=exog_re, exog_var=exog_var,
                               conditional=conditional, new_groups=new_groups,
                               need_variance=True)
        factors = []
        if not rows.in_sample and self._extra_variance_blocks:
            # var_power / var_const_power: the new rows' residual variance
            # is the variance function's times these blocks' factors.  A
            # fitted-value block reads the rows' innermost fitted values, as
            # in the fit: conditional on the random effects of the groups
            # known (from exog's group column or groups=), whichever mean
            # (conditional or marginal) is predicted here.
            factors = self._extra_variance_factors(
                exog, transform, what="get_prediction",
                fitted=lambda: np.asarray(self.predict(
                    exog, transform=transform, groups=groups, exog_re=exog_re,
                    conditional=None, new_groups="marginal"), dtype=float))
        return get_prediction(self, rows, variance_factors=factors)

    def _refuse_location_scale(self, what):
        model = self.model
        if getattr(model, "k_var_re", 0) or getattr(model, "re_var_names", None):
            raise NotImplementedError(
                f"{what} is not available for location-scale models: with "
                "random scale effects the random effects' posterior is not "
                "Gaussian. Use random_effects (posterior means) and "
                "predict_variance, or fit the model without var_re_formula.")

    def predict_variance(self, exog=None, transform=True):
        """
        Residual variances sigma2 for the data or for new data.

        Parameters
        ----------
        exog : DataFrame or array_like, optional
            New data.  A DataFrame is passed through ``var_formula`` when
            the model was built from formulas (``transform=True``);
            otherwise an array with the columns of ``exog_var``.  With
            ``var_power`` / ``var_const_power`` on a covariate, a
            DataFrame with its column; on ``"fitted"``, the rows' predicted
            mean is the covariate (``predict(exog, conditional=None)``:
            conditional on the groups' random effects where ``exog`` has
            the groups' column, as in the fit; marginal for other rows).
        transform : bool
            Whether to apply ``var_formula`` to a DataFrame.

        Returns
        -------
        ndarray or Series
        """
        model = self.model
        if exog is None:
            self._needs_data("predict_variance() for the fitted rows")
            return self.resid_var
        factors = self._extra_variance_factors(exog, transform)
        index = getattr(exog, "index", None)
        spec = getattr(model, "_var_design_info", None)
        if transform and spec is not None and isinstance(exog, pd.DataFrame):
            w = np.asarray(_formula.build_rows(spec, exog, na_action="raise"))
        elif transform and isinstance(exog, pd.DataFrame) and \
                getattr(model, "var_formula", None) is None and \
                model.data.exog_var_names == ["Intercept"]:
            w = np.ones((len(exog), 1))
        elif transform and isinstance(exog, pd.DataFrame) and \
                getattr(model, "var_formula", None) is not None:
            raise ValueError(
                "The variance formula could not be rebuilt for new data (a "
                "model loaded from a pickle whose var_formula uses names "
                "other than numpy as np); pass the variance design as an "
                "array with transform=False.")
        else:
            w = np.asarray(exog, dtype=float)
            if w.ndim == 1:
                w = w[:, None]
        if w.shape[1] != model.k_var:
            raise ValueError(
                f"exog for predict_variance needs {model.k_var} columns "
                f"({model.data.exog_var_names}), got {w.shape[1]}")
        out = model.variance_function.variance(self._var_params, w)
        for factor in factors:  # further variance functions (varComb)
            out = out * factor
        return pd.Series(out, index=index) if index is not None else out

    # ------------------------------------------------------------------
    # Small-sample inference: the one place the df live is ``_ddf`` (a
    # ddf.SmallSampleInference set at fit time, None for z-tests); every
    # consumer below reads it from there.
    _ddf = None

    @property
    def df_fe(self):
        """
        Denominator degrees of freedom of each fixed effect's t-test
        (pandas Series), or None when the fit uses z-tests
        (``fit(ddf=None)``, the default).
        """
        return None if self._ddf is None else self._ddf.df_fe

    @property
    def ddf_method(self):
        """Name of the small-sample method behind ``df_fe`` (None: z-tests)."""
        return None if self._ddf is None else self._ddf.name

    @cache_readonly
    def pvalues(self):
        """Two-sided p-values: t with ``df_fe`` for the fixed effects when
        the fit has them, else (and for the other parameters) normal."""
        if self._ddf is None:
            return super().pvalues
        with np.errstate(invalid="ignore", divide="ignore"):
            tvalues = np.asarray(self.params, float) / np.asarray(self.bse, float)
        out = 2.0 * stats.norm.sf(np.abs(tvalues))
        k = self.k_fe
        out[:k] = 2.0 * stats.t.sf(np.abs(tvalues[:k]), self._df_fe_array)
        return out

    @property
    def _df_fe_array(self):
        return np.asarray(self._ddf.df_fe, dtype=float)

    def conf_int(self, alpha=0.05):
        """
        Confidence intervals of the parameters: t quantiles with ``df_fe``
        for the fixed effects when the fit has them, else normal.

        Wald intervals ``params +- q bse``, except for the residual
        correlation parameters (``correlation_params``): a Wald interval
        on the atanh scale for correlations and AR(1)'s phi, on the logit
        scale for CAR(1)'s phi, transformed back (so the interval stays
        inside (-1, 1) or (0, 1); ARMA coefficients keep the plain Wald
        interval), as the summary shows them.  Variances keep the plain
        Wald interval here (statsmodels' convention); the summary shows
        them on the log scale.

        Parameters
        ----------
        alpha : float
            1 - confidence level.

        Returns
        -------
        ndarray (k, 2) (a DataFrame for pandas input)
        """
        if self._ddf is None:
            ci = super().conf_int(alpha=alpha)
            block = self.layout.correlation_block
            if block is not None and not self.reports_mixedlm_params:
                sl = self.layout.slice_of(block)
                lo, hi = self._correlation_intervals(alpha)
                values = np.asarray(ci, dtype=float).copy()
                values[sl, 0], values[sl, 1] = lo, hi
                if isinstance(ci, pd.DataFrame):
                    ci = pd.DataFrame(values, index=ci.index, columns=ci.columns)
                else:
                    ci = values
            return ci
        params = np.asarray(self.params, float)
        bse = np.asarray(self.bse, float)
        q = np.full(params.size, stats.norm.ppf(1 - alpha / 2))
        q[:self.k_fe] = stats.t.ppf(1 - alpha / 2, self._df_fe_array)
        return np.column_stack([params - q * bse, params + q * bse])

    # ------------------------------------------------------------------
    # Tests
    def _linear_constraint(self, r_matrix):
        """``(R, q)`` of a hypothesis given as statsmodels takes it (a
        string of constraints, a matrix, or a tuple ``(R, q)``)."""
        names = list(self.model.data.param_names)
        if isinstance(r_matrix, str):
            from patsy import DesignInfo

            constraint = DesignInfo(names).linear_constraint(r_matrix)
            R, q = constraint.coefs, constraint.constants.ravel()
        elif isinstance(r_matrix, tuple):
            R = np.atleast_2d(np.asarray(r_matrix[0], float))
            q = np.ravel(np.asarray(r_matrix[1], float)) if len(r_matrix) > 1 \
                else np.zeros(len(R))
        else:
            R = np.atleast_2d(np.asarray(r_matrix, float))
            q = np.zeros(len(R))
        return R, np.broadcast_to(q, (len(R),)).astype(float)

    def _fe_constraint(self, r_matrix):
        """``(L, q)`` over the fixed effects when the hypothesis involves
        them only, else None."""
        R, q = self._linear_constraint(r_matrix)
        k = self.k_fe
        if R.shape[1] == len(self.params) and not np.any(R[:, k:]):
            return R[:, :k], q
        return None

    def _pad_fe_columns(self, r_matrix):
        """A matrix with one column per fixed effect (as MixedLM takes
        it) padded with zero columns for the other parameters."""
        if isinstance(r_matrix, (str, tuple)):
            return r_matrix
        r = np.atleast_2d(np.asarray(r_matrix, dtype=float))
        k = len(self.params)
        # MixedLM's parameters: fixed effects only, as MixedLM.
        widths = (self.k_fe,) if self.reports_mixedlm_params else (self.k_fe, k)
        if r.shape[1] not in widths:
            also = "" if len(widths) == 1 else f" (or {k}, one per parameter)"
            raise ValueError(
                f"r_matrix for t-test should have {self.k_fe} columns, one "
                f"per fixed effect{also}, not {r.shape[1]}; test other "
                "parameters with a string, e.g. \"name = 0\".")
        if r.shape[1] == self.k_fe and self.k_fe != k:
            r = np.hstack([r, np.zeros((r.shape[0], len(self.params) - self.k_fe))])
        return r

    def t_test(self, r_matrix, use_t=None):
        """
        t-tests (z-tests) of linear hypotheses ``R params = q``.

        ``r_matrix`` may be a string of constraints on any parameter (e.g.
        ``"var:female = 0"``), a matrix with one column per parameter, or,
        as in MixedLM, a matrix with one column per fixed effect.

        With small-sample df (``fit(ddf=...)``) each row on the fixed
        effects is a t-test with its own df (the method's df of that
        contrast, e.g. Satterthwaite's or Kenward-Roger's for ``l'beta``),
        unless ``use_t=False``; rows that involve other parameters are
        z-tests.
        """
        r_matrix = self._pad_fe_columns(r_matrix)
        if isinstance(r_matrix, str):
            # Parsed here, whatever statsmodels' formula engine: formulaic's
            # constraint parser takes ':' in a name (var:female) for an
            # operator.
            r_matrix = self._linear_constraint(r_matrix)
        self._warn_boundary_hypothesis(r_matrix)
        fe = None if self._ddf is None or use_t is False else \
            self._fe_constraint(r_matrix)
        if fe is None:
            return super(MixedLMResults, self).t_test(r_matrix, use_t=use_t)
        from statsmodels.stats.contrast import ContrastResults

        L, q = fe
        cov = np.asarray(self.cov_params())[:self.k_fe, :self.k_fe]
        effect = L @ np.asarray(self.fe_params, float)
        sd = np.sqrt(np.einsum("ip,pr,ir->i", L, cov, L))
        df = np.array([self._ddf.contrast_df(row) for row in L])
        return ContrastResults(effect=effect, t=(effect - q) / sd, sd=sd,
                               df_denom=df)

    def wald_test(self, r_matrix, cov_p=None, invcov=None, use_f=None,
                  df_constraints=None, scalar=True):
        """
        Wald test of a joint linear hypothesis ``R params = q`` (see
        ``statsmodels.base.model.LikelihoodModelResults.wald_test``).

        With small-sample df (``fit(ddf=...)``) a hypothesis on the fixed
        effects alone is an F test with the method's denominator df
        (Satterthwaite: lmerTest's ``contestMD``; Kenward-Roger: pbkrtest's
        scaled F; residual and between-within: the smallest df of the
        effects involved; ``cov_type="cluster"`` with CR2: clubSandwich's
        HTZ test, ``robust.ClusterRobust.htz_test``), unless ``use_f=False`` or ``cov_p`` /
        ``invcov`` are given.

        Warns (``HypothesisTestWarning``) when the hypothesis sets a
        variance to zero: that value is on the boundary of the parameter
        space, where the Wald statistic has no chi2 distribution; use
        ``compare_lr_test``, which is boundary-aware.
        """
        r_matrix = self._pad_fe_columns(r_matrix)
        if isinstance(r_matrix, str):
            # Parsed here, whatever statsmodels' formula engine: formulaic's
            # constraint parser takes ':' in a name (var:female) for an
            # operator.
            r_matrix = self._linear_constraint(r_matrix)
        self._warn_boundary_hypothesis(r_matrix)
        fe = None
        if self._ddf is not None and use_f is not False and cov_p is None \
                and invcov is None:
            fe = self._fe_constraint(r_matrix)
        if fe is None:
            return super().wald_test(r_matrix, cov_p=cov_p, invcov=invcov,
                                     use_f=use_f, df_constraints=df_constraints,
                                     scalar=scalar)
        from statsmodels.stats.contrast import ContrastResults

        L, q = fe
        cov = np.asarray(self.cov_params())[:self.k_fe, :self.k_fe]
        diff = L @ np.asarray(self.fe_params, float) - q
        F, df_num, df_denom = self._ddf.f_test(L, diff, cov)
        return ContrastResults(F=F, df_num=df_num, df_denom=df_denom)

    def wald_test_terms(self, skip_single=False, extra_constraints=None,
                        combine_terms=None, scalar=True):
        """
        Wald tests of the fixed-effect terms of the formula, one per term
        (see ``statsmodels.base.model.LikelihoodModelResults.wald_test_terms``).

        Each term's test is ``wald_test`` of its columns: with small-sample
        df (``fit(ddf=...)``, or ``cov_type="cluster"`` with CR2, whose
        tests of several rows are Pustejovsky and Tipton's HTZ) an F test
        with its own denominator df (column ``df_denom``; NaN for an extra
        constraint on other parameters, a chi2 test), else chi2 tests.
        ``extra_constraints``: ``(name, matrix)`` pairs with one column per
        fixed effect or per parameter.
        """
        from collections import defaultdict

        from statsmodels.formula._manager import FormulaManager
        from statsmodels.stats.contrast import WaldTestResults

        identity = np.eye(self.k_fe)
        spec = getattr(self.model.data, "model_spec", None)
        if spec is not None:
            mgr = FormulaManager()
            terms = [(mgr.get_term_name(t), identity[mgr.get_slice(spec, t)])
                     for t in spec.terms]
        else:
            terms = [(name, identity[[j]])
                     for j, name in enumerate(self.model.exog_names[:self.k_fe])]
        combined = defaultdict(list)
        for name, rows in terms:
            for cname in combine_terms or []:
                if cname in name:
                    combined[cname].append(rows)
        constraints = [(n, r) for n, r in terms if not (skip_single and len(r) == 1)]
        constraints += [(c, np.vstack(combined[c])) for c in combine_terms or []]
        constraints += list(extra_constraints or [])
        use_f = self._ddf is not None
        table = []
        for name, rows in constraints:
            wt = self.wald_test(rows, scalar=scalar)
            if wt.distribution == "F":
                row = [wt.statistic, wt.pvalue, int(wt.df_num), wt.df_denom]
            else:  # statsmodels keeps a chi2 test's df in df_denom
                row = [wt.statistic, wt.pvalue, int(wt.df_denom), np.nan]
            table.append(row if use_f else row[:3])
        columns = ["statistic", "pvalue", "df_constraint", "df_denom"][:4 if use_f else 3]
        frame = pd.DataFrame(table, index=[n for n, _ in constraints], columns=columns)
        return WaldTestResults(None, "F" if use_f else "chi2", None, table=frame)

    def _warn_boundary_hypothesis(self, r_matrix):
        """Warn when a hypothesis row reads ``variance = 0``."""
        import warnings

        from statsmodels.tools.sm_exceptions import HypothesisTestWarning

        names = list(self.model.data.param_names)
        R, q = self._linear_constraint(r_matrix)
        if R.shape[1] != len(names):
            return
        on_boundary = []
        for row, value in zip(R, q):
            nonzero = np.flatnonzero(row)
            # positions of params are those of params_natural up to the
            # variance function's (MixedLM's params stop before it)
            if len(nonzero) == 1 and value == 0 and self._is_variance_at(nonzero[0]):
                on_boundary.append(names[nonzero[0]])
        if on_boundary:
            warnings.warn(
                f"The hypothesis sets {', '.join(on_boundary)} to zero, on the "
                "boundary of the parameter space: the Wald p-value assumes an "
                "interior value and is not valid there. Use compare_lr_test "
                "with the fit without that variance (boundary-aware chi-bar-"
                "square p-value).", HypothesisTestWarning, stacklevel=3)

    def compare_lr_test(self, restricted, boundary="auto"):
        """
        Likelihood-ratio test of this (larger) model against a restricted one.

        Parameters
        ----------
        restricted : HetMixedLMResults or MixedLMResults
            Fit of a model nested in this one, on the same data.
        boundary : "auto", list of str, or None
            Restricted parameters whose null value (zero) is on the boundary
            of the parameter space: random-effect and variance-component
            variances, and identity-link variances (e.g. Stata's
            ``var(male)``).  ``"auto"`` finds them among the parameters of
            this model that the restricted one lacks; None treats none as
            on the boundary (plain chi2).

        Returns
        -------
        LRTestResult
            Unpacks as ``(lr_stat, p_value, df_diff)``; its ``distribution``
            says which reference distribution gave the p-value: chi2(df), or
            with k variances on the boundary the chi-bar-square mixture of
            chi2(df - k), ..., chi2(df) (Self and Liang 1987; for one
            variance, 1/2 chi2(df - 1) + 1/2 chi2(df)).

        Raises
        ------
        ValueError
            If the two fits use different methods or data, or are REML fits
            with different fixed effects (REML criteria are then not
            comparable).
        """
        other = getattr(restricted, "_results", restricted)
        if self.reml != other.reml:
            raise ValueError("Both fits must use the same method (ML or REML).")
        if self.model.nobs != other.model.nobs:
            raise ValueError("The two fits use different numbers of observations.")
        if self.reml:
            x1, x2 = self.model.exog, other.model.exog
            if x1 is None or x2 is None:  # Dask models: no rows on the client
                same = (getattr(self.model, "formula", None) == getattr(
                    other.model, "formula", None) and list(self.model.exog_names)
                    == list(other.model.exog_names) and x1 is None and x2 is None)
            else:
                same = x1.shape == x2.shape and np.allclose(x1, x2)
            if not same:
                raise ValueError(
                    "REML log-likelihoods of models with different fixed "
                    "effects are not comparable. Refit both with reml=False "
                    "to compare mean structures.")
        df_other = getattr(other, "df_modl", None)
        if df_other is None:
            df_other = len(other.params) + 1  # MixedLM: scale is not in params
        df_diff = int(self.df_modl - df_other)
        if df_diff <= 0:
            raise ValueError(
                f"The restricted model has {df_other} parameters and this one "
                f"{self.df_modl}: call compare_lr_test on the larger model.")
        if isinstance(boundary, str) and boundary == "auto":
            other_names = set(_natural_names(other))
            ours = list(self.layout.names)
            dropped = [n for n in ours if n not in other_names]
            # Identity-link variances are on the boundary only when the
            # restricted variance design drops them (sets them to zero), not
            # when it re-parameterises (e.g. equal variances across levels).
            other_var = {n for n in other_names if n.startswith(VAR_PREFIX)}
            constant_only = len(other_var) <= 1  # one variance: any link
            var_nested = (
                (constant_only or getattr(other.model, "var_link", "log")
                 == self.model.var_link)
                and other_var <= {n for n in ours if n.startswith(VAR_PREFIX)})
            boundary = [n for n in dropped if self._is_variance(n)
                        and (var_nested or not n.startswith(VAR_PREFIX))]
        boundary = list(boundary or [])
        cov = None
        if len(boundary) > 1:
            cov = self._cov_natural_array()
            idx = [list(self.layout.names).index(n) for n in boundary]
            cov = cov[np.ix_(idx, idx)]
        return LRTestResult(2.0 * (self.llf - other.llf), df_diff, boundary, cov)

    def score_test_variance(self, var_formula: str | None = None, *,
                            var_re_formula: str | None = None,
                            exog_var=None, observed: bool | None = None,
                            eval_env=None) -> "ScoreTestResult":
        """
        Score (Lagrange multiplier) test of heteroskedasticity from this fit:
        of adding terms to the residual variance function, or a random
        scale intercept, without fitting the larger model.

        Parameters
        ----------
        var_formula : str, optional
            The variance terms to add, e.g. ``"~ female + ses"`` (its
            intercept is the model's own and is ignored), evaluated on the
            model's data.  They enter in the fit's link: log-linear
            coefficients (two-sided test, chi2), or for identity-link
            (additive, ``var_by``) fits non-negative variances (one-sided,
            chi-bar-square).  Terms already in the variance function are an
            error.
        var_re_formula : {"~ 1"}, optional
            Instead: test a random scale intercept, ``omega_i`` in
            ``log sigma2_ij = w_ij' a + omega_i`` with variance ``s2``,
            independent of the mean's random effects (the location-scale
            model of ``fit(re_cov="independent")``).  ``s2 = 0`` is on the
            boundary: one-sided score, 1/2 chi2(0) + 1/2 chi2(1).  ML fits
            only, log link; expected information unless ``observed=True``.
        exog_var : array_like, optional
            The added variance columns as an array (models built from
            arrays), instead of ``var_formula``.
        observed : bool, optional
            Observed information (as the fit's standard errors, and as
            statsmodels' ``GLMResults.score_test``) or the analytic
            expected (Fisher) information.  Default: observed for variance
            terms, expected for the random scale intercept (whose test
            with the observed information is conservative: it rejected
            1-2% of null data sets at the 5% level in simulation, against
            4.0-5.4% with the expected one).  Under REML the expected
            information is the ML one (they differ by O(p / n)); the
            observed one is that of the REML criterion.
        eval_env : dict, optional
            Names available to ``var_formula`` besides the data's columns
            (default: the caller's namespace).

        Returns
        -------
        ScoreTestResult
            Unpacks as ``(statistic, pvalue, df)``; ``summary()`` prints it.

        Notes
        -----
        The statistic is ``U' I^-1 U`` of the efficient score ``U`` and
        information ``I`` of the added parameters at the null estimates
        (the fixed effects profiled out under ML, integrated out under
        REML, where the test compares REML criteria of models with the same
        mean).  It is asymptotically equivalent to ``compare_lr_test`` of
        the two fits; see :mod:`statsmodels_hetmixed.scoretest`.
        Location-scale fits are not supported (an error).
        """
        from . import scoretest

        if self.model.k_var_re:
            raise NotImplementedError(
                "score_test_variance starts from a fit without random scale "
                "effects; this is a location-scale fit. Compare location-scale "
                "fits with compare_lr_test.")
        if getattr(self.model, "_grouped", None) is None:
            raise ValueError("score_test_variance needs the model's data, "
                             "which remove_data() removed.")
        if var_re_formula is not None:
            if var_formula is not None or exog_var is not None:
                raise ValueError("test variance terms or a random scale effect, "
                                 "not both at once.")
            if "".join(str(var_re_formula).split()) not in ("~1", "1"):
                raise NotImplementedError(
                    f"var_re_formula={var_re_formula!r}: the score test covers a "
                    "random scale intercept ('~ 1'); for random scale slopes "
                    "fit the location-scale model and use compare_lr_test.")
            return scoretest.scale_effect_test(self, observed=bool(observed))
        if eval_env is None:
            import inspect

            frame = inspect.currentframe().f_back
            eval_env = {**frame.f_globals, **frame.f_locals}
            # the wrapper's frame when called through it
            if frame.f_code.co_filename.endswith("wrapper.py"):
                caller = frame.f_back
                eval_env = {**caller.f_globals, **caller.f_locals}
        return scoretest.variance_terms_test(
            self, var_formula, exog_var,
            observed=True if observed is None else bool(observed),
            eval_env=eval_env)

    def _is_variance(self, name):
        """Whether a parameter (named as in ``params_natural``) is a
        variance with its boundary at zero."""
        return self._is_variance_at(list(self.layout.names).index(name))

    def _is_variance_at(self, pos):
        """Whether ``params_natural[pos]`` is a variance with its boundary
        at zero."""
        lay = self.layout
        k = pos - lay.k_fe
        if k < 0 or not lay.variances[k]:
            return False
        # The additive form's reference variance (its intercept) is not a
        # variance that a test can set to zero.
        return not (k >= lay.k_cov and self._is_intercept_column(k - lay.k_cov))

    def _is_intercept_column(self, j):
        const = self.model.variance_function.const_direction
        if const is None:
            return False
        carriers = np.flatnonzero(np.abs(const) > 1e-8)
        return len(carriers) == 1 and carriers[0] == j

    def lr_test_vs_linear(self):
        """
        Likelihood-ratio test against the model without random effects
        (Stata's footer "LR test vs. linear model"): the same mean and
        residual variance function, every random-effect variance and
        variance component zero.  Boundary-aware (chi-bar-square).

        Returns
        -------
        LRTestResult
        """
        self._needs_data("lr_test_vs_linear")
        model = self.model
        lay = model.layout
        start = self.params_natural_array[lay.k_fe:].copy()
        start[: lay.k_cov] = 0.0
        free = np.ones(start.size)
        free[: lay.k_cov] = 0
        import warnings

        reml_before = model.reml  # the refit is not the model's last fit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            linear = model.fit(start_params=start, free=free, reml=self.reml)
        model.reml = reml_before
        names = list(lay.names)[lay.k_fe:lay.k_fe + lay.k_cov]
        boundary = [n for n in names if self._is_variance(n)]
        cov = self._cov_natural_array()[lay.k_fe:lay.k_fe + lay.k_cov,
                                        lay.k_fe:lay.k_fe + lay.k_cov]
        keep = [names.index(n) for n in boundary]
        return LRTestResult(2.0 * (self.llf - linear.llf), lay.k_cov, boundary,
                            cov[np.ix_(keep, keep)])

    # ------------------------------------------------------------------
    # Functions of the parameters
    def nlcom(self, func, names=None, alpha=0.05, log_ci=False):
        """
        Delta-method estimates of functions of the parameters (Stata's
        ``nlcom``).

        Parameters
        ----------
        func : callable
            Receives the parameters on their natural scale as a Series
            labelled like ``params_natural`` (e.g. ``p["var:Intercept"]``)
            and returns a scalar or a vector.
        names : list of str, optional
            Labels of the result's rows.
        alpha : float
            1 - confidence level.
        log_ci : bool
            Intervals on the log scale (for positive quantities).

        Returns
        -------
        pandas.DataFrame
            Coef., Std.Err., z, P>|z| and the confidence interval.

        Examples
        --------
        Residual variance of girls and the difference to boys:

        >>> res.nlcom(lambda p: [np.exp(p["var:Intercept"] + p["var:female"]),
        ...                      np.exp(p["var:Intercept"] + p["var:female"])
        ...                      - np.exp(p["var:Intercept"])],
        ...           names=["var(girls)", "girls - boys"])
        """
        labels = list(self.layout.names)

        def f(x):
            return np.asarray(func(pd.Series(x, index=labels)), dtype=float)

        return self._delta_method(f, names=names, alpha=alpha, log_ci=log_ci)

    def _delta_method(self, func, names=None, alpha=0.05, log_ci=False):
        """
        ``delta.delta_method`` at the estimates, ``func`` of the natural
        parameter array (``params_natural``).  The covariance comes from
        ``cov_params_natural``, which is ``cov_params`` itself where the two
        coincide, so that a subclass's (location-scale fits: NaN for what
        the data do not determine) holds for every derived quantity.
        """
        cov = self._cov_natural if self.reports_mixedlm_params else self.cov_params
        return delta_method(func, self.params_natural_array, cov, names=names,
                            alpha=alpha, log_ci=log_ci)

    def _distinct_var_rows(self):
        """Distinct rows of W with labels, in the order of the columns that
        identify them (levels in order), else of first appearance; found
        when first needed (a sort of W's rows, 18% of an HSB fit's time if
        done at every fit), and by ``remove_data`` before the data go, so
        that residual_variance_table() and the summary work after it."""
        if self._var_rows is None:
            self._var_rows = self._find_distinct_var_rows()
        return self._var_rows


    _var_rows = None

    def _find_distinct_var_rows(self):
        w = self.model.variance_function.exog_var
        rows, first = np.unique(w, axis=0, return_index=True)
        rows = rows[np.argsort(first)]
        names = list(self.model.data.exog_var_names)
        var_by = getattr(self.model, "var_by", None)
        others = [j for j in range(len(names)) if not self._is_intercept_column(j)]
        labels, keys = [], []
        for row in rows:
            active = [j for j in others if row[j] != 0]
            if var_by is not None:
                j = active[0]
                labels.append(f"{var_by}={names[j][names[j].index('[') + 1:-1]}")
            elif not active:
                labels.append("reference" if others else "all")
            elif set(np.unique(row[others])) <= {0.0, 1.0}:
                labels.append(", ".join(names[j] for j in active))
            else:
                labels.append(", ".join(f"{names[j]}={row[j]:g}" for j in others))
            keys.append(min(active) if active else -1)
        order = np.argsort(keys, kind="stable")
        return rows[order], [labels[k] for k in order]

    def residual_variance_table(self, alpha=0.05):
        """
        Residual variance for each distinct row of the variance design
        (e.g. each level of a categorical variable), with delta-method
        standard errors and confidence intervals on the log scale.

        Returns
        -------
        pandas.DataFrame
        """
        self._refuse_extra_variance_blocks("residual_variance_table")
        # (the distinct rows are kept by remove_data)
        rows, labels = self._distinct_var_rows()
        if len(rows) > 200:
            raise ValueError(
                f"The variance design has {len(rows)} distinct rows (a "
                "continuous covariate?); use predict_variance for chosen "
                "values instead.")
        vf, var = self.model.variance_function, self._vf_slice
        table = self._delta_method(lambda x: vf.variance(x[var], rows),
                                   names=labels, alpha=alpha, log_ci=True)
        return table.drop(columns=["z", "P>|z|"]).rename(
            columns={"Coef.": "Variance"})

    def _saturated_rows(self):
        self._needs_data("converting between the additive and log-linear "
                         "forms (it uses the data's distinct variance-design rows)")
        rows, _ = self._distinct_var_rows()
        if rows.shape[0] != rows.shape[1] or \
                np.linalg.matrix_rank(rows) < rows.shape[1]:
            raise ValueError(
                "Converting between the additive and log-linear forms needs a "
                "variance design fixed by its distinct rows (an intercept and "
                "the dummies of one categorical variable, or one dummy per "
                f"level); this one has {rows.shape[0]} distinct rows for "
                f"{rows.shape[1]} columns.")
        return rows

    def to_loglinear(self, alpha=0.05):
        """
        The log-linear coefficients (log sigma2 = W a) equivalent to an
        identity-link (additive) fit, with delta-method standard errors.

        For W = (1, male): ``a_0 = log var(Residual)`` and
        ``a_1 = log(var(Residual) + var(male)) - a_0``.

        Returns
        -------
        pandas.DataFrame
        """
        if self.model.var_link != "identity":
            raise ValueError("to_loglinear converts identity-link (additive) "
                             "fits; this fit is already log-linear.")
        rows = self._saturated_rows()
        self._refuse_extra_variance_blocks("converting the variance function")
        var = self._vf_slice
        return self._delta_method(
            lambda x: np.linalg.solve(rows, np.log(rows @ x[var])),
            names=list(self.model.data.exog_var_names), alpha=alpha)

    def to_additive(self, alpha=0.05):
        """
        The additive variances (sigma2 = W theta, Stata's ``var(Residual)``
        and ``var(dummy)``) equivalent to a log-linear fit, with
        delta-method standard errors (intervals on the log scale).

        A negative additive variance means that Stata's form cannot fit
        these data with this reference level: the reference category must
        have the smallest variance there.

        Returns
        -------
        pandas.DataFrame
        """
        if self.model.var_link != "log":
            raise ValueError("to_additive converts log-linear fits; this fit "
                             "is already additive.")
        rows = self._saturated_rows()
        self._refuse_extra_variance_blocks("converting the variance function")
        var = self._vf_slice
        names = ["var(Residual)" if self._is_intercept_column(j) else f"var({n})"
                 for j, n in enumerate(self.model.data.exog_var_names)]
        table = self._delta_method(
            lambda x: np.linalg.solve(rows, np.exp(rows @ x[var])),
            names=names, alpha=alpha, log_ci=True)
        if (table["Coef."] < 0).any():
            import warnings

            warnings.warn(
                "An additive variance is negative: the reference category "
                "does not have the smallest residual variance, which the "
                "additive (Stata) form requires.", UserWarning, stacklevel=2)
        return table

    def profile_re(self, re_ix, vtype, num_low=5, dist_low=1.0, num_high=5,
                   dist_high=1.0, **fit_kwargs):
        """
        Profile likelihood of a random-effect variance or a variance
        component (``MixedLMResults.profile_re``'s arguments and output).

        The variance is held at each point of a grid from ``estimate -
        dist_low`` to ``estimate + dist_high`` (``num_low`` points below the
        estimate, the estimate, ``num_high`` above) and every other
        parameter -- fixed effects, other covariances, variance components
        and the residual variance function -- is estimated again, by this
        fit's criterion (ML or REML).

        Parameters
        ----------
        re_ix : int or str
            ``vtype="re"``: the index of the random effect (a column of
            ``exog_re``); ``vtype="vc"``: the variance component's name.
        vtype : {"re", "vc"}
        num_low, dist_low, num_high, dist_high : int, float
            The grid, in the variance's own units.
        **fit_kwargs
            ``gtol``, ``maxiter`` for the refits.

        Returns
        -------
        ndarray
            Two columns: the variance held, the log-likelihood there.

        Notes
        -----
        MixedLM holds the variance *relative to the residual variance* and
        lets that scale move, so its first column is the held ratio times
        each refit's scale, and its curve is not the profile likelihood of
        the variance itself; here the variance itself is held (and there
        may be no common residual variance at all).  Both curves pass
        through the fit's estimate and log-likelihood.
        """
        if vtype not in ("re", "vc"):
            raise ValueError(f"vtype must be 're' or 'vc', not {vtype!r}")
        model = self.model
        if model.k_var_re:
            raise NotImplementedError(
                "profile_re is for models without random scale effects; "
                "location-scale models have profile_ci.")
        fit_kwargs = fit_options(fit_kwargs, ("gtol", "maxiter"), "profile_re")
        lay = self.layout
        natural = np.asarray(self._natural, dtype=float).copy()
        if vtype == "re":
            k_re = model.k_re
            if not 0 <= int(re_ix) < k_re:
                raise ValueError(f"re_ix must be 0 .. {k_re - 1}, not {re_ix}")
            re_ix = int(re_ix)
            # The profiled effect goes first: the first entry of the
            # Cholesky factor of cov_re is its standard deviation alone,
            # so the optimiser can hold it.
            perm = np.arange(k_re)
            perm[[0, re_ix]] = perm[[re_ix, 0]]
            if re_ix:
                kwargs = model._get_init_kwds()
                kwargs["exog_re"] = model.exog_re[:, perm]
                kwargs["groups"] = model.groups
                model = model.__class__(model.endog, model.exog, **kwargs)
                lay = model.layout
                tril = np.tril_indices(k_re)
                cov = lay.cov_re(natural)[np.ix_(perm, perm)]
                natural[:len(tril[0])] = cov[tril]
            index = 0
        else:
            names = list(model.exog_vc.names)
            if re_ix not in names:
                raise ValueError(f"re_ix must be one of the variance components "
                                 f"{names}, not {re_ix!r}")
            index = model.k_re2 + names.index(re_ix)
        estimate = natural[index]
        low, high = estimate - dist_low, estimate + dist_high
        if low <= 0:
            raise ValueError(
                "dist_low is too large and would result in a "
                "negative variance. Try a smaller value.")
        grid = np.concatenate([np.linspace(low, estimate, num_low + 1),
                               np.linspace(estimate, high, num_high + 1)[1:]])
        mask = np.ones(natural.size, bool) if self.freepat is None \
            else np.asarray(self.freepat, bool).copy()
        if vtype == "re" and re_ix and self.freepat is not None:
            mask[:model.k_re2] = True  # held covariances come with the permutation
        mask[index] = False
        objective = model._objective(reml=self.reml)
        out = []
        for value in grid:
            start = natural.copy()
            start[index] = value
            est = optim.estimate(objective, lay.from_natural(start), mask,
                                 options=fit_kwargs)
            out.append([value, est.evaluation.llf])
        return np.asarray(out)

    def profile_ci(self, *args, **kwargs):
        """Profile-likelihood intervals for random-effects SDs and
        correlations: available for location-scale models only (see
        ``LocationScaleResults.profile_ci``)."""
        raise NotImplementedError(
            "profile_ci is available for location-scale models (random scale "
            "effects, var_re_formula); for this model, fit it again with the "
            "variance held at chosen values (fit(start_params=..., free=...)) "
            "and use compare_lr_test.")

    # ------------------------------------------------------------------
    def summary(self, yname=None, xname_fe=None, xname_re=None, title=None,
                alpha=0.05):
        """
        Summarize the fit (statsmodels style).

        Tables: model information; fixed effects; random-effects
        (co)variances; the residual variance function on the log scale, with
        exp() of each coefficient (ratios of variances, or the reference
        variance for the intercept).

        Parameters
        ----------
        yname : str, optional
        xname_fe, xname_re : list of str, optional
            Names replacing the fixed-effects / random-effects labels.
        title : str, optional
        alpha : float
            Significance level of the confidence intervals.

        Returns
        -------
        statsmodels.iolib.summary2.Summary
        """
        from .summary import build_summary

        return build_summary(self, yname=yname, xname_fe=xname_fe,
                             xname_re=xname_re, title=title, alpha=alpha)

    # ------------------------------------------------------------------
    # Cluster-robust covariance
    def get_robustcov_results(self, cov_type: str = "cluster", **kwargs):
        """
        These results with a cluster-robust covariance of the fixed effects
        (statsmodels' ``get_robustcov_results``; the same as
        ``fit(cov_type=..., cov_kwds=kwargs)``).

        Parameters
        ----------
        cov_type : {"cluster", "nonrobust"}
        **kwargs
            ``correction`` ("CR0", "CR1" (default), "CR1S" or "CR2") and
            ``groups`` (the clusters: a column of the formula's data or one
            label per row; default: the model's groups).  See
            :mod:`statsmodels_hetmixed.robust`.

        Returns
        -------
        HetMixedLMResults
            A new results object (wrapped): ``bse_fe``, ``cov_params()``
            (its fixed-effect block; the covariance parameters' block stays
            model-based) and ``summary()`` use the robust covariance; with
            CR2, ``df_fe`` holds the Satterthwaite degrees of freedom.
        """
        import copy

        if cov_type != "nonrobust":
            self._needs_data("the cluster-robust covariance")
        new = copy.copy(self)
        new._cache = {}
        for name in ("cov_params_default", "_cluster_robust"):
            new.__dict__.pop(name, None)
        robust.apply_cov_type(new, cov_type, kwargs)
        return HetMixedLMResultsWrapper(new)


def mixedlm_parameters(layout, params_natural, cov_natural, fe_score_jacobian):
    """
    MixedLM's parameters and their covariance, from the natural ones of a
    model with one residual variance ``scale``.

    MixedLM reports ``(fe_params, cov_re / scale, vcomp / scale)`` and the
    inverse of the Hessian of its log-likelihood profiled over the scale,
    joint in the fixed effects and those ratios.  At the estimate that
    inverse is the covariance of the natural parameters, joint in the
    fixed effects and the covariances, carried over by the delta method:

    * the joint covariance from ``(X'V^-1 X)^-1 = A^-1``, the covariance
      ``P`` of the natural covariance and variance parameters (of the
      log-likelihood profiled over the fixed effects) and the cross block
      ``C = d (X'V^-1 r) / d natural`` of the Hessian: ``A^-1 + A^-1 C P
      C' A^-1`` for the fixed effects, ``A^-1 C P`` across;
    * then the Jacobian of ``covariance / scale``, with ``log scale`` the
      mean log residual variance.

    Exact at a stationary point (the second-derivative terms of a
    reparameterisation multiply the gradient, which vanishes there): the
    same for REML, whose criterion MixedLM profiles the same way.

    Returns
    -------
    params : ndarray (k_fe + k_cov,)
    cov : ndarray (k_fe + k_cov, k_fe + k_cov)
    """
    p, k_cov = layout.k_fe, layout.k_cov
    params_natural = np.asarray(params_natural, dtype=float)
    natural = params_natural[p:]
    scale = float(np.exp(layout.log_scale(natural)))
    joint = np.array(cov_natural, dtype=float)
    fe_cov, cov_blocks = joint[:p, :p].copy(), joint[p:, p:]
    across = fe_cov @ np.asarray(fe_score_jacobian, dtype=float) @ cov_blocks
    joint[:p, :p] = fe_cov + across @ np.asarray(fe_score_jacobian).T @ fe_cov
    joint[:p, p:] = across
    joint[p:, :p] = across.T
    # d log scale / d variance parameters: the mean over rows of
    # d log sigma2_ij / d parameter.
    d_log_scale = layout.info_directions(natural)[1].mean(axis=0)
    var = np.arange(layout.k_params)[p:][layout.var_natural]
    jac = np.zeros((p + k_cov, layout.k_params))
    jac[:p, :p] = np.eye(p)
    for k in range(k_cov):
        jac[p + k, p + k] = 1.0 / scale
        jac[p + k, var] = -natural[k] / scale * d_log_scale
    params = np.concatenate([params_natural[:p], natural[:k_cov] / scale])
    cov = jac @ joint @ jac.T
    return params, 0.5 * (cov + cov.T)


def _natural_names(res):
    """Names of a fit's natural-scale parameters: the layout's, or for a
    MixedLM fit those a HetMixedLM layout gives its (co)variances."""
    lay = getattr(res, "layout", None)
    if lay is not None:
        return list(lay.names)
    model = res.model
    return list(model.exog_names) + covariance_names(
        model.data.exog_re_names if model.k_re else [], model.exog_vc.names)


class HetMixedLMResultsWrapper(MixedLMResultsWrapper):
    _attrs = {
        # MixedLM labels bse_re with the random-effect names only, which
        # fails with variance components; label it with the full names.
        "bse_re": ("generic_columns", "cov_param_names"),
        "var_params": ("generic_columns", "exog_var_names"),
        "bse_var": ("generic_columns", "exog_var_names"),
        "params_natural": ("generic_columns", "natural_param_names"),
        "bse_natural": ("generic_columns", "natural_param_names"),
        "resid_pearson": "rows",
        "resid_normalized": "rows",
        "resid_var": "rows",
    }
    _wrap_attrs = wrap.union_dicts(MixedLMResultsWrapper._wrap_attrs, _attrs)
    _methods = {"residuals": "rows"}
    _wrap_methods = wrap.union_dicts(MixedLMResultsWrapper._wrap_methods,
                                     _methods)


wrap.populate_wrapper(HetMixedLMResultsWrapper, HetMixedLMResults)
