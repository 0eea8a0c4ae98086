"""HetMixedLM and its results: API, tests, residuals, bad input."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import HetMixedLM

from .conftest import RESULTS

# nlme ML log-likelihoods on HSB, mathach ~ female, random intercept by school
# (tests/results/r_reference.json): homoskedastic and varIdent(~1|female).
LLF_NULL = -23526.6604839877
LLF_FEMALE = -23522.9324668594


@pytest.fixture(scope="module")
def hsb_fits(hsb_data):
    kw = dict(groups="school")
    het = hmf.hetmixedlm("mathach ~ female", hsb_data, var_formula="~ female",
                         **kw).fit(reml=False)
    hom = hmf.hetmixedlm("mathach ~ female", hsb_data, **kw).fit(reml=False)
    return het, hom


def test_labelled_output(hsb_fits):
    het, _ = hsb_fits
    assert list(het.var_params.index) == ["Intercept", "female"]
    assert list(het.bse_var.index) == ["Intercept", "female"]
    # natural-scale variances are var(...), not MixedLM's relative "school
    # Var" (issue 9)
    assert list(het.params.index) == ["Intercept", "female", "var(school)",
                                      "var:Intercept", "var:female"]
    assert het.cov_params().shape == (5, 5)
    assert list(het.conf_int().index) == list(het.params.index)
    assert het.tvalues["var:female"] == pytest.approx(
        het.params["var:female"] / het.bse["var:female"])
    assert het.df_modl == 5
    assert het.aic == pytest.approx(-2 * het.llf + 10)
    assert het.bic == pytest.approx(-2 * het.llf + 5 * np.log(7185))
    assert isinstance(het.resid_pearson, pd.Series)


def test_summary_reads_right(hsb_fits):
    het, _ = hsb_fits
    text = het.summary().as_text()
    # Issue 13 (deliberate): exp(Coef.) became the "Variance ratio" table,
    # and REML's "REML criterion:" is lme4's (-2 x the REML log-likelihood).
    for piece in ["HetMixedLM", "Log-Likelihood:", "-23522.9325", "Converged:",
                  "Yes", "var(school)", "Log variance", "Variance ratio",
                  "Residual variance function (log link)"]:
        assert piece in text, piece
    reml = hmf.hetmixedlm("mathach ~ female", het.model.data.frame,
                          groups="school", var_formula="~ female").fit()
    text = reml.summary().as_text()
    assert f"REML log-likelihood: {reml.llf:.4f}" in text
    assert f"REML criterion:      {-2 * reml.llf:.4f}" in text


def test_wald_and_t_tests_on_variance_block(hsb_fits):
    het, _ = hsb_fits
    wt = het.wald_test("var:female = 0", scalar=True)
    z = het.params["var:female"] / het.bse["var:female"]
    assert wt.statistic == pytest.approx(z**2)
    assert wt.pvalue == pytest.approx(2 * stats.norm.sf(abs(z)))
    tt = het.t_test("var:female = 0")
    assert tt.effect[0] == pytest.approx(het.params["var:female"])
    joint = het.wald_test("female = 0, var:female = 0", scalar=True)
    b = het.params[["female", "var:female"]].to_numpy()
    cov = het.cov_params().loc[["female", "var:female"], ["female", "var:female"]]
    assert joint.statistic == pytest.approx(b @ np.linalg.solve(cov, b))
    assert joint.pvalue == pytest.approx(stats.chi2.sf(joint.statistic, 2))


def test_wald_test_of_a_zero_variance_warns(hsb_fits):
    """A variance = 0 hypothesis is on the boundary: the Wald p-value is
    not valid there, and the user is pointed at compare_lr_test."""
    from statsmodels.tools.sm_exceptions import HypothesisTestWarning

    het, _ = hsb_fits
    for call in (lambda: het.wald_test("var(school) = 0", scalar=True),
                 lambda: het.t_test("var(school) = 0"),
                 lambda: het.wald_test(np.eye(5)[[2]], scalar=True)):
        with pytest.warns(HypothesisTestWarning, match=r"var\(school\).*compare_lr_test"):
            call()
    # Interior hypotheses (log-variance contrasts, fixed effects, a
    # variance at a non-zero value) do not warn.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        het.wald_test("var:female = 0, female = 0", scalar=True)
        het.t_test("var(school) = 8")


def test_lr_test_matches_r(hsb_fits):
    het, hom = hsb_fits
    lr, p, df = het.compare_lr_test(hom)
    assert df == 1
    assert lr == pytest.approx(2 * (LLF_FEMALE - LLF_NULL), abs=1e-5)
    assert p == pytest.approx(stats.chi2.sf(lr, 1))
    with pytest.raises(ValueError, match="larger model"):
        hom.compare_lr_test(het)


def test_reml_lr_test_refuses_different_fixed_effects(hsb_data):
    a = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school").fit()
    b = hmf.hetmixedlm("mathach ~ female + ses", hsb_data, groups="school",
                       var_formula="~ female").fit()
    with pytest.raises(ValueError, match="REML log-likelihoods of models with "
                                         "different fixed effects"):
        b.compare_lr_test(a)
    c = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school").fit(reml=False)
    with pytest.raises(ValueError, match="same method"):
        b.compare_lr_test(c)


def test_residuals_and_variances(hsb_fits, hsb_data):
    het, _ = hsb_fits
    a = het.var_params
    expected = np.exp(a["Intercept"] + a["female"] * hsb_data["female"])
    np.testing.assert_allclose(het.predict_variance(), expected)
    np.testing.assert_allclose(het.resid_pearson, het.resid / np.sqrt(expected))
    np.testing.assert_allclose(het.residuals("normalized"), het.resid_pearson)
    np.testing.assert_allclose(het.residuals("response"),
                               hsb_data["mathach"] - het.fittedvalues)
    new = pd.DataFrame({"female": [0, 1]}, index=["boy", "girl"])
    pv = het.predict_variance(new)
    assert list(pv.index) == ["boy", "girl"]
    np.testing.assert_allclose(pv, np.exp([a.iloc[0], a.sum()]))
    with pytest.raises(ValueError, match="type must be"):
        het.residuals("studentized")


def test_score_and_hessian_are_derivatives_of_loglike(hsb_fits):
    het, _ = hsb_fits
    model = het.model
    x = np.asarray(het.params)[model.k_fe:] * np.array([1.1, 0.95, 1.2])
    g = model.score(x)
    h = 1e-5
    for k in range(x.size):
        e = np.zeros_like(x)
        e[k] = h * max(1, abs(x[k]))
        num = (model.loglike(x + e) - model.loglike(x - e)) / (2 * e[k])
        assert g[k] == pytest.approx(num, rel=1e-5)
    full = np.asarray(het.params) * 1.01
    gf = model.score(full, profile_fe=False)
    e = np.zeros_like(full)
    e[1] = 1e-5
    num = (model.loglike(full + e, profile_fe=False)
           - model.loglike(full - e, profile_fe=False)) / 2e-5
    assert gf[1] == pytest.approx(num, rel=1e-5)
    hess, _ = model.hessian(np.asarray(het.params))
    assert np.all(np.linalg.eigvalsh(hess) < 0)


def test_blups_use_the_heteroskedastic_weights(hsb_fits, hsb_data):
    het, _ = hsb_fits
    school = hsb_data["school"].iloc[0]
    rows = (hsb_data["school"] == school).to_numpy()
    r = np.asarray(het.predict_variance())[rows]
    tau2 = het.cov_re.iloc[0, 0]
    resid = hsb_data["mathach"].to_numpy()[rows] - np.asarray(
        het.model.exog[rows] @ het.fe_params)
    blup = tau2 * np.sum(resid / r) / (1 + tau2 * np.sum(1 / r))
    assert het.random_effects[school].iloc[0] == pytest.approx(blup, rel=1e-10)


def test_missing_only_in_variance_covariate(hsb_data):
    data = hsb_data.copy()
    data["w"] = data["ses"]
    data.loc[[3, 50, 700], "w"] = np.nan
    with pytest.raises(ValueError, match=r"Missing values in \['w'\]"):
        hmf.hetmixedlm("mathach ~ female", data, groups="school", var_formula="~ w")
    res = hmf.hetmixedlm("mathach ~ female", data, groups="school",
                         var_formula="~ w", missing="drop").fit(reml=False)
    assert res.nobs == len(data) - 3
    direct = hmf.hetmixedlm("mathach ~ female", data.dropna(), groups="school",
                            var_formula="~ w").fit(reml=False)
    assert res.llf == pytest.approx(direct.llf, abs=1e-8)


def test_nan_in_variance_design_array(hsb_data):
    w = np.column_stack([np.ones(len(hsb_data)), hsb_data["ses"]])
    w[10, 1] = np.nan
    with pytest.raises(ValueError, match="exog_var has missing or infinite"):
        HetMixedLM(hsb_data["mathach"], np.ones((len(hsb_data), 1)),
                   hsb_data["school"], exog_var=w)


def test_collinear_variance_design(hsb_data):
    data = hsb_data.assign(male=1 - hsb_data["female"])
    with pytest.raises(ValueError, match=r"variance design.*singular.*\['male'\]"):
        hmf.hetmixedlm("mathach ~ 1", data, groups="school",
                       var_formula="~ female + male")


def test_collinear_mean_design(hsb_data):
    data = hsb_data.assign(ses2=2 * hsb_data["ses"])
    with pytest.raises(ValueError, match=r"fixed-effects design.*\['ses2'\]"):
        hmf.hetmixedlm("mathach ~ ses + ses2", data, groups="school")


def test_single_group(hsb_data):
    data = hsb_data.assign(one=1)
    with pytest.raises(ValueError, match="single level"):
        hmf.hetmixedlm("mathach ~ female", data, groups="one")


def test_all_groups_of_size_one(hsb_data):
    data = hsb_data.assign(row=np.arange(len(hsb_data)))
    with pytest.raises(ValueError, match="single observation"):
        hmf.hetmixedlm("mathach ~ female", data, groups="row")


def test_string_column_in_array_interface(hsb_data):
    exog = pd.DataFrame({"const": 1.0, "sex": np.where(hsb_data["female"] == 1,
                                                       "F", "M")})
    with pytest.raises(ValueError, match=r"non-numeric column\(s\) \['sex'\]"):
        HetMixedLM(hsb_data["mathach"], exog, hsb_data["school"])
    with pytest.raises(ValueError, match=r"exog_var has non-numeric"):
        HetMixedLM(hsb_data["mathach"], np.ones((len(hsb_data), 1)),
                   hsb_data["school"], exog_var=exog)


def test_string_variable_in_variance_formula_is_categorical(hsb_data):
    data = hsb_data.assign(sex=np.where(hsb_data["female"] == 1, "F", "M"))
    res = hmf.hetmixedlm("mathach ~ female", data, groups="school",
                         var_formula="~ sex").fit(reml=False)
    assert res.llf == pytest.approx(LLF_FEMALE, abs=1e-6)
    assert list(res.var_params.index) == ["Intercept", "sex[T.M]"]


def test_unconverged_fit_warns_and_says_so(hsb_data, monkeypatch):
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    from statsmodels_hetmixed import optim

    model = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school",
                           var_formula="~ female")
    # Two optimiser iterations and no Newton polish cannot converge.
    monkeypatch.setattr(optim, "_MAX_NEWTON_STEPS", 0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = model.fit(reml=False, maxiter=2)
    assert not res.converged
    assert res.max_grad > 1e-3
    text = res.summary().as_text()
    assert "No (max |gradient|" in text
    assert "did not converge" in text


def test_skipped_optimisation_is_not_converged(hsb_data):
    model = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school")
    with pytest.warns(UserWarning, match="do_cg=False"):
        res = model.fit(do_cg=False)
    assert not res.converged


def test_penalties_are_refused_with_a_variance_function(hsb_data):
    # without one they are MixedLM's (test_mixedlm_compat)
    model = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school",
                           var_formula="~ female")
    with pytest.raises(NotImplementedError, match="Penalised"):
        model.fit(cov_pen=object())


def test_free_holds_covariance_at_zero():
    data = pd.read_csv(RESULTS / "data" / "sim_slope.csv")
    model = hmf.hetmixedlm("y ~ x + t", data, groups="g", re_formula="1 + t",
                           var_formula="~ fb + fc + x")
    free = np.ones(model.k_params - model.k_fe)
    free[1] = 0  # the g x t covariance
    res = model.fit(free=free, reml=False)
    assert res.converged
    assert res.cov_re.iloc[0, 1] == 0
    assert res.bse["cov(g, t)"] == 0  # natural-scale name (issue 9)
    full = model.fit(reml=False)
    assert res.llf < full.llf
    assert res.df_modl == full.df_modl - 1


def test_fit_regularized_is_refused_with_a_variance_function(hsb_data):
    model = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school",
                           var_formula="~ female")
    with pytest.raises(NotImplementedError, match="fit_regularized"):
        model.fit_regularized()


def test_variance_components_only_labels():
    data = pd.read_csv(RESULTS / "data" / "sim_vc.csv")
    res = hmf.hetmixedlm("y ~ x", data, groups="g", vc_formula={"c": "0 + C(c)"},
                         var_formula="~ z").fit()
    assert list(res.bse_re.index) == ["var(c)"]  # natural-scale name (issue 9)
    assert isinstance(res.residuals("pearson"), pd.Series)


def test_held_parameters_print_without_standard_error():
    data = pd.read_csv(RESULTS / "data" / "sim_slope.csv")
    model = hmf.hetmixedlm("y ~ x + t", data, groups="g", re_formula="1 + t")
    free = np.ones(model.k_params - model.k_fe)
    free[1] = 0
    text = model.fit(free=free).summary().as_text()
    row = [line for line in text.splitlines() if line.startswith("g x t Cov")][0]
    assert row.split()[4:] == ["0.000"]  # estimate only, no Std.Err.


def test_array_variance_design_names(hsb_data):
    w = np.column_stack([np.ones(len(hsb_data)), hsb_data["female"]])
    res = HetMixedLM(hsb_data["mathach"], w, hsb_data["school"],
                     exog_var=w).fit(reml=False)
    assert list(res.model.data.exog_var_names) == ["const", "w1"]
    assert res.llf == pytest.approx(LLF_FEMALE, abs=1e-6)
    # Issue 13 (deliberate): the summary names the parameter as t_test takes it
    assert "exp(var:const) is the residual variance" in " ".join(
        res.summary().as_text().split())


@pytest.mark.filterwarnings("ignore:invalid value encountered in log")
def test_transform_giving_nan_in_variance_formula(hsb_data):
    with pytest.raises(ValueError, match="gives missing values"):
        hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school",
                       var_formula="~ np.log(ses)")


def test_pickle_round_trip(hsb_fits, tmp_path):
    from statsmodels.iolib.smpickle import load_pickle

    het, _ = hsb_fits
    path = tmp_path / "fit.pickle"
    het.save(path)
    back = load_pickle(path)
    assert back.llf == het.llf
    np.testing.assert_allclose(back.params, het.params)
    new = pd.DataFrame({"female": [0, 1]})
    np.testing.assert_allclose(back.predict_variance(new), het.predict_variance(new))
    assert "HetMixedLM" in back.summary().as_text()


def test_remove_data_keeps_summary(hsb_data):
    res = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school",
                         var_formula="~ female").fit(reml=False)
    text = res.summary().as_text()
    res.remove_data()
    assert res.model._grouped is None
    assert res.summary().as_text() == text
    # also when the summary was not asked for before (the distinct rows of
    # W, which it shows, are found when first needed)
    fresh = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school",
                           var_formula="~ female").fit(reml=False)
    fresh.remove_data()
    assert fresh.summary().as_text() == text
    assert list(fresh.residual_variance_table().index) == \
        list(res.residual_variance_table().index)


def test_random_slope_with_zero_variance_reaches_the_maximum():
    """No random slope in the data: the maximum has a singular cov_re (a
    correlation of +-1).  The fit must reach it (statsmodels' MixedLM stops
    lower here), say so, and not lose it when converting parameterisations."""
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(40), 15)
    x = rng.standard_normal(len(g))
    h = rng.integers(0, 2, 40)[g]
    y = 1 + 0.5 * x + 0.4 * h + rng.normal(0, 1.0, 40)[g] + \
        np.exp(0.5 * (0.2 - 0.5 * h + 0.3 * x + rng.normal(0, 0.4, 40)[g])) * \
        rng.standard_normal(len(g))
    data = pd.DataFrame({"y": y, "x": x, "h": h, "g": g})
    with pytest.warns(ConvergenceWarning, match="covariance matrix is singular"):
        res = hmf.hetmixedlm("y ~ x + h", data, groups="g",
                             re_formula="~ x").fit(reml=False)
    assert res.converged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("y ~ x + h", data, groups="g", re_formula="~ x").fit(reml=False)
    assert res.llf >= ref.llf - 1e-6
    # Direct check: no small step in any direction increases the llf.
    model = res.model
    # Natural-scale vector: without a variance formula params are MixedLM's
    # (covariances relative to the scale, issue 9), which loglike does not take.
    x0 = np.asarray(res.params_natural)[model.k_fe:]
    base = model.loglike(x0)
    for k in range(x0.size):
        for step in (1e-4, -1e-4):
            x1 = x0.copy()
            x1[k] += step
            cov = model.layout.cov_re(x1)
            if np.linalg.eigvalsh(cov)[0] < 0:
                continue  # outside the parameter space
            assert model.loglike(x1) <= base + 1e-7


@pytest.mark.parametrize("reml", [True, False])
def test_variance_function_se_invariant_to_recoding(recoding_data, reml):
    """The SEs of the variance function's coefficients do not depend on the
    units or origin of its covariates (they did: the Hessian's difference
    steps ignored the scale of W's columns, 2% off for year - 2010, NaN
    for year * 1e6); measured agreement 4e-6, tested at 1e-4."""
    from .conftest import fit_year_codings

    ses = {name: np.array([res.bse["var:year"] * factor, res.bse["var:income"],
                           res.bse["year"] * factor])
           for name, (res, factor) in fit_year_codings(
               recoding_data, dict(reml=reml)).items()}
    # income in dollars against income in 10,000s
    data = recoding_data.assign(income=recoding_data["income"] / 1e4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = hmf.hetmixedlm("y ~ year", data, groups="g",
                             var_formula="~ year + income").fit(reml=reml)
    ses["income / 1e4"] = np.array([res.bse["var:year"], res.bse["var:income"] / 1e4,
                                    res.bse["year"]])
    for name, se in ses.items():
        np.testing.assert_allclose(se, ses["year"], rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("reml", [False, True])
def test_variance_covariate_far_from_its_origin(hsb_data, reml):
    """ses + 20000 (25,000 SDs from its origin) in the mean and the variance
    function: the fit converges, and SEs, the slope and llf are those of
    ses, to rounding.  In the natural coordinates the gradient W'g cancels
    to a few digits there, and X'V^-1 X (condition 1e10) loses the GLS
    residuals' digits: fits stopped unconverged (max gradient 0.56) before
    the variance block's centred coordinates, and SEs were 1.5% off with
    ses + 2010 before the engine's centred fixed-effects columns; measured
    agreement 1e-7."""
    ses = {}
    for shift in (0.0, 2e4):
        data = hsb_data.assign(s=hsb_data["ses"] + shift)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = hmf.hetmixedlm("mathach ~ female + s", data, groups="school",
                                 var_formula="~ female + s").fit(reml=reml)
        assert res.converged
        ses[shift] = np.append(
            np.asarray(res.bse[["s", "female", "var:s", "var:female", "var(school)"]]),
            [res.params["s"], res.params["var:s"], res.llf])
    np.testing.assert_allclose(ses[2e4], ses[0.0], rtol=1e-6)


def _orthodont_months(reml, var_formula, origin=0.0, unit=1.0):
    """The Orthodont random-slope fit on months = (12 age) * unit + origin."""
    data = pd.read_csv(RESULTS / "robust" / "orthodont.csv")
    data["months"] = 12.0 * data["age"] * unit + origin
    kw = {} if var_formula is None else {"var_formula": var_formula}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return hmf.hetmixedlm("distance ~ months + female", data, groups="Subject",
                              re_formula="~ months", **kw).fit(reml=reml)


@pytest.mark.parametrize("var_formula", ["~ female", None])
@pytest.mark.parametrize("reml", [True, False])
def test_random_slope_far_from_its_origin(reml, var_formula):
    """A random slope on months + 1e5 (and on months in units of 1e-3):
    the fit converges to that of months, G = N G' N' for months' = months
    N (N = [[1, origin], [0, unit]]), SEs as the recoding implies, REML llf
    less log(unit) (X'V^-1 X's determinant).  Before the engine's centred
    random-effects columns and the covariance block's centred coordinates
    the fit on months + 1e5 stopped unconverged (REML, heteroskedastic:
    max gradient 1.9e9, llf -211.468 against -210.142) with a singular
    covariance warning; measured agreement 3e-7 (estimates) and 2e-6
    (SEs)."""
    base = _orthodont_months(reml, var_formula)
    assert base.converged
    for origin, unit in ((1e5, 1.0), (0.0, 1e-3)):
        res = _orthodont_months(reml, var_formula, origin, unit)
        assert res.converged
        shift = np.log(unit) if reml else 0.0
        assert res.llf + shift == pytest.approx(base.llf, rel=1e-8)
        N = np.array([[1.0, origin], [0.0, unit]])
        cov_re = N @ res.cov_re.to_numpy() @ N.T
        # the fits' convergence test (Newton decrement 1e-10) leaves them
        # within about 1e-5 standard errors: the intercept's variance and
        # covariance agree to 1.7e-6 (3e-6 SEs), measured
        np.testing.assert_allclose(cov_re, base.cov_re.to_numpy(), rtol=5e-6)
        slope = [res.fe_params["months"] * unit, res.params.iloc[5] * unit**2]
        np.testing.assert_allclose(slope, [base.fe_params["months"],
                                           base.params.iloc[5]], rtol=1e-6)
        # SEs: the fixed effects' slope and female, the slope's variance
        ses = np.array(res.bse.iloc[[1, 2, 5]]) * [unit, 1.0, unit**2]
        np.testing.assert_allclose(ses, np.asarray(base.bse.iloc[[1, 2, 5]]), rtol=1e-4)


# ----------------------------------------------------------------------
# What the model stores: one copy of each design


def _owned_bytes(model):
    """Bytes of the distinct buffers behind the model's row-sized arrays
    (views counted once, broadcasts by what they store)."""
    g = model._grouped
    arrays = [model.endog, model.exog, model.exog_var, model.exog_re,
              model.variance_function.exog_var, g.endog, g.exog, g.exog_z,
              g.exog_zc, g.group_index]
    # the group sums' operator: the sparse indicator's arrays (rows not
    # sorted by group), or the groups' first rows (segment sums)
    arrays += [getattr(g.indicator, k, None) for k in ("data", "indices", "indptr")]
    arrays += [g.starts, g.sizes]
    seen, total = [], 0
    for a in arrays:
        if a is None:
            continue
        base = a
        while isinstance(base.base, np.ndarray):
            base = base.base
        if any(base is b for b in seen):
            continue
        seen.append(base)
        total += base.nbytes
    return total


@pytest.fixture(scope="module")
def scale_like():
    """bench_scale's design on a few rows: z group-level, x row-level."""
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(60), 8)
    z = rng.integers(0, 2, 60)[g]
    x = rng.standard_normal(g.size)
    y = (1 + z + x + rng.standard_normal(60)[g]
         + rng.standard_normal(g.size) * np.exp(0.4 * z + 0.3 * x))
    return pd.DataFrame({"grp": g, "z": z, "x": x, "y": y})


