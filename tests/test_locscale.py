"""Location-scale models: quadrature accuracy, equivalences, recovery."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import HetMixedLM, _locscale, _rules
from statsmodels_hetmixed.locscale import joint_layout, level2_layout


def _simulate(n_groups=60, size=12, seed=3, var_omega=0.3, corr=-0.4):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.standard_normal(len(g))
    h = rng.integers(0, 2, n_groups)[g]
    sd = np.array([1.0, np.sqrt(var_omega)])
    cov = np.outer(sd, sd) * np.array([[1, corr], [corr, 1]])
    u, omega = rng.multivariate_normal([0, 0], cov, n_groups).T
    log_var = 0.2 - 0.5 * h + 0.3 * x + omega[g]
    y = 1 + 0.5 * x + 0.4 * h + u[g] + np.exp(0.5 * log_var) * rng.standard_normal(len(g))
    return pd.DataFrame({"y": y, "x": x, "h": h, "g": g}), cov


@pytest.fixture(scope="module")
def small():
    data, _ = _simulate(n_groups=8, size=6, seed=11)
    return data


def _brute_force_llf(model, res):
    """Marginal log-likelihood by adaptive numerical integration (scipy.quad)
    over the standardized scale effect of each group, at the estimates."""
    fit = res._ls_fit
    total = 0.0
    for i in range(model.n_groups):
        rows = np.flatnonzero(model._group_index == i)
        data = _locscale.LocationScaleData.build(
            model.endog[rows], model.exog[rows], model.exog_re[rows],
            model.exog_var[rows], model.exog_var_re[rows], np.zeros(len(rows), int),
            1, 1)

        def f(t):
            ev = _locscale.conditional(data, np.full((len(rows), 1), t),
                                       fit.beta, fit.var_params, fit.factor)
            return ev.llf_groups[0]

        c = f(0.0)
        val, _ = integrate.quad(
            lambda t: np.exp(f(t) - c - 0.5 * t * t) / np.sqrt(2 * np.pi),
            -15, 15, epsabs=1e-14, epsrel=1e-13, limit=400)
        total += c + np.log(val)
    return total


def test_quadrature_matches_brute_force_integration(small):
    model = hmf.hetmixedlm("y ~ x + h", small, groups="g", var_formula="~ x + h",
                           var_re_formula="~ 1")
    res = model.fit(reml=False, n_quad=20)
    assert res.llf == pytest.approx(_brute_force_llf(model, res), abs=1e-6)


def test_nodes_doubling_is_stable(hsb_data):
    fits = [hmf.hetmixedlm("mathach ~ sector", hsb_data, groups="school",
                           var_formula="~ sector", var_re_formula="~ 1"
                           ).fit(reml=False, n_quad=k) for k in (8, 16, 32)]
    for a, b in zip(fits, fits[1:]):
        assert a.converged and b.converged
        assert a.llf == pytest.approx(b.llf, rel=1e-8)
        np.testing.assert_allclose(a.params, b.params, rtol=1e-4, atol=1e-6)


def test_zero_scale_variance_is_hetmixedlm(small):
    """Holding the scale random effect (and its covariance) at zero gives
    the HetMixedLM fit without it."""
    model = hmf.hetmixedlm("y ~ x + h", small, groups="g", var_formula="~ x + h",
                           var_re_formula="~ 1")
    plain = HetMixedLM(model.endog, model.exog, model._group_index,
                       exog_var=model.exog_var).fit(reml=False)
    data = _locscale.LocationScaleData.build(
        model.endog, model.exog, model.exog_re, model.exog_var, model.exog_var_re,
        model._group_index, model.n_groups, 10)
    layout = joint_layout(model)
    layout.estimated[model.k_fe + model.k_var:][:2] = False  # L_ww and L_uw
    L = np.array([[0.0, 0.0], [0.0, 0.7]])
    theta = layout.pack(np.zeros(model.k_fe), np.zeros(model.k_var), L[np.tril_indices(2)])
    fit = _locscale.fit(data, layout, theta)
    assert fit.converged
    assert fit.llf == pytest.approx(plain.llf, abs=1e-8)
    # Both optimisers stop at a Newton decrement of about 1e-10, which on
    # these 48 rows leaves differences of about 1e-5 standard errors.
    np.testing.assert_allclose(fit.beta, plain.fe_params, rtol=1e-5)
    np.testing.assert_allclose(fit.var_params, plain.var_params, atol=1e-5)
    assert fit.factor[1, 1] ** 2 == pytest.approx(plain.cov_re[0, 0], rel=1e-5)


def test_parameter_recovery():
    data, cov = _simulate(n_groups=300, size=15, seed=5)
    res = hmf.hetmixedlm("y ~ x + h", data, groups="g", var_formula="~ x + h",
                         var_re_formula="~ 1").fit(reml=False)
    assert res.converged
    truth = {"Intercept": 1, "x": 0.5, "h": 0.4, "var(g)": cov[0, 0],
             "cov(g, var:g)": cov[0, 1], "var(var:g)": cov[1, 1],
             "var:Intercept": 0.2, "var:x": 0.3, "var:h": -0.5}
    z = (res.params[list(truth)] - pd.Series(truth)) / res.bse[list(truth)]
    assert np.all(np.abs(z) < 3.5), z


def test_results_api(hsb_data):
    res = hmf.hetmixedlm("mathach ~ sector", hsb_data, groups="school",
                         var_formula="~ sector", var_re_formula="~ 1").fit(reml=False)
    assert list(res.cov_re_joint.index) == ["school", "var:school"]
    assert res.cov_re.shape == (1, 1)
    assert list(res.random_effects[1224].index) == ["school", "var:school"]
    pop = res.population_residual_variance()
    a = res.var_params
    s2w = res.cov_re_joint.iloc[1, 1]
    assert pop["Variance"].iloc[0] == pytest.approx(np.exp(a.iloc[0] + s2w / 2))
    icc = res.group_icc()
    assert len(icc) == 160 and icc.between(0, 1).all()
    table = res.re_table()
    assert list(table.index) == ["SD(school)", "SD(var:school)",
                                 "corr(school, var:school)"]
    cov = res.cov_re_joint.to_numpy()
    assert table["Estimate"].iloc[1] == pytest.approx(np.sqrt(cov[1, 1]))
    assert table["Estimate"].iloc[2] == pytest.approx(
        cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]))
    # delta method for an SD: se(var) / (2 sd)
    assert table["Std.Err."].iloc[1] == pytest.approx(
        res.bse["var(var:school)"] / (2 * np.sqrt(cov[1, 1])), rel=1e-5)
    text = res.summary().as_text()
    assert "var(var:school)" in text and "Converged:" in text
    assert "corr(school, var:school)" in text
    base = hmf.hetmixedlm("mathach ~ sector", hsb_data, groups="school",
                          var_formula="~ sector").fit(reml=False)
    lr = res.compare_lr_test(base)
    assert lr.df == 2
    assert lr.boundary == ["var(var:school)"]
    assert res.n_flat == 0  # an interior maximum


def test_bad_input(hsb_data):
    with pytest.raises(ValueError, match="do not vary within groups"):
        hmf.hetmixedlm("mathach ~ sector", hsb_data, groups="school",
                       var_re_formula="~ sector")
    model = hmf.hetmixedlm("mathach ~ sector", hsb_data, groups="school",
                           var_re_formula="~ 1")
    with pytest.raises(ValueError, match="positive integer"):
        model.fit(reml=False, n_quad=0)
    with pytest.raises(ValueError, match="reml=False"):
        model.fit()
    with pytest.raises(ValueError, match="one or two columns"):
        hmf.hetmixedlm("mathach ~ sector", hsb_data, groups="school",
                       var_re_formula="~ ses + cses + female")


def test_two_dimensional_quadrature_is_stable():
    """Random scale intercept and slope (2-D quadrature, joint with a random
    mean intercept): estimates and llf agree to 4 significant digits or
    better as the nodes per dimension double."""
    rng = np.random.default_rng(8)
    n_groups, size = 80, 12
    g = np.repeat(np.arange(n_groups), size)
    x = rng.standard_normal(len(g))
    u = rng.normal(0, 0.8, n_groups)
    w0 = rng.normal(0, 0.4, n_groups)
    w1 = rng.normal(0, 0.3, n_groups)
    y = 1 + 0.5 * x + u[g] + np.exp(0.5 * (0.1 + 0.3 * x + w0[g] + w1[g] * x)) \
        * rng.standard_normal(len(g))
    data = pd.DataFrame({"y": y, "x": x, "g": g})
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x",
                           var_re_formula="~ x")
    fits = [model.fit(reml=False, n_quad=k) for k in (5, 10)]
    for res in fits:
        assert res.converged
    assert fits[0].llf == pytest.approx(fits[1].llf, rel=1e-6)
    np.testing.assert_allclose(fits[0].params, fits[1].params, rtol=1e-4, atol=2e-4)
    assert list(fits[0].cov_re_joint.index) == ["g", "var:g", "var:x"]


def test_independent_blocks(small):
    model = hmf.hetmixedlm("y ~ x + h", small, groups="g", var_formula="~ x + h",
                           var_re_formula="~ 1")
    joint = model.fit(reml=False)
    indep = model.fit(reml=False, re_cov="independent")
    assert indep.converged
    assert indep.cov_re_joint.iloc[0, 1] == 0
    assert indep.bse["cov(g, var:g)"] == 0
    assert indep.df_modl == joint.df_modl - 1
    assert indep.llf <= joint.llf + 1e-8
    lr = joint.compare_lr_test(indep)
    assert lr.df == 1 and lr.boundary == []
    with pytest.raises(ValueError, match="re_cov must be"):
        model.fit(reml=False, re_cov="diagonal")


def _laplace_data(model):
    return _locscale.LocationScaleData.build(
        model.endog, model.exog, model.exog_re, model.exog_var, model.exog_var_re,
        model._group_index, model.n_groups, 1)


def _laplace_gradient_and_differences(ls, lay, theta):
    """The Laplace rule's analytic gradient at ``theta`` and central
    differences of its log-likelihood with the nodes re-adapted at every
    point (the total derivative); also the adapted nodes."""
    quad = _locscale.adapt(ls, lay, theta)
    _, grad, _, _ = _locscale._value_and_grad(ls, lay, theta, quad)

    def value(th):
        beta, a, L = lay.unpack(th)
        return _locscale.loglike(ls, _locscale.adapt(ls, lay, th, quad),
                                 beta, a, L)[0].sum()

    fd = np.array([(value(theta + 1e-5 * e) - value(theta - 1e-5 * e)) / 2e-5
                   for e in np.eye(len(theta))])
    return quad, grad, fd


@pytest.mark.parametrize("var_re", ["~ 1", "~ x"])
def test_laplace_gradient_is_the_total_derivative(var_re, monkeypatch):
    """The Laplace rule moves with the parameters (mode and curvature): its
    analytic gradient must match central differences of the Laplace
    log-likelihood with the nodes re-adapted at every point."""
    data, _ = _simulate(n_groups=12, size=7, seed=5)
    model = hmf.hetmixedlm("y ~ x + h", data, groups="g", var_formula="~ x + h",
                           var_re_formula=var_re)
    ls = _laplace_data(model)
    assert isinstance(ls.rule, _rules.Laplace)
    lay = joint_layout(model)
    d = model.k_var_re + 1
    L = np.tril(np.random.default_rng(0).normal(size=(d, d))) * 0.3 + 0.5 * np.eye(d)
    theta = lay.pack(np.array([1, .5, .4]), np.array([.2, .3, -.5]), L[np.tril_indices(d)])
    quad, grad, fd = _laplace_gradient_and_differences(ls, lay, theta)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)
    # The curvature terms matter: the gradient at the fixed mode alone
    # (weight 1 on the mode) is far off.
    def mode_only(self, post, t_gradients, B):
        return post  # weight 1 on the mode

    monkeypatch.setattr(_rules.Laplace, "gradient_weights", mode_only)
    _, at_mode, _, _ = _locscale._value_and_grad(ls, lay, theta, quad)
    assert np.max(np.abs(at_mode - fd)) > 0.1


def test_laplace_is_close_to_quadrature():
    """One node (Laplace): its maximum, standard errors and empirical-Bayes
    predictions are near the adaptive-quadrature ones."""
    data, _ = _simulate(n_groups=60, size=12, seed=3)
    model = hmf.hetmixedlm("y ~ x + h", data, groups="g", var_formula="~ x + h",
                           var_re_formula="~ 1")
    laplace = model.fit(reml=False, n_quad=1)
    aghq = model.fit(reml=False, n_quad=20)
    assert laplace.converged
    assert laplace.llf == pytest.approx(aghq.llf, abs=0.2)
    np.testing.assert_allclose(laplace.params, aghq.params, atol=0.01)
    np.testing.assert_allclose(laplace.bse, aghq.bse, rtol=0.03)
    # Empirical Bayes: Laplace gives the posterior mode and the normal
    # approximation's covariance, within a fraction of a posterior SD of
    # the quadrature's posterior mean and covariance.
    for lab in aghq.random_effects:
        var = np.diag(aghq.random_effects_cov[lab])
        shift = (laplace.random_effects[lab] - aghq.random_effects[lab]) / np.sqrt(var)
        assert np.max(np.abs(shift)) < 0.2
        ratio = np.diag(laplace.random_effects_cov[lab]) / var
        assert np.all((ratio > 0.85) & (ratio < 1.15))


# ----------------------------------------------------------------------
# Level-2 variance functions

def _simulate_level2(n_groups=150, size=15, seed=21):
    """Scale-effect variance and mean-scale correlation differ by a
    group-level binary s: log var(omega) = log 0.1 + log 4 * s,
    atanh corr = -0.5 * s; log var(u) = log 0.8."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    s = rng.integers(0, 2, n_groups)
    x = rng.standard_normal(len(g))
    var_w = np.exp(np.log(0.1) + np.log(4.0) * s)
    rho = np.tanh(-0.5 * s)
    u = np.empty(n_groups)
    w = np.empty(n_groups)
    for i in range(n_groups):
        cov = np.array([[0.8, rho[i] * np.sqrt(0.8 * var_w[i])],
                        [rho[i] * np.sqrt(0.8 * var_w[i]), var_w[i]]])
        u[i], w[i] = rng.multivariate_normal([0, 0], cov)
    y = 1 + 0.5 * x + u[g] + np.exp(0.5 * (0.2 + 0.3 * x + w[g])) * \
        rng.standard_normal(len(g))
    return pd.DataFrame({"y": y, "x": x, "s": s[g], "g": g})


