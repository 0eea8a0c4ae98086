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
    res = null_fits["ML"]
    test = res.score_test_variance(var_re_formula="~ 1")
    assert test.information == "expected"
    assert test.df == 1 and test.boundary == ["var:school Var"]
    assert test.weights.tolist() == [0.5, 0.5]
    assert test.score.iloc[0] > 0
    assert test.pvalue == pytest.approx(0.5 * stats.chi2.sf(test.statistic, 1))
    # the LR statistic of the location-scale fit (re_cov="independent") is
    # 4.67 (p = 0.015); the score statistics are of the same size, the
    # observed information's smaller (it grows with the score's squares)
    observed = res.score_test_variance(var_re_formula="~ 1", observed=True)
    assert observed.information == "observed"
    assert 2.0 < observed.statistic < test.statistic < 6.0
    # the same efficient score, up to the nuisance information used
    assert observed.score.iloc[0] == pytest.approx(test.score.iloc[0], rel=1e-5)


# The expected information of the scale variance, by brute force: one
# design of 4 rows (random intercept and slope, log variance linear in a
# row-level dummy) and a group for every node of the 5^4-point
# Gauss-Hermite rule, y = X b + chol(V) z.  The group scores are
# polynomials of degree 4 in z, so the rule gives E U_s = 0 and
# E U_s^2 = I_ss exactly (degree 8 <= 2 * 5 - 1).
_NATURAL = np.array([0.8, -0.1, 0.25, -0.2, 0.6])  # G (lower triangle), a


def _quadrature_groups():
    nodes, weights = np.polynomial.hermite_e.hermegauss(5)
    grid = np.stack(np.meshgrid(*[nodes] * 4, indexing="ij"), -1).reshape(-1, 4)
    w = np.prod(np.stack(np.meshgrid(*[weights] * 4, indexing="ij"), -1)
                .reshape(-1, 4), axis=1)
    m = grid.shape[0]
    g = np.repeat(np.arange(m), 4)
    x = np.tile([-1.0, 0.0, 0.5, 1.5], m)
    f = np.tile([0.0, 1.0, 1.0, 0.0], m)
    data = pd.DataFrame({"g": g, "x": x, "f": f, "y": 0.0})
    kw = dict(groups="g", re_formula="~ x", var_formula="~ f")
    lay = hmf.hetmixedlm("y ~ x + f", data, **kw).layout
    factor, r = lay.factor(_NATURAL), lay.resid_var(_NATURAL)
    Z = np.column_stack([np.ones(4), x[:4]])
    V = Z @ factor @ factor.T @ Z.T + np.diag(r[:4])
    beta = np.array([1.0, 0.5, 0.0])
    data["y"] = 1.0 + 0.5 * x + (grid @ np.linalg.cholesky(V).T).ravel()
    return hmf.hetmixedlm("y ~ x + f", data, **kw), beta, w / w.sum()


def _group_scores(model, natural, beta):
    """Each group's score for s2 at s2 = 0 and for a common shift w."""
    der = scoretest._shift_derivatives(model._grouped, model.layout, natural, beta)
    return 0.5 * (der[:, 1] + der[:, 0] ** 2), der[:, 0]


def test_scale_information_matches_explicit_matrices():
    # tr A^2, tr A^4 from V_i built explicitly, against the eigenvalue form;
    # unequal groups, one smaller than the number of random effects
    sizes = [1, 3, 4, 2, 5]
    data = pd.DataFrame({"g": np.repeat(np.arange(5), sizes)})
    data["x"] = np.linspace(-2, 2, len(data)) ** 2
    data["f"] = np.arange(len(data)) % 2
    data["y"] = np.cos(np.arange(len(data)))
    model = hmf.hetmixedlm("y ~ x", data, groups="g", re_formula="~ x",
                           var_formula="~ f")
    i_ss, i_sw = scoretest._scale_expected_information(
        model._grouped, model.layout, _NATURAL)
    factor, r = model.layout.factor(_NATURAL), model.layout.resid_var(_NATURAL)
    Z = np.column_stack([np.ones(len(data)), data["x"]])
    for i in range(5):
        rows = np.flatnonzero(data["g"] == i)
        V = Z[rows] @ factor @ factor.T @ Z[rows].T + np.diag(r[rows])
        A = np.linalg.solve(V, np.diag(r[rows]))  # similar to V^-1/2 R V^-1/2
        tr2, tr4 = np.trace(A @ A), np.trace(np.linalg.matrix_power(A, 4))
        assert i_ss[i] == pytest.approx(tr2 / 8 + tr4 / 4 + tr2 ** 2 / 8, rel=1e-12)
        assert i_sw[i] == pytest.approx(tr2 / 4, rel=1e-12)