def test_variance_design_shares_the_mean_design_s_columns(scale_like):
    model = hmf.hetmixedlm("y ~ z*x", scale_like, groups="grp", var_formula="~ z*x")
    assert np.shares_memory(model.exog_var, model.exog)
    assert model.variance_function.exog_var is model.exog_var
    np.testing.assert_array_equal(model.exog_var, model.exog)
    # evenly spaced columns: a view; others: a copy of their own
    sub = hmf.hetmixedlm("y ~ z*x", scale_like, groups="grp", var_formula="~ x")
    assert np.shares_memory(sub.exog_var, sub.exog)
    assert list(sub.data.exog_var_names) == ["Intercept", "x"]
    np.testing.assert_array_equal(sub.exog_var, sub.exog[:, [0, 2]])
    apart = hmf.hetmixedlm("y ~ z*x", scale_like, groups="grp",
                           var_formula="~ z + z:x")
    assert not np.shares_memory(apart.exog_var, apart.exog)
    np.testing.assert_array_equal(apart.exog_var, apart.exog[:, [0, 1, 3]])
    # the same names with other values (the user's arrays) are not shared
    W = pd.DataFrame(model.exog, columns=model.exog_names)
    W["x"] = W["x"] * 2
    other = HetMixedLM(model.endog, pd.DataFrame(model.exog, columns=model.exog_names),
                       scale_like["grp"], exog_var=W)
    assert not np.shares_memory(other.exog_var, other.exog)
    np.testing.assert_array_equal(other.exog_var[:, 2], 2 * model.exog[:, 2])


