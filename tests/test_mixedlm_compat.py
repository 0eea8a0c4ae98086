"""Without a variance formula HetMixedLM is MixedLM: same answers, same API."""

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from statsmodels.regression.mixed_linear_model import MixedLM

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import HetMixedLM

from .conftest import RESULTS


@pytest.fixture(scope="module")
def slope_data():
    return pd.read_csv(RESULTS / "data" / "sim_slope.csv")


def _mixedlm_fit(*args, **kwargs):
    fit_kw = kwargs.pop("fit", {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smf.mixedlm(*args, **kwargs).fit(**fit_kw)


@pytest.mark.parametrize("reml", [True, False])
def test_same_answer_as_converged_mixedlm(slope_data, reml):
    kw = dict(groups="g", re_formula="1 + t")
    ref = _mixedlm_fit("y ~ x + t", slope_data, fit={"reml": reml}, **kw)
    assert ref.converged
    res = hmf.hetmixedlm("y ~ x + t", slope_data, **kw).fit(reml=reml)
    assert res.converged
    # At least as high as MixedLM's optimum, and equal to its tolerance.
    assert res.llf >= ref.llf - 1e-7
    assert res.llf == pytest.approx(ref.llf, abs=1e-5)
    np.testing.assert_allclose(res.fe_params, ref.fe_params, rtol=1e-6)
    np.testing.assert_allclose(res.cov_re, ref.cov_re, rtol=1e-3)
    assert res.scale == pytest.approx(ref.scale, rel=1e-4)
    assert list(res.cov_re.index) == list(ref.cov_re.index)
    # MixedLM's fixed-effects SEs come from the joint Hessian; ours from
    # (X'V^-1X)^-1 (nlme's): equal to 0.1% here.
    np.testing.assert_allclose(res.bse_fe, ref.bse_fe, rtol=1e-3)
    # Predictions of the random effects and fitted values.
    ours = pd.DataFrame(res.random_effects).T
    theirs = pd.DataFrame(ref.random_effects).T
    assert list(ours.columns) == list(theirs.columns)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    np.testing.assert_allclose(res.fittedvalues, ref.fittedvalues, atol=1e-3)
    np.testing.assert_allclose(res.random_effects_cov[3], ref.random_effects_cov[3],
                               atol=1e-4)


def test_variance_components_match_mixedlm():
    data = pd.read_csv(RESULTS / "data" / "sim_vc.csv")
    kw = dict(groups="g", re_formula="1", vc_formula={"c": "0 + C(c)"})
    ref = _mixedlm_fit("y ~ x", data, **kw)
    res = hmf.hetmixedlm("y ~ x", data, **kw).fit()
    assert ref.converged and res.converged
    assert res.llf >= ref.llf - 1e-7
    np.testing.assert_allclose(res.vcomp, ref.vcomp, rtol=1e-4)
    for group in (0, 17, 59):
        np.testing.assert_allclose(res.random_effects[group],
                                   ref.random_effects[group], atol=1e-5)
        assert list(res.random_effects[group].index) == \
            list(ref.random_effects[group].index)


def test_true_optimum_where_mixedlm_stops_early(hsb_data):
    """HSB, ML, mathach ~ female, random intercept: R and Stata reach
    -23526.66; statsmodels 0.15 MixedLM stops unconverged at -23527.87."""
    ref = _mixedlm_fit("mathach ~ female", hsb_data, groups="school",
                       fit={"reml": False})
    res = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school").fit(reml=False)
    assert res.converged
    assert res.llf == pytest.approx(-23526.6604839877, abs=1e-6)
    assert res.llf > ref.llf + 1.0


def test_array_interface_drop_in(slope_data):
    """Existing MixedLM array code runs unchanged with HetMixedLM swapped in."""
    endog = slope_data["y"]
    exog = sm.add_constant(slope_data[["x", "t"]])
    exog_re = sm.add_constant(slope_data[["t"]])
    results = {}
    for cls in (MixedLM, HetMixedLM):
        model = cls(endog, exog, slope_data["g"], exog_re=exog_re)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit(reml=True)
        summary = res.summary().as_text()
        assert "const" in summary
        assert res.conf_int().shape[1] == 2
        pred = res.predict(exog.iloc[:5])
        assert len(pred) == 5
        tt = res.t_test(np.eye(3))  # one column per fixed effect, as MixedLM
        assert tt.effect.shape == (3,)
        assert isinstance(res.fe_params, pd.Series)
        assert isinstance(res.bse_fe, pd.Series)
        results[cls] = res
    a, b = results[MixedLM], results[HetMixedLM]
    np.testing.assert_allclose(a.fe_params, b.fe_params, rtol=1e-6)
    assert list(b.cov_re.columns) == list(a.cov_re.columns)
    np.testing.assert_allclose(a.predict(exog), b.predict(exog), atol=1e-5)


def test_default_random_intercept_names(hsb_data):
    # Without a variance formula params carries MixedLM's names and no
    # var:Intercept (issue 9); the natural vector keeps it.
    res = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school").fit()
    assert list(res.params.index) == ["Intercept", "female", "school Var"]
    assert list(res.params_natural.index) == ["Intercept", "female", "var(school)",
                                              "var:Intercept"]
    arr = HetMixedLM(hsb_data["mathach"], np.ones((len(hsb_data), 1)),
                     hsb_data["school"]).fit()
    assert list(arr.model.data.param_names) == ["const", "Group Var"]
    assert list(arr.model.layout.names) == ["const", "var(Group)", "var:Intercept"]


# ----------------------------------------------------------------------
# MixedLM's parameter objects, penalised fits, profile_re, crossed effects
from statsmodels.base import _penalties as penalties  # noqa: E402
from statsmodels.regression.mixed_linear_model import (  # noqa: E402
    MixedLMParams,
    VCSpec,
)
from statsmodels.tools.sm_exceptions import SingularMatrixWarning  # noqa: E402

from statsmodels_hetmixed import HetMixedLMParams  # noqa: E402


@pytest.mark.parametrize("use_sqrt", [True, False])
def test_mixedlm_params_read_as_mixedlm_reads_them(slope_data, use_sqrt):
    """loglike/score/hessian of a MixedLMParams are MixedLM's, to rounding."""
    endog, exog = slope_data["y"], sm.add_constant(slope_data[["x", "t"]])
    exog_re = sm.add_constant(slope_data[["t"]])
    models = [cls(endog, exog, slope_data["g"], exog_re=exog_re, use_sqrt=use_sqrt)
              for cls in (MixedLM, HetMixedLM)]
    for m in models:
        m.reml, m.cov_pen, m._freepat = False, None, None  # set by MixedLM.fit
    params = MixedLMParams.from_components(
        np.array([0.5, 1.0, -0.2]), cov_re=np.array([[0.8, 0.1], [0.1, 0.3]]))
    for profile_fe in (True, False):
        a, b = (m.loglike(params, profile_fe=profile_fe) for m in models)
        assert b == pytest.approx(a, rel=1e-12)
        np.testing.assert_allclose(models[1].score(params, profile_fe=profile_fe),
                                   models[0].score(params, profile_fe=profile_fe),
                                   rtol=1e-10)
    np.testing.assert_allclose(models[1].hessian(params)[0],
                               models[0].hessian(params)[0], rtol=1e-10)


def test_het_params_carry_the_variance_function(hsb_data):
    model = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school",
                           var_formula="~ female")
    res = model.fit(reml=False)
    p = HetMixedLMParams.from_components(
        np.asarray(res.fe_params), cov_re=np.asarray(res.cov_re),
        var_params=np.asarray(res.var_params))
    assert model.loglike(p, profile_fe=False) == pytest.approx(res.llf, rel=1e-10)
    assert model.loglike(p.copy()) == pytest.approx(res.llf, rel=1e-10)
    refit = model.fit(reml=False, start_params=p)
    assert refit.llf == pytest.approx(res.llf, abs=1e-6)
    plain = MixedLMParams.from_components(np.asarray(res.fe_params),
                                          cov_re=np.asarray(res.cov_re))
    for call in (model.loglike, model.score, lambda q: model.fit(start_params=q)):
        with pytest.raises(TypeError, match="HetMixedLMParams"):
            call(plain)
    with pytest.raises(ValueError, match="var_params has 1 values.*2"):
        model.loglike(HetMixedLMParams.from_components(
            np.asarray(res.fe_params), cov_re=np.asarray(res.cov_re), var_params=[1.0]))
    with pytest.raises(NotImplementedError, match="variance function"):
        model.fit_regularized(alpha=1.0)
    with pytest.raises(NotImplementedError, match="variance function"):
        model.fit(fe_pen=penalties.L2())


def test_mixedlm_start_params_are_mixedlm_packed(slope_data):
    """A MixedLMParams or MixedLM's packed vector (square-root scale) as
    start_params: the fit reaches the same optimum."""
    kw = dict(groups="g", re_formula="1 + t")
    model = hmf.hetmixedlm("y ~ x + t", slope_data, **kw)
    res = model.fit()
    po = MixedLMParams.from_components(np.asarray(res.fe_params),
                                       cov_re=np.asarray(res.cov_re) / res.scale)
    for start in (po, po.get_packed(use_sqrt=True, has_fe=True),
                  po.get_packed(use_sqrt=True, has_fe=False)):
        assert model.fit(start_params=start).llf == pytest.approx(res.llf, abs=1e-7)


def test_fit_regularized_is_mixedlms():
    rs = np.random.RandomState(3453)
    exog = rs.normal(size=(400, 5))
    groups = np.kron(np.arange(100), np.ones(4))
    endog = exog[:, 0] - exog[:, 2] + np.kron(rs.normal(size=100), np.ones(4)) \
        + rs.normal(size=400)
    out = {}
    for cls in (MixedLM, HetMixedLM):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[cls] = cls(endog, exog, groups).fit_regularized(alpha=40.0)
    a, b = out[MixedLM], out[HetMixedLM]
    # same penalised fixed effects (the L1 path holds the covariance at the
    # unpenalised fits, which agree to MixedLM's tolerance), same zeros
    np.testing.assert_allclose(b.fe_params, a.fe_params, rtol=1e-4, atol=1e-5)
    assert list(np.flatnonzero(b.fe_params == 0)) == \
        list(np.flatnonzero(a.fe_params == 0)) != []
    # MixedLM's smooth penalties run too (contract suite: test_regularized)


def _profile_peaks(res, *args, **kwargs):
    likev = res.profile_re(*args, num_low=2, num_high=2, **kwargs)
    assert likev.shape == (5, 2)
    assert likev[2, 1] == pytest.approx(res.llf, abs=1e-6)
    assert np.all(likev[:, 1] <= res.llf + 1e-6)
    assert np.all(likev[[0, 4], 1] < res.llf - 1e-3)
    return likev


def test_profile_re_heteroskedastic(hsb_data):
    """The variance function is estimated again at each point; the grid is
    the variance itself (MixedLM's first column is a ratio times a scale)."""
    data = hsb_data[hsb_data["school"].isin(hsb_data["school"].unique()[:40])]
    res = hmf.hetmixedlm("mathach ~ female", data, groups="school",
                         var_formula="~ female").fit(reml=False)
    v = float(res.cov_re.iloc[0, 0])
    likev = _profile_peaks(res, 0, "re", dist_low=0.5 * v, dist_high=0.5 * v)
    np.testing.assert_allclose(likev[:, 0], v * np.array([0.5, 0.75, 1, 1.25, 1.5]))
    # a held variance with every other parameter re-estimated: at least
    # the likelihood with the variance function left at its estimate
    model = res.model
    nat = np.asarray(res._results._natural).copy()
    nat[0] = likev[0, 0]
    assert likev[0, 1] >= model.loglike(nat) - 1e-8


def test_profile_re_second_random_effect_and_vc(slope_data):
    res = hmf.hetmixedlm("y ~ x + t", slope_data, groups="g",
                         re_formula="1 + t").fit(reml=False)
    v = float(res.cov_re.iloc[1, 1])
    _profile_peaks(res, 1, "re", dist_low=0.3 * v, dist_high=0.3 * v)
    vc = hmf.hetmixedlm("y ~ x", pd.read_csv(RESULTS / "data" / "sim_vc.csv"),
                        groups="g", vc_formula={"c": "0 + C(c)"}).fit()
    v = float(vc.vcomp[0])
    _profile_peaks(vc, "c", "vc", dist_low=0.3 * v, dist_high=0.3 * v)
    with pytest.raises(ValueError, match="negative variance"):
        vc.profile_re("c", "vc", dist_low=2 * v)


def _crossed(seed=1, n=300):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 10, n), rng.integers(0, 12, n)
    y = rng.normal(size=10)[a] + rng.normal(size=12)[b] + rng.normal(size=n)
    za = (a[:, None] == np.arange(10)).astype(float)
    zb = (b[:, None] == np.arange(12)).astype(float)
    vcs = VCSpec(["a", "b"], [[f"a{i}" for i in range(10)], [f"b{i}" for i in range(12)]],
                 [[za], [zb]])
    return y, np.ones((n, 1)), vcs, pd.DataFrame({"y": y, "a": a, "b": b, "one": 1})


