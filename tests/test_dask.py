"""Fits on Dask DataFrames (statsmodels_hetmixed._dask) against the
in-memory fit of the same data: the same likelihood, estimates, standard
errors, tests and predictions, with the rows left in the partitions."""

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tools.sm_exceptions import ValueWarning

import dask.dataframe as dd
import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import DaskHetMixedLM, HetMixedLM


def _data(m=120, k=12, seed=3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), k)
    x = rng.normal(size=m * k)
    z = rng.normal(size=m * k)
    c = np.where(rng.random(m * k) < 0.4, "a", np.where(rng.random(m * k) < 0.5, "b", "c"))
    sd = np.exp(0.5 * (0.3 * x + 0.4 * (c == "b")))
    u0, u1 = rng.normal(size=m) * 0.7, rng.normal(size=m) * 0.3
    y = 1 + 0.5 * x + 0.2 * z + u0[g] + u1[g] * x + sd * rng.normal(size=m * k)
    # group labels not in row order, as strings
    return pd.DataFrame({"y": y, "x": x, "z": z, "c": c, "g": [f"s{v:03d}" for v in (g * 7) % m]})


@pytest.fixture(scope="module")
def data():
    return _data()


def _by_group(frame, npartitions):
    """A Dask frame whose partitions hold whole groups: indexed by the
    groups, cut between index values."""
    return dd.from_pandas(frame.set_index(frame["g"].to_numpy()), npartitions=npartitions)


@pytest.fixture(scope="module")
def ddf(data):
    return _by_group(data, 4)


CASES = {
    "var_formula": dict(var_formula="~ x + c"),
    "slope": dict(re_formula="~ x"),
    "var_by": dict(var_by="c"),
    "identity": dict(var_formula="~ 0 + C(c)", var_link="identity"),
    "vc": dict(vc_formula={"cc": "0 + C(c)"}),
}


def _assert_same(r0, r1, tol=1e-8):
    """llf, estimates and standard errors equal to ``tol`` (the Dask fit
    starts from the in-memory fit's starting values and takes its steps)."""
    assert abs(r0.llf - r1.llf) < tol * max(1.0, abs(r0.llf))
    np.testing.assert_allclose(np.asarray(r1.params), np.asarray(r0.params),
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(r1.bse), np.asarray(r0.bse), rtol=1e-6)
    assert list(r0.params.index) == list(r1.params.index)


@pytest.mark.parametrize("reml", [False, True], ids=["ML", "REML"])
@pytest.mark.parametrize("case", list(CASES))
def test_equals_in_memory_fit(data, ddf, case, reml):
    kw = CASES[case]
    if case == "vc":  # MixedLM's variance-component designs: a loop over groups
        data = data[data["g"] < "s040"]
        ddf = _by_group(data, 3)
    r0 = hmf.hetmixedlm("y ~ x + z + c", data, groups="g", **kw).fit(reml=reml)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ValueWarning)  # no repartitioning
        model = hmf.hetmixedlm("y ~ x + z + c", ddf, groups="g", **kw)
    assert isinstance(model, DaskHetMixedLM)
    assert model.endog is None and model.exog is None  # no rows on the client
    r1 = model.fit(reml=reml)
    _assert_same(r0, r1)
    assert r1.model.nobs == r0.model.nobs and r1.model.n_groups == r0.model.n_groups
    assert r1.method == r0.method


def test_group_level_variance_covariate_constant_in_first_rows(data):
    """The client's model is built from the first rows: a group-level
    covariate constant there (W rank-deficient in them) must not change
    the variance function's constant direction or centring, which come
    from the whole data (standard errors differed by 20% when they came
    from those rows)."""
    rng = np.random.default_rng(5)
    labels = np.sort(data["g"].unique())
    h = dict(zip(labels, np.where(np.arange(len(labels)) < 20, 1.0,
                                  rng.integers(0, 2, len(labels)))))
    frame = data.assign(h=data["g"].map(h))
    kw = dict(var_formula="~ x + h")
    r0 = hmf.hetmixedlm("y ~ x + h", frame, groups="g", **kw).fit(reml=False)
    r1 = hmf.hetmixedlm("y ~ x + h", _by_group(frame, 4), groups="g", **kw).fit(reml=False)
    _assert_same(r0, r1)


