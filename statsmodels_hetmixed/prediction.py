"""
Predictions with standard errors and intervals for ``HetMixedLMResults``.

For a row with fixed-effects design ``x``, random-effects design ``z`` and
residual variance ``sigma2`` (the variance function at the row's ``w``):

*Conditional* prediction (the row's group was in the fit, nlme's
``level = 1``): ``x' b + z' u_i`` with ``u_i`` the group's predicted random
effects (BLUP).  Writing ``K_i = Var(u_i | y)`` at the estimated ``beta``
(``random_effects_cov``) and ``A_i = K_i Z_i' R_i^-1 X_i``, the prediction
error of the BLUPs is ``u_i_hat - u_i = d_i - A_i (b - beta)`` with ``d_i``
uncorrelated with the data (hence with ``b``) and ``Var(d_i) = K_i``.  So

    Var(x'b + z'u_i_hat - x'beta - z'u_i) = c' C c + z' K_i z,
    c = x - A_i' z,  C = Cov(b)  (the fixed-effect block of cov_params),

Henderson's prediction error variance of the mixed-model equations, which
counts the uncertainty of ``b``, the BLUP's own prediction error and their
covariance.  Its square root is ``mean_se``.

*Marginal* prediction (a group the fit has not seen, or ``conditional=False``,
nlme's ``level = 0``): ``x' b`` with ``Var = x' C x``.

Prediction interval of a new observation ``y = x'beta + z'u_i + e``:
``se_obs^2 = mean_se^2 + var_re + sigma2``, where ``var_re = z' G z`` (the
new group's random effects, unknown) for marginal rows and 0 for conditional
rows (their random effects' uncertainty is in ``mean_se`` already).

With a residual correlation structure (``correlation=``) R_i = S_i C_i S_i
is not diagonal; ``K_i`` and ``A_i`` are computed with it (on the rows
whitened by C_i), and the formulas above hold as they stand.  A new row of a
fitted group is predicted by ``x' b + z' u_i`` only, as nlme's
``predict(level = 1)`` does: the residual's conditional mean given the
group's observed residuals (``Cov(e_new, e_i) V_i^-1 (y_i - X_i b)``, not
zero under AR(1) and the like) is not added, and the interval of a new
observation uses the row's marginal residual variance ``sigma2``: it treats
the new residual as uncorrelated with the group's observed ones (no
forecast from the serial correlation, no covariance of the new residual
with the BLUP's error).

Variance parameters are treated as known, as nlme and lme4 do for BLUPs.
"""

from __future__ import annotations

import builtins

import numpy as np
import pandas as pd
from statsmodels.regression._prediction import PredictionResults

from . import _engine, _formula

__all__ = ["MixedPredictionResults", "prediction_rows", "get_prediction"]

_NEW_GROUPS = ("marginal", "raise")


class MixedPredictionResults(PredictionResults):
    """
    Predictions of a mixed model with standard errors and intervals.

    As ``statsmodels.regression._prediction.PredictionResults``
    (``predicted_mean``, ``se_mean``, ``se_obs``, ``conf_int(obs=, alpha=)``,
    ``summary_frame(alpha=)``), with the mixed model's parts:

    Attributes
    ----------
    conditional : ndarray of bool
        Whether each row's prediction includes its group's predicted random
        effects (``True``) or is marginal (a new or unknown group, or
        ``conditional=False``).
    var_pred_mean : ndarray
        Variance of the prediction error of the mean (see the module
        docstring): ``c' C c + z' K_i z`` for conditional rows, ``x' C x``
        for marginal rows.
    var_re : ndarray
        ``z' G z`` for marginal rows (a new group's random effects), 0 for
        conditional rows.
    var_resid : ndarray
        The rows' residual variances ``sigma2`` (``predict_variance``).
    df : float or ndarray or None
        Degrees of freedom of the t quantiles (fits with ``ddf=``), else
        None: normal quantiles.
    """

    def __init__(self, predicted_mean, var_pred_mean, var_re, var_resid,
                 conditional, df=None, row_labels=None):
        dist = "t" if df is not None else "norm"
        super().__init__(predicted_mean, var_pred_mean, var_resid, df=df,
                         dist=dist, row_labels=row_labels)
        self.var_re = var_re
        self.conditional = conditional

    @property
    def se_obs(self):
        """Standard error of a new observation's prediction error."""
        return np.sqrt(self.var_pred_mean + self.var_re + self.var_resid)

    def summary_frame(self, alpha=0.05):
        """
        One row per prediction: ``mean``, ``mean_se``, ``mean_ci_lower``,
        ``mean_ci_upper`` (interval for the conditional or marginal mean),
        ``obs_ci_lower``, ``obs_ci_upper`` (prediction interval of a new
        observation) and ``conditional``.

        Parameters
        ----------
        alpha : float
            1 - coverage of the intervals.

        Returns
        -------
        pandas.DataFrame
        """
        frame = super().summary_frame(alpha=alpha)
        frame["conditional"] = self.conditional
        return frame


