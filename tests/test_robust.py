"""
Cluster-robust covariances of the fixed effects against R's clubSandwich.

The reference numbers come from tests/results/robust/r_robust.R (clubSandwich
0.5.8 ``vcovCR`` / ``coef_test`` / ``linear_contrast`` on nlme 3.1-162 ``lme``
fits with ``varIdent`` and ``varExp`` weights, ML and REML; see its header).
Two routes are checked: the covariance at R's own parameter values (so that
only the sandwich is compared: agreement to rounding), and fits of this
package (agreement within the acceptance tolerance, 1e-4, after the two
optimisers' differences).
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import robust
from statsmodels_hetmixed.datasets import hsb

from .conftest import RESULTS

HERE = RESULTS / "robust"


@pytest.fixture(scope="module")
def ref():
    with open(HERE / "r_robust.json") as fh:
        return json.load(fh)["cases"]


def case_data(name):
    if name == "hsb":
        data = hsb.load_pandas().data.copy()
        # r_robust.R's coarser level: 4 schools of the sorted ids each
        data["district"] = (pd.factorize(data["school"], sort=True)[0] + 1) // 4
        return data
    data = pd.read_csv(HERE / "orthodont.csv")
    # r_robust.R's coarser level: pairs of the sorted subject ids
    data["pair"] = (pd.factorize(data["Subject"], sort=True)[0] + 2) // 2
    data["m01"] = (data["Subject"] == "M01").astype(float)
    return data


_data = {}


def model_of(spec, data=None):
    if data is None:
        data = _data.setdefault(spec["data"], case_data(spec["data"]))
    return hmf.hetmixedlm(spec["mean_formula"], data, groups=spec["groups"],
                          re_formula=spec["re_formula"],
                          var_formula=spec["var_formula"])


_at_r = {}


def at_r_estimates(spec, **fit_kwargs):
    """Results at R's estimates (no optimisation): covariance parameters
    from getVarCov, variance coefficients, GLS fixed effects.  Model-based
    results are kept for the other tests of the same case."""
    key = (spec["data"], spec["mean_formula"], spec["method"])
    if not fit_kwargs and key in _at_r:
        return _at_r[key]
    model = model_of(spec)
    G = np.array(spec["G"])
    start = np.concatenate([G[np.tril_indices(len(G))],
                            list(spec["var_coef"].values())])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # do_cg=False says it did not optimise
        res = model.fit(start_params=start, do_cg=False,
                        reml=spec["method"] == "REML", **fit_kwargs)
    if not fit_kwargs:
        _at_r[key] = res
    return res


def rel_err(cov, ref_cov):
    """Largest error relative to the reference's standard errors."""
    ref_cov = np.asarray(ref_cov)
    d = np.sqrt(np.diag(ref_cov))
    return np.max(np.abs(np.asarray(cov) - ref_cov) / np.outer(d, d))


# orthodont_m01: a fixed effect identified within one subject, where CR2's
# inverse square root is a pseudo-inverse
CASES = [f"{c}_{m}" for c in ("hsb_ident", "hsb_exp_slope", "orthodont_ident",
                              "orthodont_m01")
         for m in ("REML", "ML")]


@pytest.mark.parametrize("case", CASES)
def test_cr0_cr1_cr1s_at_r_estimates(ref, case):
    spec = ref[case]
    res = at_r_estimates(spec)
    assert np.allclose(res.fe_params, list(spec["fe_params"].values()),
                       rtol=1e-7, atol=1e-9)
    # the bread: nlme's vcov is (X'V^-1 X)^-1 for ML and REML alike
    assert rel_err(res.cov_params().iloc[:res.k_fe, :res.k_fe],
                   spec["vcov_model"]) < 1e-7
    for cluster, numbers in spec["cluster"].items():
        groups = None if cluster == spec["groups"] else cluster
        for correction in ("CR0", "CR1", "CR1S"):
            rob = res.get_robustcov_results(correction=correction, groups=groups)
            fe = rob.cov_params().iloc[:res.k_fe, :res.k_fe]
            assert rel_err(fe, numbers[correction]) < 1e-7, (cluster, correction)
            assert rob.df_fe is None  # z-tests, as Stata's vce(robust)
        # Satterthwaite df of CR0 (ClusterRobust serves every correction)
        df = rob._cluster_robust.satterthwaite_df(np.eye(res.k_fe))
        assert np.allclose(df, list(numbers["df_CR0"].values()), rtol=1e-7)