def test_results_match(data, ddf):
    kw = dict(re_formula="~ x", var_formula="~ x + c")
    r0 = hmf.hetmixedlm("y ~ x + z + c", data, groups="g", **kw).fit(reml=False)
    r1 = hmf.hetmixedlm("y ~ x + z + c", ddf, groups="g", **kw).fit(reml=False)
    # the summary's tables print the same numbers
    for t0, t1 in zip(r0.summary().tables, r1.summary().tables):
        assert t0.to_string() == t1.to_string()
    # random effects of every group, in the same order
    re0, re1 = r0.random_effects, r1.random_effects
    assert list(re0) == list(re1)
    np.testing.assert_allclose(np.vstack([re1[k] for k in re1]),
                               np.vstack([re0[k] for k in re0]), atol=1e-6)
    w0 = r0.wald_test("x = 0.5, z = 0", scalar=True)
    w1 = r1.wald_test("x = 0.5, z = 0", scalar=True)
    assert abs(w0.statistic - w1.statistic) < 1e-5 * max(1, w0.statistic)
    # predictions mapped over the partitions of a Dask frame
    new = dd.from_pandas(data.iloc[::3], npartitions=3)
    for cond in (False, None):
        p1 = r1.predict(new, conditional=cond)
        assert isinstance(p1, dd.Series)
        pd.testing.assert_series_equal(p1.compute(), r0.predict(data.iloc[::3],
                                                                conditional=cond),
                                       rtol=1e-6, check_names=False)
    with pytest.raises(ValueError, match="needs the model's data"):
        r1.fittedvalues


def test_residual_variance_table(data, ddf):
    r0 = hmf.hetmixedlm("y ~ x", data, groups="g", var_by="c").fit()
    r1 = hmf.hetmixedlm("y ~ x", ddf, groups="g", var_by="c").fit()
    pd.testing.assert_frame_equal(r1.residual_variance_table(),
                                  r0.residual_variance_table(), rtol=1e-6)


def test_compare_lr_test_reml(data, ddf):
    """REML fits with the same mean formula are compared without rows on
    the client, as the in-memory fits are."""
    fits = []
    for frame in (data, ddf):
        full = hmf.hetmixedlm("y ~ x", frame, groups="g", var_formula="~ x").fit()
        fits.append(full.compare_lr_test(hmf.hetmixedlm("y ~ x", frame, groups="g").fit()))
    assert abs(fits[0].statistic - fits[1].statistic) < 1e-6 and fits[1].df == 1
    other = hmf.hetmixedlm("y ~ x + z", ddf, groups="g").fit()
    with pytest.raises(ValueError, match="different fixed effects"):
        hmf.hetmixedlm("y ~ x", ddf, groups="g", var_formula="~ x").fit() \
            .compare_lr_test(other)


def test_split_groups_repartitioned_with_warning(data):
    # rows in random order: every partition holds pieces of many groups
    shuffled = data.sample(frac=1.0, random_state=0)
    ddf = dd.from_pandas(shuffled, npartitions=3, sort=False)
    with pytest.warns(ValueWarning, match="split groups"):
        model = hmf.hetmixedlm("y ~ x + z", ddf, groups="g", var_formula="~ x")
    r1 = model.fit(reml=False)
    r0 = hmf.hetmixedlm("y ~ x + z", data, groups="g", var_formula="~ x").fit(reml=False)
    _assert_same(r0, r1)


def test_whole_groups_no_warning_and_invariant_to_partitioning(data):
    # other partition boundaries and another order of the groups: the same fit
    order = data.assign(key=data["g"].str[::-1]).sort_values("key").drop(columns="key")
    fits = []
    for frame, nparts in ((data.sort_values("g"), 2), (order, 5)):
        # boundaries between groups: one partition per block of groups
        labels = frame["g"].unique()
        blocks = np.array_split(labels, nparts)
        parts = [frame[frame["g"].isin(b)] for b in blocks]
        ddf = dd.from_map(lambda p: p, parts, meta=frame.iloc[:0])
        with warnings.catch_warnings():
            warnings.simplefilter("error", ValueWarning)
            fits.append(hmf.hetmixedlm("y ~ x + z", ddf, groups="g",
                                       var_formula="~ x").fit(reml=True))
    _assert_same(*fits)


def test_parquet_read_lazily(data, tmp_path):
    path = tmp_path / "data.parquet"
    _by_group(data, 3).to_parquet(path)
    ddf = dd.read_parquet(path)
    r1 = hmf.hetmixedlm("y ~ x + c", ddf, groups="g", var_formula="~ x").fit()
    r0 = hmf.hetmixedlm("y ~ x + c", data, groups="g", var_formula="~ x").fit()
    _assert_same(r0, r1)