def test_level2_gradient_matches_finite_differences():
    data = _simulate_level2(n_groups=10, size=6)
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x",
                           re_formula="~ x", var_re_formula="~ 1",
                           re_var_formula="~ s")
    ld = _locscale.LocationScaleData.build(
        model.endog, model.exog, model.exog_re, model.exog_var,
        model.exog_var_re, model._group_index, model.n_groups, 7)
    lay = level2_layout(model)
    rng = np.random.default_rng(0)
    theta = lay.pack(np.array([0.9, 0.4]), np.array([0.1, 0.2]),
                     lay.role_block("re_cov").pack(rng.normal(0, 0.3, (3, 2)),
                                                   rng.normal(0, 0.3, (3, 2))))
    quad = _locscale.adapt(ld, lay, theta)
    _, grad, _, _ = _locscale._value_and_grad(ld, lay, theta, quad)
    for j in range(lay.size):
        e = np.zeros(lay.size)
        e[j] = 1e-6
        num = (_locscale._value_and_grad(ld, lay, theta + e, quad)[0]
               - _locscale._value_and_grad(ld, lay, theta - e, quad)[0]) / 2e-6
        assert grad[j] == pytest.approx(num, rel=1e-6, abs=1e-7)


def test_level2_intercept_only_is_the_plain_location_scale_model(small):
    kw = dict(groups="g", var_formula="~ x + h", var_re_formula="~ 1")
    plain = hmf.hetmixedlm("y ~ x + h", small, **kw).fit(reml=False)
    level2 = hmf.hetmixedlm("y ~ x + h", small, re_var_formula="~ 1",
                            **kw).fit(reml=False)
    assert level2.converged
    assert level2.llf == pytest.approx(plain.llf, abs=1e-7)
    np.testing.assert_allclose(level2.cov_re_joint, plain.cov_re_joint, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(level2.fe_params, plain.fe_params, rtol=1e-5)


def test_level2_recovery_and_tests():
    data = _simulate_level2()
    kw = dict(groups="g", var_formula="~ x", var_re_formula="~ 1")
    res = hmf.hetmixedlm("y ~ x", data, re_var_formula="~ s", **kw).fit(reml=False)
    assert res.converged
    truth = {"logvar(var:g):Intercept": np.log(0.1), "logvar(var:g):s": np.log(4.0),
             "logvar(g):Intercept": np.log(0.8), "logvar(g):s": 0.0,
             "atanh corr(g, var:g):Intercept": 0.0, "atanh corr(g, var:g):s": -0.5}
    z = (res.params[list(truth)] - pd.Series(truth)) / res.bse[list(truth)]
    assert np.all(np.abs(z) < 3.5), z
    text = res.summary().as_text()
    assert "logvar(var:g):s" in text and "s=1 | SD(var:g)" in text
    plain = hmf.hetmixedlm("y ~ x", data, **kw).fit(reml=False)
    lr = res.compare_lr_test(plain)
    assert lr.df == 3 and lr.distribution == "chi2(3)"
    assert len(res.cov_re_groups) == data["g"].nunique()


def test_level2_bad_input(hsb_data):
    with pytest.raises(ValueError, match="vary within groups"):
        hmf.hetmixedlm("mathach ~ sector", hsb_data, groups="school",
                       var_re_formula="~ 1", re_var_formula="~ ses")
    with pytest.raises(ValueError, match="give var_re_formula too"):
        hmf.hetmixedlm("mathach ~ sector", hsb_data, groups="school",
                       re_var_formula="~ sector")
    with pytest.raises(ValueError, match="intercept"):
        hmf.hetmixedlm("mathach ~ sector", hsb_data, groups="school",
                       var_re_formula="~ 1", re_var_formula="~ 0 + sector")


def test_level2_bad_dict_input(small):
    kw = dict(groups="g", var_formula="~ x", var_re_formula="~ 1")
    data = small.assign(s=small["g"] % 2)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['scale'\].*"
                       r"'g', 'var:g'.*'corr\(g, var:g\)'"):
        hmf.hetmixedlm("y ~ x", data, re_var_formula={"scale": "~ s"}, **kw)
    with pytest.raises(ValueError, match="name the same level-2 function"):
        hmf.hetmixedlm("y ~ x", data, re_var_formula={"g": "~ s", "SD(g)": "~ s"},
                       **kw)
    with pytest.raises(ValueError, match="needs an intercept"):
        hmf.hetmixedlm("y ~ x", data, re_var_formula={"var:g": "~ 0 + s"}, **kw)
    with pytest.raises(ValueError, match="must be a formula string"):
        hmf.hetmixedlm("y ~ x", data, re_var_formula={"var:g": 1}, **kw)
    with pytest.raises(ValueError, match="vary within groups"):
        hmf.hetmixedlm("y ~ x", data, re_var_formula={"var:g": "~ x"}, **kw)
    model = hmf.hetmixedlm("y ~ x", data, re_var_formula={"corr(g, var:g)": "~ s"},
                           **kw)
    with pytest.raises(ValueError, match=r"re_cov='independent'.*corr\(g, var:g\)"):
        model.fit(reml=False, re_cov="independent")
    # Correlations in either order, or as a tuple; only their terms are
    # parameters.
    for key in ["corr(var:g,g)", ("var:g", "g")]:
        model = hmf.hetmixedlm("y ~ x", data, re_var_formula={key: "~ s"}, **kw)
        level2 = [n for n in model.data.param_names if "(" in n]
        assert level2 == ["logvar(var:g):Intercept", "logvar(g):Intercept",
                          "atanh corr(g, var:g):Intercept", "atanh corr(g, var:g):s"]
        assert model.k_params == len(model.data.param_names) == 8


