"""Profile-likelihood intervals for the random effects of location-scale
models (LocationScaleResults.profile_ci)."""

import warnings

import numpy as np
import pytest
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq
from scipy.stats import chi2, norm
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import HetMixedLM, _locscale, _profile
from statsmodels_hetmixed.locscale import (
    THETA_ROLES,
    _location_scale_data,
    joint_layout,
    level2_layout,
)
from statsmodels_hetmixed.structures import Layout, Level2Functions

from .test_locscale import _simulate, _simulate_level2

Z95 = norm.ppf(0.975)
FORMULA = dict(groups="g", var_formula="~ x + h", var_re_formula="~ 1")


@pytest.fixture(scope="module")
def fitted():
    data, _ = _simulate(n_groups=20, size=8, seed=5)
    model = hmf.hetmixedlm("y ~ x + h", data, **FORMULA)
    res = model.fit(reml=False)
    assert res.converged
    return model, res


@pytest.fixture(scope="module")
def profiled(fitted):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fitted[1].profile_ci(variances=True)


def test_table(fitted, profiled):
    _, res = fitted
    wald = res.re_table()
    assert list(profiled.index) == ["SD(g)", "Var(g)", "SD(var:g)", "Var(var:g)",
                                    "corr(g, var:g)"]
    assert list(profiled.columns) == ["Estimate", "[0.025", "0.975]", "Method"]
    assert (profiled["Method"] == "profile").all()
    for name in wald.index:
        assert profiled.loc[name, "Estimate"] == wald.loc[name, "Estimate"]
        lo, hi = profiled.loc[name, ["[0.025", "0.975]"]]
        assert lo < wald.loc[name, "Estimate"] < hi
        # same order of magnitude as the delta-method interval
        wlo, whi = wald.loc[name, ["[0.025", "0.975]"]]
        assert abs(lo - wlo) < 0.5 * (whi - wlo) and abs(hi - whi) < 0.5 * (whi - wlo)
    for sd, var in (("SD(g)", "Var(g)"), ("SD(var:g)", "Var(var:g)")):
        np.testing.assert_allclose(profiled.loc[var, ["Estimate", "[0.025", "0.975]"]]
                                   .astype(float),
                                   profiled.loc[sd, ["Estimate", "[0.025", "0.975]"]]
                                   .astype(float) ** 2, rtol=1e-12)


def test_constrained_refit_at_the_estimate_is_the_estimate(fitted):
    """With the scale effects' log variance held at its estimate, a refit
    from elsewhere returns the estimate and the fit's log-likelihood."""
    model, res = fitted
    S, theta, _, _, _ = res._profile_model()
    data = _location_scale_data(model, res.n_quad)
    layout = level2_layout(model, S)
    # the same function with the same quadrature as the fit
    check = _locscale.fit(data, layout, theta, optimise=False)
    assert check.llf == pytest.approx(res.llf, abs=1e-6)
    held = model.k_fe + model.k_var          # log var(omega): scale effects first
    layout.estimated[held] = False
    start = theta + 0.2
    start[held] = theta[held]
    refit = _locscale.fit(data, layout, start)
    assert refit.converged
    assert refit.llf == pytest.approx(res.llf, abs=1e-6)
    np.testing.assert_allclose(refit.theta, theta, atol=2e-4)


def _grid_limits(values, llf, llf_hat, estimate):
    """95% limits from a cubic spline through the signed root on a grid."""
    root = np.sign(values - estimate) * np.sqrt(np.maximum(2 * (llf_hat - llf), 0))
    spline = CubicSpline(values, root)
    return (brentq(lambda v: spline(v) + Z95, values[0], estimate),
            brentq(lambda v: spline(v) - Z95, estimate, values[-1]))