def test_recoded_covariate(data, ddf):
    """Units and origin of a covariate change only what they imply."""
    kw = dict(re_formula="~ x", var_formula="~ x")
    r1 = hmf.hetmixedlm("y ~ x + z", ddf, groups="g", **kw).fit(reml=False)
    shifted = ddf.assign(x=ddf["x"] * 10 + 1000)
    r2 = hmf.hetmixedlm("y ~ x + z", shifted, groups="g", **kw).fit(reml=False)
    assert abs(r1.llf - r2.llf) < 1e-6
    np.testing.assert_allclose(r2.params["x"] * 10, r1.params["x"], rtol=1e-6)
    np.testing.assert_allclose(r2.bse["x"] * 10, r1.bse["x"], rtol=1e-5)
    np.testing.assert_allclose(r2.params["var:x"] * 10, r1.params["var:x"], rtol=1e-6)


def test_errors(data, ddf):
    with pytest.raises(ValueError, match="groups column 'school' is not in"):
        hmf.hetmixedlm("y ~ x", ddf, groups="school")
    with pytest.raises(TypeError, match="name of a column"):
        hmf.hetmixedlm("y ~ x", ddf, groups=np.zeros(len(data)))
    missing = data.sort_values("g").copy()
    missing.loc[missing.index[5], "x"] = np.nan
    with pytest.raises(ValueError, match=r"In partition 0 .*Missing values in \['x'\]"):
        hmf.hetmixedlm("y ~ x", _by_group(missing, 2), groups="g")
    with pytest.raises(NotImplementedError, match="var_re_formula"):
        hmf.hetmixedlm("y ~ x", ddf, groups="g", var_re_formula="~ 1")
    # residual correlation and nlme's power variance functions are in-memory
    # only (before: "unexpected arguments for a Dask fit")
    for key, value in (("correlation", "ar1"), ("var_power", "x"),
                       ("var_const_power", "fitted")):
        with pytest.raises(NotImplementedError, match=f"{key} is not available for "
                           "Dask DataFrames.*load the data into pandas"):
            hmf.hetmixedlm("y ~ x", ddf, groups="g", **{key: value})
    with pytest.raises(TypeError, match="Dask DataFrame"):
        HetMixedLM.from_formula("y ~ x", ddf, groups="g")
    with pytest.raises(ValueError, match="singular"):
        hmf.hetmixedlm("y ~ x + x2", ddf.assign(x2=ddf["x"] * 2), groups="g")
    model = hmf.hetmixedlm("y ~ x", ddf, groups="g")
    with pytest.raises(NotImplementedError, match="ddf"):
        model.fit(ddf="satterthwaite")


def test_missing_drop(data):
    missing = data.sort_values("g").copy()
    missing.loc[missing.index[::50], "x"] = np.nan
    r1 = hmf.hetmixedlm("y ~ x", _by_group(missing, 3), groups="g",
                        missing="drop").fit()
    r0 = hmf.hetmixedlm("y ~ x", missing, groups="g", missing="drop").fit()
    assert r1.model.nobs == r0.model.nobs == len(data) - len(missing.index[::50])
    _assert_same(r0, r1)


def test_progress_with_disp(ddf, capsys):
    hmf.hetmixedlm("y ~ x", ddf, groups="g").fit(disp=True)
    out = capsys.readouterr().out
    assert "Iteration    1: log-likelihood" in out
    assert "Completed" in out  # dask.diagnostics.ProgressBar


def test_local_cluster_of_processes(data, ddf):
    distributed = pytest.importorskip("distributed")  # installed with dask's extra
    r0 = hmf.hetmixedlm("y ~ x + z", data, groups="g", re_formula="~ x",
                        var_formula="~ x").fit(reml=True)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        r1 = hmf.hetmixedlm("y ~ x + z", ddf, groups="g", re_formula="~ x",
                            var_formula="~ x").fit(reml=True)
        pred = r1.predict(dd.from_pandas(data, npartitions=2), conditional=None).compute()
    _assert_same(r0, r1)
    pd.testing.assert_series_equal(pred, r0.predict(data, conditional=None), rtol=1e-6,
                                   check_names=False)


def test_package_imports_without_dask():
    """Without dask the package imports and fits in memory, and importing
    it imports no dask."""
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("dask", "distributed"):
                    raise ImportError("dask is blocked")
        sys.meta_path.insert(0, Block())
        import statsmodels_hetmixed
        import statsmodels_hetmixed.formula.api as hmf
        from statsmodels_hetmixed.datasets import hsb
        d = hsb.load_pandas().data.iloc[:2000]
        r = hmf.hetmixedlm("mathach ~ female", d, groups="school").fit()
        assert not [m for m in sys.modules if m.split(".")[0] == "dask"]
        print("ok", round(r.llf, 3))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.startswith("ok ")


