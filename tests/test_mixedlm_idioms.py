"""
Analyses written as statsmodels' MixedLM documentation writes them (the
``mixed_lm`` user guide and example notebook: dietox data, random
intercepts and slopes, independent random effects through ``free``, the
array API with ``exog_re``, ``profile_re``, nested and crossed variance
components through ``vc_formula`` and ``VCSpec``) run unchanged with
HetMixedLM and give MixedLM's ``params``, ``fe_params``, ``cov_re``,
``scale`` and llf where MixedLM converges (an llf no lower where it does
not).  The dietox data are read from the installed statsmodels, whose own
tests use them.
"""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels
import statsmodels.formula.api as smf
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams, VCSpec

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import HetMixedLM

DIETOX = (Path(statsmodels.__file__).parent / "regression" / "tests" / "results"
          / "dietox.csv")


@pytest.fixture(scope="module")
def dietox():
    return pd.read_csv(DIETOX)


def _both(make_mixedlm, make_het, fit_kwargs=None):
    fit_kwargs = fit_kwargs or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = make_mixedlm().fit(**fit_kwargs)
        ours = make_het().fit(**fit_kwargs)
        if ref.converged and not _close(ref, ours):
            # Where the likelihood is flat MixedLM stops within its own
            # tolerance: restarted at our estimate, it must stay there.
            ref = make_mixedlm().fit(start_params=ours.params_object, **fit_kwargs)
    return ref, ours


def _close(ref, ours, rtol=1e-4):
    return (np.allclose(ours.fe_params, ref.fe_params, rtol=rtol, atol=1e-6)
            and np.allclose(np.asarray(ours.cov_re), np.asarray(ref.cov_re),
                            rtol=rtol, atol=1e-6))


def _agree(ref, ours, rtol=1e-4):
    """MixedLM's numbers where MixedLM converged; a log-likelihood no lower
    where it did not."""
    assert ours.llf >= ref.llf - 1e-6 * abs(ref.llf)
    if not ref.converged:
        return
    assert ours.llf == pytest.approx(ref.llf, rel=1e-8)
    np.testing.assert_allclose(ours.fe_params, ref.fe_params, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ours.cov_re), np.asarray(ref.cov_re),
                               rtol=rtol, atol=1e-6)
    assert ours.scale == pytest.approx(ref.scale, rel=rtol)
    np.testing.assert_allclose(np.asarray(ours.params), np.asarray(ref.params),
                               rtol=rtol, atol=1e-6)
    assert list(ours.params.index) == list(ref.params.index)


@pytest.mark.parametrize("reml", [True, False])
def test_random_intercept(dietox, reml):
    ref, ours = _both(
        lambda: smf.mixedlm("Weight ~ Time", dietox, groups=dietox["Pig"]),
        lambda: hmf.hetmixedlm("Weight ~ Time", dietox, groups=dietox["Pig"]),
        {"reml": reml})
    _agree(ref, ours)


def test_random_slope(dietox):
    ref, ours = _both(
        lambda: smf.mixedlm("Weight ~ Time", dietox, groups=dietox["Pig"],
                            re_formula="~Time"),
        lambda: hmf.hetmixedlm("Weight ~ Time", dietox, groups=dietox["Pig"],
                               re_formula="~Time"))
    _agree(ref, ours)


def test_independent_random_effects_through_free(dietox):
    free = MixedLMParams.from_components(np.ones(2), np.eye(2))
    ref, ours = _both(
        lambda: smf.mixedlm("Weight ~ Time", dietox, groups=dietox["Pig"],
                            re_formula="~Time"),
        lambda: hmf.hetmixedlm("Weight ~ Time", dietox, groups=dietox["Pig"],
                               re_formula="~Time"),
        {"free": free})
    _agree(ref, ours)
    assert np.asarray(ours.cov_re)[0, 1] == 0


def test_array_api_with_exog_re(dietox):
    endog = dietox["Weight"].to_numpy()
    exog = np.column_stack([np.ones(len(dietox)), dietox["Time"]])
    exog_re = exog.copy()
    groups = dietox["Pig"].to_numpy()
    ref, ours = _both(lambda: MixedLM(endog, exog, groups, exog_re),
                      lambda: HetMixedLM(endog, exog, groups, exog_re))
    _agree(ref, ours)


def test_nested_variance_components(dietox):
    vcf = {"Pig": "0 + C(Pig)"}
    ref, ours = _both(
        lambda: smf.mixedlm("Weight ~ Time", dietox, groups="Litter",
                            vc_formula=vcf, re_formula="1"),
        lambda: hmf.hetmixedlm("Weight ~ Time", dietox, groups="Litter",
                               vc_formula=vcf, re_formula="1"))
    _agree(ref, ours)


def _crossed_data():
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 12, 600), rng.integers(0, 9, 600)
    y = rng.normal(size=12)[a] + 0.7 * rng.normal(size=9)[b] + rng.normal(size=600)
    return pd.DataFrame({"y": y, "x": rng.normal(size=600), "a": a, "b": b,
                         "one": 1})


def test_crossed_variance_components_in_one_group():
    data = _crossed_data()
    vcf = {"a": "0 + C(a)", "b": "0 + C(b)"}
    ref, ours = _both(
        lambda: smf.mixedlm("y ~ x", data, groups="one", vc_formula=vcf),
        lambda: hmf.hetmixedlm("y ~ x", data, groups="one", vc_formula=vcf))
    _agree(ref, ours)
    assert ours.vcomp.shape == (2,)


def test_vcspec_in_the_array_api():
    data = _crossed_data()
    exog = np.column_stack([np.ones(len(data)), data["x"]])
    groups = data["one"].to_numpy()
    mats = [[pd.get_dummies(data["a"]).to_numpy(float)],
            [pd.get_dummies(data["b"]).to_numpy(float)]]
    spec = VCSpec(["a", "b"], [["a"], ["b"]], mats)
    ref, ours = _both(lambda: MixedLM(data["y"], exog, groups, exog_vc=spec),
                      lambda: HetMixedLM(data["y"], exog, groups, exog_vc=spec))
    _agree(ref, ours)


def test_profile_re_runs_unchanged(dietox):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hmf.hetmixedlm("Weight ~ Time", dietox, groups=dietox["Pig"]).fit()
        prof = res.profile_re(0, "re", dist_low=0.5, dist_high=0.5, num_low=3,
                              num_high=3)
    assert prof.shape[0] == 7 and np.isfinite(prof).all()
    # the profile passes through the estimate with the fit's log-likelihood
    assert prof[:, 1].max() == pytest.approx(res.llf, abs=1e-6)
