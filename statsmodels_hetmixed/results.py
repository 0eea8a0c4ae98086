"""Results of a HetMixedLM fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.base import wrapper as wrap
from statsmodels.regression.mixed_linear_model import (
    MixedLMParams,
    MixedLMResults,
    MixedLMResultsWrapper,
)
from statsmodels.tools._decorators import cache_readonly

from . import _engine

__all__ = ["HetMixedLMResults", "HetMixedLMResultsWrapper"]


class HetMixedLMResults(MixedLMResults):
    """
    Results of fitting a :class:`HetMixedLM`.

    Everything of ``MixedLMResults`` is available; in addition:

    Attributes
    ----------
    params : ndarray or Series
        Fixed effects, ``cov_re`` lower triangle, variance components, and
        the variance-function coefficients (``var:<name>``), variances on
        their natural scale.
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

    def _finish(self, ev, converged, max_grad, decrement, n_iter, hist, method,
                free):
        model = self.model
        lay = model.layout
        model.data.cov_param_names = list(
            model.data.param_names[lay.k_fe:lay.k_fe + lay.k_cov])
        fe, cov_re, vcomp, var_params = lay.split(self.params)
        self.fe_params = fe
        self.cov_re = cov_re
        self.vcomp = vcomp
        self._var_params = var_params
        self.scale = float(np.exp(model.variance_function.log_scale(var_params)))
        self.cov_re_unscaled = cov_re / self.scale
        self.params_object = MixedLMParams.from_components(
            fe_params=fe, cov_re=cov_re, vcomp=vcomp)
        self.method = "REML" if model.reml else "ML"
        self.reml = model.reml
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

    # ------------------------------------------------------------------
    @property
    def var_params(self):
        """Variance-function coefficients a (log sigma2 = W a)."""
        return self._var_params

    @cache_readonly
    def bse_var(self):
        """Standard errors of ``var_params``."""
        return self.bse[self.model.layout.var]

    @cache_readonly
    def bse_re(self):
        """Standard errors of the ``cov_re`` lower triangle and the
        variance components (on the variances' natural scale)."""
        lay = self.model.layout
        return self.bse[lay.k_fe:lay.k_fe + lay.k_cov]

    @cache_readonly
    def llf(self):
        return self._llf

    @cache_readonly
    def aic(self):
        """Akaike information criterion (REML criterion for REML fits)."""
        return -2.0 * self.llf + 2.0 * self.df_modl

    @cache_readonly
    def bic(self):
        """Bayesian information criterion (REML criterion for REML fits).

        Like R's nlme, REML fits use n - k_fe observations."""
        n = self.nobs - (self.k_fe if self.reml else 0)
        return -2.0 * self.llf + np.log(n) * self.df_modl

    # ------------------------------------------------------------------
    # Random effects
    def _group_re_layout(self, group_ix):
        """Columns of the padded design used by one group, and their names."""
        model = self.model
        cols = list(range(self.k_re))
        names = list(model.data.exog_re_names) if self.k_re else []
        for j, slots in enumerate(model.layout.vc_slots):
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

    @cache_readonly
    def fittedvalues(self):
        """Fitted values: fixed effects plus predicted random effects."""
        grouped = self.model._grouped
        return grouped.exog @ self.fe_params + _engine.rows_times_group(
            grouped, grouped.exog_z, self._blup)

    @cache_readonly
    def resid(self):
        """Response residuals y - fitted values (conditional on the BLUPs)."""
        return self.model.endog - self.fittedvalues

    @cache_readonly
    def resid_var(self):
        """Fitted residual variances sigma2_ij of the observations."""
        return self.model.variance_function.variance(self._var_params)

    @cache_readonly
    def resid_pearson(self):
        """Response residuals divided by their standard deviation sigma_ij."""
        return self.resid / np.sqrt(self.resid_var)

    @cache_readonly
    def resid_normalized(self):
        """
        Normalized residuals, as nlme's ``residuals(type="normalized")``.

        nlme pre-multiplies the Pearson residuals by the inverse square root
        of the within-group error correlation matrix; this model has no
        within-group error correlation, so they equal the Pearson residuals.
        """
        return self.resid_pearson

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

    def predict_variance(self, exog=None, transform=True):
        """
        Residual variances sigma2 for the data or for new data.

        Parameters
        ----------
        exog : DataFrame or array_like, optional
            New data.  A DataFrame is passed through ``var_formula`` when
            the model was built from formulas (``transform=True``);
            otherwise an array with the columns of ``exog_var``.
        transform : bool
            Whether to apply ``var_formula`` to a DataFrame.

        Returns
        -------
        ndarray or Series
        """
        model = self.model
        if exog is None:
            return self.resid_var
        index = getattr(exog, "index", None)
        spec = getattr(model, "_var_design_info", None)
        if transform and spec is not None and isinstance(exog, pd.DataFrame):
            import patsy

            (w,) = patsy.build_design_matrices([spec], exog, NA_action="raise")
            w = np.asarray(w)
        elif transform and isinstance(exog, pd.DataFrame) and \
                getattr(model, "var_formula", None) is None and \
                model.data.exog_var_names == ["Intercept"]:
            w = np.ones((len(exog), 1))
        else:
            w = np.asarray(exog, dtype=float)
            if w.ndim == 1:
                w = w[:, None]
        if w.shape[1] != model.k_var:
            raise ValueError(
                f"exog for predict_variance needs {model.k_var} columns "
                f"({model.data.exog_var_names}), got {w.shape[1]}")
        out = model.variance_function.variance(self._var_params, w)
        return pd.Series(out, index=index) if index is not None else out

    # ------------------------------------------------------------------
    # Tests
    def t_test(self, r_matrix, use_t=None):
        """
        t-tests (z-tests) of linear hypotheses ``R params = q``.

        ``r_matrix`` may be a string of constraints on any parameter (e.g.
        ``"var:female = 0"``), a matrix with one column per parameter, or,
        as in MixedLM, a matrix with one column per fixed effect.
        """
        if not isinstance(r_matrix, str) and not isinstance(r_matrix, tuple):
            r = np.atleast_2d(np.asarray(r_matrix, dtype=float))
            if r.shape[1] == self.k_fe and self.k_fe != len(self.params):
                r = np.hstack([r, np.zeros((r.shape[0], len(self.params) - self.k_fe))])
            r_matrix = r
        return super(MixedLMResults, self).t_test(r_matrix, use_t=use_t)

    def compare_lr_test(self, restricted):
        """
        Likelihood-ratio test of this (larger) model against a restricted one.

        Parameters
        ----------
        restricted : HetMixedLMResults or MixedLMResults
            Fit of a model nested in this one, on the same data.

        Returns
        -------
        lr_stat : float
        p_value : float
            From chi2(df_diff); conservative when the null puts a variance on
            the boundary of its parameter space.
        df_diff : int

        Raises
        ------
        ValueError
            If the two fits use different methods, different data, or are
            REML fits with different fixed effects (REML criteria are then not
            comparable).
        """
        other = getattr(restricted, "_results", restricted)
        if self.reml != other.reml:
            raise ValueError("Both fits must use the same method (ML or REML).")
        if self.model.nobs != other.model.nobs:
            raise ValueError("The two fits use different numbers of observations.")
        if self.reml:
            x1, x2 = self.model.exog, other.model.exog
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
        lr = float(2.0 * (self.llf - other.llf))
        return lr, float(stats.chi2.sf(lr, df_diff)), df_diff

    def profile_re(self, *args, **kwargs):
        """Not available for HetMixedLM (it profiles MixedLM's scaled
        parameterisation); use ``compare_lr_test`` on refits instead."""
        raise NotImplementedError(
            "profile_re is not available for HetMixedLM results; to test a "
            "random-effect variance, fit the model without that random "
            "effect and use compare_lr_test.")

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


class HetMixedLMResultsWrapper(MixedLMResultsWrapper):
    _attrs = {
        # MixedLM labels bse_re with the random-effect names only, which
        # fails with variance components; label it with the full names.
        "bse_re": ("generic_columns", "cov_param_names"),
        "var_params": ("generic_columns", "exog_var_names"),
        "bse_var": ("generic_columns", "exog_var_names"),
        "resid_pearson": "rows",
        "resid_normalized": "rows",
        "resid_var": "rows",
    }
    _wrap_attrs = wrap.union_dicts(MixedLMResultsWrapper._wrap_attrs, _attrs)
    _methods = {"residuals": "rows"}
    _wrap_methods = wrap.union_dicts(MixedLMResultsWrapper._wrap_methods,
                                     _methods)


wrap.populate_wrapper(HetMixedLMResultsWrapper, HetMixedLMResults)