def test_model_holds_one_copy_of_each_design(scale_like):
    """The mean design, its centred copy (the engine's), the response and
    the group codes; the variance design is the mean design's columns and
    the random intercept's column of ones stores one value."""
    model = hmf.hetmixedlm("y ~ z*x", scale_like, groups="grp", var_formula="~ z*x")
    n, p = model.exog.shape
    assert model.exog_re.strides[0] == 0 and model._grouped.exog_z.strides[0] == 0
    # at most: X, the engine's centred X, y, the group codes, one 1.0 and
    # a few per-group arrays (the segment sums' sizes and starts)
    per_group = 3 * 8 * model.n_groups
    assert _owned_bytes(model) <= 8 * n * (2 * p + 1) + 8 * n + 8 + per_group
    # a constant variance stores no column either
    hom = hmf.hetmixedlm("y ~ z*x", scale_like, groups="grp")
    assert hom.exog_var.strides[0] == 0


def test_shared_designs_give_the_results_of_separate_copies(scale_like):
    """Sharing W with X and the column of ones change no estimate: the
    same model from arrays of their own (whose names differ from the mean
    design's, so nothing is shared)."""
    shared = hmf.hetmixedlm("y ~ z*x", scale_like, groups="grp",
                            var_formula="~ z*x")
    X = np.array(shared.exog)
    own = HetMixedLM(shared.endog, X, scale_like["grp"].to_numpy(),
                     exog_re=np.ones((len(X), 1)), exog_var=X.copy())
    assert not np.shares_memory(own.exog_var, own.exog)
    assert own.exog_re.strides[0] != 0
    for reml in (False, True):
        a, b = shared.fit(reml=reml), own.fit(reml=reml)
        np.testing.assert_allclose(np.asarray(a.params), np.asarray(b.params),
                                   rtol=1e-10)
        np.testing.assert_allclose(a.llf, b.llf, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(a.bse), np.asarray(b.bse), rtol=1e-7)


def test_unpickled_model_shares_the_designs_again(scale_like):
    import pickle

    res = hmf.hetmixedlm("y ~ z*x", scale_like, groups="grp",
                         var_formula="~ z*x").fit(reml=False)
    back = pickle.loads(pickle.dumps(res))
    model = back.model
    assert np.shares_memory(model.exog_var, model.exog)
    assert model.variance_function.exog_var is model.exog_var
    assert back.llf == res.llf
    new = scale_like.iloc[:5]
    np.testing.assert_allclose(back.predict_variance(new), res.predict_variance(new))
    np.testing.assert_allclose(back.predict(new), res.predict(new))
