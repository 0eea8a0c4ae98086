"""The optimisers: line search, Newton decrement, scoring at a boundary,
methods by name reaching the same maximum."""

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import optim
from statsmodels_hetmixed.model import HetMixedLM
from statsmodels_hetmixed.objective import HeteroskedasticObjective
from statsmodels_hetmixed.optim import (
    NEWTON_DECREMENT_TOL,
    estimate,
    line_search,
    newton_decrement,
    newton_step,
)


def test_line_search_takes_the_longest_acceptable_step():
    # value rises to t = 0.3 along the step, then falls
    value = lambda x: -(x[0] - 0.3) ** 2  # noqa: E731
    found = line_search(value, lambda t: np.array([t]), f0=value(np.zeros(1)))
    t, x, v = found
    assert t == 0.5 and x[0] == 0.5 and v == value(np.array([0.5]))
    # nothing better than f0 along the step: None
    assert line_search(value, lambda t: np.array([0.3 - t]), f0=0.0,
                       t_min=1e-3) is None


def test_line_search_treats_failures_as_minus_infinity():
    def value(x):
        if x[0] > 0.2:
            raise np.linalg.LinAlgError
        return x[0]

    t, x, v = line_search(value, lambda t: np.array([t]), f0=0.0)
    assert t == 0.125 and v == 0.125


def test_newton_decrement():
    g = np.array([1.0, 2.0])
    hess = -np.diag([2.0, 4.0])
    assert newton_decrement(g, hess, np.array([True, True])) == pytest.approx(1.5)
    assert newton_decrement(g, hess, np.array([True, False])) == pytest.approx(0.5)
    assert newton_decrement(g, np.diag([2.0, -4.0]), np.array([True, True])) is None
    assert newton_decrement(g, hess, np.array([False, False])) == 0.0


def _data(seed=3, sd_u=0.7, n_groups=30, size=12):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.normal(size=g.size)
    k = rng.integers(0, 3, g.size)
    u = rng.normal(0, sd_u, n_groups)[g]
    y = 1 + 0.5 * x + u + np.exp(0.5 * (0.1 + 0.3 * x)) * rng.standard_normal(g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g, "k": k})


def _objective(model, reml=False):
    return HeteroskedasticObjective(model._grouped, model.layout, reml)


def test_scoring_puts_a_zero_variance_at_zero_exactly():
    # No variation by k within groups: the variance component's ML estimate is 0.
    data = _data(sd_u=0.0, seed=5)
    model = hmf.hetmixedlm("y ~ x", data, groups="g", re_formula="0",
                           vc_formula={"k": "0 + C(k)"})
    objective = _objective(model)
    est = estimate(objective, objective.start(), methods=["scoring"])
    assert est.natural[0] == 0.0
    assert est.at_boundary[0]
    assert est.converged and est.decrement < NEWTON_DECREMENT_TOL


@pytest.mark.parametrize("methods", [["scoring"], ["bfgs"], ["lbfgs"], ["cg"]])
def test_methods_by_name_reach_statsmodels_maximum(methods):
    data = _data()
    model = hmf.hetmixedlm("y ~ x", data, groups="g")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smf.mixedlm("y ~ x", data, groups="g").fit(reml=True)
    objective = _objective(model, reml=True)
    est = estimate(objective, objective.start(), methods=methods)
    assert est.converged
    assert est.evaluation.llf == pytest.approx(ref.llf, abs=1e-6)
    np.testing.assert_allclose(est.evaluation.fe_params, ref.fe_params, rtol=1e-5)
    np.testing.assert_allclose(est.natural[0], ref.cov_re.iloc[0, 0], rtol=1e-4)
    np.testing.assert_allclose(np.exp(est.natural[1]), ref.scale, rtol=1e-4)


