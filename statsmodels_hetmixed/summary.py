"""The text summary of HetMixedLM results, and ``summary_col`` for tables
of several fits.

Without a variance formula the summary has ``MixedLM``'s look (title,
rows, ``Scale:``); with one it adds the residual variance function: its
coefficients under the names ``t_test`` and ``wald_test`` take
(``var:<column>``), the variance ratios ``exp(Coef.)`` with intervals, and
the residual variance of each level of a categorical variance design.
Variances get intervals on the log scale (as Stata's); no z-test is shown
where 0 is not a meaningful null (log variances, whose 0 is a variance of 1).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm, t as student_t
from statsmodels.iolib import summary2

from .inference import correlation_transforms, transformed_interval

MIXEDLM_TITLE = "Mixed Linear Model Regression Results"
HETEROSKEDASTIC_TITLE = "Mixed Linear Model with Heteroskedastic Residuals"
# Variance designs with at most this many distinct rows, each a 0/1 row,
# get a residual variance per row (Stata's var(Residual) rows by group).
_MAX_VARIANCE_ROWS = 20


class HetSummary(summary2.Summary):
    """``summary2.Summary`` whose text frame is as wide as its widest row.

    ``summary2`` pads each table towards the width of the widest *unpadded*
    table, so a padded table can come out wider than the frame drawn
    around it; here the rules, the centred title and the wrapped notes
    follow the rows as printed.
    """

    def as_text(self) -> str:
        pad_col, pad_index, _ = summary2._measure_tables(self.tables, self.settings)
        tables = summary2._simple_tables(self.tables, self.settings, pad_col,
                                         pad_index)
        lines = "\n".join(t.as_text() for t in tables).split("\n")
        widest = max(len(line) for line in lines)
        for i, line in enumerate(lines):
            if line and set(line) <= {"-"}:
                lines[i] = "-" * widest
        lines[0] = "=" * widest
        lines.append("=" * widest)
        title = self.title or ""
        if len(title) < widest:
            title = " " * int(widest / 2 - len(title) / 2) + title
        notes = "\n".join("\n".join(textwrap.wrap(x, widest)) for x in self.extra_txt)
        return f"{title}\n" + "\n".join(lines) + f"\n{notes}"


def _fmt(values, fmt="%.3f"):
    return [fmt % v if np.isfinite(v) else "" for v in values]


def _add_table(smry, df):
    """Add a table whose first column holds labels (left-aligned) and the
    others numbers (right-aligned)."""
    smry.add_df(df, index=False, align="l" + "r" * (df.shape[1] - 1))


def _log_interval(est, se, q):
    """Interval of a positive quantity from a Wald interval of its log
    (delta method, as Stata's intervals for variances); nan where the
    estimate is not positive or its standard error unknown."""
    return transformed_interval(est, se, q, "log")


def build_summary(res, yname=None, xname_fe=None, xname_re=None, title=None,
                  alpha=0.05):
    model = res.model
    lay = res.layout
    mixedlm_look = res.reports_mixedlm_params
    location_scale = hasattr(res, "re_table")
    level2 = hasattr(res, "_z_rows")
    # fixed effects and (co)variances: MixedLM's names without a variance
    # formula (as MixedLM's summary, natural values), else the natural ones
    # (the names params, t_test and wald_test take)
    names = list(model.data.param_names)[:lay.k_fe + lay.k_cov]
    if xname_fe is not None:
        if len(xname_fe) != lay.k_fe:
            raise ValueError(f"xname_fe should be a list of length {lay.k_fe}")
        names[lay.fe] = xname_fe
    if xname_re is not None:
        if len(xname_re) != lay.k_cov:
            raise ValueError(f"xname_re should be a list of length {lay.k_cov}")
        names[lay.k_fe:lay.k_fe + lay.k_cov] = xname_re

    smry = HetSummary()
    smry.add_dict(_info(res, yname, mixedlm_look))
    smry.add_title(title or (MIXEDLM_TITLE if mixedlm_look else HETEROSKEDASTIC_TITLE))

    q = -norm.ppf(alpha / 2)
    lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
    # Variances on their natural scale (as MixedLM's summary shows them);
    # the fixed effects' standard errors are bse_fe (MixedLM's without a
    # variance formula).
    params = res.params_natural_array
    bse = np.array(res.bse_natural, dtype=float)
    bse[lay.fe] = np.asarray(res.bse_fe, dtype=float)
    # Parameters held fixed (fit(free=...)) have no standard error.
    bse = np.where(bse > 0, bse, np.nan)

    # Fixed effects and the random-effects (co)variances, as MixedLM; a
    # location-scale model shows its random effects once, as SDs and
    # correlations (re_table), and level-2 coefficients here.
    no_re = getattr(model, "_no_random_effects", False)
    k = lay.k_fe if (location_scale and not level2) or no_re else lay.k_fe + lay.k_cov
    table = np.full((k, 6), np.nan)
    table[:, 0] = params[:k]
    table[:, 1] = bse[:k]
    tested = np.zeros(k, bool)
    tested[getattr(res, "_z_rows", lay.fe)] = True
    # A level-2 log variance's intercept is a log variance: 0 means SD 1.
    untested = [j for j in range(k) if tested[j] and _is_level2_log_variance(res, names[j])]
    tested[untested] = False
    small = getattr(res, "_ddf", None)
    fe = np.flatnonzero(tested)
    table[fe, 2] = params[fe] / bse[fe]
    q_fe = np.full(k, q)
    if small is None:
        table[fe, 3] = 2 * norm.sf(np.abs(table[fe, 2]))
        columns = ["Coef.", "Std.Err.", "z", "P>|z|", lo, hi]
    else:  # t with each fixed effect's df (fit(ddf=...)), shown as a column
        dof = np.full(k, np.nan)
        dof[lay.fe] = np.asarray(small.df_fe, dtype=float)
        table[fe, 3] = 2 * student_t.sf(np.abs(table[fe, 2]), dof[fe])
        q_fe[lay.fe] = student_t.ppf(1 - alpha / 2, dof[lay.fe])
        columns = ["Coef.", "Std.Err.", "t", "P>|t|", lo, hi]
    wald = np.r_[fe, untested].astype(int)
    table[wald, 4] = params[wald] - q_fe[wald] * bse[wald]
    table[wald, 5] = params[wald] + q_fe[wald] * bse[wald]
    variances = [j for j in range(lay.k_fe, k)
                 if not level2 and lay.variances[j - lay.k_fe]]
    table[variances, 4], table[variances, 5] = _log_interval(
        params[variances], bse[variances], q)
    df = pd.DataFrame(table, index=names[:k], columns=columns)
    if small is not None:
        df["df"] = dof
    for col in df.columns:
        df[col] = _fmt(df[col].to_numpy())
    # Level-2 coefficients along a flat direction (a correlation at +-1, an
    # SD at 0) diverge there: their values are where the optimiser stopped,
    # digits that rounding decides (15.676 or 15.682 on HSB model 5), so the
    # limit is shown instead.
    diverging = [j for j, name in enumerate(names[:k])
                 if level2 and name in set(res._undetermined_params())
                 and (name.startswith("atanh corr(") or name.startswith("logvar("))]
    for j in diverging:
        df.iloc[j, 0] = "+inf" if params[j] > 0 else "-inf"
    smry.add_df(df, align="r")
    if diverging:
        smry.add_text("+inf / -inf: level-2 coefficients of a correlation at "
                      "+-1 or an SD at 0 (the boundary), which the data do not "
                      "determine (see the fit's warning).")
    if no_re:
        smry.add_text("No random effects (re_formula='0', nlme's gls): "
                      "V_i = R_i, the groups only delimit the residual "
                      "correlation.")
    if variances:
        smry.add_text("Intervals for variances: log scale, as Stata's.")
    if untested:
        smry.add_text("logvar(...) coefficients of the level-2 intercept are log "
                      "variances (0 means SD 1): no z-test.")
    if small is not None:
        # a cluster-robust covariance says so in its own line
        adjusted = (" Std.Err. of the fixed effects: the Kenward-Roger adjusted "
                    "covariance." if small.cov_fe is not None
                    and getattr(res, "cov_type", "nonrobust") == "nonrobust" else "")
        smry.add_text(f"Fixed effects: t-tests with {small.name} denominator "
                      f"degrees of freedom (df).{adjusted}")

    if location_scale:
        _location_scale_block(smry, res, alpha, level2)
    if not mixedlm_look:  # Scale: holds the one residual variance
        if model.var_link == "identity":
            _identity_link_block(smry, res, params, bse, q, lo, hi)
        else:
            _log_link_block(smry, res, params, bse, q, lo, hi)
        _residual_variance_block(smry, res, alpha)
    for block in res._extra_variance_blocks:
        _block_table(smry, res, block, params, bse, q, lo, hi)
    for block in res._extra_variance_blocks:
        message = block.degenerate(params[res.layout.slice_of(block)])
        if message is not None:
            smry.add_text(f"Warning: {message}")
    if lay.correlation_block is not None:
        _correlation_table(smry, res, params, bse, alpha, lo, hi)
        message = lay.correlation_block.degenerate(
            params[res.layout.slice_of(lay.correlation_block)])
        if message is not None:
            smry.add_text(f"Warning: {message}")
    fixed_point = getattr(res, "fixed_point", None)
    if fixed_point is not None:
        smry.add_text(
            f"Variance function of the fitted values: nlme's {fixed_point}. "
            "The estimates maximise the likelihood with the covariate held at "
            "the fitted values; llf, AIC and LR tests are those of that "
            "likelihood, not of one in which the variance depends on beta.")
    if getattr(res, "cov_type", "nonrobust") != "nonrobust":
        smry.add_text(res.cov_kwds["description"])
    if not res.converged:
        smry.add_text("Warning: the optimization did not converge; estimates "
                      "and standard errors may be wrong.")
    return smry


def _info(res, yname, mixedlm_look):
    """The rows above the tables: MixedLM's rows, in MixedLM's order, for a
    model without a variance formula; with one, the likelihood under the
    name of what it is (lme4's REML criterion is -2 x the REML
    log-likelihood) and the information criteria."""
    model = res.model
    sizes = model._group_sizes
    converged = ("Yes" if res.converged else
                 f"No (max |gradient| {res.max_grad:.2g})")
    info = {"Model:": "HetMixedLM"}
    if not mixedlm_look:
        info["Dependent Variable:"] = yname or model.endog_names
    info.update({
        "No. Observations:": str(model.nobs),
        "No. Groups:": str(model.n_groups),
        "Min. group size:": f"{sizes.min():.0f}",
        "Max. group size:": f"{sizes.max():.0f}",
        "Mean group size:": f"{sizes.mean():.1f}",
    })
    if mixedlm_look:
        info["Dependent Variable:"] = yname or model.endog_names
    info["Method:"] = res.method
    if mixedlm_look:
        info["Scale:"] = f"{res.scale:.4f}"
        info["Log-Likelihood:"] = f"{res.llf:.4f}"
        info["Converged:"] = converged
    elif res.reml:
        info["REML log-likelihood:"] = f"{res.llf:.4f}"
        info["REML criterion:"] = f"{-2 * res.llf:.4f}"
        info["AIC (REML):"] = f"{res.aic_reml:.4f}"
        info["BIC (REML):"] = f"{res.bic_reml:.4f}"
    else:
        info["Log-Likelihood:"] = f"{res.llf:.4f}"
        info["AIC:"] = f"{res.aic:.4f}"
        info["BIC:"] = f"{res.bic:.4f}"
    if not mixedlm_look:
        info["No. parameters:"] = str(res.df_modl)
        info["Converged:"] = converged
    cov_type = getattr(res, "cov_type", "nonrobust")
    if not mixedlm_look or cov_type != "nonrobust":
        info["Covariance type:"] = getattr(res, "cov_kwds", {}).get("summary", cov_type)
    if getattr(res, "_ddf", None) is not None:
        info["Denominator df:"] = res._ddf.name
    return info


def _is_level2_log_variance(res, name):
    """Whether ``name`` is the intercept of a level-2 log-variance function
    (``logvar(<effect>):<intercept>``)."""
    columns = list(getattr(res.model, "re_var_names", []) or ["Intercept"])
    return name.startswith("logvar(") and name.endswith(f"):{columns[0]}")


def _location_scale_block(smry, res, alpha, level2):
    ret = res.re_table(alpha=alpha).reset_index(names="Random effects")
    for col in ret.columns[1:]:
        ret[col] = _fmt(ret[col].to_numpy())
    _add_table(smry, ret)
    rule = ("the Laplace approximation" if res.n_quad == 1 else
            f"adaptive Gauss-Hermite quadrature with {res.n_quad} nodes per "
            "dimension")
    where = ("" if level2 else
             f" (params: {', '.join(res.layout.names[res.layout.cov])})")
    smry.add_text(f"Location-scale model: random effects in the log residual "
                  f"variance (var:...), ML by {rule}. Random effects as SDs and "
                  f"correlations{where}; intervals on the log scale for SDs, "
                  "Fisher's z for correlations.")
    rank, d = res.covariance_rank()
    if getattr(res, "n_flat", 0):
        smry.add_text("The estimate is on the boundary of the parameter space "
                      "(see the warning): a blank standard error is not "
                      "determined by the data, or belongs to a parameter "
                      "held fixed.")
    elif rank < d:
        smry.add_text(f"The joint random-effects covariance matrix is singular "
                      f"(rank {rank} of {d}): the estimate is on the boundary "
                      "of the parameter space, where the standard errors of "
                      "the random-effects parameters are not reliable.")


def _block_table(smry, res, block, params, bse, q, lo, hi):
    """A block's parameters with z-tests against 0 and Wald intervals."""
    where = res.layout.slice_of(block)
    table = _z_table(block.title or type(block).__name__, block.names,
                     params[where], bse[where], q, lo, hi,
                     untested=getattr(block, "untested", ()))
    _add_table(smry, table)


def _z_table(heading, names, est, se, q, lo, hi, untested=()):
    """Estimates with z-tests against 0 (blank for the rows ``untested``)
    and Wald intervals, formatted."""
    z = np.asarray(est, float) / np.asarray(se, float)
    z[list(untested)] = np.nan
    return pd.DataFrame({
        heading: names,
        "Coef.": _fmt(est),
        "Std.Err.": _fmt(se),
        "z": _fmt(z),
        "P>|z|": _fmt(2 * norm.sf(np.abs(z))),
        lo: _fmt(est - q * se),
        hi: _fmt(est + q * se),
    })


def correlation_heading(model) -> str:
    """``"Residual correlation: AR(1) in occ by Sex"``: the structure, the
    time variable (row order without ``time=``) and ``correlation_by``."""
    block = model.correlation_structure
    text = f"Residual correlation: {block.label}"
    if block.uses_time:
        if model.time is None:
            text += " in row order"
        else:
            text += f" in {model._time_name or 'time'}"
            if getattr(model, "_time_unit", None):     # dates: phi per day
                text += f" ({model._time_unit})"
    if block.levels != [None]:
        text += f" by {model._correlation_by_name or 'correlation_by'}"
    return text


def _correlation_table(smry, res, params, bse, alpha, lo, hi):
    """The correlation parameters with SEs and the intervals of
    ``conf_int()`` (transformed scale, back-transformed); no z-test."""
    block = res.layout.correlation_block
    where = res.layout.slice_of(block)
    c_lo, c_hi = res._correlation_intervals(alpha)
    _add_table(smry, pd.DataFrame({
        correlation_heading(res.model): block.names,
        "Coef.": _fmt(params[where]),
        "Std.Err.": _fmt(bse[where]),
        lo: _fmt(c_lo),
        hi: _fmt(c_hi),
    }))
    kinds = set(correlation_transforms(block))
    scale = {"atanh": "on the atanh scale (Fisher's z)",
             "logit": "on the logit scale"}
    if None in kinds:
        note = ("ARMA coefficients: plain Wald intervals (their admissible "
                "region, stationarity and invertibility, is a joint one).")
    else:
        note = (f"Intervals {scale[kinds.pop()]}, transformed back "
                "(conf_int() gives the same).")
    smry.add_text(f"Residual covariance R_i = S_i C_i S_i, C_i {block.label} "
                  f"correlations ({', '.join(block.names)}). {note}")


def _log_link_block(smry, res, params, bse, q, lo, hi):
    """Coefficients of log sigma2 under their parameter names, and exp() of
    the contrasts as ratios of variances with intervals."""
    model = res.model
    var = res._vf_slice
    a, se = params[var], bse[var]
    columns = list(model.data.exog_var_names)
    names = list(res.layout.names[var])
    intercept = [j for j in range(len(columns)) if res._is_intercept_column(j)]
    _add_table(smry, _z_table("Log variance", names, a, se, q, lo, hi,
                              untested=intercept))
    contrasts = [j for j in range(len(columns)) if j not in intercept]
    if contrasts:
        c_lo, c_hi = np.exp(a - q * se), np.exp(a + q * se)
        _add_table(smry, pd.DataFrame({
            "Variance ratio" if intercept else "exp(Coef.)":
            [f"exp({names[j]})" for j in contrasts],
            "Estimate": _fmt(np.exp(a[contrasts]), "%.4f"),
            lo: _fmt(c_lo[contrasts], "%.4f"),
            hi: _fmt(c_hi[contrasts], "%.4f"),
        }))
    median = " of a median group (random scale effects at 0)" \
        if hasattr(res, "re_table") else ""
    if intercept:
        name = names[intercept[0]]
        note = (f"exp({name}) is the residual variance{median} where the other "
                "columns are 0; a variance ratio is per unit of its column. "
                f"No z-test for {name}, a log variance (0 means variance 1).")
    else:
        note = f"exp(Coef.) multiplies the residual variance{median}."
    smry.add_text("Residual variance function (log link): log sigma2 = W a. "
                  + note)


def _identity_link_block(smry, res, params, bse, q, lo, hi):
    """Stata-like block of additive residual variances."""
    model = res.model
    var = res._vf_slice
    theta, se = params[var], bse[var]
    names = list(model.data.exog_var_names)
    var_by = getattr(model, "var_by", None)
    labels = []
    for j, name in enumerate(names):
        if res._is_intercept_column(j):
            labels.append("var(Residual)")
        elif var_by is not None and "[" in name:
            labels.append(f"var(Residual: {var_by}={name[name.index('[') + 1:-1]})")
        else:
            labels.append(f"var({name})")
    v_lo, v_hi = _log_interval(theta, se, q)
    vt = pd.DataFrame({
        "Residual variances": labels,
        "Estimate": _fmt(theta),
        "Std.Err.": _fmt(se),
        lo: _fmt(v_lo),
        hi: _fmt(v_hi),
    })
    _add_table(smry, vt)
    smry.add_text("Residual variances (identity link): sigma2 = W theta, each "
                  "theta >= 0 (params: "
                  f"{', '.join(res.layout.names[var])}). Confidence intervals "
                  "are computed on the log scale, as in Stata.")


def _residual_variance_block(smry, res, alpha):
    """The residual variance of each row of a categorical variance design
    (Stata's ``var(Residual)`` rows by group), from
    ``residual_variance_table``."""
    if res._extra_variance_blocks:
        return
    rows, labels = res._distinct_var_rows()
    names = list(res.model.data.exog_var_names)
    others = [j for j in range(len(names)) if not res._is_intercept_column(j)]
    if (len(rows) < 2 or len(rows) > _MAX_VARIANCE_ROWS
            or not set(np.unique(rows[:, others])) <= {0.0, 1.0}):
        return
    if (res.model.var_link == "identity" and rows.shape[0] == rows.shape[1]
            and np.all(rows.sum(axis=1) == 1)):
        return  # one dummy per level: the variances table above holds them
    table = res.residual_variance_table(alpha=alpha)
    if len(others) == 1 and len(rows) == 2:
        # one dummy: name both levels (female=0, female=1)
        labels = [f"{names[others[0]]}={int(r[others[0]])}" for r in rows]
    else:
        labels = list(table.index)
    out = pd.DataFrame({"Residual variance": labels})
    for col in table.columns:
        out[col] = _fmt(table[col].to_numpy())
    _add_table(smry, out)
    median = (" of a median group (random scale effects at 0)"
              if hasattr(res, "re_table") else "")
    smry.add_text(f"Residual variance{median} per distinct row of W "
                  "(residual_variance_table()): intervals on the log scale.")


# ----------------------------------------------------------------------
# summary_col

class _ColumnView:
    """A fit as ``statsmodels.iolib.summary2.summary_col`` reads it: its
    ``params``, ``bse`` and ``conf_int`` with clear names and ``pvalues``
    (hence stars) only where a test against 0 is meaningful."""

    def __init__(self, res):
        self._res = res
        params = pd.Series(np.asarray(res.params, float),
                           index=list(res.model.data.param_names))
        k_fe = len(res.fe_params)
        het = hasattr(res, "params_natural_array")
        relative = not het or res.reports_mixedlm_params
        names = list(params.index)
        no_test = np.zeros(len(names), bool)
        corr = getattr(getattr(res, "layout", None), "correlation_block", None)
        if corr is not None and not relative:
            # correlation parameters: estimates and intervals, no stars
            no_test[res.layout.slice_of(corr)] = True
        for j, name in enumerate(names):
            if j < k_fe:
                continue
            if relative or name.startswith(("var(", "cov(")):
                # MixedLM's covariances are relative to the scale; variances
                # and covariances get no stars
                no_test[j] = True
                if relative:
                    names[j] = f"{name} / Scale"
            elif het and (name in _log_variance_levels(res)
                          or _is_level2_log_variance(res, name)):
                no_test[j] = True
        self.params = pd.Series(params.to_numpy(), index=names)
        self.bse = pd.Series(np.asarray(res.bse, float), index=names)
        with np.errstate(divide="ignore", invalid="ignore"):
            tvalues = self.params / self.bse
        pvalues = pd.Series(np.asarray(res.pvalues, float), index=names)
        self.tvalues = tvalues.where(~no_test)
        self.pvalues = pvalues.where(~no_test)
        self._ci = pd.DataFrame(np.asarray(res.conf_int(), float), index=names)
        self.model = _ModelView(res.model, names)

    def conf_int(self, alpha=0.05):
        return self._ci

    def __getattr__(self, name):
        return getattr(self._res, name)


class _ModelView:
    def __init__(self, model, names):
        self._model = model
        self.data = type("Data", (), {"param_names": names})()

    def __getattr__(self, name):
        return getattr(self._model, name)


def _log_variance_levels(res):
    """Names of the variance-function coefficients that are log variances
    (the intercept), not contrasts."""
    if res.model.var_link != "log":
        return []
    var = res._vf_slice
    names = list(res.layout.names[var])
    return [n for j, n in enumerate(names) if res._is_intercept_column(j)]


def _info_col(res):
    het = hasattr(res, "params_natural_array")
    mixedlm_params = not het or res.reports_mixedlm_params
    return {
        "Model": type(res.model).__name__,
        "Method": res.method,
        "No. groups": f"{res.model.n_groups}",
        "No. observations": f"{int(res.model.nobs)}",
        "Log-likelihood": f"{res.llf:.2f}",
        "Scale": f"{res.scale:.4f}" if mixedlm_params else "",
    }


def summary_col(results: Sequence, float_format: str = "%.4f", model_names=(),
                stars: bool = True, info_dict: dict | None = None,
                **kwargs) -> summary2.Summary:
    """
    ``statsmodels.iolib.summary2.summary_col`` for MixedLM and HetMixedLM
    fits side by side, with labels that say what each row is.

    ``summary_col`` reads each fit's ``params``, ``bse``, ``pvalues`` and
    ``conf_int()`` and puts stars where ``pvalues`` is below 0.1, 0.05 and
    0.01.  A mixed model's ``pvalues`` include z-tests of variances
    against 0 (on the boundary, where the normal reference does not hold)
    and of log variances (``var:Intercept``, whose 0 means a variance of
    1), which earn stars without meaning.  This function passes each fit
    to ``summary_col`` through a view that

    * renames ``MixedLM``'s covariance parameters (``params`` of a
      ``MixedLM`` fit or a ``HetMixedLM`` fit without a variance formula),
      which are relative to the residual variance, to ``"g Var / Scale"``
      and adds a ``Scale`` row, so they do not sit next to a natural
      variance ``var(g)`` unexplained;
    * gives variances, covariances, log-variance intercepts
      (``var:Intercept``, ``logvar(...):Intercept``) and the residual
      correlation parameters (``correlation_params``) no p-value, hence no
      stars; contrasts such as ``var:female`` (a ratio of variances
      against 1) keep theirs.

    Parameters
    ----------
    results : sequence of MixedLMResults or HetMixedLMResults
    float_format, model_names, stars, **kwargs
        As ``summary_col``.
    info_dict : dict, optional
        Rows below the estimates, label -> function of the (original) fit.
        Default: model, method, groups, observations, log-likelihood and
        scale.

    Returns
    -------
    statsmodels.iolib.summary2.Summary
    """
    if info_dict is None:
        info_dict = {label: (lambda r, label=label: _info_col(r)[label])
                     for label in _info_col(results[0])}
    views = [_ColumnView(r) for r in results]
    info = {label: (lambda v, f=f: f(v._res)) for label, f in info_dict.items()}
    table = summary2.summary_col(views, float_format=float_format,
                                 model_names=list(model_names), stars=stars,
                                 info_dict=info, **kwargs)
    # statsmodels joins the information rows by an outer merge, whose order
    # depends on the pandas version: put them in info_dict's order.
    frame = table.tables[0]
    rows = list(frame.index)
    k = len(rows) - len(info)
    if k >= 0 and set(rows[k:]) == set(info):
        # by position: the standard errors' rows share the empty label
        at = {label: k + j for j, label in enumerate(rows[k:])}
        table.tables[0] = frame.iloc[list(range(k)) + [at[label] for label in info]]
    return table