def test_level2_dict_form():
    """A dict with every function '~ s' is the string form; with the scale
    effect's variance alone depending on s, the fit lies between the model
    without level-2 variables and the full one, one parameter more than
    the first."""
    data = _simulate_level2(n_groups=80, size=10, seed=22)  # interior estimate
    kw = dict(groups="g", var_formula="~ x", var_re_formula="~ 1")
    full = hmf.hetmixedlm("y ~ x", data, re_var_formula="~ s", **kw).fit(reml=False)
    every = {"g": "~ s", "var:g": "~ s", "corr(g, var:g)": "~ s"}
    same = hmf.hetmixedlm("y ~ x", data, re_var_formula=every, **kw).fit(reml=False)
    assert same.converged
    assert same.llf == pytest.approx(full.llf, abs=1e-8)
    pd.testing.assert_series_equal(same.params, full.params, rtol=1e-6)

    scale_only = hmf.hetmixedlm("y ~ x", data, re_var_formula={"var:g": "~ s"},
                                **kw).fit(reml=False)
    plain = hmf.hetmixedlm("y ~ x", data, **kw).fit(reml=False)
    assert scale_only.converged
    assert plain.llf < scale_only.llf < full.llf
    assert "logvar(var:g):s" in scale_only.params.index
    assert "logvar(g):s" not in scale_only.params.index
    assert not scale_only.bse.isna().any()
    lr = scale_only.compare_lr_test(plain)
    assert lr.df == 1 and lr.distribution == "chi2(1)"
    assert full.compare_lr_test(scale_only).df == 2
    # Constant functions are equal in both rows of re_table.
    table = scale_only.re_table()
    assert table.loc["s=0 | SD(g)", "Estimate"] == table.loc["s=1 | SD(g)", "Estimate"]
    assert table.loc["s=0 | SD(var:g)", "Estimate"] != \
        table.loc["s=1 | SD(var:g)", "Estimate"]