# Names of the formula engines' own functions (patsy's, formulaic's), which a
# formula uses but the data need not hold.
_PATSY_NAMES = {"np", "C", "I", "Q", "center", "standardize", "scale",
                "Treatment", "Sum", "Poly", "Diff", "Helmert", "bs", "cr", "cc",
                "te", "poly", "lag", "hashed", "contr", "identity"}


def _missing_columns(design_info, frame):
    """Names a design reads that the new data lack (best effort: the
    Python names in its factors' code, less builtins and the formula
    engine's own)."""
    return [n for n in _formula.spec_names(design_info)[0]
            if n not in frame.columns and not hasattr(builtins, n)
            and n not in _PATSY_NAMES]


def _build(design_info, frame, what):
    """Rows of a design for new data, NaN where the data have missing
    values (rows kept in place, as statsmodels' formula predict does)."""
    missing = _missing_columns(design_info, frame)
    if missing:
        raise ValueError(f"The new data lack column(s) {missing} that the "
                         f"{what} needs.")
    mat = _formula.build_rows(design_info, frame, na_action="drop")
    out = np.full((len(frame), mat.shape[1]), np.nan)
    out[np.asarray(mat.index, dtype=np.intp)] = mat.to_numpy(dtype=float)
    return out


def _as_matrix(arr, k, what, names):
    mat = np.asarray(arr, dtype=float)
    if mat.ndim == 1:
        mat = mat[:, None] if k == 1 else mat[None, :]
    if mat.ndim != 2 or mat.shape[1] != k:
        raise ValueError(f"{what} needs {k} column(s) ({names}), got shape "
                         f"{mat.shape}.")
    return mat


class _Rows:
    """The designs and groups of the rows to predict."""

    def __init__(self, exog, exog_re, exog_var, group_pos, conditional, index,
                 in_sample):
        self.exog = exog            # (n, p)
        self.exog_re = exog_re      # (n, q) or None
        self.exog_var = exog_var    # (n, k_var) or None (fitted rows: resid_var)
        self.group_pos = group_pos  # (n,) group index, -1 for marginal rows
        self.conditional = conditional
        self.index = index
        self.in_sample = in_sample


def _group_positions(results, labels, new_groups):
    """Each label's position among the fitted groups, -1 for unknown ones."""
    model = results.model
    known = {lab: i for i, lab in enumerate(model.group_labels)}
    labels = pd.Series(np.asarray(labels, dtype=object).ravel())
    fitted_kind = pd.Series(model.group_labels).map(_label_kind).unique()
    new_kind = labels[labels.notna()].map(_label_kind).unique()
    odd = set(new_kind) - set(fitted_kind)
    if len(new_kind) and odd:
        raise ValueError(
            f"The new group labels are {sorted(odd)}, the fitted groups' "
            f"{sorted(fitted_kind)} (e.g. {model.group_labels[0]!r}): convert "
            "them to the same type, or no group would be recognised.")
    pos = np.array([known.get(_label_key(lab), -1) if pd.notna(lab) else -1
                    for lab in labels], dtype=np.intp)
    if new_groups == "raise" and (pos < 0).any():
        unknown = list(dict.fromkeys(labels[pos < 0].tolist()))
        raise ValueError(
            f"Group(s) {unknown[:10]} were not in the fitted data (or are "
            "missing). Use new_groups='marginal' to predict them from the "
            "fixed effects alone.")
    return pos


def _label_kind(label):
    if isinstance(label, (bool, np.bool_)):
        return "bool"
    if isinstance(label, (int, float, np.integer, np.floating)):
        return "number"
    return "str" if isinstance(label, str) else type(label).__name__


def _label_key(label):
    # 1224.0 (a float column with a missing value) is the fitted group 1224.
    if isinstance(label, (float, np.floating)) and float(label).is_integer():
        return int(label)
    if isinstance(label, np.generic):
        return label.item()
    return label