# CR2 on coarser clusters is checked on Orthodont's pairs of subjects; on
# HSB's districts (41 matrices of 130-200 rows) its batched
# eigen-decompositions would take several seconds on a loaded machine.
@pytest.mark.parametrize("case", CASES)
def test_cr2_and_satterthwaite_df_at_r_estimates(ref, case):
    spec = ref[case]
    res = at_r_estimates(spec)
    for cluster, numbers in spec["cluster"].items():
        if cluster == "district":
            continue
        groups = None if cluster == spec["groups"] else cluster
        rob = res.get_robustcov_results(correction="CR2", groups=groups)
        assert rel_err(rob.cov_params().iloc[:res.k_fe, :res.k_fe],
                       numbers["CR2"]) < 1e-7
        assert list(rob.df_fe.index) == [n.replace("(Intercept)", "Intercept")
                                         for n in spec["names"]]
        assert np.allclose(rob.df_fe, list(numbers["df_CR2"].values()), rtol=1e-7)
        contrast = np.array(numbers["contrast"])
        df = rob._cluster_robust.satterthwaite_df(contrast)
        assert np.allclose(df, numbers["contrast_df"], rtol=1e-7)
        se = np.sqrt(contrast @ np.asarray(rob.cov_params())[:res.k_fe, :res.k_fe]
                     @ contrast)
        assert np.isclose(se, numbers["contrast_se"], rtol=1e-7)
        assert rob.cov_kwds["n_clusters"] == numbers["n_clusters"]


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_fit_matches_clubsandwich(ref, method):
    """This package's own fit (Orthodont, random slopes, varIdent): CR0,
    CR1 and CR2 and the CR2 df within 1e-4 of clubSandwich on nlme's fit."""
    spec = ref[f"orthodont_ident_{method}"]
    res = model_of(spec).fit(reml=method == "REML", cov_type="cluster",
                             cov_kwds={"correction": "CR2"})
    numbers = spec["cluster"]["Subject"]
    k = res.k_fe
    assert rel_err(res.cov_params().iloc[:k, :k], numbers["CR2"]) < 1e-4
    assert np.allclose(res.df_fe, list(numbers["df_CR2"].values()), rtol=1e-4)
    for correction in ("CR0", "CR1"):
        rob = res.get_robustcov_results(correction=correction)
        assert rel_err(rob.cov_params().iloc[:k, :k], numbers[correction]) < 1e-4


def test_fit_and_get_robustcov_results_agree(ref):
    spec = ref["orthodont_ident_REML"]
    model = model_of(spec)
    plain = model.fit()
    by_fit = model.fit(cov_type="cluster")  # CR1 by default
    later = plain.get_robustcov_results(cov_type="cluster")
    assert by_fit.cov_kwds["correction"] == "CR1"
    assert np.allclose(by_fit.cov_params(), later.cov_params(), rtol=1e-10)
    assert np.allclose(later.cov_params().iloc[:3, :3],
                       spec["cluster"]["Subject"]["CR1"], rtol=1e-4)
    # a new object: the original keeps its model-based covariance
    assert plain.cov_type == "nonrobust" and later.cov_type == "cluster"
    assert not np.allclose(plain.bse_fe, later.bse_fe)
    # bse_fe, bse, cov_params agree; the covariance-parameter block is the
    # model-based one, the cross block zero
    k = plain.k_fe
    cov = np.asarray(later.cov_params())
    assert np.allclose(later.bse_fe, np.sqrt(np.diag(cov)[:k]))
    assert np.allclose(later.bse[:k], later.bse_fe)
    assert np.allclose(cov[k:, k:], np.asarray(plain.cov_params())[k:, k:])
    assert not cov[:k, k:].any() and not cov[k:, :k].any()
    # and back
    back = later.get_robustcov_results("nonrobust")
    assert np.allclose(back.cov_params(), plain.cov_params())
    assert back.df_fe is None