# ----------------------------------------------------------------------
# The boundary of the parameter space

def _simulate_boundary(n_groups=40, size=8, seed=1):
    """Level-2 data whose estimate is on the boundary: in the groups with
    s = 0 the scale effect is a fixed multiple of the mean effect
    (correlation +1), with s = 1 the correlation is -0.6.  ``t = 1 - s``
    codes the same groups the other way round."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    s = np.arange(n_groups) % 2
    x = rng.standard_normal(len(g))
    u = rng.normal(0, 1, n_groups)
    z = rng.standard_normal(n_groups)
    w = np.where(s == 0, 0.1 * u, 0.5 * (-0.6 * u + 0.8 * z))
    y = 1 + 0.5 * x + u[g] + np.exp(0.5 * (0.2 + w[g])) * \
        rng.standard_normal(len(g))
    return pd.DataFrame({"y": y, "x": x, "s": s[g], "t": 1 - s[g], "g": g})


@pytest.mark.parametrize("n_quad", [10, 20, 30])
def test_level2_boundary_fit(n_quad):
    """On the boundary the fit converges; the two codings of s agree in the
    log-likelihood and in every standard error of re_table; the
    correlation at +1 has no standard error or interval, named in one
    warning; what does not depend on it keeps finite standard errors."""
    data = _simulate_boundary()
    kw = dict(groups="g", var_re_formula="~ 1")
    fits, caught = {}, {}
    for col in ("s", "t"):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            fits[col] = hmf.hetmixedlm("y ~ x", data, re_var_formula=f"~ {col}",
                                       **kw).fit(reml=False, n_quad=n_quad)
        caught[col] = [str(w.message) for w in record]
    by_s, by_t = fits["s"], fits["t"]
    assert by_s.converged and by_t.converged
    assert by_s.n_flat == by_t.n_flat == 1
    assert by_s.llf == pytest.approx(by_t.llf, abs=1e-6)
    table_s, table_t = by_s.re_table(), by_t.re_table()
    # Rows in order of appearance: s=0 (t=1) first.
    np.testing.assert_allclose(table_s["Estimate"], table_t["Estimate"], rtol=1e-5)
    np.testing.assert_allclose(table_s["Std.Err."], table_t["Std.Err."], rtol=1e-3)
    assert table_s.index[2] == "s=0 | corr(g, var:g)"
    bound = table_s.iloc[2]
    assert bound["Estimate"] > 1 - 1e-8
    assert bound.iloc[1:].isna().all()            # SE and interval
    assert table_s["Std.Err."].drop(table_s.index[2]).notna().all()
    assert len(caught["s"]) == 1
    assert "corr(g, var:g) for s=0 is at +1" in caught["s"][0]
    assert "corr(g, var:g) for t=1 is at +1" in caught["t"][0]
    # The atanh coefficients carry the boundary, except the intercept of
    # the t coding (the s=1 groups); their combination for s=1 does not.
    atanh = ["atanh corr(g, var:g):Intercept", "atanh corr(g, var:g):s"]
    assert by_s.bse[atanh].isna().all()
    assert np.isfinite(by_t.bse["atanh corr(g, var:g):Intercept"])
    assert np.isnan(by_t.bse["atanh corr(g, var:g):t"])
    assert by_s.bse.drop(atanh).notna().all()
    rows = pd.DataFrame(np.eye(len(by_s.params)), columns=by_s.params.index)
    combined = by_s.t_test(rows[atanh].sum(axis=1).to_numpy())
    assert combined.sd[0, 0] == pytest.approx(
        by_t.bse["atanh corr(g, var:g):Intercept"], rel=1e-3)
    assert np.isnan(by_s.t_test(rows[atanh[0]].to_numpy()).sd[0, 0])
    corr = by_s.nlcom(lambda p: np.tanh(p[atanh[0]] + p[atanh[1]]))
    assert corr["Std.Err."].iloc[0] == pytest.approx(table_s.iloc[5, 1], rel=1e-6)
    assert "not determined" in by_s.summary().as_text()


def test_level2_boundary_hsb(hsb_data):
    """HSB, model 5 of the location-scale docs: the public-school
    correlation is at +1; the Catholic one's standard error does not depend
    on which sector is the reference level."""
    kw = dict(groups="school", var_formula="~ sector", var_re_formula="~ 1")
    fits = {}
    for col, data in (("sector", hsb_data),
                      ("public", hsb_data.assign(public=1 - hsb_data["sector"]))):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The estimate is on the boundary")
            fits[col] = hmf.hetmixedlm("mathach ~ sector", data,
                                       re_var_formula=f"~ {col}",
                                       **kw).fit(reml=False, n_quad=10)
    by_sector, by_public = fits["sector"], fits["public"]
    assert by_sector.converged and by_public.converged
    assert by_sector.llf == pytest.approx(by_public.llf, abs=1e-6)
    catholic = by_sector.re_table().loc["sector=1 | corr(school, var:school)"]
    also = by_public.re_table().loc["public=0 | corr(school, var:school)"]
    assert catholic["Estimate"] == pytest.approx(-0.689, abs=1e-3)
    assert catholic["Std.Err."] == pytest.approx(also["Std.Err."], rel=0.02)
    public = by_sector.re_table().loc["sector=0 | corr(school, var:school)"]
    assert public["Estimate"] > 1 - 1e-8 and np.isnan(public["Std.Err."])


def test_singular_joint_covariance_warns_and_says_so():
    """Without a scale effect in the data the maximum has a rank-1 joint
    covariance (a correlation of -1 with a small scale SD): a boundary
    estimate, reported by a warning, covariance_rank and the summary."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    data, _ = _simulate(n_groups=15, size=8, seed=1, var_omega=0.0)
    model = hmf.hetmixedlm("y ~ x + h", data, groups="g", var_formula="~ x + h",
                           var_re_formula="~ 1")
    with pytest.warns(ConvergenceWarning, match=r"singular \(rank 1 of 2"):
        res = model.fit(reml=False)
    assert res.converged
    assert res.covariance_rank() == (1, 2)
    assert abs(res.corr_re_joint.iloc[0, 1]) > 0.9999
    assert "singular (rank 1 of 2)" in " ".join(res.summary().as_text().split())
    # An interior fit: full rank, no such warning or note.
    interior, _ = _simulate(n_groups=40, size=10, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fine = hmf.hetmixedlm("y ~ x + h", interior, groups="g", var_formula="~ x + h",
                              var_re_formula="~ 1").fit(reml=False, n_quad=1)
    assert fine.covariance_rank() == (2, 2)
    text = " ".join(fine.summary().as_text().split())
    assert "singular" not in text and "by the Laplace approximation" in text


def test_trial_step_with_overflow_is_minus_infinity():
    """A Newton trial point with an astronomically large level-2 log
    variance scores far below the start (or -inf), quietly: no numpy
    overflow warning reaches the user."""
    data = _simulate_level2(n_groups=10, size=6)
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x",
                           var_re_formula="~ 1", re_var_formula="~ s")
    ls = _locscale.LocationScaleData.build(
        model.endog, model.exog, model.exog_re, model.exog_var, model.exog_var_re,
        model._group_index, model.n_groups, 5)
    lay = level2_layout(model)
    theta = np.zeros(lay.size)
    quad = _locscale.adapt(ls, lay, theta)
    start = _locscale._value_or_minus_inf(ls, lay, theta, quad)
    theta[lay.p + lay.k_var] = 1e6   # log var of the scale effect
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = _locscale._value_or_minus_inf(ls, lay, theta, quad)
    assert value < start - 1000 and not np.isnan(value)


