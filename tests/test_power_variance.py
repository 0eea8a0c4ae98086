"""
var_power= / var_const_power= (nlme's varPower and varConstPower, on a
covariate or on the fitted values) against nlme, a direct dense likelihood
and the package's own invariances.

References (no R at test time):

* ``results/varpower/r_varpower.json`` (``r_varpower.R``, nlme 3.1-162):
  varPower on a covariate (orthodont, sleepgaps, bodyweight), varComb with
  varIdent / varExp, varPower(fitted) in varComb, varConstPower;
* ``results/correlation/r_correlation.json``: the independent-residual fits
  with power / constpower (README there: which are usable targets);
* ``results/varpower/direct_constpower.json`` (``direct_constpower.py``): a
  dense multivariate-normal likelihood maximised by scipy.

Each nlme spec is mapped to our arguments and names by ``tests/nlme_spec.py``.
SEs: not compared here (nlme's apVar is on its own scale).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import HetMixedLM
from statsmodels_hetmixed import optim
from statsmodels_hetmixed.structures import ConstPowerVariance, PowerVariance
from statsmodels_hetmixed.structures.testing import check_block

from . import nlme_spec

RESULTS = Path(__file__).parent / "results"
CSV = RESULTS / "correlation"
_spec = importlib.util.spec_from_file_location("check_dense", CSV / "check_dense.py")
check_dense = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_dense)

VARPOWER = json.loads((RESULTS / "varpower" / "r_varpower.json").read_text())["fits"]
CORRELATION = json.loads((CSV / "r_correlation.json").read_text())["fits"]
DIRECT = json.loads((RESULTS / "varpower" / "direct_constpower.json").read_text())["fits"]
REFS = {**VARPOWER, **CORRELATION}


def _data(fit):
    return pd.read_csv(CSV / fit["spec"]["file"])


def _fit(key, **fit_kwargs):
    ref = REFS[key]
    spec = ref["spec"]
    model = hmf.hetmixedlm(spec["fixed"], _data(ref), **nlme_spec.model_arguments(spec))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # these fits are clean
        res = model.fit(reml=ref["method"] == "REML", **fit_kwargs)
    return model, res, nlme_spec.expected(ref, list(model.data.exog_re_names))


def _compare(res, expected, ref, est_tol):
    assert res.llf == pytest.approx(ref["logLik"], rel=1e-6, abs=0)
    for name, value in expected.items():
        # relative to the larger of the value and its standard error (a
        # covariance near 0 has no relative accuracy)
        scale = max(abs(value), float(res.bse[name]))
        assert abs(res.params[name] - value) <= est_tol * scale, name


# ----------------------------------------------------------------------
# the blocks
def test_block_derivatives():
    rng = np.random.default_rng(3)
    v = rng.uniform(-4, 6, 60)
    check_block(PowerVariance(v, "x"), np.array([0.8]))
    check_block(ConstPowerVariance(np.r_[v, 0.0], "x"), np.array([np.log(0.4), 1.3]))
    for cls, free in ((PowerVariance, [-0.6]), (ConstPowerVariance, [0.2, 2.1])):
        block = cls("fitted", nobs=v.size)
        block.update(v)
        check_block(block, np.array(free))


def test_fitted_block_needs_update_and_checks_it():
    block = PowerVariance("fitted", nobs=3)
    assert block.depends_on_fitted and block.names == ["power(fitted)"]
    with pytest.raises(ValueError, match="fitted values are exactly 0"):
        block.update(np.array([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="3 rows"):
        block.update(np.ones(4))
    const = ConstPowerVariance("fitted", nobs=3)
    const.update(np.array([1.0, 0.0, -2.0]))  # zeros allowed: factor c^2
    np.testing.assert_allclose(const.variance(np.array([0.5, 2.0])),
                               [1.5**2, 0.25, 4.5**2])
    with pytest.raises(ValueError, match="nobs"):
        PowerVariance("fitted")
    with pytest.raises(ValueError, match="not 'fited'"):
        PowerVariance("fited", nobs=3)


# ----------------------------------------------------------------------
# against nlme: covariates (estimates to 1e-4)
COVARIATE_KEYS = [
    f"{case}/{method}" for method in ("ML", "REML") for case in (
        "orthodont/lme_ri/power_age", "sleepgaps/lme_rs/power_day1",
        "bodyweight/lme_rs/power_Time", "orthodont/lme_ri/ident_sex*power_age",
        "sleepgaps/lme_rs/exp_days*power_day1", "sleepgaps/lme_ri/constpower_day1",
        "sleepgaps/lme_rs/indep/constpower_day1")]


@pytest.mark.parametrize("key", COVARIATE_KEYS)
def test_covariate_against_nlme(key):
    _, res, expected = _fit(key)
    assert res.converged and res.fixed_point is None
    _compare(res, expected, REFS[key], 1e-4)


# ----------------------------------------------------------------------
# against nlme: fitted values (nlme's fixed point)
def _nlme_decrement(model, ref, expected):
    """nlme's stored estimates at the covariate its logLik belongs to
    (recovered from its weights): our log-likelihood there, and the Newton
    decrement g' I^-1 g (0 at a maximum)."""
    nat_all = ref["var"]["natural_all"]
    w = np.asarray(ref["var"]["weights"], dtype=float)
    if "B.power" in nat_all:  # varComb(varIdent(~1|s), varPower(fitted))
        strata = ref["spec"]["var"]["parts"][0]["strata"]
        ident = {k[2:]: d for k, d in nat_all.items() if k.startswith("A.")}
        w = w * _data(ref)[strata].astype(str).map(ident).to_numpy()
        v = (1 / w) ** (1 / nat_all["B.power"])
    else:
        v = check_dense.fitted_covariate_of_loglik(ref)
    model.layout.update(v)
    natural = np.array([expected[n] for n in model.layout.structure_names])
    ev, g = model._objective(reml=ref["method"] == "REML").evaluate_natural(
        natural, info=True)
    return ev.llf, float(g @ np.linalg.solve(ev.info, g))


