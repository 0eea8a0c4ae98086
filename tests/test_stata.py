"""
The Stata dummy-variance-level trick, the additive (identity-link)
parameterisation, conversions, and boundary-aware tests.

References: tests/results/r_reference_occasion.json (glmmTMB 1.1.5 / nlme
3.1-162, made by r_reference_occasion.R) and r_reference.json.
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import HetMixedLM
from statsmodels_hetmixed.lrtest import chibar_weights
from statsmodels_hetmixed.stata import dummy_variance_level

from .conftest import RESULTS

LLF_HSB_FEMALE_ML = -23522.9324668594  # nlme varIdent(~1|female), ML


@pytest.fixture(scope="module")
def occ_ref():
    with open(RESULTS / "r_reference_occasion.json") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def occ_data():
    return pd.read_csv(RESULTS / "data" / "sim_occasion.csv")


@pytest.fixture(scope="module")
def hsb_male(hsb_data):
    return hsb_data.assign(male=1 - hsb_data["female"])


@pytest.fixture(scope="module")
def hsb_three_ways(hsb_male):
    """The Stata model fitted literally, natively additive, and log-linear."""
    spec = dummy_variance_level(hsb_male, "male")
    literal = hmf.hetmixedlm("mathach ~ female", groups="school",
                             **spec.kwargs()).fit(reml=False)
    additive = hmf.hetmixedlm("mathach ~ female", hsb_male, groups="school",
                              var_formula="~ male", var_link="identity").fit(reml=False)
    loglin = hmf.hetmixedlm("mathach ~ female", hsb_male, groups="school",
                            var_formula="~ male").fit(reml=False)
    return literal, additive, loglin


def test_three_routes_reach_the_nlme_optimum(hsb_three_ways):
    for res in hsb_three_ways:
        assert res.converged
        assert res.llf == pytest.approx(LLF_HSB_FEMALE_ML, abs=1e-6)


def test_additive_fit_against_glmmtmb(occ_ref, hsb_male):
    for method in ("ML", "REML"):
        ref = occ_ref["cases"]["hsb_female_cell"][method]["glmmTMB_cell"]["additive"]
        res = hmf.hetmixedlm("mathach ~ female", hsb_male, groups="school",
                             var_formula="~ male", var_link="identity"
                             ).fit(reml=(method == "REML"))
        est = [ref["est"]["var(Residual)"], ref["est"]["var(male)"]]
        se = [ref["se"]["var(Residual)"], ref["se"]["var(male)"]]
        np.testing.assert_allclose(res.var_params, est, rtol=1e-5)
        np.testing.assert_allclose(res.bse_var, se, rtol=0.01)


def test_literal_expansion_matches_native(hsb_three_ways):
    literal, additive, _ = hsb_three_ways
    # Stata's var(male) is the variance component; var(Residual) the
    # residual variance of the log-linear intercept-only variance function.
    # The literal expansion has no variance formula: its params are MixedLM's
    # (relative to the scale, issue 9); the natural scale is params_natural.
    assert literal.params_natural["var(male)"] == pytest.approx(
        additive.var_params["male"], rel=1e-4)
    assert literal.params["male Var"] == pytest.approx(
        additive.var_params["male"] / literal.scale, rel=1e-4)
    assert np.exp(literal.params_natural["var:Intercept"]) == pytest.approx(
        additive.var_params["Intercept"], rel=1e-4)
    assert literal.bse_natural["var(male)"] == pytest.approx(additive.bse_var["male"],
                                                            rel=0.01)
    np.testing.assert_allclose(literal.fe_params, additive.fe_params, rtol=1e-5)
    res = literal.nlcom(lambda p: np.exp(p["var:Intercept"]), names=["var(Residual)"])
    assert res["Std.Err."].iloc[0] == pytest.approx(
        additive.bse_var["Intercept"], rel=0.01)


def test_conversions_agree_with_direct_fits(hsb_three_ways):
    """Conversions agree with the fit in the other parameterisation to 4
    significant digits, and their delta-method standard errors agree with
    that fit's own (observed-information) standard errors within 1%."""
    _, additive, loglin = hsb_three_ways
    conv = additive.to_loglinear()
    np.testing.assert_allclose(conv["Coef."], loglin.var_params, rtol=1e-4)
    np.testing.assert_allclose(conv["Std.Err."], loglin.bse_var, rtol=0.01)
    back = loglin.to_additive()
    assert list(back.index) == ["var(Residual)", "var(male)"]
    np.testing.assert_allclose(back["Coef."], additive.var_params, rtol=1e-4)
    np.testing.assert_allclose(back["Std.Err."], additive.bse_var, rtol=0.01)