def test_laplace_gradient_with_level2_functions():
    """The Laplace gradient through the per-group factors of level-2
    variance functions, against central differences with re-adapted nodes."""
    data = _simulate_level2(n_groups=12, size=6, seed=4)
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x",
                           var_re_formula="~ 1", re_var_formula="~ s")
    lay = level2_layout(model)
    theta = lay.pack(np.array([1.0, 0.5]), np.array([0.2, 0.3]),
                     lay.role_block("re_cov").pack(
                         np.array([[np.log(0.2), 0.5], [np.log(0.6), -0.3]]),
                         np.array([[-0.3, 0.4]])))
    _, grad, fd = _laplace_gradient_and_differences(_laplace_data(model), lay, theta)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


def test_pickle_round_trip_and_remove_data(small, tmp_path):
    from statsmodels.iolib.smpickle import load_pickle

    res = hmf.hetmixedlm("y ~ x + h", small, groups="g", var_formula="~ x + h",
                         var_re_formula="~ 1").fit(reml=False)
    path = tmp_path / "ls.pickle"
    res.save(path)
    back = load_pickle(path)
    assert back.llf == res.llf
    pd.testing.assert_frame_equal(back.re_table(), res.re_table())
    pd.testing.assert_frame_equal(back.cov_re_joint, res.cov_re_joint)
    res.remove_data()
    assert "Location-scale model" in res.summary().as_text()