FITTED_KEYS = [
    f"{case}/{method}" for method in ("ML", "REML") for case in (
        "bodyweight/lme_rs/indep/power_fitted", "orthodont/lme_ri/indep/power_fitted",
        "bodyweight/lme_rs/ident_diet*power_fitted")]


@pytest.mark.parametrize("key", FITTED_KEYS)
def test_fitted_against_nlme(key):
    model, res, expected = _fit(key)
    ref = REFS[key]
    fp = res.fixed_point
    assert fp.converged and fp.gap <= fp.tol and fp.n_iter >= 2
    # our estimates: a maximum with v held at the fitted values they imply
    assert np.max(np.abs(res.fittedvalues - res.layout.variance_blocks[-1].abs_v
                         * np.sign(res.fittedvalues))) <= 1e-7 * np.max(
                             np.abs(res.fittedvalues))
    # nlme's own optimisation: its logLik is our likelihood at its estimates
    # and v; its Newton decrement there bounds how far (in standard errors)
    # its estimates are from that maximum (orthodont: 3e-7, bodyweight
    # varComb: 1e-6; bodyweight: 4e-10)
    llf_nlme, decrement = _nlme_decrement(model, ref, expected)
    assert llf_nlme == pytest.approx(ref["logLik"], rel=1e-10)
    tol = max(1e-4, 3 * np.sqrt(decrement))
    _compare(res, expected, ref, tol)


def test_fitted_where_nlme_did_not_reach_the_fixed_point():
    """sleepgaps lme_rs power_fitted: nlme stopped with fitted values 1.6e-2
    from its covariate (README: llf only).  Its logLik is our likelihood at
    its estimates and covariate; our iteration reaches the fixed point, whose
    likelihood (with its own v) is another number."""
    key = "sleepgaps/lme_rs/indep/power_fitted/ML"
    model, res, expected = _fit(key)
    assert res.fixed_point.converged
    llf_nlme, decrement = _nlme_decrement(model, REFS[key], expected)
    assert llf_nlme == pytest.approx(REFS[key]["logLik"], rel=1e-10)
    assert decrement > 1e-2  # not a maximum at its own v