def test_held_parameters_stay_put():
    data = _data()
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x")
    objective = _objective(model)
    start = objective.start()
    start[2] = 0.25  # var:x held at 0.25
    mask = np.array([True, True, False])
    est = estimate(objective, start, mask=mask)
    assert est.free[2] == 0.25 and est.converged
    # and the free parameters are at the maximum given it
    free = objective.layout.from_natural(est.natural)
    g = objective.free_value_and_gradient(free)[1]
    assert np.abs(g[mask]).max() < 1e-3


def test_newton_step_interior_is_plain_newton():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 5))
    info = a @ a.T + np.eye(5)
    g = rng.standard_normal(5)
    newton = newton_step(-info, g, 2, np.ones(3))
    np.testing.assert_allclose(newton.step, np.linalg.solve(info, g))
    np.testing.assert_allclose(newton.cov, np.linalg.inv(info))
    assert newton.decrement == pytest.approx(g @ np.linalg.solve(info, g))
    assert newton.flat.shape == (0, 5) and newton.flat_decrement == 0
    assert not newton.indefinite


def test_newton_step_sets_a_flat_direction_aside():
    """An information matrix with a null vector n (moving a covariance
    parameter, the others following): the step, decrement and covariance
    are those of the determined directions, and n is the flat one."""
    rng = np.random.default_rng(2)
    n = np.array([0.3, -0.2, 0.0, 1.0, -1.0])
    n /= np.linalg.norm(n)
    a = rng.standard_normal((5, 5))
    proj = np.eye(5) - np.outer(n, n)
    info = proj @ (a @ a.T + np.eye(5)) @ proj
    x = rng.standard_normal(5)
    for along in (0.0, 1e-3):
        g = info @ x + along * n
        newton = newton_step(-info, g, 2, np.ones(3))
        assert newton.flat.shape == (1, 5)
        v = newton.flat[0] / np.linalg.norm(newton.flat[0])
        assert abs(v @ n) == pytest.approx(1.0, abs=1e-8)
        pinv = np.linalg.pinv(info)
        if along == 0:
            assert newton.decrement == pytest.approx(x @ info @ x, rel=1e-8)
        # The gradient along the flat direction, over the floored curvature.
        assert newton.flat_decrement == pytest.approx((g @ newton.flat[0]) ** 2,
                                                      rel=1e-8, abs=1e-12)
        assert (newton.flat_decrement > 1e-3) == (along > 0)
        # The covariance of anything orthogonal to the flat direction.
        r = proj @ rng.standard_normal(5)
        assert r @ newton.cov @ r == pytest.approx(r @ pinv @ r, rel=1e-8)
        np.testing.assert_allclose(info @ newton.cov @ info, info, atol=1e-8)


@pytest.mark.parametrize("c", [1e-3, 1e-4, 1e4])
def test_scoring_steps_do_not_depend_on_the_response_units(c):
    """A random slope fitted to the response in other units is the same fit:
    the REML log-likelihood moves by -(n - p) log c, the covariances by c^2,
    the variance function's intercept by 2 log c.  (The scoring step's
    ridge was relative to the largest information, the covariances' with
    small units, and swamped the variance function's: with c = 1e-3 the fit
    stopped unconverged at a log-likelihood 1.3 lower.)"""
    import warnings

    import pandas as pd

    import statsmodels_hetmixed.formula.api as hmf

    from .conftest import RESULTS

    data = pd.read_csv(RESULTS / "robust" / "orthodont.csv")

    def fit(scale):
        model = hmf.hetmixedlm("distance ~ age + female",
                               data.assign(distance=data["distance"] * scale),
                               groups="Subject", re_formula="~ age",
                               var_formula="~ female")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return model.fit()

    base, other = fit(1.0), fit(c)
    n, p = len(data), 3
    assert other.converged
    assert other.llf == pytest.approx(base.llf - (n - p) * np.log(c), rel=1e-9)
    np.testing.assert_allclose(np.asarray(other.cov_re) / c**2,
                               np.asarray(base.cov_re), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(other.var_params)[0] - 2 * np.log(c),
                               np.asarray(base.var_params)[0], rtol=1e-7)
    np.testing.assert_allclose(np.asarray(other.bse_fe) / c, base.bse_fe, rtol=1e-5)