def test_nlcom_against_a_numerical_derivative(hsb_three_ways):
    _, _, loglin = hsb_three_ways
    out = loglin.nlcom(lambda p: np.exp(p["var:Intercept"] + p["var:male"]),
                       names=["var(boys)"])
    a = loglin.params[["var:Intercept", "var:male"]].to_numpy()
    cov = loglin.cov_params().loc[["var:Intercept", "var:male"],
                                  ["var:Intercept", "var:male"]].to_numpy()
    grad = np.exp(a.sum()) * np.ones(2)  # analytic gradient
    assert out["Coef."].iloc[0] == pytest.approx(np.exp(a.sum()))
    assert out["Std.Err."].iloc[0] == pytest.approx(np.sqrt(grad @ cov @ grad), rel=1e-6)


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_one_variance_per_occasion_against_r(occ_ref, occ_data, method):
    ref = occ_ref["cases"]["sim_occasion"][method]
    reml = method == "REML"
    res = hmf.hetmixedlm("y ~ time + x", occ_data, groups="id",
                         var_by="occ").fit(reml=reml)
    assert res.converged
    assert res.llf == pytest.approx(ref["glmmTMB_cell"]["llf"], abs=1e-6)
    levels = [f"occ{k}" for k in range(1, 6)]
    np.testing.assert_allclose(res.var_params,
                               [ref["glmmTMB_cell"]["sigma2"][k] for k in levels],
                               rtol=1e-5)
    np.testing.assert_allclose(res.bse_var,
                               [ref["glmmTMB_cell"]["sigma2_se"][k] for k in levels],
                               rtol=0.01)
    assert res.params["var(id)"] == pytest.approx(ref["glmmTMB_cell"]["tau2"], rel=1e-5)
    table = res.residual_variance_table()
    assert list(table.index) == [f"occ={k}" for k in range(1, 6)]
    np.testing.assert_allclose(table["Variance"], res.var_params)
    # The same model with the log link (reference level 1) ...
    loglin = hmf.hetmixedlm("y ~ time + x", occ_data, groups="id",
                            var_formula="~ C(occ)").fit(reml=reml)
    a = ref["glmmTMB_ref"]
    np.testing.assert_allclose(loglin.var_params,
                               [a["a"]["(Intercept)"]] + [a["a"][f"occ{k}"] for k in range(2, 6)],
                               atol=1e-5)
    np.testing.assert_allclose(loglin.bse_var,
                               [a["a_se"]["(Intercept)"]] + [a["a_se"][f"occ{k}"]
                                                             for k in range(2, 6)],
                               rtol=0.01)
    # ... and the LR test of equal variances, as R's.
    hom = hmf.hetmixedlm("y ~ time + x", occ_data, groups="id").fit(reml=reml)
    lr = res.compare_lr_test(hom)
    assert lr.distribution == "chi2(4)"
    assert lr.statistic == pytest.approx(
        2 * (ref["glmmTMB_cell"]["llf"] - ref["hom"]["lme4"]["llf"]), abs=1e-5)
    if not reml:
        assert lr.pvalue == pytest.approx(ref["lr_test"]["pvalue"], rel=1e-4)


def test_additive_form_cannot_fit_when_reference_is_not_smallest(occ_data):
    """Stata's additive form with occasion 1 as reference forces the other
    occasions' variances above occasion 1's: it ends on the boundary, below
    the by-level fit."""
    by_level = hmf.hetmixedlm("y ~ time + x", occ_data, groups="id",
                              var_by="occ").fit(reml=False)
    with pytest.warns(Warning, match="boundary"):
        stata = hmf.hetmixedlm("y ~ time + x", occ_data, groups="id",
                               var_formula="~ C(occ)",
                               var_link="identity").fit(reml=False)
    assert stata.llf < by_level.llf - 10
    assert (stata.var_params.iloc[1:] < 1e-6).sum() >= 2
    with pytest.warns(UserWarning, match="smallest residual variance"):
        additive = hmf.hetmixedlm("y ~ time + x", occ_data, groups="id",
                                  var_formula="~ C(occ)").fit(reml=False).to_additive()
    assert (additive["Coef."] < 0).sum() == 3


