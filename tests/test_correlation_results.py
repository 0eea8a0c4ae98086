"""Results of fits with a residual correlation structure: the summary's
"Residual correlation" block, ``conf_int()`` on the transformed scale,
``summary_col``, ``resid_cov`` / ``resid_corr`` and the normalized
residuals.

References: ``results/correlation/r_normalized.json`` (``r_normalized.R``,
nlme 3.1-162: ``residuals(fit, type="normalized")`` and
``getVarCov(fit, individual=, type="conditional")`` of two stored fits).
"""
from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed.inference import transformed_interval
from statsmodels_hetmixed.summary import summary_col

from . import nlme_spec

CSV = Path(__file__).parent / "results" / "correlation"
_spec = importlib.util.spec_from_file_location("check_dense", CSV / "check_dense.py")
check_dense = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_dense)
NORMALIZED = json.loads((CSV / "r_normalized.json").read_text())["fits"]
FITS = json.loads((CSV / "r_correlation.json").read_text())["fits"]
Q = norm.ppf(0.975)


@pytest.fixture(scope="module")
def orthodont():
    return check_dense.load_data("orthodont.csv")


def _fit(data, **kwargs):
    reml = kwargs.pop("reml", True)
    model = hmf.hetmixedlm("distance ~ age + Sex", data, groups="Subject", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(reml=reml)


@pytest.fixture(scope="module")
def ar1(orthodont):
    return _fit(orthodont, var_formula="~ Sex", correlation="ar1", time="occ")


# ---------------------------------------------------------------- intervals
def test_transformed_interval_scales():
    lo, hi = transformed_interval(0.5, 0.1, Q, "atanh")
    z, se_z = np.arctanh(0.5), 0.1 / (1 - 0.25)
    assert (lo, hi) == pytest.approx((np.tanh(z - Q * se_z), np.tanh(z + Q * se_z)))
    lo, hi = transformed_interval(0.8, 0.1, Q, "logit")
    z, se_z = np.log(4.0), 0.1 / 0.16
    assert (lo, hi) == pytest.approx((1 / (1 + np.exp(-(z - Q * se_z))),
                                      1 / (1 + np.exp(-(z + Q * se_z)))))
    lo, hi = transformed_interval(2.0, 0.5, Q, "log")
    assert (lo, hi) == pytest.approx((2 * np.exp(-Q / 4), 2 * np.exp(Q / 4)))
    assert transformed_interval(0.3, 0.1, Q, None) == pytest.approx((0.3 - Q * 0.1,
                                                                     0.3 + Q * 0.1))
    # on the boundary of the domain: no interval
    assert np.isnan(transformed_interval(1.0, 0.1, Q, "atanh")[0])


def test_conf_int_of_phi_on_the_atanh_scale(ar1):
    ci = ar1.conf_int()
    phi, se = ar1.params["ar1"], ar1.bse["ar1"]
    expected = transformed_interval(phi, se, Q, "atanh")
    assert tuple(ci.loc["ar1"]) == pytest.approx(expected)
    # asymmetric, inside (-1, 1); the other rows keep the Wald interval
    assert ci.loc["ar1", 1] - phi < phi - ci.loc["ar1", 0]
    assert tuple(ci.loc["age"]) == pytest.approx(
        (ar1.params["age"] - Q * ar1.bse["age"], ar1.params["age"] + Q * ar1.bse["age"]))
    ci90 = ar1.conf_int(alpha=0.1)
    assert ci90.loc["ar1", 0] > ci.loc["ar1", 0]


def test_conf_int_of_car1_on_the_logit_scale(orthodont):
    res = _fit(orthodont, correlation="car1", time="age")
    phi, se = res.params["car1"], res.bse["car1"]
    lo, hi = res.conf_int().loc["car1"]
    assert (lo, hi) == pytest.approx(transformed_interval(phi, se, Q, "logit"))
    assert 0 < lo < phi < hi < 1


def test_summary_block(ar1, orthodont):
    text = ar1.summary().as_text()
    assert "Residual correlation: AR(1) in occ" in text
    line = next(x for x in text.splitlines() if x.startswith("ar1 "))
    lo, hi = ar1.conf_int().loc["ar1"]
    assert line.split()[1:] == [f"{ar1.params['ar1']:.3f}", f"{ar1.bse['ar1']:.3f}",
                                f"{lo:.3f}", f"{hi:.3f}"]
    assert "atanh scale" in text
    by = _fit(orthodont, correlation="ar1", time="occ", correlation_by="Sex")
    text = by.summary().as_text()
    assert "Residual correlation: AR(1) in occ by Sex" in text
    assert "ar1:Female" in text and "ar1:Male" in text
    arma = _fit(orthodont, correlation="arma(1,1)", time="occ")
    text = arma.summary().as_text()
    assert "Residual correlation: ARMA(1,1) in occ" in text
    assert "plain Wald" in text
    lo, hi = arma.conf_int().loc["ar1"]
    assert (lo, hi) == pytest.approx((arma.params["ar1"] - Q * arma.bse["ar1"],
                                      arma.params["ar1"] + Q * arma.bse["ar1"]))
    exch = _fit(orthodont, var_formula="~ age", correlation="exchangeable")
    text = exch.summary().as_text()
    assert "Residual correlation: exchangeable" in text
    assert "exchangeable in" not in text          # no times


def test_summary_col_has_no_stars_on_correlations(ar1):
    table = summary_col([ar1], stars=True).as_text()
    line = next(x for x in table.splitlines() if x.startswith("ar1"))
    assert "*" not in line
    assert "*" in next(x for x in table.splitlines() if x.startswith("age"))


# -------------------------------------------------------- R_i and residuals
def test_resid_cov_and_corr(ar1, orthodont):
    R = ar1.resid_cov("M01")
    C = ar1.resid_corr("M01")
    assert list(R.index) == [1, 2, 3, 4] and list(C.columns) == [1, 2, 3, 4]
    phi = ar1.params["ar1"]
    np.testing.assert_allclose(C.to_numpy(), phi ** np.abs(np.subtract.outer(
        np.arange(4), np.arange(4))), rtol=1e-12)
    s2 = ar1.resid_var[orthodont["Subject"].to_numpy() == "M01"]
    np.testing.assert_allclose(np.diag(R), s2, rtol=1e-12)
    with pytest.raises(KeyError, match="'M99' is not a group label"):
        ar1.resid_cov("M99")


def test_resid_cov_without_correlation(orthodont):
    res = _fit(orthodont, var_formula="~ Sex")
    R = res.resid_cov("F01")
    np.testing.assert_allclose(R.to_numpy(), np.diag(res.resid_var[:4]))
    np.testing.assert_allclose(res.resid_normalized, res.resid_pearson)


@pytest.mark.parametrize("key", sorted(NORMALIZED))
def test_normalized_residuals_against_nlme(key):
    ref, fit = NORMALIZED[key], FITS[key]
    spec = fit["spec"]
    df = check_dense.load_data(spec["file"])
    kwargs = nlme_spec.model_arguments(spec, ident="var_by")
    model = hmf.hetmixedlm(spec["fixed"], df, **kwargs)
    res = model.fit(reml=fit["method"] == "REML")
    assert res.llf == pytest.approx(ref["logLik"], rel=1e-6)
    normalized = res.residuals(type="normalized")
    assert isinstance(normalized, pd.Series)
    # agreement 1e-6 (orthodont) and 3e-6 (sleepgaps), residuals of size ~1
    np.testing.assert_allclose(res.resid_pearson, ref["pearson"], rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(normalized, ref["normalized"], rtol=2e-5, atol=2e-5)
    rows = np.asarray(ref["group_rows"]) - 1
    R = res.resid_cov(ref["group"])
    expected = np.asarray(ref["resid_cov"], float)
    np.testing.assert_allclose(R.to_numpy(), expected, rtol=2e-5,
                               atol=2e-5 * expected.max())
    assert list(R.index) == list(df[spec["cor"]["time"]].to_numpy()[rows])
    # the whitening is not the identity here (phi != 0)
    assert not np.allclose(normalized, res.resid_pearson)


def test_normalized_residuals_invariant_to_row_order(orthodont):
    res = _fit(orthodont, var_formula="~ Sex", correlation="ar1", time="occ")
    perm = np.random.default_rng(1).permutation(len(orthodont))
    shuffled = _fit(orthodont.iloc[perm].reset_index(drop=True), var_formula="~ Sex",
                    correlation="ar1", time="occ")
    np.testing.assert_allclose(np.asarray(shuffled.resid_normalized),
                               np.asarray(res.resid_normalized)[perm], atol=1e-6)
    np.testing.assert_allclose(shuffled.resid_cov("M01"), res.resid_cov("M01"),
                               rtol=1e-6)
    ci, ci_s = res.conf_int().loc["ar1"], shuffled.conf_int().loc["ar1"]
    np.testing.assert_allclose(ci_s, ci, rtol=1e-5)


def test_normalized_residuals_are_whitened(orthodont):
    """Within each group, L^-1 of the Pearson residuals: their product with
    L gives the Pearson residuals back."""
    res = _fit(orthodont, correlation="arma(1,1)", time="occ")
    for g in ("F03", "M10"):
        rows = np.flatnonzero(orthodont["Subject"].to_numpy() == g)
        L = np.linalg.cholesky(res.resid_corr(g).to_numpy())
        np.testing.assert_allclose(L @ np.asarray(res.resid_normalized)[rows],
                                   np.asarray(res.resid_pearson)[rows], atol=1e-10)


# ------------------------------------------------ no random effects (gls)
GLS_KEYS = [k for k, f in FITS.items()
            if f["spec"]["engine"] == "gls" and f["fitted"]
            and k not in check_dense.LLF_ONLY]


@pytest.mark.parametrize("key", GLS_KEYS)
def test_no_random_effects_against_gls(key):
    """re_formula="0": nlme's gls (every stored gls fit, with varIdent,
    varExp and varPower): llf 1e-6, df, fixed effects 1e-4, their SEs 1%
    (nlme's gls ML convention: vcov_factor), residual variances and
    correlation parameters 1e-4; no warning of a held zero."""
    fit = FITS[key]
    spec = fit["spec"]
    df = check_dense.load_data(spec["file"])
    kwargs = nlme_spec.model_arguments(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = hmf.hetmixedlm(spec["fixed"], df, **kwargs).fit(
            reml=fit["method"] == "REML")
    assert res.converged and res.model._no_random_effects
    assert res.llf == pytest.approx(fit["logLik"], rel=1e-6, abs=0)
    assert res.df_modl == fit["df"]
    names = [nlme_spec.fixef_name(n) for n in fit["fixef"]]
    ref_se = np.array(list(fit["fixef_se"].values()))
    ref = np.array(list(fit["fixef"].values()))
    err = np.abs(np.asarray(res.fe_params[names]) - ref)
    assert np.all(err <= 1e-4 * (np.abs(ref) + ref_se)), err / (np.abs(ref) + ref_se)
    factor = check_dense.vcov_factor(fit, int(res.nobs), len(names))
    np.testing.assert_allclose(res.bse[names] * np.sqrt(factor), ref_se, rtol=0.01)
    r_ref = fit["sigma"] ** 2 * check_dense.var_multiplier(fit, df) ** 2
    np.testing.assert_allclose(res.resid_var, r_ref, rtol=2e-4)
    nat = fit["cor"]["natural"]
    nat = np.asarray(list(nat.values()) if isinstance(nat, dict) else nat, float)
    if spec.get("structure") == "toeplitz":   # nlme's AR(3) -> its acf
        from statsmodels_hetmixed.structures.correlation import arma_acf
        nat = arma_acf(nat, np.zeros(0), len(nat))[1:]
    np.testing.assert_allclose(res.correlation_params, nat, rtol=1e-4, atol=1e-4)
    assert "var(Group)" not in res.summary().as_text()


def test_no_random_effects_summary_and_errors(orthodont):
    res = _fit(orthodont, re_formula="0", correlation="ar1", time="occ")
    text = res.summary().as_text()
    assert "No random effects (re_formula='0'" in text
    assert res.params["var(Group)"] == 0.0 and res.df_modl == 5
    # the held intercept is exactly zero: the same llf as a fit whose
    # random intercept is held at 0 by hand
    model = hmf.hetmixedlm("distance ~ age + Sex", orthodont, groups="Subject",
                           correlation="ar1", time="occ")
    nat = np.asarray(res.params)[3:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        held = model.fit(start_params=nat, free=np.r_[0, 1, 1])
    assert held.llf == pytest.approx(res.llf, rel=1e-10)
    # a variance function alone (gls with weights=): the weighted OLS
    # fit's likelihood at its own maximum
    het = _fit(orthodont, re_formula="0", var_formula="~ Sex", reml=False)
    assert het.df_modl == 5 and het.converged
    with pytest.raises(ValueError, match="re_formula='0' fits nlme's gls"):
        hmf.hetmixedlm("distance ~ age", orthodont, groups="Subject",
                       re_formula="0")
    with pytest.raises(ValueError, match="re_formula='0' removes them"):
        hmf.hetmixedlm("distance ~ age", orthodont, groups="Subject",
                       re_formula="0", var_re_formula="~ 1")
