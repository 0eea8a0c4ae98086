"""Results keep their own fitting criterion (ML or REML)."""

import numpy as np
import pandas as pd
import pytest

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import _formula


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(40), 5)
    x = rng.normal(size=g.size)
    y = x + rng.normal(size=40)[g] + rng.normal(size=g.size) * np.exp(0.3 * x)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def _snapshot(res):
    return (res.reml, res.method, res.llf, res.aic, res.bic,
            res.summary().as_text(), np.asarray(res.bse).copy())


def test_reml_results_unchanged_by_an_ml_fit_of_the_same_model(data):
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x")
    reml = model.fit()
    ml = model.fit(reml=False)
    # Read REML's values only now, after the ML fit of the same model.
    reml_values = _snapshot(reml)
    assert reml_values[:2] == (True, "REML")
    assert "REML criterion:" in reml_values[5] and "AIC (REML):" in reml_values[5]
    fresh = _snapshot(hmf.hetmixedlm("y ~ x", data, groups="g",
                                     var_formula="~ x").fit())
    assert reml_values[2:5] == pytest.approx(fresh[2:5], rel=1e-10)
    assert reml_values[5] == fresh[5]
    np.testing.assert_allclose(reml_values[6], fresh[6], rtol=1e-6)
    assert ml.reml is False and ml.llf != pytest.approx(reml.llf)
    assert "Log-Likelihood:" in ml.summary().as_text()
    # The model's flag (MixedLM's model.reml) does not reach the results.
    model.reml = True
    assert _snapshot(ml)[:5] == pytest.approx(_snapshot(ml)[:5])
    assert ml.reml is False and ml.method == "ML"
    with pytest.raises(ValueError, match="same method"):
        reml.compare_lr_test(ml)


def test_lr_test_vs_linear_leaves_the_model_flag(data):
    model = hmf.hetmixedlm("y ~ x", data, groups="g")
    reml = model.fit()
    model.fit(reml=False)
    lr = reml.lr_test_vs_linear()
    assert lr.statistic > 0
    assert model.reml is False  # the model's last fit is still the ML one
    assert reml.reml is True


def test_natural_scale_accessors(data):
    """Issue 9: without a variance formula params are MixedLM's; the natural
    values stay in params_natural / bse_natural / cov_params_natural, which
    nlcom and the summary read.  With one, the two coincide."""
    hom = hmf.hetmixedlm("y ~ x", data, groups="g").fit()
    assert hom.reports_mixedlm_params
    assert list(hom.params.index) == ["Intercept", "x", "g Var"]
    assert list(hom.params_natural.index) == ["Intercept", "x", "var(g)",
                                              "var:Intercept"]
    assert hom.params["g Var"] == pytest.approx(hom.cov_re.iloc[0, 0] / hom.scale)
    assert hom.params_natural["var(g)"] == pytest.approx(hom.cov_re.iloc[0, 0])
    assert hom.bse_natural["var(g)"] == pytest.approx(hom.bse_re.iloc[0])
    scale = hom.nlcom(lambda p: np.exp(p["var:Intercept"]))
    assert scale["Coef."].iloc[0] == pytest.approx(hom.scale)
    assert scale["Std.Err."].iloc[0] == pytest.approx(
        hom.scale * hom.bse_natural["var:Intercept"], rel=1e-6)
    assert f"{hom.cov_re.iloc[0, 0]:.3f}" in hom.summary().as_text()
    het = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x").fit()
    assert not het.reports_mixedlm_params
    pd.testing.assert_series_equal(het.params, het.params_natural, check_names=False)
    np.testing.assert_array_equal(het.cov_params(), het.cov_params_natural())


# ----------------------------------------------------------------------
# remove_data(): every documented attribute works or says why not
_NEEDS_DATA = ["fittedvalues", "resid", "resid_var", "resid_pearson",
               "resid_normalized"]
_NEEDS_DATA_CALLS = {
    "residuals": (), "predict": (), "get_prediction": (),
    "predict_variance": (), "lr_test_vs_linear": (),
    "to_additive": (),
    "get_robustcov_results": ("cluster",),
}