def test_location_scale_se_invariant_to_recoding(recoding_data):
    """Location-scale fits: the SEs of the variance function's coefficients
    do not depend on the units or origin of its covariates (the difference
    steps of the Hessian ignored them: 2e-4 off for year - 2010, NaN and no
    convergence for year * 1e6); measured agreement 3e-7, tested at 1e-5."""
    from .conftest import fit_year_codings

    fits = fit_year_codings(recoding_data, dict(reml=False, n_quad=5),
                            var_re_formula="~ 1")
    ses = {name: np.array([res.bse["var:year"] * factor, res.bse["var:income"]])
           for name, (res, factor) in fits.items()}
    for name, se in ses.items():
        np.testing.assert_allclose(se, ses["year"], rtol=1e-5, err_msg=name)


def test_fit_warnings_point_at_the_caller(hsb_data):
    """The fit's warnings name the line that called fit (their stacklevels
    count the frames between fit and the warning): a level-2 fit whose
    estimate is on the boundary, and a skipped heteroskedastic fit."""
    level2 = hmf.hetmixedlm("mathach ~ sector", hsb_data, groups="school",
                            var_formula="~ sector", var_re_formula="~ 1",
                            re_var_formula="~ sector")
    het = hmf.hetmixedlm("mathach ~ sector", hsb_data, groups="school")
    for fit in (lambda: level2.fit(reml=False), lambda: het.fit(do_cg=False)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit()
        assert caught
        assert all(w.filename == __file__ for w in caught), \
            [(w.filename, str(w.message)[:40]) for w in caught]


@pytest.mark.parametrize("n_quad", [7, 1])
@pytest.mark.parametrize("level2", [False, True])
def test_group_sums_match_the_engine_by_rows(n_quad, level2):
    """With V constant within groups the nodes are evaluated from per-group
    sums (``_node_terms``); the engine's pass over the rows per node
    (``_node_terms_by_rows``, used when V varies within groups) gives the
    same log-likelihood, gradient and conditional moments."""
    import dataclasses

    data = _simulate_level2(n_groups=12, size=7)
    kw = {"re_var_formula": "~ s"} if level2 else {}
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x",
                           re_formula="~ x", var_re_formula="~ 1", **kw)
    by_sums = _locscale.LocationScaleData.build(
        model.endog, model.exog, model.exog_re, model.exog_var,
        model.exog_var_re, model._group_index, model.n_groups, n_quad)
    assert by_sums.v_group is not None
    by_rows = dataclasses.replace(by_sums, v_group=None)
    rng = np.random.default_rng(1)
    if level2:
        lay = level2_layout(model)
        cov = lay.role_block("re_cov").pack(rng.normal(0, 0.3, (3, 2)),
                                            rng.normal(0, 0.3, (3, 2)))
    else:
        lay = joint_layout(model)
        L = np.tril(rng.normal(0, 0.3, (3, 3))) + 0.6 * np.eye(3)
        cov = lay.role_block("re_cov").free_from_factor(L)
    theta = lay.pack(np.array([0.9, 0.4]), np.array([0.1, 0.2]), cov)
    quad = _locscale.adapt(by_sums, lay, theta)
    other = _locscale.adapt(by_rows, lay, theta)
    np.testing.assert_allclose(other.modes, quad.modes, atol=1e-9)
    np.testing.assert_allclose(other.B, quad.B, rtol=1e-7)
    v1, g1, post1, _ = _locscale._value_and_grad(by_sums, lay, theta, quad)
    v2, g2, post2, _ = _locscale._value_and_grad(by_rows, lay, theta, quad)
    assert v1 == pytest.approx(v2, rel=1e-13)
    # Laplace's gradient takes second differences of t-gradients (noise ~1e-9)
    np.testing.assert_allclose(g1, g2, rtol=1e-7 if n_quad == 1 else 1e-10,
                               atol=1e-9 if n_quad == 1 else 1e-11)
    np.testing.assert_allclose(post1, post2, atol=1e-12)
    beta, a, L = lay.unpack(theta)
    for x, y in zip(_locscale.node_conditionals(by_sums, quad, beta, a, L),
                    _locscale.node_conditionals(by_rows, quad, beta, a, L)):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-13)