def test_crossed_effects_in_one_group():
    """MixedLM's idiom: crossed random effects as variance components of a
    single group (array API with a VCSpec, and formulas)."""
    y, X, vcs, frame = _crossed()
    ref = _mixedlm_fit("y ~ 1", frame, groups="one",
                       vc_formula={"a": "0 + C(a)", "b": "0 + C(b)"})
    res = HetMixedLM(y, X, np.ones(len(y)), exog_vc=vcs).fit()
    form = hmf.hetmixedlm("y ~ 1", frame, groups="one",
                          vc_formula={"a": "0 + C(a)", "b": "0 + C(b)"}).fit()
    for r in (res, form):
        assert r.converged and r.llf >= ref.llf - 1e-7
        np.testing.assert_allclose(r.vcomp, ref.vcomp, rtol=1e-3)
    # without variance components one group is still refused
    with pytest.raises(ValueError, match="single level.*variance components"):
        HetMixedLM(y, X, np.ones(len(y)))


def test_singular_random_effects_covariance_warns_as_mixedlm():
    # group means removed: the between-group variance is at zero
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(20), 5)
    e = rng.normal(size=g.size)
    y = e - np.bincount(g, e)[g] / 5
    with pytest.warns(SingularMatrixWarning, match="random effects covariance"):
        HetMixedLM(y, np.ones((g.size, 1)), g).fit()