def test_dask_graph_holds_no_rows_on_client(ddf):
    """The model's partitions are persisted delayed objects: the client
    holds their keys, not their data (local scheduler: in-process)."""
    model = hmf.hetmixedlm("y ~ x", ddf, groups="g")
    from dask.delayed import Delayed

    assert all(isinstance(p, Delayed) for p in model._dask_parts)


def test_partitions_hold_each_design_once(data, ddf):
    """A partition keeps float64 y, X, Z and W once each and nothing else
    of the size of its rows (the pickled partition): W is X itself when
    the variance formula has the mean formula's columns, a random
    intercept's column of ones is not stored, and the centred columns,
    the group index and the group indicator are made per evaluation."""
    import pickle

    import dask

    def held(model):
        parts = [p for p in dask.compute(*model._dask_parts) if p is not None]
        assert sum(p.n for p in parts) == model.nobs
        pickled = sum(len(pickle.dumps(p)) for p in parts)
        return model._dask_row_nbytes(), pickled

    n, m = len(data), data["g"].nunique()
    # y, X = W: (1 + 4) columns
    model = hmf.hetmixedlm("y ~ x * z", ddf, groups="g", var_formula="~ x * z")
    rows, pickled = held(model)
    assert rows == 8 * 5 * n
    # beside the rows: each group's label and size, and the blocks (an
    # extra vector of the rows would add 8 * 360 bytes a partition)
    assert pickled - rows < 40 * m + 2500 * ddf.npartitions
    # y, X (4), W (2), Z (2)
    model = hmf.hetmixedlm("y ~ x * z", ddf, groups="g", var_formula="~ x",
                           re_formula="~ x")
    rows, pickled = held(model)
    assert rows == 8 * (1 + 4 + 2 + 2) * n
    assert pickled - rows < 40 * m + 2500 * ddf.npartitions


def test_observed_information_is_the_analytic_one(data, ddf):
    """ML with a log-linear variance function: the partitions' parts of
    the engine's analytic Hessian add up to the in-memory fit's (2e-15
    relative here; central differences of the gradient, which the Dask
    fit took before, are 6e-11 off), the profile term taken with the
    whole data's score derivatives."""
    kw = dict(var_formula="~ x + c", re_formula="~ x")
    r0 = hmf.hetmixedlm("y ~ x + z + c", data, groups="g", **kw).fit(reml=False)
    natural = r0._results._natural
    dask_obj = hmf.hetmixedlm("y ~ x + z + c", ddf, groups="g", **kw)._objective(False)
    h0 = r0.model._objective(False).observed_information(natural).hessian
    h1 = dask_obj.observed_information(natural).hessian
    scale = np.abs(h0).max()
    np.testing.assert_allclose(h1, h0, rtol=1e-12, atol=1e-12 * scale)


def test_reml_standard_errors_where_the_random_effects_covariance_is_singular():
    """A random slope's variance near zero (3.5e-6, G singular by the fit's
    own rule): REML's information is differenced on Dask, and a central
    difference's backward step leaves the parameter space there (var(x)'s
    SE came out 42% off the in-memory analytic one on 100,000 rows).
    Forward steps, as the in-memory differenced route takes them: within
    the forward differences' error of the analytic SEs."""
    rng = np.random.default_rng(5)
    m, k = 200, 20
    g = np.repeat(np.arange(m), k)
    x, grp = rng.standard_normal(m * k), rng.integers(0, 2, m)[g]
    y = (1 + 0.5 * x + 0.3 * grp + rng.normal(0, 0.7, m)[g]
         + np.exp(0.5 * (0.2 + 0.4 * x - 0.5 * grp)) * rng.standard_normal(m * k))
    frame = pd.DataFrame({"y": y, "x": x, "grp": grp, "g": g})
    kw = dict(groups="g", re_formula="~ x", var_formula="~ x * grp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r0 = hmf.hetmixedlm("y ~ x * grp", frame, **kw).fit(reml=True)
        r1 = hmf.hetmixedlm("y ~ x * grp", _by_group(frame, 2), **kw).fit(reml=True)
    model = r0.model
    natural = np.asarray(r0.params_natural)[model.k_fe:]
    lay = model.layout
    assert any(b.singular(v) for b, v in zip(lay.blocks, lay.parts(
        lay.centring(model._grouped.re_basis) @ natural)))
    np.testing.assert_allclose(np.asarray(r1.params), np.asarray(r0.params),
                               rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.asarray(r1.bse), np.asarray(r0.bse), rtol=0.05)