# ----------------------------------------------------------------------
# varConstPower: degenerate fits
def test_constpower_delta_runs_off_in_bodyweight():
    """bodyweight varConstPower(~Time): Time = 1 rows have |v|^delta = 1 for
    every delta, the others -> 0 as delta -> -inf: nlme stopped at delta =
    -8.3, where the likelihood is flat; c and the rest are identified."""
    key = "bodyweight/lme_rs/constpower_Time/ML"
    ref = REFS[key]
    model = hmf.hetmixedlm(ref["spec"]["fixed"], _data(ref),
                           **nlme_spec.model_arguments(ref["spec"]))
    with pytest.warns(ConvergenceWarning, match=r"varConstPower\(Time\) is degenerate"
                      r".*but those where \|Time\| is 1: the fit tends to a step"):
        res = model.fit(reml=False)
    expected = nlme_spec.expected(ref, list(model.data.exog_re_names))
    del expected["power(Time)"]
    _compare(res, expected, ref, 1e-4)
    assert res.params["power(Time)"] < -8
    assert "degenerate" in str(res.summary())


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_constpower_without_maximum_in_orthodont(method):
    """orthodont varConstPower(~age) has no maximum (nlme: const -> 0, power
    -> -inf, 'singular convergence' for REML): the supremum is the limit with
    a separate variance at age 8 (direct dense likelihood, scipy).  Our fit
    runs there and says the estimate is degenerate; the step model it
    suggests reaches the supremum."""
    ref = REFS[f"orthodont/lme_ri/constpower_age/{method}"]
    direct = DIRECT[f"orthodont/lme_ri/constpower_age/{method}"]
    sup = direct["step"]["llf"]
    assert direct["bounded"]["llf"] == pytest.approx(sup, rel=1e-9)
    assert ref["logLik"] == pytest.approx(sup, rel=1e-8)
    data = _data(ref)
    model = hmf.hetmixedlm("distance ~ age + Sex", data, groups="Subject",
                           var_const_power="age")
    with pytest.warns(ConvergenceWarning, match=r"varConstPower\(age\) is degenerate"
                      r".* but those where \|age\| is 8: the fit tends to a step"):
        res = model.fit(reml=method == "REML")
    assert res.llf == pytest.approx(sup, rel=1e-8)
    assert res.llf <= sup + 1e-9 * abs(sup)
    # the step as a 0/1 column: patsy and formulaic name it alike
    data["age8"] = (data["age"] == 8).astype(float)
    step = hmf.hetmixedlm("distance ~ age + Sex", data, groups="Subject",
                          var_formula="~ age8").fit(reml=method == "REML")
    assert step.llf == pytest.approx(sup, rel=1e-9)
    assert np.exp(step.params["var:age8"] / 2) == pytest.approx(
        direct["step"]["ratio_sd_age8"], rel=1e-4)


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_constpower_against_direct_likelihood(method):
    d = DIRECT[f"sleepgaps/lme_ri/constpower_day1/{method}"]
    data = pd.read_csv(CSV / "sleepstudy_gaps.csv")
    res = hmf.hetmixedlm("Reaction ~ Days", data, groups="Subject",
                         var_const_power="day1").fit(reml=method == "REML")
    assert res.llf == pytest.approx(d["llf"], rel=1e-9)
    for name, value in (("const(day1)", d["const"]), ("power(day1)", d["power"]),
                        ("var(Subject)", d["tau2"]),
                        ("var:Intercept", np.log(d["sigma2"]))):
        assert res.params[name] == pytest.approx(value, abs=1e-4 * max(
            abs(value), res.bse[name])), name


# ----------------------------------------------------------------------
# the fixed point
@pytest.fixture(scope="module")
def orthodont():
    return pd.read_csv(CSV / "orthodont.csv")


