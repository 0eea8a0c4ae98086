"""Score (Lagrange multiplier) tests of the variance function (scoretest.py)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import _hessian, scoretest
from statsmodels_hetmixed.scoretest import ScoreTestResult, score_statistic

MEAN = "mathach ~ female + ses"


@pytest.fixture(scope="module")
def null_fits(hsb_data):
    model = hmf.hetmixedlm(MEAN, hsb_data, groups="school")
    return {"ML": model.fit(reml=False), "REML": model.fit(reml=True)}


def _numerical_gradient(loglike, x):
    """Central differences of the log-likelihood's value (steps 1e-5 of
    each parameter's size, floored at 0.1), and the steps for the Hessian,
    1e-4 of that size (central differences of the analytic gradient there
    agree with steps ten times smaller to 1e-8 relative)."""
    size = np.maximum(np.abs(x), 0.1)
    grad = np.array([(loglike(x + h * e) - loglike(x - h * e)) / (2 * h)
                     for h, e in zip(1e-5 * size, np.eye(x.size))])
    return grad, 1e-4 * size


def _direct_statistic(res, data, var_formula, k_add):
    """
    The statistic from numerical derivatives of the extended model's
    log-likelihood: gradient by central differences of its value, Hessian
    by central differences of its analytic gradient along the coordinate
    axes (no whitening, no conditioning), at the null estimates with the
    added coefficients at zero.
    """
    ext = hmf.hetmixedlm(MEAN, data, groups="school", var_formula=var_formula)
    ext.reml = res.reml  # loglike and score use the model's criterion
    # the natural vector (params are MixedLM's without a variance formula)
    x = np.concatenate([np.asarray(res.params_natural)[res.model.k_fe:],
                        np.zeros(k_add)])
    grad, steps = _numerical_gradient(ext.loglike, x)
    info = -_hessian.hessian(ext.score, x, None, np.diag(steps), step=1.0,
                               central=True)
    t = np.arange(x.size - k_add, x.size)
    n = np.arange(x.size - k_add)
    u = grad[t] - info[np.ix_(t, n)] @ np.linalg.solve(info[np.ix_(n, n)], grad[n])
    i_eff = info[np.ix_(t, t)] - info[np.ix_(t, n)] @ np.linalg.solve(
        info[np.ix_(n, n)], info[np.ix_(n, t)])
    return float(u @ np.linalg.solve(i_eff, u))


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_statistic_equals_the_direct_computation(null_fits, hsb_data, method):
    res = null_fits[method]
    test = res.score_test_variance("~ female + ses")
    direct = _direct_statistic(res, hsb_data, "~ female + ses", 2)
    assert test.statistic == pytest.approx(direct, rel=1e-6)
    assert test.df == 2 and test.method == method
    assert test.pvalue == pytest.approx(stats.chi2.sf(test.statistic, 2))


def test_close_to_the_likelihood_ratio_on_hsb(null_fits, hsb_data):
    # the hand computation for ~ female + ses gave LM 14.02 against LR 14.04
    res = null_fits["ML"]
    for formula, k in (("~ female", 1), ("~ female + ses", 2)):
        alt = hmf.hetmixedlm(MEAN, hsb_data, groups="school",
                             var_formula=formula).fit(reml=False)
        lr = alt.compare_lr_test(res)
        lm = res.score_test_variance(formula)
        lm_expected = res.score_test_variance(formula, observed=False)
        assert lm.df == lr.df == k
        assert abs(lm.statistic - lr.statistic) < 0.02
        assert abs(lm_expected.statistic - lr.statistic) < 0.2
    assert lm.statistic == pytest.approx(14.02, abs=0.01)


def test_unchanged_when_the_tested_covariate_is_rescaled_or_shifted(null_fits,
                                                                    hsb_data):
    res = null_fits["ML"]
    data = hsb_data.assign(ses_cents=100 * hsb_data["ses"] + 2500)
    model = hmf.hetmixedlm(MEAN, data, groups="school")
    recoded = model.fit(reml=False)
    for observed in (True, False):
        base = res.score_test_variance("~ female + ses", observed=observed)
        other = recoded.score_test_variance("~ female + ses_cents",
                                            observed=observed)
        assert other.statistic == pytest.approx(base.statistic, rel=1e-7)
        # the score of a coefficient scales inversely to its covariate
        assert other.score.iloc[1] == pytest.approx(100 * base.score.iloc[1],
                                                    rel=1e-6)


def test_array_interface_gives_the_formula_result(null_fits, hsb_data):
    res = null_fits["REML"]
    by_formula = res.score_test_variance("~ female + ses")
    by_array = res.score_test_variance(exog_var=hsb_data[["female", "ses"]])
    assert by_array.statistic == pytest.approx(by_formula.statistic, rel=1e-12)
    assert list(by_array.score.index) == ["var:female", "var:ses"]


def test_adding_to_a_heteroskedastic_fit(hsb_data):
    # a fit with fewer variance terms: only ses is tested
    model = hmf.hetmixedlm(MEAN, hsb_data, groups="school", var_formula="~ female")
    res = model.fit(reml=False)
    test = res.score_test_variance("~ ses")
    alt = hmf.hetmixedlm(MEAN, hsb_data, groups="school",
                         var_formula="~ female + ses").fit(reml=False)
    lr = alt.compare_lr_test(res)
    assert test.df == 1 and list(test.score.index) == ["var:ses"]
    assert test.statistic == pytest.approx(lr.statistic, abs=0.05)


def test_result_unpacks_and_summarises(null_fits):
    test = null_fits["ML"].score_test_variance("~ female")
    assert isinstance(test, ScoreTestResult)
    statistic, pvalue, df = test
    assert (statistic, pvalue, df) == (test.statistic, test.pvalue, test.k_constraint)
    text = test.summary()
    assert "var:female = 0" in text and "observed information" in text
    assert f"{test.statistic:.4f}" in text


def test_one_sided_statistic_for_variances():
    info = np.array([[4.0, 1.0], [1.0, 2.0]])
    # positive efficient score: the two-sided statistic
    stat, u, _ = score_statistic(np.array([0.0, 3.0]), info, [1], [0], [True])
    assert stat == pytest.approx(3.0**2 / (2.0 - 1.0 / 4.0))
    # negative: zero
    stat, _, _ = score_statistic(np.array([0.0, -3.0]), info, [1], [0], [True])
    assert stat == 0.0
    # negative, with an information that is not positive there: still zero
    stat, _, _ = score_statistic(np.array([0.0, -3.0]), np.diag([4.0, -1.0]), [1],
                                 [0], [True])
    assert stat == 0.0
    with pytest.raises(np.linalg.LinAlgError):
        score_statistic(np.array([0.0, 3.0]), np.diag([4.0, -1.0]), [1], [0], [True])
    # two variances, one score negative: the projection onto the orthant
    info2 = np.diag([2.0, 3.0])
    stat, _, _ = score_statistic(np.array([2.0, -1.0]), info2, [0, 1], [], [True, True])
    assert stat == pytest.approx(2.0**2 / 2.0)


@pytest.fixture(scope="module")
def by_group_data():
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(50), 12)
    arm = rng.integers(0, 2, g.size)
    male = rng.integers(0, 2, g.size)
    sd = np.sqrt(np.where(arm == 1, 2.0, 1.0) + 0.6 * male)
    y = 1 + 0.5 * arm + rng.normal(0, 0.8, 50)[g] + sd * rng.standard_normal(g.size)
    return pd.DataFrame({"y": y, "g": g, "arm": arm, "male": male})


def test_identity_link_terms_are_one_sided(by_group_data):
    model = hmf.hetmixedlm("y ~ arm", by_group_data, groups="g", var_by="arm")
    res = model.fit(reml=False)
    test = res.score_test_variance("~ male")
    assert test.boundary == ["var:male"]
    assert test.weights is not None and test.weights.tolist() == [0.5, 0.5]
    assert test.pvalue == pytest.approx(0.5 * stats.chi2.sf(test.statistic, 1))
    # the direct computation, one-sided: max(U, 0)^2 / I_eff
    ext = hmf.hetmixedlm("y ~ arm", by_group_data, groups="g",
                         var_formula="~ 0 + C(arm) + male", var_link="identity")
    ext.reml = False
    x = np.concatenate([np.asarray(res.params)[2:], [0.0]])
    grad, steps = _numerical_gradient(ext.loglike, x)
    info = -_hessian.hessian(ext.score, x, None, np.diag(steps), step=1.0,
                               central=True)
    n = np.arange(x.size - 1)
    u = grad[-1] - info[-1, n] @ np.linalg.solve(info[np.ix_(n, n)], grad[n])
    i_eff = info[-1, -1] - info[-1, n] @ np.linalg.solve(info[np.ix_(n, n)],
                                                         info[n, -1])
    assert u > 0  # the data have a larger variance for males
    assert test.statistic == pytest.approx(u**2 / i_eff, rel=1e-6)
    lr = hmf.hetmixedlm("y ~ arm", by_group_data, groups="g",
                        var_formula="~ 0 + C(arm) + male",
                        var_link="identity").fit(reml=False).compare_lr_test(res)
    assert lr.boundary == ["var:male"]
    assert test.statistic == pytest.approx(lr.statistic, rel=0.1)


# ----------------------------------------------------------------------
# A random scale intercept
def test_shift_derivatives_match_the_engine_and_differences(null_fits):
    res = null_fits["ML"]
    model, lay = res.model, res.layout
    natural, beta = res._natural, np.asarray(res.fe_params)
    grouped = model._grouped
    der = scoretest._shift_derivatives(grouped, lay, natural, beta)
    from statsmodels_hetmixed import _engine

    def first(w):
        ev = _engine.evaluate(grouped, lay.factor(natural),
                              lay.resid_var(natural) * np.exp(w), False,
                              fe_params=beta, gradient=True)
        return np.bincount(grouped.group_index, weights=ev.grad_eta)

    np.testing.assert_allclose(der[:, 0], first(0.0), rtol=1e-10, atol=1e-10)
    h = 1e-4
    up, mid, down = first(h), first(0.0), first(-h)
    scale = np.abs(der[:, 1]).max()
    np.testing.assert_allclose(der[:, 1], (up - down) / (2 * h), atol=1e-6 * scale)
    np.testing.assert_allclose(der[:, 2], (up - 2 * mid + down) / h**2,
                               atol=1e-4 * scale)


def test_scale_score_matches_the_location_scale_likelihood(null_fits, hsb_data):
    # d llf / d s2 and d2 llf / d s2^2 at s2 = 0 against the location-scale
    # model's own (quadrature) log-likelihood at small s2, fixed effects held
    res = null_fits["ML"]
    u, h_ss = scoretest._scale_score(res.model._grouped, res.layout, res._natural,
                                     np.asarray(res.fe_params))
    ls = hmf.hetmixedlm(MEAN, hsb_data, groups="school", var_re_formula="~ 1")
    p = np.asarray(res.params_natural)

    def llf(s2):
        return ls.loglike(np.r_[p[:4], 0.0, s2, p[4]])

    h = 2e-4
    points = h * np.arange(1, 4)
    values = np.array([llf(s) for s in points]) - llf(0.0)
    coef = np.linalg.solve(np.c_[points, points**2 / 2, points**3 / 6], values)
    assert coef[0] == pytest.approx(u, rel=1e-5)
    assert coef[1] == pytest.approx(h_ss, rel=1e-3)


def test_scale_effect_test_on_hsb(null_fits):
    test = null_fits["ML"].score_test_variance(var_re_formula="~ 1")
    assert test.df == 1 and test.boundary == ["var:school Var"]
    assert test.weights.tolist() == [0.5, 0.5]
    assert test.score.iloc[0] > 0
    assert test.pvalue == pytest.approx(0.5 * stats.chi2.sf(test.statistic, 1))
    # the LR statistic of the location-scale fit (re_cov="independent") is
    # 4.67 (p = 0.015); the score statistic is of the same size
    assert 2.0 < test.statistic < 6.0


# ----------------------------------------------------------------------
# Bad input
def test_bad_input(null_fits, hsb_data):
    res = null_fits["ML"]
    with pytest.raises(ValueError, match="cannot be evaluated.*nosuchcolumn"):
        res.score_test_variance("~ nosuchcolumn")
    with pytest.raises(ValueError, match="not both or neither"):
        res.score_test_variance()
    with pytest.raises(ValueError, match="adds no term"):
        res.score_test_variance("~ 1")
    with pytest.raises(NotImplementedError, match="random scale intercept"):
        res.score_test_variance(var_re_formula="~ ses")
    with pytest.raises(ValueError, match="not both at once"):
        res.score_test_variance("~ female", var_re_formula="~ 1")
    with pytest.raises(ValueError, match="needs an ML null fit"):
        null_fits["REML"].score_test_variance(var_re_formula="~ 1")
    with pytest.raises(ValueError, match="rows"):
        res.score_test_variance(exog_var=np.ones((10, 1)))
    het = hmf.hetmixedlm(MEAN, hsb_data, groups="school",
                         var_formula="~ female").fit(reml=False)
    with pytest.raises(ValueError, match=r"\['female'\] are already in"):
        het.score_test_variance("~ female + ses")
    with pytest.raises(ValueError, match="linear combinations"):
        het.score_test_variance("~ I(1 - female)")


def test_location_scale_and_identity_link_fits_are_refused(by_group_data):
    additive = hmf.hetmixedlm("y ~ arm", by_group_data, groups="g",
                              var_by="arm").fit(reml=False)
    with pytest.raises(ValueError, match="var_link='identity'"):
        additive.score_test_variance(var_re_formula="~ 1")
    ls = hmf.hetmixedlm("y ~ arm", by_group_data.iloc[:240], groups="g",
                        var_re_formula="~ 1").fit(reml=False, n_quad=1, maxiter=3)
    with pytest.raises(NotImplementedError, match="location-scale fit"):
        ls.score_test_variance("~ male")