def test_limits_match_a_brute_force_profile_on_a_grid(fitted, profiled):
    """Refits on a grid of held values, interpolated.  SD(omega) is held
    through the Cholesky layout (its first diagonal entry, the scale
    effects coming first), a parameterisation that profile_ci does not
    use; SD(u) and the correlation through the log-variance / atanh layout."""
    model, res = fitted
    fit = res._ls_fit
    data = _location_scale_data(model, res.n_quad)
    p, k = model.k_fe, model.k_var

    def refit(layout, start, index, value):
        theta = start.copy()
        theta[index] = value
        layout.estimated = np.ones(layout.size, bool)
        layout.estimated[index] = False
        out = _locscale.fit(data, layout, theta)
        assert out.converged
        return out.llf

    chol = joint_layout(model)
    beta, a, L = chol.unpack(fit.theta)
    L[:, 0] *= np.sign(L[0, 0])               # same Sigma, L[0, 0] = SD(omega)
    start = chol.pack(beta, a, L[np.tril_indices(2)])
    lo, hi = profiled.loc["SD(var:g)", ["[0.025", "0.975]"]]
    grid = np.linspace(0.9 * lo, 1.1 * hi, 13)
    llf = [refit(chol, start, p + k, v) for v in grid]
    np.testing.assert_allclose(_grid_limits(grid, np.array(llf), res.llf, L[0, 0]),
                               [lo, hi], atol=1e-3)

    S, theta, _, _, _ = res._profile_model()
    level2 = level2_layout(model, S)
    for name, index, to_scale in (("SD(g)", p + k + 1, lambda t: np.exp(0.5 * t)),
                                  ("corr(g, var:g)", p + k + 2, np.tanh)):
        lo, hi = profiled.loc[name, ["[0.025", "0.975]"]]
        # a grid on the parameter's own scale, a little wider than the interval
        t_lo = 1.1 * (np.log(lo**2) if name.startswith("SD") else np.arctanh(lo)) \
            - 0.1 * theta[index]
        t_hi = 1.1 * (np.log(hi**2) if name.startswith("SD") else np.arctanh(hi)) \
            - 0.1 * theta[index]
        grid = np.linspace(t_lo, t_hi, 13)
        llf = [refit(level2, theta, index, v) for v in grid]
        limits = _grid_limits(grid, np.array(llf), res.llf, theta[index])
        np.testing.assert_allclose(to_scale(np.array(limits)), [lo, hi], atol=1e-3)


def test_boundary_variance_zero():
    """Data without scale effects: the scale effects' SD has lower limit 0,
    because the profile stays within the critical value down to SD 0."""
    data, _ = _simulate(n_groups=15, size=8, seed=1, var_omega=0.0)
    model = hmf.hetmixedlm("y ~ x + h", data, **FORMULA)
    with pytest.warns(ConvergenceWarning, match="singular") as record:  # corr -1
        res = model.fit(reml=False)
    # a correlation of -1 is a limit of the refits: profile_ci is recommended
    assert "profile_ci() gives intervals" in " ".join(str(w.message) for w in record)
    table = res.profile_ci(["SD(var:g)", "Var(var:g)"])
    assert list(table.index) == ["SD(var:g)", "Var(var:g)"]
    assert (table["[0.025"] == 0).all() and (table["0.975]"] > table["Estimate"]).all()
    assert (table["Method"] == "profile (lower limit at boundary)").all()
    # Check: with SD(omega) held at 1e-4 the log-likelihood is less than
    # chi2_1(0.95) / 2 below the maximum.
    fit = res._ls_fit
    layout = joint_layout(model)
    layout.estimated[model.k_fe + model.k_var] = False
    theta = fit.theta.copy()
    theta[model.k_fe + model.k_var] = 1e-4
    held = _locscale.fit(_location_scale_data(model, res.n_quad), layout, theta)
    assert 0 < 2 * (res.llf - held.llf) < chi2.ppf(0.95, 1)


def test_independent_correlation_is_held(fitted):
    model, _ = fitted
    res = model.fit(reml=False, re_cov="independent")
    table = res.profile_ci(["SD(var:g)", "corr(g, var:g)"])
    assert table.loc["corr(g, var:g)", "Method"] == "held"
    assert table.loc["corr(g, var:g)", ["[0.025", "0.975]"]].isna().all()
    assert table.loc["SD(var:g)", "Method"] == "profile"
    assert np.isfinite(table.loc["SD(var:g)", ["[0.025", "0.975]"]].astype(float)).all()


def test_names_alpha_and_bad_input(fitted, profiled):
    model, res = fitted
    one = res.profile_ci("Var(var:g)")
    assert list(one.index) == ["Var(var:g)"]
    np.testing.assert_allclose(one.iloc[0, :3].astype(float),
                               profiled.loc["Var(var:g)"].iloc[:3].astype(float),
                               rtol=1e-10)
    narrow = res.profile_ci(["SD(var:g)"], alpha=0.5)
    assert list(narrow.columns[1:3]) == ["[0.25", "0.75]"]
    lo95, hi95 = profiled.loc["SD(var:g)", ["[0.025", "0.975]"]]
    assert lo95 < narrow.iloc[0, 1] < narrow.iloc[0, 0] < narrow.iloc[0, 2] < hi95
    with pytest.raises(ValueError, match="not a random-effects SD.*SD\\(g\\)"):
        res.profile_ci("SD(x)")
    with pytest.raises(ValueError, match="alpha"):
        res.profile_ci(alpha=1.5)
    plain = HetMixedLM(model.endog, model.exog, model._group_index,
                       exog_re=model.exog_re, exog_var=model.exog_var).fit(reml=False)
    with pytest.raises(NotImplementedError, match="location-scale"):
        plain.profile_ci()


