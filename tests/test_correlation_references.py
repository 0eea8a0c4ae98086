"""The stored nlme / glmmTMB references for residual correlation structures.

``results/correlation/r_correlation.json`` holds fits made by
``results/correlation/r_correlation.R``.  These tests rebuild, for a few small
fits, every group's covariance V_i = Z G Z' + sigma^2 S C S densely from the
stored parameters with the definitions in ``results/correlation/check_dense.py``
(nlme's corStruct / varFunc definitions and parametrisations) and check that the
Gaussian ML / REML log-likelihood equals R's logLik.  They verify the reference
numbers and the definitions, without R; they do not exercise the package.
"""
from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).parent / "results" / "correlation" / "check_dense.py"
_spec = importlib.util.spec_from_file_location("check_dense", _PATH)
check_dense = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_dense)

REFS = check_dense.load_references()

# one small fit per structure / variance function / engine
KEYS = [
    "orthodont/gls/compsymm/ident_sex/REML",
    "orthodont/lme_ri/ar1/exp_age/ML",
    "orthodont/lme_ri/car1/ident_sex/REML",
    "orthodont/gls/symm/ident_occ/ML",
    "orthodont/gls/toeplitz/none/REML",
    "orthodont/gls/ma1/ident_sex/ML",
    "orthodont/lme_rs/ar1/none/REML",
    "sleepgaps/lme_ri/ar1/power_day1/ML",
    "sleepgaps/lme_ri/arma11/power_day1/REML",
    "sleepgaps/lme_ri/ar1/constpower_day1/REML",
    "bodyweight/lme_rs/car1/power_fitted/ML",
    "ovary/lme_ri/ma2/none/ML",
    "orthodont/glmmTMB/toeplitz/occf/ML",
]


@pytest.mark.parametrize("key", KEYS)
def test_dense_loglik_matches_r(key):
    fit = REFS["fits"][key]
    df = check_dense.load_data(fit["spec"]["file"])
    res = check_dense.dense_loglik(fit, df)
    assert res["rel_err"] < 1e-6, (key, res["llf"], fit["logLik"])
    # the stored fixed effects are the GLS estimate at the stored parameters
    assert res["beta_err"] < 1e-5
    if fit["spec"]["engine"] != "glmmTMB":
        fac = check_dense.vcov_factor(fit, res["N"], res["p"])
        np.testing.assert_allclose([res["vcov_ratio_min"], res["vcov_ratio_max"]],
                                   [fac, fac], rtol=1e-6)
    side = check_dense.side_checks(fit, df)
    for name, err in side.items():
        assert err < 1e-8, (key, name, err)


def test_dense_loglik_is_sensitive_to_the_correlation():
    """A changed correlation parameter moves the dense llf off R's value."""
    fit = copy.deepcopy(REFS["fits"]["sleepgaps/lme_ri/ar1/none/ML"])
    df = check_dense.load_data(fit["spec"]["file"])
    nat = fit["cor"]["natural"]
    name = next(iter(nat))
    nat[name] = nat[name] * 0.99
    assert check_dense.dense_loglik(fit, df)["rel_err"] > 1e-6


def test_ar1_on_equal_spacing_equals_car1():
    """corAR1 on occasions 1..4 and corCAR1 on ages 8..14 are the same model:
    phi_AR1 = phi_CAR1^2 (age step 2), same llf."""
    ar = REFS["fits"]["orthodont/lme_ri/ar1/none/REML"]
    car = REFS["fits"]["orthodont/lme_ri/car1/none/REML"]
    assert ar["logLik"] == pytest.approx(car["logLik"], rel=1e-9)
    assert ar["cor"]["natural"]["Phi"] == pytest.approx(
        car["cor"]["natural"]["Phi"] ** 2, rel=1e-4)


def test_glmmtmb_structures_equal_nlme_models():
    """glmmTMB toep / cs / us / ar1 on an occasion random effect with dispformula
    ~0 give the llf of the stated gls models (ML)."""
    for nm in ("toeplitz", "compsymm", "symm", "ar1"):
        fit = REFS["fits"][f"orthodont/glmmTMB/{nm}/occf/ML"]
        assert fit["logLik"] == pytest.approx(fit["same_as_logLik"], rel=1e-8)


def test_glmmtmb_ml_se_is_the_joint_observed_hessian():
    """glmmTMB's ML fixed-effect SEs invert the observed Hessian in (beta, theta)
    jointly; nlme's use (X'V^-1X)^-1 only, here 1.3-12% smaller (toeplitz with one
    variance per occasion)."""
    fit = REFS["fits"]["orthodont/glmmTMB/toeplitz/occf/ML"]
    se = np.array(list(fit["fixef_se"].values()))
    np.testing.assert_allclose(check_dense.glmmtmb_joint_se(fit), se, rtol=1e-5)
    res = check_dense.dense_loglik(fit)
    assert res["vcov_ratio_max"] > 1.2          # the cross block matters here