def test_start_keeps_the_residual_level_with_several_variance_blocks(orthodont):
    """The blocks' factors multiply: the variance function's start absorbs
    the others' mean log factor, so the starting variances keep the level of
    the variance function's own start (before, varConstPower's start
    multiplied it by (2 c)^2 = 900 on Orthodont: llf -530 vs -217)."""
    alone = hmf.hetmixedlm("distance ~ age + Sex", orthodont, groups="Subject")
    for kwargs in ({"var_power": "age"}, {"var_const_power": "age"}):
        model = hmf.hetmixedlm("distance ~ age + Sex", orthodont, groups="Subject",
                               **kwargs)
        lay = model.layout
        start = lay.to_natural(model._objective().start())
        reference = alone.layout.to_natural(alone._objective().start())
        assert lay.log_scale(start) == pytest.approx(
            alone.layout.log_scale(reference), rel=1e-12)


def test_fixed_point_not_reached_warns(orthodont):
    model = hmf.hetmixedlm("distance ~ age + Sex", orthodont, groups="Subject",
                           var_power="fitted")
    with pytest.warns(ConvergenceWarning, match="NOT reached after 2 fits"):
        res = model.fit(reml=False, fitted_maxiter=2)
    assert not res.fixed_point.converged and res.fixed_point.n_iter == 2
    assert "NOT reached" in " ".join(str(res.summary()).split())


def test_results_keep_their_own_fitted_values(orthodont):
    model = hmf.hetmixedlm("distance ~ age + Sex", orthodont, groups="Subject",
                           var_power="fitted")
    ml = model.fit(reml=False)
    var_ml = np.array(ml.resid_var)
    llf = ml.llf
    model.fit(reml=True)
    np.testing.assert_array_equal(ml.resid_var, var_ml)
    # the model's likelihood at the ML estimates with the ML fit's v
    model.layout.update(ml.fittedvalues)
    model.reml = False
    assert model.loglike(np.asarray(ml.params_natural)) == pytest.approx(llf, rel=1e-9)
    assert ml._results.layout is not model.layout


def test_predict_variance_new_rows(orthodont):
    cov = hmf.hetmixedlm("distance ~ age + Sex", orthodont, groups="Subject",
                         var_power="age").fit(reml=False)
    np.testing.assert_allclose(cov.predict_variance(orthodont), cov.resid_var,
                               rtol=1e-12)
    fit = hmf.hetmixedlm("distance ~ age + Sex", orthodont, groups="Subject",
                         var_power="fitted").fit(reml=False)
    # the fitted rows: conditional predictions are the fitted values
    np.testing.assert_allclose(fit.predict_variance(orthodont), fit.resid_var,
                               rtol=1e-6)
    new = orthodont.head(4).assign(Subject="new")
    mean = fit.predict(new, conditional=None)
    delta = fit.params["power(fitted)"]
    np.testing.assert_allclose(
        fit.predict_variance(new),
        np.exp(fit.params["var:Intercept"]) * np.abs(mean) ** (2 * delta), rtol=1e-12)
    with pytest.raises(ValueError, match="needs the covariate 'age'"):
        cov.predict_variance(orthodont.drop(columns="age").head())


