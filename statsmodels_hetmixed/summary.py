"""The text summary of HetMixedLM results."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm, t as student_t
from statsmodels.iolib import summary2


def _fmt(values, fmt="%.3f"):
    return [fmt % v if np.isfinite(v) else "" for v in values]


def build_summary(res, yname=None, xname_fe=None, xname_re=None, title=None,
                  alpha=0.05):
    model = res.model
    lay = res.layout
    # fixed effects and (co)variances: MixedLM's names without a variance
    # formula (as MixedLM's summary, natural values), else the natural ones
    names = list(model.data.param_names)[:lay.k_fe + lay.k_cov]
    if xname_fe is not None:
        if len(xname_fe) != lay.k_fe:
            raise ValueError(f"xname_fe should be a list of length {lay.k_fe}")
        names[lay.fe] = xname_fe
    if xname_re is not None:
        if len(xname_re) != lay.k_cov:
            raise ValueError(f"xname_re should be a list of length {lay.k_cov}")
        names[lay.k_fe:lay.k_fe + lay.k_cov] = xname_re

    smry = summary2.Summary()
    sizes = model._group_sizes
    info = {
        "Model:": "HetMixedLM",
        "Dependent Variable:": yname or model.endog_names,
        "No. Observations:": str(model.nobs),
        "No. Groups:": str(model.n_groups),
        "Min. group size:": f"{sizes.min():.0f}",
        "Max. group size:": f"{sizes.max():.0f}",
        "Mean group size:": f"{sizes.mean():.1f}",
        "Method:": res.method,
        "Log-Likelihood:" if not res.reml else "REML criterion:": f"{res.llf:.4f}",
        "AIC:" if not res.reml else "AIC (REML):":
        f"{res.aic_reml if res.reml else res.aic:.4f}",
        "BIC:" if not res.reml else "BIC (REML):":
        f"{res.bic_reml if res.reml else res.bic:.4f}",
        "No. parameters:": str(res.df_modl),
        "Covariance type:": getattr(res, "cov_kwds", {}).get(
            "summary", getattr(res, "cov_type", "nonrobust")),
        "Converged:": "Yes" if res.converged else
        f"No (max |gradient| {res.max_grad:.2g})",
    }
    if getattr(res, "_ddf", None) is not None:
        info["Denominator df:"] = res._ddf.name
    smry.add_dict(info)
    smry.add_title(title or "Mixed Linear Model with Heteroskedastic Residuals")

    q = -norm.ppf(alpha / 2)
    lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
    # Variances on their natural scale (as MixedLM's summary shows them);
    # the fixed effects' standard errors are bse_fe (MixedLM's without a
    # variance formula).
    params = res.params_natural_array
    bse = np.array(res.bse_natural, dtype=float)
    bse[lay.fe] = np.asarray(res.bse_fe, dtype=float)

    # Fixed effects and random-effects (co)variances, as MixedLM.
    k = lay.k_fe + lay.k_cov
    table = np.full((k, 6), np.nan)
    table[:, 0] = params[:k]
    # Parameters held fixed (fit(free=...)) have no standard error.
    bse = np.where(bse > 0, bse, np.nan)
    table[:, 1] = bse[:k]
    # z-tests for the fixed effects (and level-2 coefficients), not for
    # variances.
    fe = getattr(res, "_z_rows", lay.fe)
    small = getattr(res, "_ddf", None)
    table[fe, 2] = params[fe] / bse[fe]
    if small is None:
        table[fe, 3] = 2 * norm.sf(np.abs(table[fe, 2]))
        q_fe = q
        columns = ["Coef.", "Std.Err.", "z", "P>|z|", lo, hi]
    else:  # t with each fixed effect's df (fit(ddf=...)), shown as a column
        dof = np.asarray(small.df_fe, dtype=float)
        table[fe, 3] = 2 * student_t.sf(np.abs(table[fe, 2]), dof)
        q_fe = student_t.ppf(1 - alpha / 2, dof)
        columns = ["Coef.", "Std.Err.", "t", "P>|t|", lo, hi]
    table[fe, 4] = params[fe] - q_fe * bse[fe]
    table[fe, 5] = params[fe] + q_fe * bse[fe]
    df = pd.DataFrame(table, index=names[:k], columns=columns)
    if small is not None:
        dof_col = np.full(k, np.nan)
        dof_col[fe] = dof
        df["df"] = dof_col
    for col in df.columns:
        df[col] = _fmt(df[col].to_numpy())
    smry.add_df(df, align="r")
    if small is not None:
        # a cluster-robust covariance says so in its own line
        adjusted = (" Std.Err. of the fixed effects: the Kenward-Roger adjusted "
                    "covariance." if small.cov_fe is not None
                    and getattr(res, "cov_type", "nonrobust") == "nonrobust" else "")
        smry.add_text(f"Fixed effects: t-tests with {small.name} denominator "
                      f"degrees of freedom (df).{adjusted}")

    if hasattr(res, "re_table"):  # location-scale: SDs and correlations
        ret = res.re_table(alpha=alpha).reset_index(names="Random effects")
        for col in ret.columns[1:]:
            ret[col] = _fmt(ret[col].to_numpy())
        smry.add_df(ret, index=False, align="r")
        rule = ("the Laplace approximation" if res.n_quad == 1 else
                f"adaptive Gauss-Hermite quadrature with {res.n_quad} nodes per "
                "dimension")
        smry.add_text(f"Location-scale model: random effects in the log residual "
                      f"variance (var:...), ML by {rule}. "
                      "Intervals: log scale for SDs, Fisher's z for correlations.")
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
    if model.var_link == "identity":
        _identity_link_block(smry, res, params, bse, q, lo, hi)
    else:
        _log_link_block(smry, res, params, bse, q, lo, hi)
    for block in res._extra_variance_blocks:
        _block_table(smry, res, block, params, bse, q, lo, hi)
    if getattr(res, "cov_type", "nonrobust") != "nonrobust":
        smry.add_text(res.cov_kwds["description"])
    if not res.converged:
        smry.add_text("Warning: the optimization did not converge; estimates "
                      "and standard errors may be wrong.")
    return smry


def _block_table(smry, res, block, params, bse, q, lo, hi):
    """A block's parameters with z-tests against 0 and Wald intervals."""
    where = res.layout.slice_of(block)
    table = _z_table(block.title or type(block).__name__, block.names,
                     params[where], bse[where], q, lo, hi)
    smry.add_df(table, index=False, align="r")