def test_summary_says_which_covariance(ref):
    spec = ref["orthodont_ident_REML"]
    res = at_r_estimates(spec, cov_type="cluster", cov_kwds={"correction": "CR2"})
    text = res.summary().as_text()
    assert "cluster-robust (CR2, 27 clusters)" in text
    assert "model-based" in text
    assert f"{res.bse_fe.iloc[1]:.3f}" in text
    plain = at_r_estimates(spec)
    assert "Covariance type:" in plain.summary().as_text()
    assert "nonrobust" in plain.summary().as_text()


def test_clusters_as_labels_or_column_name(ref):
    spec = ref["hsb_ident_REML"]
    res = at_r_estimates(spec)
    by_name = res.get_robustcov_results(groups="district")
    labels = np.asarray(res.model.data.frame["district"]).astype(str)
    by_labels = res.get_robustcov_results(groups=labels)
    assert np.allclose(by_name.cov_params(), by_labels.cov_params(), rtol=1e-12)
    assert "41 clusters of district" in by_name.summary().as_text()
    # clusters equal to the groups, relabelled: the default
    relabel = res.get_robustcov_results(
        groups=[f"s{v}" for v in res.model.data.frame["school"]])
    assert np.allclose(relabel.cov_params(), res.get_robustcov_results().cov_params())


# ----------------------------------------------------------------------
# Invariance

@pytest.fixture(scope="module")
def orthodont():
    return pd.read_csv(HERE / "orthodont.csv")


def robust_fit(data, correction, formula="distance ~ age + female",
               re_formula="1 + age"):
    model = hmf.hetmixedlm(formula, data, groups="Subject", re_formula=re_formula,
                           var_formula="~ female")
    return model.fit(cov_type="cluster", cov_kwds={"correction": correction})


@pytest.mark.parametrize("correction", ["CR1", "CR2"])
def test_invariant_to_row_and_group_order(orthodont, correction):
    base = robust_fit(orthodont, correction)
    rng = np.random.default_rng(5)
    shuffled = orthodont.iloc[rng.permutation(len(orthodont))].reset_index(drop=True)
    # group labels whose sorted order differs from the original's
    shuffled["Subject"] = shuffled["Subject"].map(lambda s: s[::-1])
    other = robust_fit(shuffled, correction)
    assert np.allclose(other.cov_params(), base.cov_params(), rtol=1e-6, atol=1e-12)
    if correction == "CR2":
        assert np.allclose(other.df_fe, base.df_fe, rtol=1e-6)


@pytest.mark.parametrize("correction", ["CR1", "CR2"])
def test_invariant_to_recoding_a_covariate(orthodont, correction):
    """age in months and from an origin far away: the slope's SE scales
    with the unit, the df and the other SEs do not change."""
    base = robust_fit(orthodont, correction)
    data = orthodont.assign(months=12 * orthodont["age"] + 1e5)
    other = robust_fit(data, correction, formula="distance ~ months + female")
    se, se_other = np.asarray(base.bse_fe), np.asarray(other.bse_fe)
    assert np.isclose(se_other[1] * 12, se[1], rtol=1e-5)
    assert np.isclose(se_other[2], se[2], rtol=1e-5)
    if correction == "CR2":
        assert np.allclose(other.df_fe.iloc[1:], base.df_fe.iloc[1:], rtol=1e-5)


