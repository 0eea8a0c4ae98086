"""Progress of fits and profile intervals: fit(disp=True), fit(callback=...),
profile_ci(disp=True, callback=...)."""

import numpy as np
import pandas as pd
import pytest

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed._progress import ProfileProgress, Trace


@pytest.fixture(scope="module")
def data():
    """30 groups of 8; residual SD differs by grp and between groups."""
    rng = np.random.default_rng(3)
    m, n = 30, 8
    g = np.repeat(np.arange(m), n)
    x = rng.normal(size=m * n)
    grp = np.where(rng.random(m * n) < 0.5, 0.0, 1.0)
    sd = np.exp(0.5 * grp + 0.25 * rng.normal(size=m)[g])
    y = 1 + x + rng.normal(size=m)[g] + sd * rng.normal(size=m * n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "grp": grp})


def test_trace_make_and_call(capsys):
    assert Trace.make() is None  # nothing asked: the optimisers skip it
    seen = []
    trace = Trace.make(disp=True, callback=seen.append, record=True)
    params = np.array([1.0, 2.0])
    trace(-10.5, params, np.array([0.5, -2.0]))
    params[0] = 99.0  # the callback got a copy
    assert seen[0].tolist() == [1.0, 2.0] and trace.hist == [-10.5]
    assert capsys.readouterr().out == (
        "Iteration    1: log-likelihood -10.500000, max |gradient| 2.000e+00\n")
    with pytest.raises(TypeError, match="callback must be callable"):
        Trace.make(callback=3)


@pytest.mark.parametrize("method", ["scoring", "bfgs"])
def test_fit_disp_and_callback_heteroskedastic(data, capsys, method):
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ grp")
    seen = []
    res = model.fit(reml=False, method=method, disp=True, callback=seen.append,
                    full_output=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(seen) == len(res.hist) >= 2
    assert lines[0].startswith("Iteration    1: log-likelihood ")
    assert "max |gradient|" in lines[0]
    # the log-likelihood printed is the one recorded
    assert float(lines[-1].split()[3].rstrip(",")) == pytest.approx(res.hist[-1],
                                                                     abs=1e-6)
    # the callback's vector: the covariance and variance-function parameters
    k_fe = model.k_fe
    assert seen[-1].shape == (len(res.params) - k_fe,)
    if method == "scoring":  # converged by its own test: no polish after it
        np.testing.assert_allclose(seen[-1], res.params[k_fe:], rtol=1e-5)
    # the same fit with and without progress
    quiet = model.fit(reml=False, method=method)
    np.testing.assert_allclose(res.params, quiet.params, rtol=1e-10)
    assert capsys.readouterr().out == ""


def test_fit_disp_and_callback_location_scale(data, capsys):
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ grp",
                           var_re_formula="~ 1")
    seen = []
    res = model.fit(reml=False, n_quad=5, disp=True, callback=seen.append)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(seen) >= 2
    assert all(line.startswith("Iteration") for line in lines)
    # the last report is the Newton steps' point: the estimate's llf
    assert float(lines[-1].split()[3].rstrip(",")) == pytest.approx(res.llf, abs=1e-6)
    # fixed effects and a first in the optimiser's vector
    np.testing.assert_allclose(seen[-1][:2], res.fe_params, rtol=1e-6)
    quiet = model.fit(reml=False, n_quad=5)
    np.testing.assert_allclose(res.params, quiet.params, rtol=1e-10)


def test_profile_ci_disp_and_callback(data, capsys):
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_re_formula="~ 1")
    res = model.fit(reml=False, n_quad=5)
    seen = []
    table = res.profile_ci("SD(g)", disp=True, callback=seen.append)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(seen) >= 4  # each limit needs refits
    assert all(isinstance(s, ProfileProgress) for s in seen)
    assert [s.refits for s in seen] == list(range(1, len(seen) + 1))
    assert {(s.row, s.number, s.total) for s in seen} == {("SD(g)", 1, 1)}
    assert lines[0].startswith("Profile 1/1 SD(g): refit 1, held value ")
    # no refit beats the fit
    assert max(s.llf for s in seen) <= res.llf + 1e-6
    # the upper limit is among the held values (log variances: SD = exp(t / 2))
    sds = np.exp(np.array([s.value for s in seen]) / 2)
    upper = table.loc["SD(g)", "0.975]"]
    assert np.min(np.abs(sds - upper)) < 1e-6 * upper
    with pytest.raises(TypeError, match="callable"):
        res.profile_ci("SD(g)", callback="print")