def test_warns_when_the_fit_is_not_at_the_maximum(fitted):
    model, _ = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start_only = model.fit(reml=False, do_cg=False)
    with pytest.warns(ConvergenceWarning, match="larger log-likelihood"):
        start_only.profile_ci("SD(var:g)")


def test_level2_rows_match_a_recoded_reference():
    """The limits at the level-2 row s = 1 (a change of basis of the
    design) equal those at the reference row of the same model coded with
    t = 1 - s."""
    data = _simulate_level2(n_groups=30, size=8, seed=4)
    data["t"] = 1 - data["s"]
    kw = dict(groups="g", var_formula="~ x", var_re_formula="~ 1")
    names = ["SD(var:g)", "corr(g, var:g)"]
    by_s = hmf.hetmixedlm("y ~ x", data, re_var_formula="~ s", **kw).fit(reml=False)
    by_t = hmf.hetmixedlm("y ~ x", data, re_var_formula="~ t", **kw).fit(reml=False)
    assert by_s.llf == pytest.approx(by_t.llf, abs=1e-6)
    a = by_s.profile_ci([f"s=1 | {n}" for n in names], variances=True)
    b = by_t.profile_ci([f"t=0 | {n}" for n in names], variances=True)
    assert list(a.index) == ["s=1 | SD(var:g)", "s=1 | Var(var:g)",
                             "s=1 | corr(g, var:g)"]
    np.testing.assert_allclose(a.iloc[:, :3].astype(float), b.iloc[:, :3].astype(float),
                               atol=2e-4)
    assert list(a["Method"]) == list(b["Method"])


def test_level2_intercept_only_is_the_plain_profile(fitted, profiled):
    model, _ = fitted
    level2 = hmf.hetmixedlm("y ~ x + h", model.data.frame, re_var_formula="~ 1",
                            **FORMULA).fit(reml=False)
    table = level2.profile_ci("all | SD(var:g)")
    np.testing.assert_allclose(table.iloc[0, :3].astype(float),
                               profiled.loc["SD(var:g)"].iloc[:3].astype(float),
                               atol=2e-4)