def test_cr2_with_a_fixed_effect_identified_in_one_cluster(orthodont):
    """A dummy of one subject makes V_j - X_j M X_j' singular for that
    subject: the inverse square root is a pseudo-inverse, decided relative
    to the cluster's own eigenvalues, so the answer does not depend on the
    response's units."""
    data = orthodont.assign(m01=(orthodont["Subject"] == "M01").astype(float))
    base = robust_fit(data, "CR2", formula="distance ~ age + female + m01")
    # the same fit in units 1e-4 times as large (at the implied estimates)
    c = 1e-4
    params = np.asarray(base.params)[base.k_fe:].copy()
    params[:3] *= c * c                      # cov_re
    params[3] += 2 * np.log(c)               # log-variance intercept
    model = hmf.hetmixedlm("distance ~ age + female + m01",
                           data.assign(distance=data["distance"] * c),
                           groups="Subject", re_formula="1 + age",
                           var_formula="~ female")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # do_cg=False
        scaled = model.fit(start_params=params, do_cg=False, cov_type="cluster",
                           cov_kwds={"correction": "CR2"})
    assert np.allclose(scaled.fe_params[1:] / c, base.fe_params[1:], rtol=1e-6)
    assert np.all(np.isfinite(base.bse_fe)) and np.all(base.bse_fe > 0)
    assert np.allclose(np.asarray(scaled.bse_fe) * 1e4, base.bse_fe, rtol=1e-5)
    assert np.allclose(scaled.df_fe, base.df_fe, rtol=1e-5)


# ----------------------------------------------------------------------
# Bad input

@pytest.fixture(scope="module")
def small_fit(orthodont):
    model = hmf.hetmixedlm("distance ~ age + female", orthodont, groups="Subject",
                           var_formula="~ female")
    return model.fit()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"correction": "CR3"}, ValueError, "CR0, CR1, CR1S, CR2"),
    ({"correction": 2}, ValueError, "correction"),
    ({"type": "CR2"}, ValueError, "Unknown cov_kwds"),
    ({"groups": np.arange(5)}, ValueError, "one cluster label per row"),
    ({"groups": np.zeros(108)}, ValueError, "at least two clusters"),
    ({"groups": np.r_[np.full(54, np.nan), np.zeros(54)]}, ValueError, "missing"),
    ({"groups": np.arange(108) % 2}, ValueError, "do not nest the model's groups"),
    ({"groups": "region"}, ValueError, "not a column"),
])
def test_bad_cov_kwds(small_fit, kwargs, error, match):
    with pytest.raises(error, match=match):
        small_fit.get_robustcov_results(**kwargs)


def test_bad_cov_type_fails_before_fitting(small_fit):
    model = small_fit.model
    # as MixedLM.fit (statsmodels' own suite): warned and ignored
    with pytest.warns(FutureWarning, match="Argument cov_type='HC1' not used"):
        model.fit(cov_type="HC1")
    with pytest.raises(TypeError, match="cov_kwds must be a dict"):
        model.fit(cov_type="cluster", cov_kwds="CR2")
    with pytest.raises(ValueError, match="apply to cov_type='cluster' only"):
        model.fit(cov_kwds={"correction": "CR2"})
    with pytest.raises(ValueError, match="cov_type must be"):
        small_fit.get_robustcov_results("robust")
    with pytest.raises(ValueError, match="one cluster label per row"):
        model.fit(cov_type="cluster", cov_kwds={"groups": np.arange(3)},
                  method="not an optimiser")  # fails before the optimiser


def test_location_scale_models_refuse(orthodont):
    model = hmf.hetmixedlm("distance ~ age", orthodont, groups="Subject",
                           var_re_formula="~ 1")
    with pytest.raises(NotImplementedError, match="location-scale"):
        model.fit(cov_type="cluster")


def test_satterthwaite_df_needs_one_column_per_fixed_effect(small_fit):
    rob = small_fit.get_robustcov_results(correction="CR2")
    with pytest.raises(ValueError, match="3 columns"):
        rob._cluster_robust.satterthwaite_df(np.ones(4))


def test_cluster_codes_nesting_rule():
    groups = np.array([0, 0, 1, 1, 2, 2])
    codes, names = robust.cluster_codes(["a", "a", "a", "a", "b", "b"], groups, 3)
    assert list(codes) == [0, 0, 0, 0, 1, 1] and names == ["a", "b"]
    with pytest.raises(ValueError, match="do not nest"):
        robust.cluster_codes(["a", "b", "b", "b", "c", "c"], groups, 3)