def test_group_sums_in_either_engine_layout(small):
    """The group sums are one product with the sparse group indicator, or
    the engine's padded cross products where the engine has no indicator:
    the same sums."""
    from statsmodels_hetmixed import _engine

    model = hmf.hetmixedlm("y ~ x + h", small, groups="g", re_formula="~ x",
                           var_formula="~ x + h", var_re_formula="~ 1")
    args = (model.endog, model.exog, model.exog_re, model.exog_var,
            model.exog_var_re, model._group_index, model.n_groups, 7)
    sparse = _locscale.LocationScaleData.build(*args)
    padded = _locscale.LocationScaleData.build(*args, single=_engine.GroupedData.build(
        model.endog, model.exog, model.exog_re, model._group_index,
        model.n_groups, layout="padded"))
    assert sparse.single.pad_index is None and padded.single.pad_index is not None
    beta, a = np.array([1.0, 0.5, 0.2]), np.array([0.1, 0.2, -0.3])
    one = _locscale._GroupSums.build(sparse, beta, a)
    other = _locscale._GroupSums.build(padded, beta, a)
    for name in ("A0", "e0", "Q0", "log_r"):
        np.testing.assert_allclose(getattr(one, name), getattr(other, name),
                                   rtol=1e-13, atol=1e-12)