def test_get_prediction_new_rows(orthodont):
    """New rows' prediction intervals use the further variance functions'
    factors: the fitted rows passed as new data give the fitted rows' own
    intervals, and a new subject's residual variance is predict_variance's."""
    cov = hmf.hetmixedlm("distance ~ age + Sex", orthodont, groups="Subject",
                         var_power="age").fit(reml=False)
    own = cov.get_prediction().summary_frame()
    again = cov.get_prediction(orthodont).summary_frame()
    pd.testing.assert_frame_equal(again, own, rtol=1e-10)
    # without the power factor the intervals of ages 8 and 14 would be
    # those of the variance function alone: they differ by the power
    pred = cov.get_prediction(orthodont)
    np.testing.assert_allclose(pred.var_resid, cov.resid_var, rtol=1e-12)
    assert np.ptp(pred.var_resid) > 0.1 * np.mean(pred.var_resid)

    fit = hmf.hetmixedlm("distance ~ age + Sex", orthodont, groups="Subject",
                         var_power="fitted").fit(reml=False)
    new = orthodont.head(4).assign(Subject="new")
    pred = fit.get_prediction(new)
    np.testing.assert_allclose(pred.var_resid, fit.predict_variance(new), rtol=1e-12)
    # marginal rows: residual, random-effect and mean variances add up
    frame = pred.summary_frame()
    np.testing.assert_allclose(
        pred.se_obs ** 2,
        frame["mean_se"] ** 2 + pred.var_re + fit.predict_variance(new), rtol=1e-12)
    # known subjects: the fitted-value factor reads the conditional fitted
    # values the fit used, whether the mean predicted is marginal (the
    # default) or conditional, and whether the groups come as a column or
    # as groups=
    rows = orthodont.head(4)
    for kwargs in ({}, {"conditional": True}):
        by_column = fit.get_prediction(rows, **kwargs)
        by_argument = fit.get_prediction(rows.drop(columns="Subject"),
                                         groups=rows["Subject"], **kwargs)
        for pred in (by_column, by_argument):
            assert pred.conditional.all() == bool(kwargs)
            np.testing.assert_allclose(pred.var_resid, fit.predict_variance(rows),
                                       rtol=1e-12)
            np.testing.assert_allclose(pred.var_resid, fit.resid_var[:4], rtol=1e-6)
    # the power's covariate used by no formula: its column is still needed
    sex_only = hmf.hetmixedlm("distance ~ Sex", orthodont, groups="Subject",
                              var_power="age").fit(reml=False)
    with pytest.raises(ValueError, match="get_prediction on new data needs the "
                                         "covariate 'age'"):
        sex_only.get_prediction(orthodont.head(3).drop(columns="age"))


# ----------------------------------------------------------------------
# gradients and invariance
@pytest.mark.parametrize("kwargs", [{"var_power": "age"},
                                    {"var_const_power": "age"},
                                    {"var_power": "fitted"}])
