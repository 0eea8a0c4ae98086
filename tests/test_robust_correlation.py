"""
Cluster-robust covariances of the fixed effects with residual correlation
structures (``correlation=``), against R's clubSandwich and a dense
computation.

The reference numbers come from
tests/results/robust_correlation/r_robust_correlation.R (clubSandwich 0.5.8
``vcovCR`` / ``coef_test`` / ``linear_contrast`` on nlme 3.1-162 ``lme`` and
``gls`` fits with corAR1 (times with gaps), corCAR1 (unequally spaced times)
and corSymm (incomplete groups), with varIdent and varExp weights).  The
covariances are compared at nlme's estimates (only the sandwich differs:
agreement to rounding), and once at this package's own fit (within the two
optimisers' differences).
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import statsmodels_hetmixed.formula.api as hmf

from .conftest import RESULTS
from .test_robust import dense_reference, rel_err

HERE = RESULTS / "robust_correlation"


@pytest.fixture(scope="module")
def ref():
    with open(HERE / "r_robust_correlation.json") as fh:
        return json.load(fh)["cases"]


_data = {}


def data_of(spec):
    if spec["file"] not in _data:
        data = pd.read_csv(RESULTS / "correlation" / spec["file"])
        if "Subject" in data:
            # r_robust_correlation.R's coarser level: pairs of sorted subjects
            data["pair"] = (pd.factorize(data["Subject"], sort=True)[0] + 2) // 2
        _data[spec["file"]] = data
    return _data[spec["file"]]


def model_of(spec, data=None):
    data = data_of(spec) if data is None else data
    return hmf.hetmixedlm(spec["mean_formula"], data, groups=spec["groups"],
                          re_formula=spec["re_formula"],
                          var_formula=spec["var_formula"],
                          correlation=spec["structure"], time=spec["time"])


_at_r = {}


def at_r_estimates(key, spec):
    """Results at nlme's estimates (no optimisation): G, the variance
    coefficients and the correlation parameters; GLS fixed effects."""
    if key not in _at_r:
        G = np.atleast_2d(np.array(spec["G"], dtype=float))
        start = np.concatenate([G[np.tril_indices(len(G))],
                                list(spec["var_coef"].values()),
                                np.atleast_1d(spec["cor_natural"])])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # do_cg=False: not optimised
            _at_r[key] = model_of(spec).fit(start_params=start, do_cg=False,
                                            reml=spec["method"] == "REML")
    return _at_r[key]


def r_order(res, spec):
    """Positions of R's coefficients among ours (patsy puts a factor's
    columns before a numeric covariate's; R keeps the formula's order)."""
    ours = [n if n == "Intercept" else n.replace("[T.", "").replace("]", "")
            for n in res.model.exog_names]
    return [ours.index("Intercept" if n == "(Intercept)" else n)
            for n in spec["names"]]


CASES = ["orthodont_ar1_ident_REML", "orthodont_ar1_ident_ML",
         "sleepgaps_ar1_exp_REML", "bodyweight_car1_ident_REML",
         "orthgaps_symm_ident_REML"]


def test_cases_cover_the_references(ref):
    assert sorted(ref) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_matches_clubsandwich_at_nlme_estimates(ref, case):
    spec = ref[case]
    res = at_r_estimates(case, spec)
    o = r_order(res, spec)
    k = res.k_fe
    assert np.allclose(np.asarray(res.fe_params)[o], list(spec["fe_params"].values()),
                       rtol=1e-7, atol=0)
    # the bread: nlme's vcov is (X'V^-1 X)^-1
    assert rel_err(np.asarray(res.cov_params())[:k, :k][np.ix_(o, o)],
                   spec["vcov_model"]) < 1e-7
    for cluster, numbers in spec["cluster"].items():
        groups = None if cluster == spec["groups"] else cluster
        for correction in ("CR0", "CR1", "CR1S", "CR2"):
            rob = res.get_robustcov_results(correction=correction, groups=groups)
            cov = np.asarray(rob.cov_params())[:k, :k][np.ix_(o, o)]
            assert rel_err(cov, numbers[correction]) < 1e-7, (cluster, correction)
            if correction == "CR0":
                df = rob._cluster_robust.satterthwaite_df(np.eye(k))[o]
                assert np.allclose(df, list(numbers["df_CR0"].values()), rtol=1e-7)
        # rob is CR2: its t-tests' df and a contrast's
        assert rob.cov_kwds["n_clusters"] == numbers["n_clusters"]
        assert np.allclose(np.asarray(rob.df_fe)[o], list(numbers["df_CR2"].values()),
                           rtol=1e-7)
        contrast = np.zeros(k)
        contrast[o] = numbers["contrast"]
        assert np.isclose(rob._cluster_robust.satterthwaite_df(contrast)[0],
                          numbers["contrast_df"], rtol=1e-7)
        se = np.sqrt(contrast @ np.asarray(rob.cov_params())[:k, :k] @ contrast)
        assert np.isclose(se, numbers["contrast_se"], rtol=1e-7)


def test_own_fit_matches_clubsandwich(ref):
    """This package's fit (AR(1), varIdent, REML; its estimates equal
    nlme's to about 1e-5): CR2 and its df within 1e-4."""
    spec = ref["orthodont_ar1_ident_REML"]
    res = model_of(spec).fit(cov_type="cluster", cov_kwds={"correction": "CR2"})
    o = r_order(res, spec)
    k = res.k_fe
    numbers = spec["cluster"]["Subject"]
    assert rel_err(np.asarray(res.cov_params())[:k, :k][np.ix_(o, o)],
                   numbers["CR2"]) < 1e-4
    assert np.allclose(np.asarray(res.df_fe)[o], list(numbers["df_CR2"].values()),
                       rtol=1e-4)
    assert "cluster-robust (CR2, 27 clusters)" in res.summary().as_text()


