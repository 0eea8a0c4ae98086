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


def _hessian_scale(H):
    d = np.sqrt(np.abs(np.diag(H)))
    return np.outer(d, d)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("kind", ["slope+log", "vc+log"])
def test_analytic_observed_information(kind, reml, monkeypatch):
    """The engine's analytic Hessian (log-linear variance blocks) against
    central differences of the analytic gradient and against the
    forward-difference route it replaces, away from the estimate (where
    the gradient is not zero) and with a held parameter."""
    model = hmf.hetmixedlm("y ~ x", _data(), groups="g", **MODELS[kind])
    objective = HeteroskedasticObjective(model._grouped, model.layout, reml)
    assert objective.layout.log_linear
    natural = objective.layout.to_natural(objective.start() * 1.1 + 0.05)
    analytic = objective.observed_information(natural)
    grad = lambda x: objective.evaluate_natural(x)[1]  # noqa: E731
    central = np.column_stack([_central(lambda x: grad(x)[j], natural)
                               for j in range(natural.size)])
    scale = _hessian_scale(analytic.hessian)
    np.testing.assert_array_less(np.abs(analytic.hessian - central) / scale, 1e-6)
    held = np.ones(natural.size, bool)
    held[0] = False
    analytic_held = objective.observed_information(natural, held)
    monkeypatch.setattr(type(objective.layout), "log_linear", property(lambda s: False))
    for mask, ana in [(None, analytic), (held, analytic_held)]:
        differenced = objective.observed_information(natural, mask)
        np.testing.assert_allclose(ana.grad_u, differenced.grad_u, rtol=1e-12, atol=0)
        np.testing.assert_array_less(
            np.abs(ana.hess_u - differenced.hess_u) / _hessian_scale(ana.hess_u + 1e-300),
            1e-4)  # the forward differences' own error (_hessian: 3e-5 to 6e-5)
    assert not np.any(analytic_held.hess_u[0]) and not np.any(analytic_held.hess_u[:, 0])


def test_identity_link_keeps_the_differenced_information():
    """An additive variance function is not log-linear: its observed
    information is differenced (the one numerical route, _hessian)."""
    model = hmf.hetmixedlm("y ~ x", _data(), groups="g", **MODELS["identity"])
    objective = HeteroskedasticObjective(model._grouped, model.layout, False)
    assert not objective.layout.log_linear
    natural = objective.layout.to_natural(objective.start())
    info = objective.observed_information(natural)
    grad = lambda x: objective.evaluate_natural(x)[1]  # noqa: E731
    central = np.column_stack([_central(lambda x: grad(x)[j], natural)
                               for j in range(natural.size)])
    np.testing.assert_array_less(
        np.abs(info.hessian - central) / _hessian_scale(central), 1e-4)


@pytest.mark.parametrize("var_formula", ["~ x + male", "~ x"])
def test_variance_directions_from_the_engine_columns(var_formula):
    """A variance design of the mean design's columns (``var_columns``):
    the variance directions' centred columns W T^-1 are read from the
    engine's centred X (a view, no copy), in the expected information of
    every evaluation and in the observed information; both equal the
    route that forms W T^-1 itself (an objective without ``var_columns``),
    with a covariate far from its origin."""
    data = _data()
    data["x"] += 50.0
    model = hmf.hetmixedlm("y ~ x + male", data, groups="g", var_formula=var_formula)
    assert model._exog_var_columns is not None
    fast = model._objective(reml=False)
    plain = HeteroskedasticObjective(model._grouped, model.layout, False)
    assert fast._centred_var_columns() is not None
    assert plain._centred_var_columns() is None
    natural = model.layout.to_natural(fast.start() * 1.1 + 0.05)
    ev_f, g_f = fast.evaluate_natural(natural, info=True)
    ev_p, g_p = plain.evaluate_natural(natural, info=True)
    mask = np.ones(natural.size, bool)
    info_f = fast.conditioned_information(ev_f, mask)
    info_p = plain.conditioned_information(ev_p, mask)
    np.testing.assert_allclose(info_f, info_p, rtol=1e-10,
                               atol=1e-12 * np.abs(info_p).max())
    np.testing.assert_allclose(ev_f.info / _hessian_scale(ev_p.info),
                               ev_p.info / _hessian_scale(ev_p.info), atol=1e-10)
    # the natural gradient W'g = T'(W_c'g), within rounding of |T'||W_c'g|
    np.testing.assert_allclose(g_f, g_p, rtol=1e-10, atol=1e-12 * np.abs(g_p).max())
    # the conditioned gradient W_c'g, taken in the engine's pass over X
    assert ev_f.grad_var_centred is not None and ev_p.grad_var_centred is None
    np.testing.assert_allclose(fast.conditioned_gradient(ev_f, natural, g_f, mask),
                               plain.conditioned_gradient(ev_p, natural, g_p, mask),
                               rtol=1e-10, atol=1e-12 * np.abs(g_p).max())
    obs_f, obs_p = fast.observed_information(natural), plain.observed_information(natural)
    np.testing.assert_allclose(obs_f.hess_u, obs_p.hess_u, rtol=1e-10,
                               atol=1e-12 * np.abs(obs_p.hess_u).max())
    k_cov = model.layout.k_cov
    T_var = fast.conditioner(mask)[k_cov:, k_cov:]
    directions = fast._conditioned_directions(None, T_var)
    assert np.shares_memory(directions, model._grouped.exog)


def test_a_released_evaluation_lends_its_arrays_to_the_next():
    """After ``release_evaluation`` the next evaluation writes its
    row-sized results into the released one's arrays (and the residual
    variances into the last call's array): the same values as a fresh
    objective's."""
    model = hmf.hetmixedlm("y ~ x", _data(), groups="g", var_formula="~ x + male")
    objective = model._objective(reml=False)
    natural = model.layout.to_natural(objective.start())
    first, _ = objective.evaluate_natural(natural, info=True)
    lent = [first.resid_marginal, first.vinv_resid, first.grad_eta]
    objective.release_evaluation()
    moved = natural * 1.05
    second, g_second = objective.evaluate_natural(moved, info=True)
    for name in ("resid_marginal", "vinv_resid", "grad_eta"):
        assert any(getattr(second, name) is a for a in lent), name
    fresh, g_fresh = model._objective(reml=False).evaluate_natural(moved, info=True)
    for name in ("llf", "fe_params", "resid_marginal", "vinv_resid", "grad_eta",
                 "info", "grad_cov"):
        np.testing.assert_array_equal(getattr(second, name), getattr(fresh, name),
                                      err_msg=name)
    np.testing.assert_array_equal(g_second, g_fresh)
    out = np.empty(model.nobs)
    into, log_sum = model.layout.resid_var_into(moved, out)
    assert into is out
    np.testing.assert_array_equal(out, model.layout.resid_var(moved))
    assert log_sum == pytest.approx(np.log(out).sum(), rel=1e-13)
