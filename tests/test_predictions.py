"""Predicted random effects, fitted values and residuals against nlme
(tests/results/r_ranef.json, made by r_ranef.R: HSB, mathach ~ female,
random intercept, varIdent(~1|female), ML)."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import HetMixedLM

from .conftest import RESULTS


@pytest.fixture(scope="module")
def ref():
    with open(RESULTS / "r_ranef.json") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def fit(hsb_data):
    return hmf.hetmixedlm("mathach ~ female", hsb_data, groups="school",
                          var_formula="~ female").fit(reml=False)


def test_random_effects_match_nlme(ref, fit):
    assert fit.llf == pytest.approx(ref["llf"], abs=1e-6)
    ours = np.array([fit.random_effects[s].iloc[0] for s in ref["ranef_school"]])
    np.testing.assert_allclose(ours, ref["ranef"], rtol=1e-5, atol=1e-5)


def test_fitted_values_and_residuals_match_nlme(ref, fit):
    rows = np.array(ref["rows"]) - 1  # R counts from 1
    np.testing.assert_allclose(np.asarray(fit.fittedvalues)[rows], ref["fitted"],
                               rtol=1e-6)
    for kind in ("response", "pearson", "normalized"):
        np.testing.assert_allclose(np.asarray(fit.residuals(kind))[rows],
                                   ref[f"resid_{kind}"], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# predict / get_prediction on new data, against nlme's predict(level = 0:1)
# (tests/results/predict/r_predict.json, made by r_predict.R).
PRED = RESULTS / "predict"


@pytest.fixture(scope="module")
def pred_ref():
    with open(PRED / "r_predict.json") as fh:
        return json.load(fh)


def _orthodont(frame):
    frame = frame.copy()
    frame["female"] = (frame["Sex"] == "Female").astype(float)
    return frame


@pytest.fixture(scope="module")
def hsb_fit(hsb_data):
    return hmf.hetmixedlm("mathach ~ female + ses", hsb_data, groups="school",
                          var_formula="~ female + ses").fit(reml=False)


@pytest.fixture(scope="module")
def orth_data():
    return _orthodont(pd.read_csv(PRED / "orthodont.csv"))


@pytest.fixture(scope="module")
def orth_fit(orth_data):
    return hmf.hetmixedlm("distance ~ age + Sex", orth_data, groups="Subject",
                          re_formula="~ age", var_formula="~ female").fit(reml=True)


def _new(case):
    frame = pd.read_csv(PRED / f"newdata_{case}.csv")
    return _orthodont(frame) if case == "orthodont" else frame


@pytest.mark.parametrize("case", ["hsb", "orthodont"])
def test_point_predictions_match_nlme(case, pred_ref, hsb_fit, orth_fit):
    ref = pred_ref[case]
    fit = hsb_fit if case == "hsb" else orth_fit
    assert fit.llf == pytest.approx(ref["llf"], abs=1e-5)
    new = _new(case)
    level0 = np.asarray(ref["level0"], dtype=float)
    level1 = np.array([np.nan if v is None else v for v in ref["level1"]])
    np.testing.assert_allclose(fit.predict(new, conditional=False), level0,
                               rtol=1e-6)
    ours = fit.get_prediction(new, conditional=None)
    known = ~np.isnan(level1)
    assert known.sum() >= 5 and (~known).sum() == 2
    # Groups nlme knows: conditional; the unseen group: marginal (level 0).
    np.testing.assert_array_equal(ours.conditional, known)
    expected = np.where(known, level1, level0)
    np.testing.assert_allclose(ours.predicted_mean, expected, rtol=1e-6)
    np.testing.assert_allclose(fit.predict(new, conditional=None), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="not in the fitted data"):
        fit.predict(new, new_groups="raise", conditional=None)


def test_random_slope_prediction_is_fixed_plus_blups(orth_fit):
    """A known subject's line is the fixed line plus its intercept and age
    slope (random_effects), at any age, also outside the data's ages."""
    new = pd.DataFrame({"Subject": ["F03"] * 3, "age": [3.0, 11.0, 40.0],
                        "Sex": "Female", "female": 1.0})
    u = orth_fit.random_effects["F03"]
    fixed = orth_fit.predict(new, conditional=False)
    np.testing.assert_allclose(orth_fit.predict(new, conditional=None),
                               fixed + u["Subject"] + u["age"] * new["age"],
                               rtol=1e-12)