def prediction_rows(results, exog=None, transform=True, groups=None,
                    exog_re=None, exog_var=None, conditional=None,
                    new_groups="marginal", need_variance=False):
    """
    The designs, groups and labels of the rows to predict.

    See ``HetMixedLMResults.get_prediction`` for the arguments.
    ``need_variance``: build the random-effects and variance designs of
    marginal rows too (intervals need them).
    """
    model = results.model
    if new_groups not in _NEW_GROUPS:
        raise ValueError(f"new_groups must be one of {_NEW_GROUPS}, not "
                         f"{new_groups!r}")
    if conditional not in (None, True, False):
        raise ValueError("conditional must be None, True or False")
    if exog is None:
        if groups is not None or exog_re is not None or exog_var is not None:
            raise ValueError("groups, exog_re and exog_var describe new data: "
                             "give exog too (the fitted rows use their own).")
        grouped = model._grouped
        cond = conditional is not False
        n = model.nobs
        pos = model._group_index.copy() if cond else np.full(n, -1, np.intp)
        index = getattr(model.data, "row_labels", None)
        return _Rows(model.exog, grouped.exog_z, None, pos,
                     np.full(n, cond), index, True)

    frame = exog if isinstance(exog, pd.DataFrame) else None
    formula = transform and getattr(model, "formula", None) is not None
    if frame is not None:
        index = frame.index
        # Positions, not labels: repeated index labels must not duplicate rows.
        frame = frame.reset_index(drop=True)
    else:
        index = None
    if formula:
        if frame is None:
            raise ValueError("The model was built from formulas: pass the new "
                             "data as a DataFrame with the columns the "
                             "formulas use.")
        spec = getattr(model.data, "model_spec", None)
        if spec is not None:
            # Rows with missing values stay, as NaN, whichever formula
            # engine built the design (formulaic's stored specification
            # would raise, patsy's drop them).
            X = _build(spec, frame, "mean formula")
        else:
            X, _ = results._transform_predict_exog(frame, transform=True)
    else:
        X = np.asarray(exog, dtype=float)
        if X.ndim == 1:
            X = X[:, None] if model.k_fe == 1 else X[None, :]
    X = _as_matrix(X, model.k_fe, "exog", model.exog_names)
    n = X.shape[0]

    group_name = getattr(model, "_group_name", None)
    if isinstance(groups, str) and frame is not None and groups in frame.columns:
        groups = frame[groups]
    elif groups is None and frame is not None and group_name is not None \
            and group_name in frame.columns and conditional is not False:
        groups = frame[group_name]
    if conditional is None:
        conditional = groups is not None
    if conditional and groups is None:
        raise ValueError(
            "Conditional predictions need the rows' groups: pass groups= (one "
            "label per row)"
            + (f" or a column {group_name!r} in the data" if group_name else "")
            + ", or conditional=False for marginal predictions.")
    if conditional:
        if np.ndim(groups) != 1 or len(groups) != n:
            raise ValueError(f"groups needs one label per row ({n}), got "
                             f"{np.shape(groups)}.")
        pos = _group_positions(results, groups, new_groups)
    else:
        pos = np.full(n, -1, np.intp)
    cond_rows = pos >= 0

    Z = None
    if cond_rows.any() or need_variance:
        if model.k_vc:
            raise NotImplementedError(
                "Predictions on new data with intervals or random effects are "
                "not available for models with variance components; use "
                "conditional=False for the fixed part, or fittedvalues.")
        Z = _re_design(model, frame, exog_re, n, transform)
    W = None
    if need_variance:
        W = _var_design(results, frame, exog_var, n, transform)
    return _Rows(X, Z, W, pos, cond_rows, index, False)


def _re_design(model, frame, exog_re, n, transform):
    names = list(model.data.exog_re_names)
    if exog_re is not None:
        return _as_matrix(exog_re, model.k_re, "exog_re", names)
    info = getattr(model, "_re_design_info", None)
    if info is not None and frame is not None and transform:
        return _as_matrix(_build(info, frame, "random-effects formula (re_formula)"),
                          model.k_re, "The random-effects design", names)
    if model.k_re == 1 and model.exog_re is not None and np.all(model.exog_re == 1):
        return np.ones((n, 1))  # a random intercept
    raise ValueError(
        f"Give exog_re (the random-effects design of the new rows, columns "
        f"{names}): the model's random-effects design is not a random "
        "intercept and cannot be rebuilt from the new data.")


