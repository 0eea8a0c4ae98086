"""Predicted random effects, fitted values and residuals against nlme
(tests/results/r_ranef.json, made by r_ranef.R: HSB, mathach ~ female,
random intercept, varIdent(~1|female), ML)."""

import json

import numpy as np
import pytest

import statsmodels_hetmixed.formula.api as hmf

from .conftest import RESULTS


@pytest.fixture(scope="module")
def ref():
    with open(RESULTS / "r_ranef.json") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def fit(hsb_data):
    return hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school",
                          var_formula="~ female").fit(reml=False)


def test_random_effects_match_nlme(ref, fit):
    assert fit.llf == pytest.approx(ref["llf"], abs=1e-6)
    ours = np.array([fit.random_effects[s].iloc[0] for s in ref["ranef_school"]])
    np.testing.assert_allclose(ours, ref["ranef"], rtol=1e-5, atol=1e-5)


def test_fitted_values_and_residuals_match_nlme(ref, fit):
    rows = np.array(ref["rows"]) - 1  # R counts from 1
    np.testing.assert_allclose(np.asarray(fit.fittedvalues)[rows], ref["fitted"],
                               rtol=1e-6)
    for kind in ("response", "pearson", "normalized"):
        np.testing.assert_allclose(np.asarray(fit.residuals(kind))[rows],
                                   ref[f"resid_{kind}"], rtol=1e-5, atol=1e-6)