def _henderson_pev(fit, group, x, z, Rinv=None):
    """Prediction error variance of x'b + z'u_g from the inverse of the full
    mixed-model equations (dense, every group), the textbook route;
    ``Rinv``: the inverse residual covariance of all rows (n, n),
    diag(1 / resid_var) by default."""
    model = fit.model
    X = model.exog
    n, q, m = len(X), fit.k_re, model.n_groups
    Z = np.zeros((n, q * m))
    for i, lab in enumerate(model.group_labels):
        idx = model.row_indices[lab]
        Z[np.ix_(idx, np.arange(i * q, (i + 1) * q))] = model.exog_re[idx]
    if Rinv is None:
        Rinv = np.diag(1.0 / np.asarray(fit.resid_var))
    ginv = np.kron(np.eye(m), np.linalg.inv(np.asarray(fit.cov_re)))
    mme = np.block([[X.T @ Rinv @ X, X.T @ Rinv @ Z],
                    [Z.T @ Rinv @ X, Z.T @ Rinv @ Z + ginv]])
    C = np.linalg.inv(mme)
    out = []
    for xr, zr, g in zip(x, z, group):
        vec = np.zeros(C.shape[0])
        vec[:X.shape[1]] = xr
        i = model.group_labels.index(g)
        vec[X.shape[1] + i * q: X.shape[1] + (i + 1) * q] = zr
        out.append(vec @ C @ vec)
    return np.array(out)


def test_conditional_se_is_henderson_prediction_error_variance(orth_fit):
    new = _new("orthodont").iloc[:5]
    pred = orth_fit.get_prediction(new, conditional=None)
    x = orth_fit._transform_predict_exog(new)[0]
    z = np.column_stack([np.ones(len(new)), new["age"]])
    expected = _henderson_pev(orth_fit, list(new["Subject"]), x, z)
    np.testing.assert_allclose(pred.var_pred_mean, expected, rtol=1e-8)
    # The fixed-effect block of the MME inverse is cov_params' (as a check
    # that the comparison uses the same C).
    assert np.all(pred.var_re == 0)


def test_interval_components(orth_fit):
    """Marginal rows: mean variance x'Cx, a new observation adds z'Gz and
    sigma2 from the variance function; conditional rows add only sigma2."""
    new = _new("orthodont")
    pred = orth_fit.get_prediction(new, conditional=None)
    frame = pred.summary_frame(alpha=0.1)
    x = orth_fit._transform_predict_exog(new)[0]
    C = np.asarray(orth_fit.cov_params())[:3, :3]
    z = np.column_stack([np.ones(len(new)), new["age"]])
    G = np.asarray(orth_fit.cov_re)
    sigma2 = np.asarray(orth_fit.predict_variance(new))
    marg = ~pred.conditional
    np.testing.assert_allclose(pred.var_pred_mean[marg],
                               np.einsum("ip,pq,iq->i", x, C, x)[marg], rtol=1e-10)
    expected_obs = pred.var_pred_mean + sigma2 + np.where(
        marg, np.einsum("ia,ab,ib->i", z, G, z), 0.0)
    np.testing.assert_allclose(pred.se_obs ** 2, expected_obs, rtol=1e-10)
    q = 1.6448536269514722  # normal 95% quantile: alpha = 0.1, no df_fe
    np.testing.assert_allclose(frame["obs_ci_upper"] - frame["mean"],
                               q * pred.se_obs, rtol=1e-10)
    np.testing.assert_allclose(frame["mean_ci_lower"],
                               frame["mean"] - q * frame["mean_se"], rtol=1e-10)
    assert list(frame.columns) == ["mean", "mean_se", "mean_ci_lower",
                                   "mean_ci_upper", "obs_ci_lower",
                                   "obs_ci_upper", "conditional"]
    # Girls' residual variance differs from boys': it enters their intervals.
    assert sigma2[new["female"] == 1][0] != pytest.approx(sigma2[new["female"] == 0][0])


