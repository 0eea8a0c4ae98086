"""The heteroskedastic objective: analytic gradients on both scales against
central differences of its value, ML and REML, for every kind of block."""

import numpy as np
import pandas as pd
import pytest

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed.objective import HeteroskedasticObjective


def _data(seed=11, n_groups=25, size=10):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.normal(size=g.size)
    k = rng.integers(0, 3, g.size)
    male = rng.integers(0, 2, g.size)
    u = rng.normal(0, 0.7, n_groups)[g] + rng.normal(0, 0.3, n_groups)[g] * x
    y = 1 + 0.5 * x + u + np.sqrt(0.5 + 0.8 * male) * rng.standard_normal(g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g, "k": k, "male": male})


MODELS = {
    "slope+log": dict(re_formula="~ x", var_formula="~ x + male"),
    "vc+log": dict(re_formula="1", vc_formula={"k": "0 + C(k)"}, var_formula="~ male"),
    "identity": dict(var_formula="~ male", var_link="identity"),
}


def _central(f, x, rel=1e-5):
    g = np.zeros_like(x)
    for j in range(x.size):
        h = rel * max(1.0, abs(x[j]))
        e = np.zeros_like(x)
        e[j] = h
        g[j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_gradients_match_differences(kind, reml):
    model = hmf.hetmixedlm("y ~ x", _data(), groups="g", **MODELS[kind])
    objective = HeteroskedasticObjective(model._grouped, model.layout, reml)
    free = objective.start() * 1.1 + 0.05  # away from symmetric start values
    value, grad = objective.free_value_and_gradient(free)
    assert np.isfinite(value)
    np.testing.assert_allclose(
        grad, _central(lambda f: objective.free_value_and_gradient(f)[0], free),
        rtol=1e-5, atol=1e-5)
    natural = objective.layout.to_natural(free)
    ev, g_nat = objective.evaluate_natural(natural)
    assert ev.llf == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(
        g_nat, _central(lambda x: objective.evaluate(x).llf, natural),
        rtol=1e-5, atol=1e-5)
    # the model's own loglike and score are this objective's
    model.reml = reml
    assert model.loglike(natural) == pytest.approx(value, rel=1e-12)


def test_profiled_and_given_fixed_effects_agree_at_the_gls_estimate():
    model = hmf.hetmixedlm("y ~ x", _data(), groups="g", **MODELS["slope+log"])
    objective = HeteroskedasticObjective(model._grouped, model.layout, reml=False)
    natural = objective.layout.to_natural(objective.start())
    ev = objective.evaluate(natural)
    given = objective.evaluate(natural, fe_params=ev.fe_params)
    assert given.llf == pytest.approx(ev.llf, rel=1e-12)
    moved = objective.evaluate(natural, fe_params=ev.fe_params + 0.1)
    assert moved.llf < ev.llf