def test_remove_data_clear_errors_and_what_keeps_working(data):
    """After remove_data() the per-observation quantities raised
    "'NoneType' object has no attribute 'exog'" or a matmul error: now a
    ValueError naming remove_data; estimates, tests and predictions for new
    data keep working."""
    data = data.assign(grp=np.where(data["x"] > 0, "hi", "lo"))
    res = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ C(grp)").fit(
        reml=False)
    new = data.iloc[:4]
    pred_before = np.asarray(res.predict(new))
    var_before = np.asarray(res.predict_variance(new))
    res.remove_data()
    for name in _NEEDS_DATA:
        with pytest.raises(ValueError, match=r"remove_data\(\) removed"):
            getattr(res, name)
    for name, args in _NEEDS_DATA_CALLS.items():
        with pytest.raises(ValueError, match=r"remove_data\(\) removed"):
            getattr(res, name)(*args)
    np.testing.assert_allclose(res.predict(new), pred_before)
    np.testing.assert_allclose(res.predict_variance(new), var_before)
    assert res.get_prediction(new).summary_frame().shape[0] == 4
    for name in ["params", "bse", "llf", "aic", "bic", "tvalues", "pvalues",
                 "cov_re", "random_effects", "fe_params", "bse_fe"]:
        getattr(res, name)
    res.conf_int()
    res.t_test(np.eye(len(res.params))[:1])
    res.summary()
    # its rows (W's distinct rows) are kept by remove_data, for the summary
    assert res.residual_variance_table().shape[0] == 2


def test_remove_data_location_scale_resid_var():
    """resid_var of a location-scale fit (a matmul error before)."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(25), 8)
    y = rng.normal(size=25)[g] + np.exp(0.3 * rng.normal(size=25))[g] * rng.normal(size=200)
    frame = pd.DataFrame({"y": y, "g": g})
    res = hmf.hetmixedlm("y ~ 1", frame, groups="g", var_re_formula="~ 1").fit(
        reml=False, n_quad=5)
    res.remove_data()
    with pytest.raises(ValueError, match=r"resid_var needs the model's data"):
        res.resid_var
    assert "Location-scale model" in res.summary().as_text()


def test_residual_degrees_of_freedom_are_those_of_mixedlm(data):
    """df_resid = nobs - rank(exog), as MixedLMResults computes it, from
    the number of fixed effects (the model checked that exog has full
    column rank) instead of an SVD of exog."""
    res = hmf.hetmixedlm("y ~ x + I(2 * x**2)", data, groups="g",
                         var_formula="~ x").fit()
    exog = res.model.exog
    assert res.df_resid == exog.shape[0] - np.linalg.matrix_rank(exog) == 197


def _terms_data():
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(30), 6)
    arm = np.array(["a", "b", "c"])[np.arange(30) % 3][g]
    x = rng.normal(size=g.size)
    y = x + (arm == "b") + rng.normal(size=30)[g] + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "arm": arm, "g": g})


@pytest.mark.parametrize("var_formula", [None, "~ arm"])
def test_wald_test_terms_without_small_sample_df(var_formula):
    """One chi2 test per formula term, those of wald_test; without a
    variance formula (MixedLM's params) this failed on a matrix of one
    column per parameter."""
    from statsmodels.base.model import LikelihoodModelResults

    res = hmf.hetmixedlm("y ~ x * arm", _terms_data(), groups="g",
                         var_formula=var_formula).fit()
    table = res.wald_test_terms(scalar=True).table
    # the intercept term's name is the formula engine's, as in statsmodels'
    # own wald_test_terms: "Intercept" (patsy) or "1" (formulaic)
    intercept = "Intercept" if _formula.formula_engine() == "patsy" else "1"
    assert list(table.index) == [intercept, "arm", "x", "x:arm"]
    assert list(table["df_constraint"]) == [1, 2, 1, 2]
    arm = res.wald_test("arm[T.b] = 0, arm[T.c] = 0", scalar=True)
    assert np.isclose(table.loc["arm", "statistic"], float(arm.statistic), rtol=1e-12)
    if var_formula is not None:  # statsmodels' own where it works
        base = LikelihoodModelResults.wald_test_terms(res, scalar=True).table
        assert np.allclose(base.to_numpy(float), table.to_numpy(float), rtol=1e-12)


def test_wald_test_terms_with_small_sample_df():
    """With fit(ddf=...): F tests with each term's own df_denom (they were
    labelled chi2, with the denominator df as the constraint's)."""
    res = hmf.hetmixedlm("y ~ x * arm", _terms_data(), groups="g",
                         var_formula="~ arm").fit(ddf="satterthwaite")
    out = res.wald_test_terms(scalar=True)
    assert out.distribution == "F"
    table = out.table
    arm = res.wald_test("arm[T.b] = 0, arm[T.c] = 0", scalar=True)
    assert list(table.loc["arm"]) == pytest.approx(
        [float(arm.fvalue), float(arm.pvalue), 2, arm.df_denom], rel=1e-12)
    assert list(table["df_constraint"]) == [1, 2, 1, 2]