def test_scale_information_is_the_variance_of_the_score():
    model, beta, weight = _quadrature_groups()
    u_s, u_w = _group_scores(model, _NATURAL, beta)
    i_ss, i_sw = scoretest._scale_expected_information(
        model._grouped, model.layout, _NATURAL)
    assert abs(weight @ u_s) < 1e-10 * i_ss[0]
    assert weight @ u_s ** 2 == pytest.approx(i_ss[0], rel=1e-10)
    assert weight @ (u_s * u_w) == pytest.approx(i_sw[0], rel=1e-10)
    # the joint information: the cross terms against the expectation of
    # central differences of the score in each natural parameter
    _, info = scoretest._scale_expected_system(model._grouped, model.layout,
                                               _NATURAL)
    m, k = len(weight), _NATURAL.size
    assert info[k, k] == pytest.approx(m * i_ss[0], rel=1e-12)
    h = 1e-5
    for j in range(k):
        step = h * np.eye(k)[j]
        up = _group_scores(model, _NATURAL + step, beta)[0]
        down = _group_scores(model, _NATURAL - step, beta)[0]
        assert -weight @ (up - down) / (2 * h) == pytest.approx(
            info[k, j] / m, rel=1e-6, abs=1e-8 * i_ss[0])


def test_expected_scale_statistic_in_closed_form(null_fits):
    # With an intercept in the variance function the nuisance projection
    # removes half the shift's score: U_eff = U_s - U_w / 2 and
    # I_eff = sum_i tr A_i^4 / 4 + (tr A_i^2)^2 / 8.
    res = null_fits["ML"]
    grouped, lay, natural = res.model._grouped, res.layout, res._natural
    der = scoretest._shift_derivatives(grouped, lay, natural)
    u_eff = 0.5 * (der[:, 1] + der[:, 0] ** 2).sum() - 0.5 * der[:, 0].sum()
    lam = scoretest._shift_spectrum(grouped, lay, natural)[0]
    extra = np.bincount(grouped.group_index) - lam.shape[1]
    tr2 = (1 / (1 + lam) ** 2).sum(axis=1) + extra
    tr4 = (1 / (1 + lam) ** 4).sum(axis=1) + extra
    i_eff = (tr4 / 4 + tr2 ** 2 / 8).sum()
    test = res.score_test_variance(var_re_formula="~ 1")
    assert test.score.iloc[0] == pytest.approx(u_eff, rel=1e-8)
    assert test.statistic == pytest.approx(u_eff ** 2 / i_eff, rel=1e-8)


def test_scale_test_unchanged_when_a_covariate_is_recoded(hsb_data):
    # units and origin of a mean covariate, of the random slope's covariate
    # and of a variance covariate leave the test unchanged
    data = hsb_data[hsb_data["school"].isin(hsb_data["school"].unique()[:60])].copy()
    data["ses2"] = 10.0 * data["ses"] + 3.0
    results = {}
    for ses in ("ses", "ses2"):
        for observed in (False, True):
            fit = hmf.hetmixedlm(f"mathach ~ female + {ses}", data, groups="school",
                                 re_formula=f"~ {ses}",
                                 var_formula=f"~ {ses}").fit(reml=False)
            results[ses, observed] = fit.score_test_variance(
                var_re_formula="~ 1", observed=observed)
    for observed in (False, True):
        a, b = results["ses", observed], results["ses2", observed]
        assert b.statistic == pytest.approx(a.statistic, rel=1e-5)
        assert b.score.iloc[0] == pytest.approx(a.score.iloc[0], rel=1e-5)


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