def test_t_quantiles_with_small_sample_df(orth_data):
    """With fit(ddf=...), intervals use t quantiles with the df of each
    row's contrast x'beta, as t_test gives it."""
    model = hmf.hetmixedlm("distance ~ age + Sex", orth_data, groups="Subject",
                           re_formula="~ age", var_formula="~ female")
    base = model.fit().get_prediction(_new("orthodont"), conditional=None)
    fit = model.fit(ddf="kenward-roger")
    new = _new("orthodont")
    pred = fit.get_prediction(new, conditional=None)
    frame = pred.summary_frame()
    x = fit._transform_predict_exog(new)[0]
    expected_df = [float(np.ravel(fit.t_test(row).df_denom)[0]) for row in x]
    np.testing.assert_allclose(pred.df, expected_df, rtol=1e-10)
    half = frame["mean_ci_upper"] - frame["mean"]
    np.testing.assert_allclose(half, stats.t.ppf(0.975, expected_df) * frame["mean_se"])
    assert (pred.df < 200).all()
    assert base.df is None


def test_in_sample(orth_fit):
    np.testing.assert_allclose(orth_fit.predict(conditional=None), orth_fit.fittedvalues)
    np.testing.assert_allclose(orth_fit.predict(conditional=False),
                               orth_fit.model.exog @ orth_fit.fe_params)
    pred = orth_fit.get_prediction(conditional=None)
    assert pred.conditional.all()
    np.testing.assert_allclose(pred.var_resid, orth_fit.resid_var)


def test_prediction_invariant_to_row_order_and_group_labels(orth_data, orth_fit):
    new = _new("orthodont")
    frame = orth_fit.get_prediction(new, conditional=None).summary_frame()
    perm = np.random.default_rng(3).permutation(len(new))
    shuffled = orth_fit.get_prediction(new.iloc[perm], conditional=None).summary_frame()
    pd.testing.assert_frame_equal(shuffled.loc[frame.index], frame, rtol=1e-12)
    # Relabel the subjects (another sort order of the labels too) and refit.
    relabel = {s: f"s{k:02d}" for k, s in enumerate(sorted(orth_data["Subject"].unique())[::-1])}
    data = orth_data.iloc[np.random.default_rng(4).permutation(len(orth_data))].copy()
    data["Subject"] = data["Subject"].map(relabel)
    refit = hmf.hetmixedlm("distance ~ age + Sex", data, groups="Subject",
                           re_formula="~ age", var_formula="~ female").fit(reml=True)
    new2 = new.copy()
    new2["Subject"] = new2["Subject"].map(relabel).fillna("unseen")
    other = refit.get_prediction(new2, conditional=None).summary_frame()
    pd.testing.assert_frame_equal(other, frame, rtol=1e-5)


def test_array_interface(orth_data, orth_fit):
    """Arrays: groups and exog_re given explicitly, exog_var for intervals."""
    model = orth_fit.model
    exog = pd.DataFrame(model.exog, columns=model.exog_names)
    arr = HetMixedLM(orth_data["distance"], exog, orth_data["Subject"],
                     exog_re=np.column_stack([np.ones(len(orth_data)), orth_data["age"]]),
                     exog_var=np.column_stack([np.ones(len(orth_data)), orth_data["female"]]))
    fit = arr.fit(reml=True)
    new = _new("orthodont")
    x = orth_fit._transform_predict_exog(new)[0]
    z = np.column_stack([np.ones(len(new)), new["age"]])
    w = np.column_stack([np.ones(len(new)), new["female"]])
    frame = fit.get_prediction(x, groups=new["Subject"], exog_re=z,
                               exog_var=w, conditional=None).summary_frame()
    ref = orth_fit.get_prediction(new, conditional=None).summary_frame()
    np.testing.assert_allclose(frame.drop(columns="conditional"),
                               ref.drop(columns="conditional"), rtol=1e-5)
    # Without groups: marginal (MixedLM's predict); intervals need exog_var.
    np.testing.assert_allclose(fit.predict(x, conditional=None), x @ fit.fe_params)
    with pytest.raises(ValueError, match="exog_var"):
        fit.get_prediction(x, exog_re=z, conditional=None)
    with pytest.raises(ValueError, match="exog_re"):
        fit.predict(x, groups=new["Subject"], conditional=None)


