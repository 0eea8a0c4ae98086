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
    res = hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school").fit()
    assert list(res.params.index) == ["Intercept", "female", "school Var",
                                      "var:Intercept"]
    arr = HetMixedLM(hsb_data["mathach"], np.ones((len(hsb_data), 1)),
                     hsb_data["school"]).fit()
    assert list(arr.model.data.param_names) == ["const", "Group Var", "var:Intercept"]