def test_singular_example_reaches_the_interior_optimum_of_lme4_and_nlme():
    """statsmodels' test_lme.py::test_singular expects a singular-covariance
    warning on its data; lme4 and nlme (tests/results/contract/r_singular.R)
    find an interior REML optimum there (class variance 5.7e-4, lme4's
    isSingular FALSE), as HetMixedLM does, while MixedLM stops at zero with
    llf = inf.  No singular warning is due."""
    import json

    ref = json.loads((RESULTS / "contract" / "r_singular.json").read_text())
    data = pd.read_csv(RESULTS / "contract" / "singular.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularMatrixWarning)
        res = HetMixedLM.from_formula("Y ~ X", data, groups=data["cls"]).fit()
    for r in (ref["lme4"], ref["nlme"]):
        assert res.llf == pytest.approx(r["llf"], abs=1e-8)
        # The likelihood is flat in the variance: the three optima differ
        # in its fourth digit and in the llf's eleventh.
        assert float(np.asarray(res.cov_re)[0, 0]) == pytest.approx(r["var_cls"], rel=2e-3)
        np.testing.assert_allclose(res.fe_params, r["fe"], rtol=1e-5)
        assert res.scale == pytest.approx(r["scale"], rel=1e-6)
    assert not ref["lme4"]["is_singular"]


# ----------------------------------------------------------------------
# Issue 9: without a variance formula params, bse and cov_params are
# MixedLM's (covariances relative to the scale, MixedLM's joint inverse
# Hessian), under MixedLM's names.

def _mixedlm_at(res, formula, data, reml, **kw):
    """MixedLM's fit started at our estimate (it converges there at once)
    and its analytic Hessian there: references that do not depend on
    MixedLM's optimiser stopping early."""
    model = smf.mixedlm(formula, data, **kw)
    model.reml = reml
    hess, _ = model.hessian(res.params_object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = model.fit(reml=reml, start_params=res.params_object)
    return ref, np.linalg.inv(-hess)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("case", ["slope", "vc"])
def test_params_bse_cov_params_are_mixedlms(slope_data, case, reml):
    if case == "slope":
        data, kw = slope_data, dict(groups="g", re_formula="1 + t")
        formula = "y ~ x + t"
    else:
        data = pd.read_csv(RESULTS / "data" / "sim_vc.csv")
        kw = dict(groups="g", re_formula="1", vc_formula={"c": "0 + C(c)"})
        formula = "y ~ x"
    res = hmf.hetmixedlm(formula, data, **kw).fit(reml=reml)
    ref, cov = _mixedlm_at(res, formula, data, reml, **kw)
    assert ref.converged and res.converged
    assert res.llf == pytest.approx(ref.llf, abs=1e-8)
    assert list(res.params.index) == list(ref.params.index)
    assert list(res.bse.index) == list(ref.bse.index)
    assert list(res.cov_params().columns) == list(ref.cov_params().columns)
    np.testing.assert_allclose(res.params, ref.params, rtol=1e-6)
    # The covariance parameters' information is a forward difference of the
    # analytic gradient (about 4e-6 relative; MixedLM's is its analytic
    # Hessian): central differences would take as many gradients again on
    # every fit, for digits no summary prints.
    np.testing.assert_allclose(res.cov_params(), cov, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(res.bse, ref.bse, rtol=1e-5)
    np.testing.assert_allclose(res.bse_fe, ref.bse_fe, rtol=1e-5)
    np.testing.assert_allclose(res.tvalues, ref.tvalues, rtol=1e-5)
    np.testing.assert_allclose(res.conf_int(), ref.conf_int(), rtol=1e-5)
    np.testing.assert_allclose(res.params_object.cov_re, ref.params_object.cov_re,
                               rtol=1e-6)
    np.testing.assert_allclose(res.params_object.vcomp, ref.params_object.vcomp,
                               rtol=1e-6)
    # The natural scale stays available, with nlme's (X'V^-1 X)^-1.
    lay = res.model.layout
    assert list(res.params_natural.index) == lay.names
    assert res.params_natural.iloc[lay.k_fe] == pytest.approx(
        res.params.iloc[lay.k_fe] * res.scale, rel=1e-12)
    assert np.log(res.scale) == pytest.approx(res.params_natural["var:Intercept"])
    assert list(res.cov_params_natural().index) == lay.names


def test_mixedlm_params_invariant_to_covariate_units_and_row_order(slope_data):
    kw = dict(groups="g", re_formula="1 + t")
    res = hmf.hetmixedlm("y ~ x + t", slope_data, **kw).fit()
    recoded = slope_data.assign(t=slope_data["t"] * 10.0, x=slope_data["x"] + 3.0)
    recoded = recoded.sample(frac=1.0, random_state=1)
    other = hmf.hetmixedlm("y ~ x + t", recoded, **kw).fit()
    # t in tenths: its slope / 10, its variance / 100, its covariance / 10.
    factor = pd.Series({"Intercept": np.nan, "x": 1.0, "t": 0.1, "g Var": 1.0,
                        "g x t Cov": 0.1, "t Var": 0.01})
    keep = ["x", "t", "g Var", "g x t Cov", "t Var"]
    np.testing.assert_allclose(other.params[keep], res.params[keep] * factor[keep],
                               rtol=1e-6)
    np.testing.assert_allclose(other.bse[keep], res.bse[keep] * factor[keep],
                               rtol=1e-5)


def test_summary_col_across_hetmixedlm_and_mixedlm(slope_data):
    from statsmodels.iolib.summary2 import summary_col

    kw = dict(groups="g", re_formula="1")
    ref = _mixedlm_fit("y ~ x", slope_data, **kw)
    hom = hmf.hetmixedlm("y ~ x", slope_data, **kw).fit()
    het = hmf.hetmixedlm("y ~ x", slope_data, var_formula="~ x", **kw).fit()
    table = summary_col([ref, hom, het], model_names=["MixedLM", "hom", "het"],
                        float_format="%.4f").tables[0]
    # The homoskedastic fits share every row and agree in them.
    assert table.loc["g Var", "MixedLM"] == table.loc["g Var", "hom"]
    assert table.loc["x", "MixedLM"] == table.loc["x", "hom"]
    # The heteroskedastic fit's variance is on the natural scale, under
    # another name: no row mixes MixedLM's relative and a natural variance.
    assert table.loc["var(g)", "MixedLM"] == "" and table.loc["var(g)", "het"] != ""
    assert table.loc["g Var", "het"] == ""
    assert table.loc["var:x", "MixedLM"] == ""
    assert table.loc["var:x", "het"] != ""


def test_lr_test_of_a_variance_formula_against_mixedlm(slope_data):
    """The restricted fit may be MixedLM's: its (relative) parameters are
    matched to ours by the natural names, so no variance is taken to be on
    the boundary (only var:x is dropped)."""
    kw = dict(groups="g", re_formula="1 + t")
    ref = _mixedlm_fit("y ~ x", slope_data, fit={"reml": False}, **kw)
    hom = hmf.hetmixedlm("y ~ x", slope_data, **kw).fit(reml=False)
    het = hmf.hetmixedlm("y ~ x", slope_data, var_formula="~ x", **kw).fit(reml=False)
    for restricted in (ref, hom):
        lr = het.compare_lr_test(restricted)
        assert lr.boundary == [] and lr.df == 1
        assert lr.statistic == pytest.approx(2 * (het.llf - restricted.llf))


def test_t_test_matrix_width_as_mixedlm(slope_data):
    res = hmf.hetmixedlm("y ~ x + t", slope_data, groups="g").fit()
    k_fe = res.k_fe
    tt = res.t_test(np.eye(k_fe))
    np.testing.assert_allclose(tt.sd.ravel(), res.bse_fe, rtol=1e-12)
    # MixedLM's message, and its refusal of any other width.
    with pytest.raises(ValueError, match=f"should have {k_fe} columns"):
        res.t_test(np.eye(k_fe + 1))
    # Other parameters by name.
    assert res.t_test("g Var = 1").effect[0] == pytest.approx(res.params["g Var"])


def test_reml_information_criteria_as_mixedlm(slope_data):
    reml = hmf.hetmixedlm("y ~ x", slope_data, groups="g").fit()
    assert np.isnan(reml.aic) and np.isnan(reml.bic)
    assert reml.aic_reml == pytest.approx(-2 * reml.llf + 2 * 4)
    ml = hmf.hetmixedlm("y ~ x", slope_data, groups="g").fit(reml=False)
    assert ml.aic == pytest.approx(-2 * ml.llf + 2 * 4) and np.isnan(ml.aic_reml)


def test_one_dimensional_exog_re_as_mixedlm():
    """A 1-d exog_re is one random-effect column, named as MixedLM names it
    (it raised IndexError while the names were made)."""
    rng = np.random.default_rng(11)
    groups = np.repeat(np.arange(30), 4)
    exog = np.column_stack([np.ones(groups.size), rng.standard_normal(groups.size)])
    endog = exog.sum(1) + rng.standard_normal(30)[groups] + rng.standard_normal(groups.size)
    one = HetMixedLM(endog, exog, groups, np.ones(groups.size)).fit()
    default = HetMixedLM(endog, exog, groups).fit()
    np.testing.assert_allclose(one.params, default.params, rtol=1e-8)
    ref = MixedLM(endog, exog, groups, np.ones(groups.size))
    assert one.model.data.param_names == ref.data.param_names
