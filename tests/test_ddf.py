"""Small-sample df of the fixed effects (ddf.py and its use in results):
against lmerTest / pbkrtest, against a dense finite-difference version of the
same formulas for heteroskedastic models, invariance, and the plumbing."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import ddf as ddf_module
from statsmodels_hetmixed.structures import PowerVariance

from .dense_ddf import kenward_roger_parts

HERE = Path(__file__).resolve().parent / "results" / "ddf"
REF = json.loads((HERE / "r_ddf.json").read_text())["cases"]
R_NAMES = {"(Intercept)": "Intercept", "SexMale": "Sex[T.Male]"}
SPECS = {"sleepstudy": ("Reaction ~ Days", "~ Days"),
         "orthodont": ("distance ~ age + Sex", "~ age")}
RTOL = 1e-3  # the acceptance; measured: 1.1e-5 or less


def _r_case(case):
    base = case.replace("_unbalanced", "").replace("_ml", "")
    name = base + ("_unbalanced" if "unbalanced" in case else "") + ".csv"
    formula, re_formula = SPECS[base]
    return pd.read_csv(HERE / name), formula, re_formula, not case.endswith("_ml")


def _by_name(named):
    return pd.Series({R_NAMES.get(k, k): v for k, v in named.items()})


def _fit(data, formula, re_formula, reml, ddf, **kw):
    model = hmf.hetmixedlm(formula, data, groups="Subject", re_formula=re_formula, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(reml=reml, ddf=ddf)


R_METHODS = [(case, method) for case in REF
             for method in ("satterthwaite", "kenward_roger") if method in REF[case]]


@pytest.mark.parametrize("case,method", R_METHODS)
def test_against_lmertest_and_pbkrtest(case, method):
    data, formula, re_formula, reml = _r_case(case)
    ref, r = REF[case], REF[case][method]
    res = _fit(data, formula, re_formula, reml, method.replace("_", "-"))
    names = list(res.fe_params.index)
    # per coefficient: df, t, p (KR: with the adjusted covariance)
    for key, ours in (("df", res.df_fe), ("t", res.tvalues[names]),
                      ("p", res.pvalues[names])):
        np.testing.assert_allclose(ours[names], _by_name(r[key])[names], rtol=RTOL,
                                   err_msg=f"{case} {method} {key}")
    if method == "kenward_roger":
        adj = pd.DataFrame(r["vcov_adj"]["values"], index=r["vcov_adj"]["rownames"],
                           columns=r["vcov_adj"]["colnames"])
        adj = adj.rename(index=R_NAMES, columns=R_NAMES).loc[names, names]
        # (entries that are zero in exact arithmetic: absolute)
        np.testing.assert_allclose(res.cov_params().loc[names, names], adj, rtol=RTOL,
                                   atol=1e-9 * np.abs(adj.to_numpy()).max())
        np.testing.assert_allclose(res.bse_fe, np.sqrt(np.diag(adj)), rtol=RTOL)
    # a one-row contrast and a multi-row F test, in R's column order
    order = [names.index(R_NAMES.get(n, n)) for n in ref["fixef"]]
    l1 = np.zeros(len(names))
    l1[order] = ref["L1"]
    t = res.t_test(l1)
    for ours, key in ((t.df_denom[0], "df"), (t.tvalue[0, 0] if np.ndim(t.tvalue) == 2
                                              else t.tvalue[0], "t"),
                      (t.pvalue.item(), "p"), (t.sd.item(), "se")):
        np.testing.assert_allclose(ours, r["L1"][key], rtol=RTOL, err_msg=key)
    L = np.zeros((len(ref["L"]["values"]), len(names)))
    L[:, order] = ref["L"]["values"]
    f = res.wald_test(L, scalar=True)
    np.testing.assert_allclose([f.fvalue, f.df_denom, f.pvalue],
                               [r["L"]["F"], r["L"]["ddf"], r["L"]["p"]], rtol=RTOL)
    assert f.df_num == r["L"]["ndf"]


# ----------------------------------------------------------------------
# Heteroskedastic models: the analytic df against a brute-force version of
# the same formulas (dense V, its derivatives and those of Phi by central
# differences).
def _sim(seed=1, groups=14):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 9, groups)
    g = np.repeat(np.arange(groups), sizes)
    n = g.size
    w = rng.normal(size=groups)[g]              # group level
    x = rng.normal(size=n) + 0.3 * w
    b = rng.integers(0, 2, n)
    k = rng.integers(0, 3, n)
    u0, u1 = rng.normal(size=(2, groups)) * [[1.0], [0.4]]
    sd = np.exp(0.5 * (0.2 + 0.6 * b - 0.3 * x))
    y = 1 + 0.5 * x + 0.4 * w + u0[g] + u1[g] * x + sd * rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "w": w, "b": b, "k": k, "Subject": g,
                         "v": rng.uniform(0.5, 3.0, n)})


HET_MODELS = {
    "loglinear+slope": dict(re_formula="~ x", var_formula="~ x + b"),
    "var_by": dict(re_formula="1", var_by="b"),
    "power": dict(re_formula="1", var_formula="~ b"),
    "vc": dict(re_formula="1", vc_formula={"k": "0 + C(k)"}, var_formula="~ b"),
}


def _het_fit(name, reml, ddf, data=None):
    data = _sim() if data is None else data
    kw = dict(HET_MODELS[name])
    if name == "power":
        kw["variance_blocks"] = [PowerVariance(data["v"].to_numpy(), "v")]
    re_formula = kw.pop("re_formula")
    return _fit(data, "y ~ x + w", re_formula, reml, ddf, **kw)


def _brute_force(res, method):
    """df per fixed effect and (KR) the adjusted covariance by the formulas
    of lmerTest / pbkrtest with dense matrices and finite differences."""
    model = res.model
    objective = model._objective(reml=res.reml)
    lay, grouped = objective.layout, objective.grouped
    theta = np.asarray(res._natural, float)
    X, Z, gi = model.exog, grouped.exog_z, grouped.group_index
    same = gi[:, None] == gi[None, :]

    def dense_v(t):
        L = lay.factor(t)
        return np.where(same, Z @ L @ L.T @ Z.T, 0.0) + np.diag(lay.resid_var(t))

    def phi(t):
        V = dense_v(t)
        return np.linalg.inv(X.T @ np.linalg.solve(V, X))

    steps = 1e-5 * np.maximum(np.abs(theta), 1e-2)
    def central(f, j):
        e = np.zeros_like(theta)
        e[j] = steps[j]
        return (f(theta + e) - f(theta - e)) / (2 * steps[j])

    index = np.flatnonzero(np.asarray(res.bse)[lay.k_fe:] > 0)  # not held
    Phi = phi(theta)
    if method == "satterthwaite":
        dphi = np.stack([central(phi, j) for j in index])
        A = np.asarray(res.cov_params())[lay.k_fe:, lay.k_fe:][np.ix_(index, index)]
        df = []
        for e in np.eye(lay.k_fe):
            grad = np.einsum("p,kpr,r->k", e, dphi, e)
            df.append(2 * (e @ Phi @ e) ** 2 / (grad @ A @ grad))
        return np.array(df), None
    V = dense_v(theta)
    dV = [central(dense_v, j) for j in index]
    W, adjusted, dphi = kenward_roger_parts(X, V, dV, Phi, res.reml)
    kr = ddf_module.KenwardRoger(list(res.fe_params.index), Phi, dphi, W, adjusted)
    return kr.df_fe.to_numpy(), adjusted


@pytest.mark.parametrize("name,reml", [("loglinear+slope", True), ("var_by", False),
                                       ("power", True), ("vc", True)])
@pytest.mark.parametrize("method", ["satterthwaite", "kenward-roger"])
def test_heteroskedastic_against_brute_force(name, reml, method):
    res = _het_fit(name, reml, method)
    df, adjusted = _brute_force(res, method)
    np.testing.assert_allclose(res.df_fe, df, rtol=1e-4)
    if adjusted is not None:
        np.testing.assert_allclose(res._ddf.cov_fe, adjusted, rtol=1e-4)
        # and the adjustment is not nothing here
        assert not np.allclose(res._ddf.cov_fe, res._ddf.phi, rtol=1e-3)


@pytest.mark.parametrize("method", ["satterthwaite", "kenward-roger"])
def test_held_parameters_are_known(method):
    # fit(free=...): a held covariance parameter is no source of uncertainty
    data = _sim()
    model = hmf.hetmixedlm("y ~ x + w", data, groups="Subject", re_formula="~ x",
                           var_formula="~ x + b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = np.asarray(model.fit().params)[3:].copy()
        start[1] = 0.0  # independent random intercept and slope
        free = np.ones(start.size)
        free[1] = 0
        res = model.fit(start_params=start, free=free, ddf=method)
    df, adjusted = _brute_force(res, method)
    np.testing.assert_allclose(res.df_fe, df, rtol=1e-4)
    if adjusted is not None:
        np.testing.assert_allclose(res._ddf.cov_fe, adjusted, rtol=1e-4)


# ----------------------------------------------------------------------
# Invariance
@pytest.mark.parametrize("method", ["satterthwaite", "kenward-roger"])
def test_invariant_to_units_origin_and_order(method):
    data = _sim()
    base = _het_fit("loglinear+slope", True, method, data)
    # x in other units and from another origin (mean and variance designs);
    # the slope's df and every df under a change of units stay; rows reordered
    recoded = data.assign(x=data["x"] * 100.0 + 7.0)
    other = _het_fit("loglinear+slope", True, method, recoded)
    np.testing.assert_allclose(other.df_fe[["x", "w"]], base.df_fe[["x", "w"]],
                               rtol=1e-4)
    np.testing.assert_allclose(other.bse_fe["x"] * 100.0, base.bse_fe["x"], rtol=1e-4)
    scaled = _het_fit("loglinear+slope", True, method, data.assign(x=data["x"] * 1e3))
    np.testing.assert_allclose(scaled.df_fe, base.df_fe, rtol=1e-4)
    perm = np.random.default_rng(0).permutation(len(data))
    shuffled = _het_fit("loglinear+slope", True, method, data.iloc[perm])
    np.testing.assert_allclose(shuffled.df_fe, base.df_fe, rtol=1e-4)
    np.testing.assert_allclose(shuffled.bse_fe, base.bse_fe, rtol=1e-4)


# ----------------------------------------------------------------------
# Residual and between-within
def test_residual_and_between_within_df():
    data = _sim()
    n, m = len(data), data["Subject"].nunique()
    res = _het_fit("var_by", True, "residual", data)
    assert (res.df_fe == n - 3).all()
    res = _het_fit("var_by", True, "between-within", data)
    # Intercept and w are constant within subjects: m - 2; x varies: n - m - 1
    assert res.df_fe.to_dict() == {"Intercept": m - 2.0, "x": n - m - 1.0,
                                   "w": m - 2.0}
    # a contrast gets the smallest df of the effects it involves
    assert res.t_test([0, 1, 1]).df_denom[0] == m - 2.0
    assert res.wald_test(np.eye(3)[1:]).df_denom == m - 2.0


# ----------------------------------------------------------------------
# Plumbing: every consumer reads the one _ddf
@pytest.fixture(scope="module")
def kr_fit():
    return _het_fit("loglinear+slope", True, "kenward-roger")


def test_default_is_z(kr_fit):
    res = _het_fit("loglinear+slope", True, None)
    assert res.df_fe is None and res.ddf_method is None
    z = res.fe_params / res.bse_fe
    np.testing.assert_allclose(res.pvalues[z.index], 2 * stats.norm.sf(np.abs(z)))
    assert "P>|z|" in str(res.summary()) and "Denominator df" not in str(res.summary())
    # KR changes the fixed effects' SEs only
    np.testing.assert_allclose(res.params, kr_fit.params)
    assert (kr_fit.bse_fe > res.bse_fe).all()
    np.testing.assert_allclose(kr_fit.bse.iloc[3:], res.bse.iloc[3:])


def test_pvalues_conf_int_t_test_wald_test_use_df(kr_fit):
    res = kr_fit
    names = list(res.fe_params.index)
    df = res.df_fe
    assert list(df.index) == names and res.ddf_method == "Kenward-Roger"
    t = res.fe_params / res.bse_fe
    np.testing.assert_allclose(res.pvalues[names], 2 * stats.t.sf(np.abs(t), df))
    ci = res.conf_int(alpha=0.1)
    half = stats.t.ppf(0.95, df) * res.bse_fe
    np.testing.assert_allclose(ci.loc[names, 1] - res.fe_params, half)
    # the variance parameters keep z
    var = "var:x"
    np.testing.assert_allclose(res.pvalues[var],
                               2 * stats.norm.sf(abs(res.params[var] / res.bse[var])))
    # unit contrasts give df_fe; one-row F = t^2 with the same df
    tt = res.t_test(np.eye(3))
    np.testing.assert_allclose(tt.df_denom, df)
    np.testing.assert_allclose(np.ravel(tt.pvalue), res.pvalues[names])
    f = res.wald_test("w = 0", scalar=True)
    np.testing.assert_allclose([f.fvalue, f.df_denom], [t["w"] ** 2, df["w"]])
    np.testing.assert_allclose(f.pvalue, res.pvalues["w"])
    # a contrast on a variance parameter stays a z-test; use_t=False too
    assert res.t_test("var:x = 0").distribution == "norm"
    assert res.t_test(np.eye(3)[1], use_t=False).distribution == "norm"
    assert res.wald_test(np.eye(3)[1:], use_f=False).distribution == "chi2"


def test_summary_says_which_df(kr_fit):
    text = " ".join(str(kr_fit.summary()).split())  # notes wrap
    assert "Denominator df:" in text and "Kenward-Roger" in text
    assert "P>|t|" in text and "adjusted covariance" in text


def test_bad_method_and_location_scale():
    data = _sim()
    model = hmf.hetmixedlm("y ~ x", data, groups="Subject")
    with pytest.raises(ValueError, match="ddf must be one of"):
        model.fit(ddf="containment")
    ls = hmf.hetmixedlm("y ~ x", data, groups="Subject", var_re_formula="~ 1")
    with pytest.raises(NotImplementedError, match="location-scale"):
        ls.fit(ddf="satterthwaite")


def test_combine_df_is_lmertest_rule():
    assert ddf_module.combine_df([7.0]) == 7.0
    assert ddf_module.combine_df([5.0, 5.0]) == 5.0
    assert ddf_module.combine_df([1.5, 9.0]) == 2.0
    e = 10 / 8 + 20 / 18
    assert ddf_module.combine_df([10.0, 20.0]) == pytest.approx(2 * e / (e - 2))