def _z_table(heading, names, est, se, q, lo, hi):
    """Estimates with z-tests against 0 and Wald intervals, formatted."""
    z = est / se
    return pd.DataFrame({
        heading: names,
        "Coef.": _fmt(est),
        "Std.Err.": _fmt(se),
        "z": _fmt(z),
        "P>|z|": _fmt(2 * norm.sf(np.abs(z))),
        lo: _fmt(est - q * se),
        hi: _fmt(est + q * se),
    })


def _log_link_block(smry, res, params, bse, q, lo, hi):
    """Coefficients of log sigma2, with exp() as variances / ratios."""
    model = res.model
    var = res._vf_slice
    a, se = params[var], bse[var]
    vt = _z_table("Log variance", list(model.data.exog_var_names), a, se, q, lo, hi)
    vt["exp(Coef.)"] = _fmt(np.exp(a), "%.4g")
    smry.add_df(vt, index=False, align="r")
    names = list(model.data.exog_var_names)
    intercept = [j for j in range(len(names)) if res._is_intercept_column(j)]
    if intercept and hasattr(res, "re_table"):
        note = (f"exp(Coef.) is the residual variance of a median group (random "
                f"scale effects at 0) where the other columns are 0 for "
                f"{names[intercept[0]]}, and a ratio of variances per unit of "
                "each other column.")
    elif intercept:
        note = (f"exp(Coef.) is the residual variance where the other columns "
                f"are 0 for {names[intercept[0]]}, and a ratio of variances per "
                "unit of each other column.")
    else:
        note = "exp(Coef.) is a multiplicative factor on the residual variance."
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
    with np.errstate(divide="ignore", invalid="ignore"):
        half = np.where(theta > 0, q * se / theta, np.nan)
    vt = pd.DataFrame({
        "Residual variances": labels,
        "Estimate": _fmt(theta),
        "Std.Err.": _fmt(se),
        lo: _fmt(theta * np.exp(-half)),
        hi: _fmt(theta * np.exp(half)),
    })
    smry.add_df(vt, index=False, align="r")
    smry.add_text("Residual variances (identity link): sigma2 = W theta, each "
                  "theta >= 0. Confidence intervals are computed on the log "
                  "scale, as in Stata.")