def test_bad_input(hsb_fit):
    new = pd.read_csv(PRED / "newdata_hsb.csv")
    with pytest.raises(ValueError, match=r"lack column\(s\) \['ses'\]"):
        hsb_fit.predict(new.drop(columns="ses"), conditional=None)
    with pytest.raises(ValueError, match="groups"):
        hsb_fit.predict(new.drop(columns="school"), conditional=True)
    # No groups column: marginal for every row, said so.
    pred = hsb_fit.get_prediction(new.drop(columns="school"), conditional=None)
    assert not pred.conditional.any()
    with pytest.raises(ValueError, match="same type"):
        hsb_fit.predict(new.assign(school=new["school"].astype(str)), conditional=None)
    with pytest.raises(ValueError, match="new_groups"):
        hsb_fit.predict(new, new_groups="drop", conditional=None)
    # Missing values: NaN in those rows only, the others unchanged; a
    # missing group label is an unknown group.
    holes = new.astype({"school": float}).copy()
    holes.loc[1, "ses"] = np.nan
    holes.loc[2, "school"] = np.nan
    frame = hsb_fit.get_prediction(holes, conditional=None).summary_frame()
    full = hsb_fit.get_prediction(new, conditional=None).summary_frame()
    assert frame.loc[1, ["mean", "mean_se", "obs_ci_upper"]].isna().all()
    keep = [0, 3, 4, 5, 6, 7]
    pd.testing.assert_frame_equal(frame.loc[keep], full.loc[keep])
    assert not frame.loc[2, "conditional"]
    assert frame.loc[2, "mean"] == pytest.approx(
        hsb_fit.predict(new.iloc[[2]], conditional=False).iloc[0])


def test_location_scale_refused():
    from .conftest import simulate_recoding_data

    data = simulate_recoding_data()
    fit = hmf.hetmixedlm("y ~ year", data, groups="g", var_formula="~ year",
                         var_re_formula="~ 1")
    res = fit.fit(reml=False, n_quad=1)
    with pytest.raises(NotImplementedError, match="location-scale"):
        res.get_prediction(data.head(), conditional=None)


def test_pickled_model_rebuilds_re_design(orth_fit):
    """The random-effects formula's design is rebuilt after unpickling."""
    import pickle

    back = pickle.loads(pickle.dumps(orth_fit))
    new = _new("orthodont")
    pd.testing.assert_frame_equal(back.get_prediction(new, conditional=None).summary_frame(),
                                  orth_fit.get_prediction(new, conditional=None).summary_frame())


def test_variance_components(hsb_data):
    """Models with variance components: intervals for the fitted rows (the
    padded design), the fixed part for new rows, an error for conditional
    predictions of new rows."""
    data = hsb_data[hsb_data["school"].isin(hsb_data["school"].unique()[:30])].copy()
    data["cls"] = data.groupby("school").cumcount() % 3
    fit = hmf.hetmixedlm("mathach ~ female", data, groups="school",
                         vc_formula={"cls": "0 + C(cls)"},
                         var_formula="~ female").fit()
    pred = fit.get_prediction(conditional=None)
    np.testing.assert_allclose(pred.predicted_mean, fit.fittedvalues)
    assert np.all(pred.var_pred_mean > 0)
    new = pd.DataFrame({"school": [1224, 5], "female": [0, 1], "cls": [0, 1]})
    np.testing.assert_allclose(fit.predict(new, conditional=False),
                               fit.fe_params.iloc[0] + fit.fe_params.iloc[1] * new["female"])
    with pytest.raises(NotImplementedError, match="variance components"):
        fit.predict(new, conditional=None)


def test_default_is_mixedlm_predict(orth_fit):
    """By default predict and get_prediction give MixedLM's fixed-part
    predictions, for the fitted rows and for new rows with a groups
    column alike, so that code written for MixedLM gets the same numbers."""
    x = np.asarray(orth_fit.model.exog)
    np.testing.assert_allclose(orth_fit.predict(), x @ orth_fit.fe_params)
    new = _new("orthodont")
    fixed = orth_fit._transform_predict_exog(new)[0] @ orth_fit.fe_params
    np.testing.assert_allclose(orth_fit.predict(new), fixed)
    pred = orth_fit.get_prediction(new)
    assert not pred.conditional.any()
    np.testing.assert_allclose(pred.predicted_mean, fixed)


