"""Extra variance blocks on a model (variance_blocks=): a PowerVariance
block fits the same model as the log-linear function of log|v| (nlme's
varPower with a covariate is varExp on log|v|), with delta = a / 2."""

import warnings

import numpy as np
import pandas as pd
import pytest

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import HetMixedLM
from statsmodels_hetmixed.structures import PowerVariance, VarianceBlock
from statsmodels_hetmixed.structures.base import IdentityScale


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(40), 15)
    dose = rng.uniform(0.5, 4.0, g.size)
    x = rng.normal(size=g.size)
    y = (1 + 0.5 * x + rng.normal(0, 0.8, 40)[g]
         + 0.7 * dose ** 0.6 * rng.standard_normal(g.size))
    return pd.DataFrame({"y": y, "x": x, "dose": dose, "g": g})


@pytest.mark.parametrize("reml", [False, True])
def test_power_block_equals_loglinear_in_log_covariate(data, reml):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        power = hmf.hetmixedlm("y ~ x", data, groups="g",
                               variance_blocks=[PowerVariance(data["dose"], "dose")]
                               ).fit(reml=reml)
        loglin = hmf.hetmixedlm("y ~ x", data, groups="g",
                                var_formula="~ np.log(dose)").fit(reml=reml)
    assert power.converged and loglin.converged
    assert power.llf == pytest.approx(loglin.llf, abs=1e-8)
    delta = power.params["power(dose)"]
    assert delta == pytest.approx(loglin.params["var:np.log(dose)"] / 2, abs=1e-6)
    assert power.bse["power(dose)"] == pytest.approx(
        loglin.bse["var:np.log(dose)"] / 2, rel=1e-3)
    assert power.params["var:Intercept"] == pytest.approx(
        loglin.params["var:Intercept"], abs=1e-6)
    np.testing.assert_allclose(power.fe_params, loglin.fe_params, rtol=1e-6)
    np.testing.assert_allclose(power.resid_var, loglin.resid_var, rtol=1e-5)
    # var_params are the variance function's only
    assert list(power.var_params.index) == ["Intercept"]
    text = str(power.summary())
    assert "Variance power" in text and "power(dose)" in text


def test_bad_variance_blocks(data):
    y, X, g = data["y"], np.column_stack([np.ones(len(data)), data["x"]]), data["g"]
    with pytest.raises(TypeError, match="VarianceBlock"):
        HetMixedLM(y, X, g, variance_blocks=[np.ones(len(data))])
    with pytest.raises(ValueError, match="describes 10 rows but the model has 600"):
        HetMixedLM(y, X, g, variance_blocks=[PowerVariance(np.ones(10), "v")])
    with pytest.raises(ValueError, match="twice"):
        HetMixedLM(y, X, g, variance_blocks=[PowerVariance(data["dose"], "v"),
                                             PowerVariance(data["dose"], "v")])
    with pytest.raises(NotImplementedError, match="location-scale"):
        HetMixedLM(y, X, g, exog_var_re=np.ones(len(data)),
                   variance_blocks=[PowerVariance(data["dose"], "v")])


class _ScaledDose(IdentityScale, VarianceBlock):
    """A block that cannot evaluate new rows (no ``new_covariate``)."""

    names = ["scaled(dose)"]

    def __init__(self, dose):
        self.log_dose = np.log(np.asarray(dose, float))
        self.nobs = self.log_dose.size

    def start(self, context):
        return np.zeros(1)

    def variance(self, natural, design=None):
        return np.exp(natural[0] * self.log_dose)

    def log_derivative(self, natural):
        return self.log_dose[:, None]


def test_results_that_need_the_block_on_new_data_refuse(data):
    res = hmf.hetmixedlm("y ~ x", data, groups="g",
                         variance_blocks=[_ScaledDose(data["dose"])]
                         ).fit(reml=False)
    with pytest.raises(NotImplementedError, match="variance_blocks"):
        res.predict_variance(data.head())
    with pytest.raises(NotImplementedError, match="variance_blocks"):
        res.residual_variance_table()
    # PowerVariance evaluates new rows (their covariate's column, by name)
    res = hmf.hetmixedlm("y ~ x", data, groups="g",
                         variance_blocks=[PowerVariance(data["dose"], "dose")]
                         ).fit(reml=False)
    np.testing.assert_allclose(res.predict_variance(data.head()),
                               res.resid_var[:5], rtol=1e-12)
    with pytest.raises(NotImplementedError, match="variance_blocks"):
        res.residual_variance_table()