# ----------------------------------------------------------------------
# Against a dense computation: groups of 2-6 rows at integer times with
# gaps, clusters of one to three groups (several size buckets, padding)

def gappy_data(seed=3, m=24, slope_sd=0.0):
    """Groups of 2-6 rows at integer times 0..7 with gaps, AR(1) errors
    (phi 0.6) with a heteroskedastic scale, a random intercept and (with
    ``slope_sd``) a random slope on the time."""
    rng = np.random.default_rng(seed)
    g, t, e = [], [], []
    for i in range(m):
        n = rng.integers(2, 7)
        g += [f"g{i:02d}"] * n
        times = np.sort(rng.choice(8, n, replace=False))
        t += list(times)
        series = [rng.normal()]                # AR(1) errors, phi 0.6
        for _ in range(7):
            series.append(0.6 * series[-1] + 0.8 * rng.normal())
        e += list(np.array(series)[times])
    n = len(g)
    x = rng.normal(size=n)
    w = rng.normal(size=n)
    sizes = np.unique(g, return_counts=True)[1]
    u = np.repeat(rng.normal(size=m), sizes)
    u = u + np.repeat(slope_sd * rng.normal(size=m), sizes) * np.array(t)
    y = 1.0 + 0.5 * x + 0.2 * np.array(t) + u + np.array(e) * np.exp(0.3 * w)
    data = pd.DataFrame({"y": y, "x": x, "w": w, "t": t, "g": g})
    data["c"] = pd.factorize(data["g"], sort=True)[0] % 10
    data["arm"] = pd.factorize(data["g"], sort=True)[0] % 2
    return data


def _dense_resid_cov(res):
    """The residual covariance of all rows, from ``resid_cov`` per group."""
    n = res.model.nobs
    R = np.zeros((n, n))
    for label in res.model.group_labels:
        rows = res._group_correlation(label)[0]
        R[np.ix_(rows, rows)] = res.resid_cov(label).to_numpy()
    return R


@pytest.fixture(scope="module", params=["ar1", "toeplitz(2)", "ar1 by arm"])
def gappy_fit(request):
    data = gappy_data()
    structure, _, by = request.param.partition(" by ")
    model = hmf.hetmixedlm("y ~ x + t", data, groups="g", re_formula="1",
                           var_formula="~ w", correlation=structure, time="t",
                           correlation_by=by or None)
    res = model.fit()
    assert np.all(np.abs(np.asarray(res.correlation_params)) > 0.05)
    return res


def test_matches_a_dense_computation(gappy_fit):
    res = gappy_fit
    R = _dense_resid_cov(res)
    clusters = np.asarray(res.model.data.frame["c"])
    assert len(set(np.bincount(clusters))) > 3     # several size buckets
    k = res.k_fe
    for groups in (None, clusters):
        codes = res.model._group_index if groups is None else clusters
        for correction in ("CR0", "CR1", "CR2"):
            rob = res.get_robustcov_results(correction=correction, groups=groups)
            cov, df = dense_reference(res, codes, correction, R=R)
            assert rel_err(np.asarray(rob.cov_params())[:k, :k], cov) < 1e-9
            got = rob._cluster_robust.satterthwaite_df(np.eye(k))
            assert np.allclose(got, df, rtol=1e-9), correction


def test_the_correlation_matters(gappy_fit):
    """The sandwich is that of the correlated working model: the diagonal
    one (the same variances, no correlation) differs."""
    res = gappy_fit
    r = np.asarray(res.resid_var, dtype=float)
    rob = res.get_robustcov_results(correction="CR2")
    diag, _ = dense_reference(res, res.model._group_index, "CR2", R=np.diag(r))
    k = res.k_fe
    assert rel_err(np.asarray(rob.cov_params())[:k, :k], diag) > 1e-3


# ----------------------------------------------------------------------
# Invariance

@pytest.mark.parametrize("correction", ["CR1", "CR2"])
def test_invariant_to_row_and_group_order(ref, correction):
    spec = ref["sleepgaps_ar1_exp_REML"]
    data = data_of(spec)
    base = model_of(spec, data).fit(cov_type="cluster",
                                    cov_kwds={"correction": correction})
    rng = np.random.default_rng(7)
    shuffled = data.iloc[rng.permutation(len(data))].reset_index(drop=True)
    # group labels whose sorted order differs from the original's
    shuffled["Subject"] = shuffled["Subject"].map(lambda s: s[::-1])
    other = model_of(spec, shuffled).fit(cov_type="cluster",
                                         cov_kwds={"correction": correction})
    k = base.k_fe
    assert np.allclose(np.asarray(other.cov_params())[:k, :k],
                       np.asarray(base.cov_params())[:k, :k], rtol=1e-6, atol=0)
    if correction == "CR2":
        assert np.allclose(other.df_fe, base.df_fe, rtol=1e-6)


# ----------------------------------------------------------------------
# What stays unavailable

def test_ddf_with_cluster_is_refused(ref):
    # (ddf itself works with correlation structures: test_ddf_correlation)
    model = model_of(ref["orthodont_ar1_ident_REML"])
    with pytest.raises(ValueError, match="ddf cannot be combined"):
        model.fit(ddf="satterthwaite", cov_type="cluster")