# ----------------------------------------------------------------------
# Against a direct computation: dense V_j per cluster, written from the
# definitions (clubSandwich's R code), for a model with variance components
# (a nested random intercept), a heteroskedastic residual variance and
# clusters that are pairs of groups of different sizes (several size buckets).

def dense_reference(res, clusters, correction, R=None):
    """(sandwich, Satterthwaite df per coefficient) from dense V_j;
    ``R``: the residual covariance of all rows (n, n), diag(resid_var) by
    default."""
    model = res.model
    X = np.asarray(model.exog)
    natural = res._natural
    lay = res.layout
    L = lay.factor(natural)
    Z = model._grouped.exog_z
    r = lay.resid_var(natural)
    e = np.asarray(model.endog) - X @ np.asarray(res.fe_params)
    g = model._group_index
    labels = np.unique(clusters)
    m, (n, p) = len(labels), X.shape

    def V_of(rows):
        same = g[rows][:, None] == g[rows][None, :]
        Rj = np.diag(r[rows]) if R is None else R[np.ix_(rows, rows)]
        return (Z[rows] @ L @ L.T @ Z[rows].T) * same + Rj

    M = np.linalg.inv(sum(X[rows].T @ np.linalg.solve(V_of(rows), X[rows])
                          for rows in (np.flatnonzero(clusters == lab)
                                       for lab in labels)))
    meat = np.zeros((p, p))
    P_parts = []
    for lab in labels:
        rows = np.flatnonzero(clusters == lab)
        Xj, ej, Vj = X[rows], e[rows], V_of(rows)
        Wj = np.linalg.inv(Vj)
        if correction == "CR2":
            U = np.linalg.cholesky(Vj).T                   # R's chol: U'U = V
            G = U @ (Vj - Xj @ M @ Xj.T) @ U.T
            w, Q = np.linalg.eigh(G)
            Aj = U.T @ (Q * np.where(w > 1e-10 * w.max(), w, np.inf) ** -0.5) @ Q.T @ U
        else:
            Aj = np.eye(len(rows))
        Ej = Xj.T @ Wj @ Aj
        u = Ej @ ej
        meat += np.outer(u, u)
        P_parts.append((M @ Ej, np.linalg.cholesky(Vj), M @ Ej @ Xj))
    scale = {"CR0": 1.0, "CR1": m / (m - 1), "CR2": 1.0}[correction]
    cov = scale * M @ meat @ M
    # clubSandwich's P array for coefficient k: -H_j H_l' + diag(||G_j||^2)
    LM = np.linalg.cholesky(M)
    df = []
    for k in range(p):
        H = np.array([(mx @ LM)[k] for _, _, mx in P_parts])
        Gd = np.array([np.sum((me @ lv)[k] ** 2) for me, lv, _ in P_parts])
        P = -H @ H.T + np.diag(Gd)
        df.append(np.trace(P) ** 2 / np.sum(P * P))
    return cov, np.array(df)


def test_matches_a_dense_computation_with_variance_components():
    data = pd.read_csv(RESULTS / "data" / "sim_vc.csv")
    # every third group loses half its rows: clusters of 36 and 48 rows
    codes = pd.factorize(data["g"], sort=True)[0]
    data = data[(codes % 3 != 0) | (np.arange(len(data)) % 2 == 0)]
    data = data.reset_index(drop=True)
    model = hmf.hetmixedlm("y ~ x + z", data, groups="g", re_formula="1",
                           vc_formula={"c": "0 + C(c)"}, var_formula="~ z")
    res = model.fit()
    clusters = pd.factorize(data["g"], sort=True)[0] // 2   # pairs of groups
    assert set(np.bincount(clusters)) == {36, 48}
    for correction in ("CR0", "CR1", "CR2"):
        rob = res.get_robustcov_results(correction=correction, groups=clusters)
        cov, df = dense_reference(res, clusters, correction)
        k = res.k_fe
        assert rel_err(np.asarray(rob.cov_params())[:k, :k], cov) < 1e-9
        got = rob._cluster_robust.satterthwaite_df(np.eye(k))
        assert np.allclose(got, df, rtol=1e-9), correction