def _var_design(results, frame, exog_var, n, transform):
    model = results.model
    names = list(model.data.exog_var_names)
    if exog_var is not None:
        return _as_matrix(exog_var, model.k_var, "exog_var", names)
    info = getattr(model, "_var_design_info", None)
    if info is not None and frame is not None and transform:
        return _build(info, frame, "variance formula (var_formula)")
    if getattr(model, "var_formula", None) is None and names == ["Intercept"]:
        return np.ones((n, 1))
    raise ValueError(
        f"Give exog_var (the variance design of the new rows, columns {names}) "
        "for the prediction intervals: the model's variance design cannot be "
        "rebuilt from the new data.")


def _fe_inputs(results):
    """Per-group ``A_i = K_i Z_i' R_i^-1 X_i`` (m, q, p), cached: the BLUPs'
    dependence on the fixed effects (R_i the group's residual covariance,
    with its correlation structure if any)."""
    cache = results._cache
    if "_blup_fe" not in cache:
        model = results.model
        grouped = getattr(model, "_grouped", None)
        if grouped is None:
            raise ValueError("The fitted data were removed (remove_data): "
                             "conditional prediction intervals need them.")
        Z, X = grouped.exog_z, model.exog
        resid_var = np.asarray(results.resid_var, dtype=float)
        lay = results.layout
        block = lay.correlation_block
        if block is None:
            B = _engine.group_cross(grouped, Z, X, 1.0 / resid_var)
        else:
            # R_i = S_i L_i L_i' S_i: Z_i' R_i^-1 X_i = Z*' X* with the
            # whitened rows L_i^-1 S_i^-1 [Z_i, X_i]
            q = Z.shape[1]
            white = block.whiten_rows(np.asarray(results._natural)[lay.corr_natural],
                                      np.column_stack([Z, X]) / np.sqrt(resid_var)[:, None])
            B = _engine.group_cross(grouped, np.ascontiguousarray(white[:, :q]),
                                    np.ascontiguousarray(white[:, q:]), None)
        cache["_blup_fe"] = results._cond_cov @ B
    return cache["_blup_fe"]


def predicted_mean(results, rows):
    """``x'b`` plus, for conditional rows, ``z'u_i``."""
    mean = rows.exog @ np.asarray(results.fe_params, dtype=float)
    cond = rows.conditional
    if cond.any():
        blup = results._blup[rows.group_pos[cond]]
        mean[cond] += np.einsum("ia,ia->i", rows.exog_re[cond], blup)
    return mean


def _df(results, X):
    """t degrees of freedom per row: with a small-sample method
    (``fit(ddf=...)``), the df of the row's fixed-effect contrast ``x'beta``
    (``contrast_df``: Satterthwaite's or Kenward-Roger's df of that
    contrast, as ``t_test`` gives it); else None (normal quantiles)."""
    method = getattr(results, "_ddf", None)
    if method is None:
        return None
    X = np.asarray(X, dtype=float)
    # Rows with the same design share a contrast: one df each.
    unique, inverse = np.unique(X, axis=0, return_inverse=True)
    df = np.array([method.contrast_df(row) for row in unique])
    return df[np.ravel(inverse)]


def get_prediction(results, rows, variance_factors=()):
    """``MixedPredictionResults`` of the rows (see the module docstring).
    ``variance_factors``: the factors of further variance functions
    (var_power, var_const_power) for new rows; the fitted rows' own
    variances already hold them."""
    X, Z, cond = rows.exog, rows.exog_re, rows.conditional
    k_fe = results.k_fe
    C = np.asarray(results.cov_params(), dtype=float)[:k_fe, :k_fe]
    mean = predicted_mean(results, rows)
    c = X.copy()
    var_cond = np.zeros(len(X))
    if cond.any():
        g = rows.group_pos[cond]
        zc = Z[cond]
        A = _fe_inputs(results)[g]                    # (r, q, p)
        K = results._cond_cov[g]                      # (r, q, q)
        c[cond] -= np.einsum("iqp,iq->ip", A, zc)
        var_cond[cond] = np.einsum("ia,iab,ib->i", zc, K, zc)
    var_mean = np.einsum("ip,pq,iq->i", c, C, c) + var_cond
    lay = results.layout
    factor = lay.factor(results._natural)
    G = factor @ factor.T
    var_re = np.where(cond, 0.0, np.einsum("ia,ab,ib->i", Z, G, Z))
    if rows.in_sample:
        var_resid = np.asarray(results.resid_var, dtype=float).copy()
    else:
        var_resid = results.model.variance_function.variance(
            results._var_params, rows.exog_var)
        for factor in variance_factors:
            var_resid = var_resid * factor
    labels = rows.index
    return MixedPredictionResults(mean, var_mean, var_re, var_resid, cond,
                                  df=_df(results, X), row_labels=labels)