# ----------------------------------------------------------------------------
# Conditional intervals with a residual correlation structure

def _corr_data():
    from .test_robust_correlation import gappy_data
    return gappy_data(seed=11, m=16, slope_sd=0.4)


def _corr_new(data):
    """Rows of fitted groups at observed times, at times in their gaps and
    beyond, and rows of a new group."""
    groups = sorted(data["g"].unique())[:3]
    new = pd.DataFrame({"g": np.repeat(groups + ["new"], 3),
                        "t": [0.0, 3.0, 9.0] * 4,
                        "x": np.linspace(-1, 1, 12),
                        "w": np.linspace(1, -1, 12)})
    return new


@pytest.fixture(scope="module", params=["ar1", "toeplitz(2)"])
def corr_fit(request):
    data = _corr_data()
    model = hmf.hetmixedlm("y ~ x + t", data, groups="g", re_formula="~ t",
                           var_formula="~ w", correlation=request.param, time="t")
    return model.fit()


def test_conditional_intervals_with_correlation_against_dense(corr_fit):
    """Henderson's prediction error variance with R_i = S_i C_i S_i: the
    mixed-model equations with the dense R^-1 (from resid_cov), on groups of
    2-6 rows with gaps in their times."""
    res = corr_fit
    model = res.model
    assert np.all(np.abs(np.asarray(res.correlation_params)) > 0.05)
    n = model.nobs
    Rinv = np.zeros((n, n))
    for label in model.group_labels:
        rows = res._group_correlation(label)[0]
        Rinv[np.ix_(rows, rows)] = np.linalg.inv(res.resid_cov(label).to_numpy())
    new = _corr_new(model.data.frame)
    pred = res.get_prediction(new, conditional=None)
    cond = pred.conditional
    assert cond.sum() == 9 and not cond[9:].any()
    x = np.column_stack([np.ones(12), new["x"], new["t"]])
    z = np.column_stack([np.ones(12), new["t"]])
    expected = _henderson_pev(res, list(new["g"][cond]), x[cond], z[cond], Rinv)
    np.testing.assert_allclose(pred.var_pred_mean[cond], expected, rtol=1e-8)
    # the new observation's residual variance: the marginal sigma2_ij (the
    # new residual taken as uncorrelated with the group's observed ones)
    np.testing.assert_allclose(pred.var_resid, res.predict_variance(new), rtol=1e-12)
    np.testing.assert_allclose(pred.se_obs ** 2, pred.var_pred_mean + pred.var_resid
                               + pred.var_re, rtol=1e-12)
    assert np.all(pred.var_re[cond] == 0) and np.all(pred.var_re[~cond] > 0)
    # the fitted rows: the same formula at their own designs
    own = res.get_prediction(conditional=None)
    labels = [model.group_labels[i] for i in model._group_index]
    expected = _henderson_pev(res, labels, model.exog, model.exog_re, Rinv)
    np.testing.assert_allclose(own.var_pred_mean, expected, rtol=1e-8)
    np.testing.assert_allclose(own.var_resid, res.resid_var, rtol=1e-12)


def test_conditional_intervals_at_zero_correlation_are_the_uncorrelated_ones():
    data = _corr_data()
    kw = dict(groups="g", re_formula="~ t", var_formula="~ w")
    base = hmf.hetmixedlm("y ~ x + t", data, **kw).fit()
    model = hmf.hetmixedlm("y ~ x + t", data, correlation="ar1", time="t", **kw)
    start = np.concatenate([np.asarray(base.params)[base.k_fe:], [0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # do_cg=False: not optimised
        at_zero = model.fit(start_params=start, do_cg=False)
    assert at_zero.correlation_params.iloc[0] == 0.0
    new = _corr_new(data)
    for kwargs in ({"exog": new, "conditional": None}, {}):
        ours = at_zero.get_prediction(**kwargs).summary_frame()
        plain = base.get_prediction(**kwargs).summary_frame()
        np.testing.assert_allclose(ours.drop(columns="conditional"),
                                   plain.drop(columns="conditional"), rtol=1e-9)