def _ar1_model(seed=2, m=60, n=8):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), n)
    t = np.tile(np.arange(n, dtype=float), m)
    x = rng.normal(size=m * n)
    e = np.empty((m, n))
    e[:, 0] = rng.normal(size=m)
    for j in range(1, n):
        e[:, j] = 0.6 * e[:, j - 1] + 0.8 * rng.normal(size=m)
    y = (1.0 + 0.5 * x + np.repeat(rng.normal(size=m), n)
         + e.ravel() * np.exp(0.3 * x))
    X = np.column_stack([np.ones(m * n), x])
    return HetMixedLM(y, X, g, exog_var=X, correlation="ar1", time=t)


@pytest.mark.parametrize("reml", [False, True], ids=["ML", "REML"])
def test_scoring_reuses_information_near_the_optimum(reml, monkeypatch):
    """AR(1) residuals (``defers_information``): points reached with a
    Newton decrement below INFORMATION_REUSE_DECREMENT are evaluated
    without the expected information, their steps scored with the last
    one; the estimate, its standard errors and the observed information
    (which then reads the rows of G's parameters of the information from
    the last evaluation) agree with scoring that computes it at every
    point."""
    from statsmodels_hetmixed import _correlated

    calls = {"information": 0, "evaluate": 0}
    eval_fn = _correlated.evaluate

    def counted(*args, **kwargs):
        calls["evaluate"] += 1
        calls["information"] += kwargs.get("info_directions") is not None
        return eval_fn(*args, **kwargs)

    monkeypatch.setattr(_correlated, "evaluate", counted)
    reused = _ar1_model().fit(reml=reml)
    # evaluations without the information: the fit's last steps
    assert calls["information"] < calls["evaluate"]
    monkeypatch.setattr(optim, "INFORMATION_REUSE_DECREMENT", 0.0)
    calls.update(information=0, evaluate=0)
    every = _ar1_model().fit(reml=reml)
    assert calls["information"] == calls["evaluate"]
    assert reused.converged and every.converged
    assert reused.llf == pytest.approx(every.llf, rel=1e-12, abs=0)
    np.testing.assert_allclose(reused.params, every.params, rtol=0,
                               atol=1e-4 * every.bse.min())
    np.testing.assert_allclose(reused.bse, every.bse, rtol=1e-5)


def test_information_rows_without_the_information():
    """The rows of G's parameters of the expected information, from an
    AR(1) evaluation made without it (``cov_information_rows``, what the
    observed information reads after scoring's last steps), equal those
    of ``evaluate(info=True)``."""
    from statsmodels_hetmixed import _correlated

    for re_formula in (None, "slope"):
        model = _ar1_model()
        if re_formula:   # a random slope: k_cov = 3, q = 2
            model = HetMixedLM(model.endog, model.exog, model.groups,
                               exog_re=model.exog, exog_var=model.exog,
                               correlation="ar1", time=model.time)
        objective = model._objective(False)
        lay = objective.layout
        natural = lay.to_natural(objective.start() + 0.05)
        with_info = objective.evaluate(natural, gradient=True, info=True)
        later = objective.evaluate(natural, gradient=True)
        assert later.info is None
        cov_dirs, var_dirs = lay.info_directions(natural)
        rows = _correlated.cov_information_rows(
            objective.grouped, lay.correlation_block, later, lay.resid_var(natural),
            cov_dirs, var_dirs)
        k_cov = lay.k_cov
        assert rows.shape == (k_cov, natural.size)
        np.testing.assert_allclose(rows, with_info.info_centred[:k_cov], rtol=1e-12,
                                   atol=1e-13 * np.abs(rows).max())
