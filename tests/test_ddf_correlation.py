"""Small-sample df with residual correlation structures (ddf.py's
``_correlated_terms``): against a dense finite-difference version of the
same formulas (V_i = Z_i G Z_i' + S_i C_i S_i, Phi and V differentiated by
central differences in the natural parameters), the uncorrelated df when
the correlation is held at 0, invariance, and the fixed-df methods.  No R
peer fits lme + correlation + Satterthwaite, so the references are
computed here."""

import warnings

import numpy as np
import pandas as pd
import pytest

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import ddf as ddf_module

from .dense_ddf import kenward_roger_parts


def _sim(seed=3, groups=12, occasions=6):
    """Unbalanced longitudinal data with gaps: occasions dropped at random,
    rows not in time order, a group-level binary effect and a covariate."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(groups):
        keep = np.sort(rng.choice(occasions, rng.integers(3, occasions + 1),
                                  replace=False))
        for t in rng.permutation(keep):
            rows.append((g, t))
    d = pd.DataFrame(rows, columns=["Subject", "occ"])
    n = len(d)
    d["time"] = d["occ"] + 0.1 * rng.uniform(size=n)  # continuous, for CAR(1)
    d["w"] = (rng.uniform(size=groups) < 0.5).astype(float)[d["Subject"]]
    d["x"] = rng.normal(size=n)
    d["b"] = rng.integers(0, 2, n)
    u = rng.normal(size=groups)[d["Subject"]]
    e = np.empty(n)
    for g in range(groups):  # AR(1)-ish errors in time order
        idx = np.flatnonzero(d["Subject"] == g)
        idx = idx[np.argsort(d["occ"].to_numpy()[idx])]
        z = rng.normal(size=idx.size)
        for j in range(1, idx.size):
            z[j] = 0.5 * z[j - 1] + np.sqrt(0.75) * z[j]
        e[idx] = z
    d["y"] = (1 + 0.5 * d["x"] + 0.3 * d["w"] + 0.2 * d["occ"] + 0.8 * u
              + np.exp(0.3 * d["b"]) * e)
    return d


MODELS = {
    "ar1": dict(correlation="ar1", time="occ", re_formula="1", var_formula="~ b"),
    "ar1_nore": dict(correlation="ar1", time="occ", re_formula="0", var_by="b"),
    "ar1_by": dict(correlation="ar1", time="occ", re_formula="1",
                   correlation_by="w"),
    "car1": dict(correlation="car1", time="time", re_formula="1"),
    "toeplitz2": dict(correlation="toeplitz(2)", time="occ", re_formula="0",
                      var_formula="~ b"),
    "exchangeable": dict(correlation="exchangeable", time="occ", re_formula="0",
                         var_formula="~ b"),
    "arma11": dict(correlation="arma(1,1)", time="occ", re_formula="0"),
    "banded1": dict(correlation="banded(1)", time="occ", re_formula="1"),
    "unstructured": dict(correlation="unstructured", time="occ", re_formula="0"),
    # (unstructured with a random intercept is not identified: tau^2 J
    # trades off against the correlations)
    "toeplitz2_re": dict(correlation="toeplitz(2)", time="occ", re_formula="1"),
}


#: data of each model: (seed, groups, occasions)
DATA = {"unstructured": (4, 16, 4)}


def _fit(name, reml, ddf, data=None, **extra):
    data = _sim(*DATA.get(name, (3, 12, 6))) if data is None else data
    kw = dict(MODELS[name])
    kw.update(extra)
    re_formula = kw.pop("re_formula")
    model = hmf.hetmixedlm("y ~ x + w + occ", data, groups="Subject",
                           re_formula=re_formula, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(reml=reml, ddf=ddf)


def _brute_force(res, method):
    """df per fixed effect and (KR) the adjusted covariance: dense V from
    the layout and the structure's C_i, derivatives by central
    differences."""
    model = res.model
    objective = model._objective(reml=res.reml)
    lay, grouped = objective.layout, objective.grouped
    corr = lay.correlation_block
    theta = np.asarray(res._natural, float)
    X, Z, gi = model.exog, grouped.exog_z, grouped.group_index
    same = gi[:, None] == gi[None, :]
    everyone = np.ones(model.n_groups, bool)

    def dense_v(t):
        L = lay.factor(t)
        s = np.sqrt(lay.resid_var(t))
        R = np.zeros((len(s), len(s)))
        for rows, C in corr.matrices_of(t[lay.corr_natural], everyone):
            for r, c in zip(rows, C):
                R[np.ix_(r, r)] = s[r, None] * c * s[None, r]
        return np.where(same, Z @ L @ L.T @ Z.T, 0.0) + R

    def phi(t):
        return np.linalg.inv(X.T @ np.linalg.solve(dense_v(t), X))

    steps = 1e-5 * np.maximum(np.abs(theta), 1e-2)

    def central(f, j):
        e = np.zeros_like(theta)
        e[j] = steps[j]
        return (f(theta + e) - f(theta - e)) / (2 * steps[j])

    # the dense V at the estimate is the fit's: R_i as resid_cov gives it
    V = dense_v(theta)
    label = model.group_labels[0]
    rows = np.flatnonzero(gi == 0)
    Ri = res.resid_cov(label).to_numpy()
    order = np.argsort(res.model.data.frame["occ"].to_numpy()[rows], kind="stable") \
        if "occ" in res.model.data.frame else np.arange(rows.size)
    r_sorted = rows[order]
    G_part = np.where(same, Z @ lay.factor(theta) @ lay.factor(theta).T @ Z.T, 0.0)
    np.testing.assert_allclose((V - G_part)[np.ix_(r_sorted, r_sorted)], Ri,
                               rtol=1e-10, atol=1e-12)
    index = np.flatnonzero(np.asarray(res.bse)[lay.k_fe:] > 0)  # not held
    Phi = phi(theta)
    if method == "satterthwaite":
        dphi = np.stack([central(phi, j) for j in index])
        A = np.asarray(res.cov_params())[lay.k_fe:, lay.k_fe:][np.ix_(index, index)]
        sat = ddf_module.Satterthwaite(list(res.fe_params.index), Phi, dphi, A)
        return sat, None
    dV = [central(dense_v, j) for j in index]
    W, adjusted, dphi = kenward_roger_parts(X, V, dV, Phi, res.reml)
    kr = ddf_module.KenwardRoger(list(res.fe_params.index), Phi, dphi, W, adjusted)
    return kr, adjusted


CASES = [("ar1", True), ("ar1", False), ("ar1_by", True), ("ar1_nore", True), ("car1", False),
         ("car1", True), ("toeplitz2", True), ("toeplitz2", False),
         ("unstructured", True), ("unstructured", False),
         ("toeplitz2_re", False), ("exchangeable", True), ("arma11", False),
         ("banded1", True)]


@pytest.mark.parametrize("name,reml", CASES)
@pytest.mark.parametrize("method", ["satterthwaite", "kenward-roger"])
def test_against_dense_finite_differences(name, reml, method):
    res = _fit(name, reml, method)
    ref, adjusted = _brute_force(res, method)
    np.testing.assert_allclose(res.df_fe, ref.df_fe, rtol=1e-6)
    # an F test of several rows (contestMD / KR's multi-row F)
    L = np.eye(len(res.fe_params))[1:]
    f = res.wald_test(L, scalar=True)
    diff = L @ res.fe_params.to_numpy()
    ours = res._ddf.f_test(L, diff, np.asarray(res.cov_params())[:4, :4])
    theirs = ref.f_test(L, diff, np.asarray(res.cov_params())[:4, :4])
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    np.testing.assert_allclose(f.df_denom, ours[2], rtol=1e-12)
    if adjusted is not None:
        np.testing.assert_allclose(res._ddf.cov_fe, adjusted, rtol=1e-6)


@pytest.mark.parametrize("method", ["satterthwaite", "kenward-roger"])
def test_ar1_held_at_zero_is_the_uncorrelated_df(method):
    # phi held at 0 (fit(free=...)): the same model as without a
    # structure, so the same estimate, df and (KR) adjusted covariance
    data = _sim()
    kw = dict(re_formula="1", var_formula="~ b")
    plain = hmf.hetmixedlm("y ~ x + w + occ", data, groups="Subject", **kw)
    ar1 = hmf.hetmixedlm("y ~ x + w + occ", data, groups="Subject",
                         correlation="ar1", time="occ", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = plain.fit(ddf=method)
        start = np.append(np.asarray(base.params)[4:], 0.0)
        free = np.ones(start.size)
        free[-1] = 0
        held = ar1.fit(start_params=start, free=free, ddf=method)
    assert held.params["ar1"] == 0.0
    np.testing.assert_allclose(held.fe_params, base.fe_params, rtol=1e-6)
    np.testing.assert_allclose(held.df_fe, base.df_fe, rtol=1e-5)
    np.testing.assert_allclose(held.bse_fe, base.bse_fe, rtol=1e-5)
    # and a free phi gives other df
    free_fit = _fit("ar1", True, method, data)
    assert not np.allclose(free_fit.df_fe, base.df_fe, rtol=1e-2)


@pytest.mark.parametrize("method", ["satterthwaite", "kenward-roger"])
def test_invariant_to_order_and_units(method):
    data = _sim()
    base = _fit("ar1", True, method, data)
    # rows and groups reordered (labels permuted)
    rng = np.random.default_rng(5)
    relabel = rng.permutation(data["Subject"].nunique())
    shuffled = data.assign(Subject=relabel[data["Subject"]]).iloc[
        rng.permutation(len(data))]
    other = _fit("ar1", True, method, shuffled)
    np.testing.assert_allclose(other.df_fe, base.df_fe, rtol=1e-5)
    np.testing.assert_allclose(other.bse_fe, base.bse_fe, rtol=1e-5)
    # x in other units and from another origin: x's df and SE (rescaled)
    recoded = _fit("ar1", True, method, data.assign(x=data["x"] * 100.0 + 7.0))
    np.testing.assert_allclose(recoded.df_fe[["x", "w", "occ"]],
                               base.df_fe[["x", "w", "occ"]], rtol=1e-5)
    np.testing.assert_allclose(recoded.bse_fe["x"] * 100.0, base.bse_fe["x"],
                               rtol=1e-5)


def test_residual_and_between_within_without_random_effects():
    # between-within: the groups are the subjects whether or not they
    # carry random effects (SAS's REPEATED / SUBJECT=)
    data = _sim()
    n, m = len(data), data["Subject"].nunique()
    res = _fit("ar1_nore", True, "residual", data)
    assert (res.df_fe == n - 4).all() and res.ddf_method == "residual"
    res = _fit("ar1_nore", True, "between-within", data)
    assert res.df_fe.to_dict() == {"Intercept": m - 2.0, "x": n - m - 2.0,
                                   "w": m - 2.0, "occ": n - m - 2.0}
    res = _fit("ar1", True, "between-within", data)
    assert res.df_fe["w"] == m - 2.0


def test_results_use_the_df():
    from scipy import stats
    res = _fit("ar1", True, "satterthwaite")
    names = list(res.fe_params.index)
    t = res.fe_params / res.bse_fe
    np.testing.assert_allclose(res.pvalues[names], 2 * stats.t.sf(np.abs(t), res.df_fe))
    # the correlation parameter keeps its z-test
    assert res.t_test("ar1 = 0").distribution == "norm"
    text = " ".join(str(res.summary()).split())
    assert "Satterthwaite" in text and "P>|t|" in text and "AR(1)" in text