@pytest.mark.parametrize("reml", [False, True])
def test_score_is_the_derivative_of_loglike(orthodont, kwargs, reml):
    """The analytic gradient (the blocks' log_derivative through the
    layout) against central differences of the log-likelihood, at a point
    off the maximum (fitted: with v the OLS fitted values)."""
    model = hmf.hetmixedlm("distance ~ age + Sex", orthodont, groups="Subject",
                           var_formula="~ Sex", **kwargs)
    model.layout.update(model._ols_fitted())
    model.reml = reml
    power = {"var_power": [0.4], "var_const_power": [0.7, 1.3]}[next(iter(kwargs))]
    nat = np.array([3.0, 0.5, 0.3] + power)
    g = model.score(nat)
    num = np.zeros_like(nat)
    for j in range(nat.size):
        h = 1e-6 * max(1.0, abs(nat[j]))
        e = np.zeros_like(nat)
        e[j] = h
        num[j] = (model.loglike(nat + e) - model.loglike(nat - e)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("key", ["var_power", "var_const_power"])
def test_rescaling_the_covariate(key):
    """v -> 10 v: delta, llf and SEs unchanged; the intercept takes
    -2 delta log 10 (varConstPower: c takes 10^delta as well)."""
    data = pd.read_csv(CSV / "sleepstudy_gaps.csv")
    fits = [hmf.hetmixedlm("Reaction ~ Days", data.assign(v=data["day1"] * k),
                           groups="Subject", var_formula="~ half",
                           **{key: "v"}).fit(reml=True) for k in (1.0, 10.0)]
    a, b = fits
    delta = a.params["power(v)"]
    assert b.llf == pytest.approx(a.llf, rel=1e-10)
    assert b.params["power(v)"] == pytest.approx(delta, abs=1e-5 * a.bse["power(v)"])
    # (the forward-difference observed information is accurate to about
    # 1e-4 here: central differences move the SE of delta by 1.5e-5 at k=1)
    assert b.bse["power(v)"] == pytest.approx(a.bse["power(v)"], rel=3e-4)
    shift = -2 * delta * np.log(10.0)
    if key == "var_const_power":
        # log c takes delta log 10, so its SE (and the intercept's) change
        # with Cov(log c, delta): only c's value is compared
        assert b.params["const(v)"] == pytest.approx(
            a.params["const(v)"] * 10 ** delta, rel=1e-4)
    assert b.params["var:Intercept"] == pytest.approx(
        a.params["var:Intercept"] + shift, abs=1e-4 * a.bse["var:Intercept"])
    assert b.bse["var:half[T.late]"] == pytest.approx(a.bse["var:half[T.late]"],
                                                      rel=1e-4)
    np.testing.assert_allclose(b.fe_params, a.fe_params, rtol=1e-7)


def test_reordering_rows_and_groups(orthodont):
    rng = np.random.default_rng(0)
    shuffled = orthodont.iloc[rng.permutation(len(orthodont))]
    shuffled = shuffled.assign(Subject="z" + shuffled["Subject"])
    fits = [hmf.hetmixedlm("distance ~ age + Sex", d, groups="Subject",
                           var_power="fitted").fit(reml=True)
            for d in (orthodont, shuffled)]
    a, b = fits
    assert b.llf == pytest.approx(a.llf, rel=1e-10)
    np.testing.assert_allclose(np.asarray(b.params), np.asarray(a.params), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(b.bse), np.asarray(a.bse), rtol=1e-4)


def test_rescaling_the_response_with_fitted_values(orthodont):
    """y -> 10 y: fitted values scale by 10, delta unchanged, llf shifts by
    -N log 10 (ML)."""
    fits = [hmf.hetmixedlm("distance ~ age + Sex", orthodont.assign(
        distance=orthodont["distance"] * k), groups="Subject",
        var_power="fitted").fit(reml=False) for k in (1.0, 10.0)]
    a, b = fits
    assert b.params["power(fitted)"] == pytest.approx(
        a.params["power(fitted)"], abs=1e-5 * a.bse["power(fitted)"])
    assert b.llf == pytest.approx(a.llf - len(orthodont) * np.log(10.0), rel=1e-9)


# ----------------------------------------------------------------------
# errors
@pytest.mark.parametrize("method", ["ML", "REML"])
def test_var_by_with_power_is_log_link(orthodont, method):
    """var_by with var_power: one log variance per level (nlme's
    varComb(varIdent, varPower)), not additive variances."""
    ref = REFS[f"orthodont/lme_ri/ident_sex*power_age/{method}"]
    model = hmf.hetmixedlm("distance ~ age + Sex", orthodont, groups="Subject",
                           var_by="Sex", var_power="age")
    assert model.var_link == "log"
    res = model.fit(reml=method == "REML")
    assert res.llf == pytest.approx(ref["logLik"], rel=1e-6)
    nat = ref["var"]["natural_all"]
    log_ratio = res.params["var:C(Sex)[Male]"] - res.params["var:C(Sex)[Female]"]
    assert log_ratio == pytest.approx(2 * np.log(nat["A.Male"]), abs=1e-4)
    assert res.params["power(age)"] == pytest.approx(nat["B.power"], abs=1e-4)


def test_bad_input(orthodont):
    def make(data=orthodont, **kwargs):
        return hmf.hetmixedlm("distance ~ age + Sex", data, groups="Subject", **kwargs)

    with pytest.raises(ValueError, match="has zeros.*var_const_power"):
        make(orthodont.assign(v=orthodont["age"] - 8), var_power="v")
    make(orthodont.assign(v=orthodont["age"] - 8), var_const_power="v")  # allowed
    with pytest.raises(ValueError, match=r"Missing values in \['v'\]"):
        make(orthodont.assign(v=np.where(orthodont["occ"] == 2, np.nan,
                                         orthodont["age"])), var_power="v")
    dropped = make(orthodont.assign(v=np.where(orthodont["occ"] == 2, np.nan,
                                               orthodont["age"])),
                   var_power="v", missing="drop")
    assert dropped.nobs == 81
    with pytest.raises(ValueError, match="not numeric|non-numeric"):
        make(var_power="Sex")
    with pytest.raises(ValueError, match="numeric column of data.*'fitted'"):
        make(var_power="nope")
    with pytest.raises(ValueError, match="same covariate.*Give one of them"):
        make(var_power="age", var_const_power="age")
    with pytest.raises(ValueError, match="same covariate"):
        make(var_power="fitted", var_const_power="fitted")
    with pytest.raises(NotImplementedError, match="location-scale"):
        make(var_power="age", var_re_formula="~ 1")
    y, X = orthodont["distance"], np.ones((len(orthodont), 1))
    with pytest.raises(ValueError, match="array .* or 'fitted'"):
        HetMixedLM(y, X, orthodont["Subject"], var_power="age")


def test_constpower_fitted_where_nlme_failed():
    """bodyweight varConstPower(fitted), REML: nlme stops with 'Singularity
    in backsolve'; ML: nlme's estimate (const 3.7e6, sigma 8.5e-7, README:
    llf only) has a lower likelihood than ours.  Ours reach the fixed point,
    with a zero gradient at the v they hold."""
    data = pd.read_csv(CSV / "bodyweight.csv")
    for reml in (False, True):
        model = hmf.hetmixedlm("weight ~ Time * Diet", data, groups="Rat",
                               re_formula="~ Time", var_const_power="fitted")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = model.fit(reml=reml)
        assert res.converged and res.fixed_point.converged
        g = model.score(np.asarray(res.params_natural)[model.k_fe:])
        # converged by the fitter's own criterion, the Newton decrement
        # g' (-H)^-1 g, here at the v the model holds (the fixed point's);
        # per parameter, g_k SE_k reaches 1e-4 along const's flat direction
        # (SE 2.6e12), where the decrement is 2e-11
        cov = np.asarray(res.cov_params_natural())[model.k_fe:, model.k_fe:]
        assert g @ cov @ g < optim.NEWTON_DECREMENT_TOL
        if not reml:
            ref = CORRELATION["bodyweight/lme_rs/indep/constpower_fitted/ML"]
            assert res.llf > ref["logLik"] + 0.05


def test_zero_fitted_values_during_the_iteration():
    g = np.repeat(np.arange(10), 4)
    # +-1 in equal numbers: the OLS fitted values of an intercept-only mean
    # (the iteration's first v) are exactly 0
    y = np.tile([1.0, -1.0, 2.0, -2.0], 10)
    data = pd.DataFrame({"y": y, "g": g})
    model = hmf.hetmixedlm("y ~ 1", data, groups="g", var_power="fitted")
    with pytest.raises(ValueError, match="fitted values are exactly 0"):
        model.fit()


# ----------------------------------------------------------------------
# with a residual correlation structure (r_correlation.json)
def _nlme_correlation(res, ref):
    """nlme's correlation parameters under our names."""
    nat = ref["cor"]["natural"]
    nat = list(nat.values()) if isinstance(nat, dict) else nat
    return dict(zip(res.correlation_params.index, np.asarray(nat, dtype=float)))


def _check_fe_se(res, ref):
    """Fixed-effect SEs within 1% of nlme's (its convention: vcov_factor)."""
    names = [nlme_spec.fixef_name(n) for n in ref["fixef_se"]]
    factor = check_dense.vcov_factor(ref, int(res.nobs), len(names))
    np.testing.assert_allclose(np.asarray(res.bse[names]) * np.sqrt(factor),
                               list(ref["fixef_se"].values()), rtol=0.01)


CORR_COVARIATE_KEYS = [
    f"{case}/{method}" for method in ("ML", "REML") for case in (
        "orthodont/lme_ri/ar1/power_age", "sleepgaps/lme_ri/ar1/power_day1",
        "sleepgaps/lme_ri/ar1/constpower_day1", "sleepgaps/lme_ri/arma11/power_day1")]


@pytest.mark.parametrize("key", CORR_COVARIATE_KEYS)
def test_covariate_with_correlation_against_nlme(key):
    """Estimates to 1e-4 (in units of the larger of the value and its SE),
    or to 3 sqrt(d) where nlme's Newton decrement d at its estimates shows
    it stopped short (sleepgaps constpower ML: d = 2.8e-8, var(Subject)
    1.2e-4 from ours, whose llf is 1.7e-8 higher)."""
    model, res, expected = _fit(key)
    ref = REFS[key]
    assert res.converged and res.fixed_point is None
    _check_fe_se(res, ref)
    expected.update(_nlme_correlation(res, ref))
    natural = np.array([expected[n] for n in model.layout.structure_names])
    ev, g = model._objective(reml=ref["method"] == "REML").evaluate_natural(
        natural, info=True)
    assert ev.llf == pytest.approx(ref["logLik"], rel=1e-10)
    decrement = float(g @ np.linalg.solve(ev.info, g))
    _compare(res, expected, ref, max(1e-4, 3 * np.sqrt(decrement)))


CORR_FITTED_KEYS = [
    f"{case}/{method}" for method in ("ML", "REML") for case in (
        "orthodont/lme_ri/ar1/power_fitted", "bodyweight/lme_rs/car1/power_fitted",
        "bodyweight/lme_rs/ar1/power_fitted", "bodyweight/lme_ri/ma2/power_fitted")
] + ["ovary/lme_ri/ar1/power_fitted/ML"]


@pytest.mark.parametrize("key", CORR_FITTED_KEYS)
def test_fitted_with_correlation_against_nlme(key):
    """nlme's fixed point, reached from the correlation start
    (``HetMixedLM._correlation_start``) by the first fit of the iteration;
    tolerance from nlme's Newton decrement at its own v, as
    ``test_fitted_against_nlme`` (orthodont: 6e-8, 3 sqrt of it 7e-4)."""
    model, res, expected = _fit(key)
    ref = REFS[key]
    assert res.fixed_point.converged
    _check_fe_se(res, ref)
    expected.update(_nlme_correlation(res, ref))
    llf_nlme, decrement = _nlme_decrement(model, ref, expected)
    assert llf_nlme == pytest.approx(ref["logLik"], rel=1e-10)
    _compare(res, expected, ref, max(1e-4, 3 * np.sqrt(decrement)))


def test_fitted_with_correlation_where_nlme_stopped_short():
    """bodyweight car1 + varConstPower(fitted): nlme's estimates are not a
    maximum at its own v: its logLik is our likelihood there, with a Newton
    decrement of 0.37 (0.6 standard errors from the maximum; REML 0.40,
    README there: apVar not positive definite).  Our iteration reaches a
    fixed point whose likelihood is higher by 0.26 (REML 0.28).  sleepgaps
    ar1 + varPower(fitted) is the same story (decrement 1.7 ML, 1.6 REML;
    ours 0.38 and 0.28 higher), not run here for time."""
    key = "bodyweight/lme_rs/car1/constpower_fitted/ML"
    model, res, expected = _fit(key)
    ref = REFS[key]
    assert res.fixed_point.converged and res.converged
    expected.update(_nlme_correlation(res, ref))
    llf_nlme, decrement = _nlme_decrement(model, ref, expected)
    assert llf_nlme == pytest.approx(ref["logLik"], rel=1e-10)
    assert decrement > 0.3
    assert res.llf > ref["logLik"] + 0.2


def test_fixed_point_with_correlation_starts_from_the_correlation_start(monkeypatch):
    """The first fit of the fixed-point iteration starts, as a fit without
    fitted values does, from the fit without the correlation structure
    (``_correlation_start``), not from the OLS start with a weak
    correlation."""
    from statsmodels_hetmixed import fixedpoint

    ref = REFS["orthodont/lme_ri/ar1/power_fitted/ML"]
    model = hmf.hetmixedlm(ref["spec"]["fixed"], _data(ref),
                           **nlme_spec.model_arguments(ref["spec"]))
    starts, firsts = [], []
    correlation_start, estimate = HetMixedLM._correlation_start, fixedpoint.optim.estimate

    def spy_start(self, reml):
        starts.append(correlation_start(self, reml))
        return starts[-1]

    def spy_estimate(objective, free, *args, **kwargs):
        firsts.append(np.array(free))
        return estimate(objective, free, *args, **kwargs)

    monkeypatch.setattr(HetMixedLM, "_correlation_start", spy_start)
    monkeypatch.setattr(fixedpoint.optim, "estimate", spy_estimate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fixed point not reached in 2 fits
        model.fit(reml=False, fitted_maxiter=2)
    assert starts and np.array_equal(firsts[0], starts[-1])