def test_level2_dict_form_profiles_keep_held_terms():
    """With a dict re_var_formula the refits keep the held coefficients at
    0: a correlation constant across rows gets the same interval in both
    rows, and no refit finds a larger log-likelihood than the fit (which
    a refit with the held terms freed would)."""
    data = _simulate_level2(n_groups=30, size=8, seed=4)
    kw = dict(groups="g", var_formula="~ x", var_re_formula="~ 1")
    res = hmf.hetmixedlm("y ~ x", data, re_var_formula={"var:g": "~ s"},
                         **kw).fit(reml=False)
    names = ["s=0 | corr(g, var:g)", "s=1 | corr(g, var:g)", "s=1 | SD(var:g)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = res.profile_ci(names)
    lims = table.loc[names].iloc[:, :3].astype(float).to_numpy()
    np.testing.assert_allclose(lims[0], lims[1], atol=1e-8)
    assert np.all(lims[:, 1] < lims[:, 0]) and np.all(lims[:, 0] < lims[:, 2])
    # The limit is where the LR statistic reaches chi2_1(0.95): refit with
    # the held terms and the correlation fixed at the upper limit.
    lay, block = res._l2, res._l2_block
    theta = res._l2_theta.copy()
    first_corr = lay.slice_of(block).start + block.d * block.k_s
    theta[first_corr] = np.arctanh(lims[1, 2])
    held = level2_layout(res.model, block.S,
                         terms=lay.estimated[lay.slice_of(block)].reshape(-1, block.k_s))
    held.estimated[first_corr] = False
    refit = _locscale.fit(_location_scale_data(res.model, res.n_quad), held, theta)
    assert 2 * (res.llf - refit.llf) == pytest.approx(Z95**2, abs=2e-3)


def test_singular_three_effect_estimate_is_refused_clearly(hsb_data):
    """HSB model (2): the 3 x 3 joint covariance is singular at the
    maximum with no correlation at +-1; the log-variance / atanh
    parameterisation of the profile refits cannot hold it, and profile_ci
    says so rather than failing inside the linear algebra."""
    mean2 = "mathach ~ sector + meanses + cses + sector:cses + meanses:cses"
    with pytest.warns(ConvergenceWarning, match=r"singular \(rank 2 of 3") as record:
        res = hmf.hetmixedlm(mean2, hsb_data, groups="school", re_formula="~ cses",
                             var_formula="~ sector", var_re_formula="~ 1"
                             ).fit(reml=False, n_quad=7)
    # The warning does not recommend profile_ci, which refuses here.
    text = " ".join(str(w.message) for w in record)
    assert "profile_ci() is not available" in text
    assert "profile_ci() gives" not in text
    with pytest.raises(ValueError, match=r"singular \(rank 2 of 3\).*re_cov='independent'"):
        res.profile_ci()


def _three_effect_layout():
    functions = [f"f{j}" for j in range(6)]  # 3 log variances, 3 correlations
    block = Level2Functions(functions, ["Intercept"], 1, 2, np.ones((4, 1)))
    return Layout([], [block], q=0, roles=THETA_ROLES)


@pytest.mark.parametrize("scale", [1.0, 1e8, 1e-8])
def test_representable_is_decided_by_the_rank(scale):
    """Inside: a 3 x 3 covariance with smallest correlation eigenvalue
    about 1e-3, or a singular one whose singularity is a correlation of
    -1 (a limit of the refits' parameterisation).  Outside: singular with
    all correlations inside (-1, 1), smallest correlation eigenvalue about
    1e-13 -- a matrix that np.linalg.cholesky factors on any BLAS."""
    lay = _three_effect_layout()
    D = np.diag([1.0, scale, 1.0 / scale])

    def theta(B):
        L = np.linalg.cholesky(D @ B @ B.T @ D + 0.0)
        return _profile.cholesky_to_level2(lay, np.zeros(0), np.zeros(0), L)

    def rows(t):
        return np.array([[1.0, 0.2, t], [0.3, 1.0, t], [0.9, -0.8, t]])

    assert _profile.representable(lay, theta(rows(0.2)))
    assert not _profile.representable(lay, theta(rows(3e-7)))
    # correlation -1 between the first two effects, clipped to -tanh(7)
    L = D @ np.array([[1.0, 0, 0], [-0.5, 0, 0], [0.2, 0, 1.0]])
    t = _profile.cholesky_to_level2(lay, np.zeros(0), np.zeros(0), L)
    assert _profile.representable(lay, t)


def test_refusal_does_not_hinge_on_the_factorisation(monkeypatch):
    """A singular three-effect estimate with no correlation at +-1 is
    refused before any refit, also when its covariance matrix is perturbed
    so that a Cholesky factorisation succeeds (as it does with some BLAS
    kernels for HSB model (2))."""
    data, _ = _simulate(n_groups=20, size=8, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hmf.hetmixedlm("y ~ x + h", data, re_formula="~ x",
                             **FORMULA).fit(reml=False, n_quad=1)
    assert res.covariance_rank() == (2, 3)

    def no_refits(*args, **kwargs):
        raise AssertionError("profile refits started")

    monkeypatch.setattr(_profile, "profile_limits", no_refits)
    with pytest.raises(ValueError, match=r"singular \(rank 2 of 3\)"):
        res.profile_ci()
    # The same with the factor's last pivot raised from rounding level to
    # 1e-7 of the row (a correlation eigenvalue of about 1e-14).
    fit = res._results._ls_fit
    fit.factor[2, 2] = 1e-7 * np.abs(fit.factor[2]).max()
    np.linalg.cholesky(fit.factor @ fit.factor.T)  # succeeds
    with pytest.raises(ValueError, match=r"singular \(rank 2 of 3\)"):
        res.profile_ci()


def test_refits_continue_from_the_estimate_side(fitted):
    """Each profile refit starts from the nearest point between it and the
    estimate, never from a point beyond it: a trial point past the limit may
    sit in a worse local maximum, and bisection that started from it
    inherited that maximum (the profile of HSB model 5's public-school
    correlation jumped by 15 units and its lower limit was the jump, 0.43,
    instead of 0.11; docs/location_scale.rst)."""
    from statsmodels_hetmixed._profile import ProfileLikelihood

    model, res = fitted
    S, theta, _, _, _ = res._profile_model()
    data = _location_scale_data(model, res.n_quad)
    layout = level2_layout(model, S)
    held = model.k_fe + model.k_var
    prof = ProfileLikelihood(data, layout, theta, held, res.llf)
    t_hat = theta[held]
    marked = {}
    for t, mark in ((t_hat - 1.0, 1.0), (t_hat - 3.0, 3.0), (t_hat + 1.0, -1.0)):
        point = theta.copy()
        point[0] = mark  # tells which point a start came from
        prof.points[t] = (res.llf - 1.0, point)
        marked[t] = mark
    # between the estimate and t_hat - 1: from the estimate, although
    # t_hat - 1 is nearer (it lies beyond)
    assert prof._start(t_hat - 0.9)[0] == theta[0]
    # between t_hat - 1 and t_hat - 3, nearer to t_hat - 3: still from the
    # inner point t_hat - 1, not from the far one
    assert prof._start(t_hat - 2.9)[0] == 1.0
    # beyond every point: the farthest inner point, t_hat - 3
    assert prof._start(t_hat - 4.0)[0] == 3.0
    # the other side continues from its own points
    assert prof._start(t_hat + 1.5)[0] == -1.0
    assert prof._start(t_hat + 0.2)[0] == theta[0]