def test_boundary_lr_test_and_test_vs_linear(hsb_male):
    hom = hmf.hetmixedlm("mathach ~ female", hsb_male, groups="school").fit(reml=False)
    add = hmf.hetmixedlm("mathach ~ female", hsb_male, groups="school",
                         var_formula="~ male", var_link="identity").fit(reml=False)
    lr = add.compare_lr_test(hom)
    assert lr.boundary == ["var:male"]
    assert "chi-bar-square" in lr.distribution
    assert lr.pvalue == pytest.approx(0.5 * stats.chi2.sf(lr.statistic, 1))
    naive = add.compare_lr_test(hom, boundary=None)
    assert naive.pvalue == pytest.approx(2 * lr.pvalue)
    lin = hom.lr_test_vs_linear()
    assert lin.boundary == ["var(school)"]  # natural-scale name (issue 9)
    # The linear model: OLS with one residual variance.
    y = hsb_male["mathach"].to_numpy()
    X = np.column_stack([np.ones(len(y)), hsb_male["female"]])
    e = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    llf_ols = -0.5 * len(y) * (np.log(2 * np.pi * np.mean(e**2)) + 1)
    assert lin.statistic == pytest.approx(2 * (hom.llf - llf_ols), rel=1e-6)


def test_chibar_weights():
    np.testing.assert_allclose(chibar_weights(1), [0.5, 0.5])
    np.testing.assert_allclose(chibar_weights(3), [1 / 8, 3 / 8, 3 / 8, 1 / 8])
    cov = np.array([[1.0, 0.6], [0.6, 2.0]])
    exact = chibar_weights(2, cov)
    rho = 0.6 / np.sqrt(2.0)
    assert exact[0] == pytest.approx(np.arccos(rho) / (2 * np.pi))
    mc = chibar_weights(2, cov, method="mc", n_draws=40_000)
    np.testing.assert_allclose(mc, exact, atol=0.01)


def test_chibar_pvalues_by_simulation_under_the_null():
    """Parametric bootstrap under var(male) = 0: the LR statistic is 0 about
    half of the time, and the chi-bar-square p-value rejects at about the
    nominal 5% (chi2(1) would reject at about half of that)."""
    rng = np.random.default_rng(20261124)
    n_groups, size, reps = 40, 10, 200
    g = np.repeat(np.arange(n_groups), size)
    male = rng.integers(0, 2, n_groups * size)
    X = np.column_stack([np.ones_like(male), male]).astype(float)
    lrs, pvals = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(reps):
            y = 1 + 0.5 * male + rng.normal(0, 0.7, n_groups)[g] + \
                rng.normal(0, 1.0, len(g))
            full = HetMixedLM(y, X, g, exog_var=X, var_link="identity").fit(reml=False)
            null = HetMixedLM(y, X, g).fit(reml=False)
            lr = full.compare_lr_test(null)
            lrs.append(lr.statistic)
            pvals.append(lr.pvalue)
    lrs, pvals = np.array(lrs), np.array(pvals)
    assert abs(np.mean(lrs < 1e-4) - 0.5) < 0.12
    assert 0.01 <= np.mean(pvals < 0.05) <= 0.10
    assert np.mean(stats.chi2.sf(lrs, 1) < 0.05) < np.mean(pvals < 0.05) + 1e-9


def test_bad_input(hsb_male):
    data = hsb_male.assign(pm=2 * hsb_male["male"] - 1)
    with pytest.raises(ValueError, match="non-negative variance-design columns"):
        hmf.hetmixedlm("mathach ~ female", data, groups="school",
                       var_formula="~ pm", var_link="identity")
    with pytest.raises(ValueError, match="var_link must be 'log'"):
        hmf.hetmixedlm("mathach ~ female", data, groups="school",
                       var_formula="~ male", var_link="sqrt")
    with pytest.raises(ValueError, match="single level"):
        hmf.hetmixedlm("mathach ~ female", data.assign(one=1), groups="school",
                       var_by="one")
    with pytest.raises(ValueError, match="either var_by or var_formula"):
        hmf.hetmixedlm("mathach ~ female", data, groups="school",
                       var_by="male", var_formula="~ male")
    with pytest.raises(ValueError, match="0/1 dummy"):
        dummy_variance_level(data, "pm")
    add = hmf.hetmixedlm("mathach ~ female", data, groups="school",
                         var_formula="~ male", var_link="identity").fit(reml=False)
    with pytest.raises(ValueError, match="already additive"):
        add.to_additive()
    cont = hmf.hetmixedlm("mathach ~ female", data, groups="school",
                          var_formula="~ ses").fit(reml=False)
    with pytest.raises(ValueError, match="distinct rows"):
        cont.residual_variance_table()
    with pytest.raises(ValueError, match="distinct rows"):
        cont.to_additive()
