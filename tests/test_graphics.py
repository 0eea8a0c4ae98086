"""Plots of random effects and group-specific variance functions."""

import sys

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

import statsmodels_hetmixed.formula.api as hmf  # noqa: E402
from statsmodels_hetmixed import graphics  # noqa: E402


def _simulate(n_groups=40, size=15, seed=7):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.standard_normal(len(g))
    h = rng.integers(0, 2, n_groups)[g]
    u = rng.normal(0, 1.0, n_groups)
    omega = rng.normal(0, 0.4, n_groups)
    log_var = 0.2 - 0.5 * h + 0.3 * x + omega[g]
    y = 1 + 0.5 * x + 0.4 * h + u[g] + np.exp(0.5 * log_var) * rng.standard_normal(len(g))
    # Labels that are not 0..m-1, to catch index/label mix-ups.
    return pd.DataFrame({"y": y, "x": x, "h": h, "g": 100 + g,
                         "z": rng.standard_normal(len(g)),
                         "size": rng.integers(100, 200, n_groups)[g]})


@pytest.fixture(scope="module")
def sim():
    return _simulate()


@pytest.fixture(scope="module")
def ls_fit(sim):
    """Location-scale fit: random intercepts in mean and log variance."""
    return hmf.hetmixedlm("y ~ x + h", sim, groups="g", var_formula="~ x + h",
                          var_re_formula="~ 1").fit(reml=False)


@pytest.fixture(scope="module")
def het_fit(sim):
    """HetMixedLM without random scale effects."""
    return hmf.hetmixedlm("y ~ x + h", sim, groups="g",
                          var_formula="~ x + h + z").fit(reml=False)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_missing_matplotlib_message(monkeypatch, ls_fit):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    # an install command that works: no index serves statsmodels-hetmixed
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        graphics.plot_random_effects_qq(ls_fit)
    with pytest.raises(ImportError, match=r"pip install"):
        graphics.plot_group_variance(ls_fit, "x")


# ----------------------------------------------------------------------
# Q-Q plots

def test_qq_location_scale(ls_fit):
    fig = graphics.plot_random_effects_qq(ls_fit)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["g", "var:g"]
    re = pd.DataFrame(ls_fit.random_effects).T
    for ax, name in zip(fig.axes, ["g", "var:g"]):
        points = ax.lines[0]
        assert len(points.get_xdata()) == 40
        # Sorted predictions against increasing normal quantiles.
        np.testing.assert_allclose(points.get_ydata(), np.sort(re[name]))
        assert np.all(np.diff(points.get_xdata()) > 0)
        assert len(ax.lines) == 2  # points and the quartile reference line


def test_qq_reference_line_through_quartiles(ls_fit):
    from scipy import stats

    fig = graphics.plot_random_effects_qq(ls_fit)
    ax = fig.axes[1]
    line = ax.lines[1]
    vals = pd.DataFrame(ls_fit.random_effects).T["var:g"]
    q1, q3 = np.quantile(vals, [0.25, 0.75])
    z1, z3 = stats.norm.ppf([0.25, 0.75])
    slope = (q3 - q1) / (z3 - z1)
    assert line.get_slope() == pytest.approx(slope)
    (x0, y0) = line.get_xy1()
    assert y0 + slope * (z1 - x0) == pytest.approx(q1)


def test_qq_plain_hetmixedlm(het_fit):
    fig = graphics.plot_random_effects_qq(het_fit)
    assert len(fig.axes) == 1
    assert fig.axes[0].get_title() == "g"
    np.testing.assert_allclose(
        fig.axes[0].lines[0].get_ydata(),
        np.sort(pd.DataFrame(het_fit.random_effects).T["g"]))


def test_qq_given_axes(ls_fit):
    fig, axes = plt.subplots(2, 1)
    out = graphics.plot_random_effects_qq(ls_fit, ax=axes)
    assert out is fig
    assert len(fig.axes) == 2
    assert [ax.get_title() for ax in axes] == ["g", "var:g"]
    with pytest.raises(ValueError, match="2 Axes"):
        graphics.plot_random_effects_qq(ls_fit, ax=axes[0])


# ----------------------------------------------------------------------
# Group-specific variance functions

def _rgba(line):
    return to_rgba(line.get_color())


def test_group_variance_lines_and_colours(ls_fit, sim):
    fig = graphics.plot_group_variance(ls_fit, "x", by="h")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    model = ls_fit.model
    assert len(ax.lines) == model.n_groups == 40
    assert [ln.get_label() for ln in ax.lines] == [str(g) for g in model.group_labels]
    h = sim.groupby("g")["h"].first()
    for ln, lab in zip(ax.lines, model.group_labels):
        assert _rgba(ln) == to_rgba(f"C{h[lab]}")
        assert len(ln.get_xdata()) == 50
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "h"
    assert [t.get_text() for t in legend.get_texts()] == ["0", "1"]
    assert ax.get_xlabel() == "x"


def test_group_variance_matches_resid_var(ls_fit, sim):
    """Each curve passes through the group's predicted residual variance
    at the group's smallest and largest x."""
    fig = graphics.plot_group_variance(ls_fit, "x", n_points=7)
    ax = fig.axes[0]
    model = ls_fit.model
    resid_var = np.asarray(ls_fit.resid_var)
    for ln, lab in zip(ax.lines, model.group_labels):
        rows = model.row_indices[lab]
        xs = sim["x"].to_numpy()[rows]
        x_data, y_data = ln.get_xdata(), ln.get_ydata()
        assert len(x_data) == 7
        assert x_data[0] == pytest.approx(xs.min())
        assert x_data[-1] == pytest.approx(xs.max())
        assert y_data[0] == pytest.approx(resid_var[rows[np.argmin(xs)]], rel=1e-10)
        assert y_data[-1] == pytest.approx(resid_var[rows[np.argmax(xs)]], rel=1e-10)
    # Single colour and no legend without `by`.
    assert len({_rgba(ln) for ln in ax.lines}) == 1
    assert ax.get_legend() is None


def test_group_variance_holds_varying_columns_at_group_mean(het_fit, sim):
    """z varies within groups: held at the group's mean."""
    ax = graphics.plot_group_variance(het_fit, "x", by="h").axes[0]
    model = het_fit.model
    a = np.asarray(het_fit.var_params)
    for ln, lab in zip(ax.lines, model.group_labels):
        sub = sim[sim["g"] == lab]
        expect = np.exp(a[0] + a[1] * ln.get_xdata() + a[2] * sub["h"].iloc[0]
                        + a[3] * sub["z"].mean())
        np.testing.assert_allclose(ln.get_ydata(), expect, rtol=1e-12)
    assert len(ax.lines) == 40


def _simulate_scale_slope(n_groups=50, size=15, seed=3):
    """Random intercept and slope of x in the log variance."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.standard_normal(len(g))
    h = rng.integers(0, 2, n_groups)[g]
    u = rng.normal(0, 1.0, n_groups)
    om0, om1 = rng.normal(0, 0.5, n_groups), rng.normal(0, 0.4, n_groups)
    log_var = 0.2 - 0.5 * h + 0.3 * x - 0.2 * h * x + om0[g] + om1[g] * x
    y = 1 + 0.5 * x + u[g] + np.exp(0.5 * log_var) * rng.standard_normal(len(g))
    return pd.DataFrame({"y": y, "x": x, "h": h, "g": 100 + g})


def test_group_variance_random_scale_slope_and_interaction():
    data = _simulate_scale_slope()
    res = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x * h",
                         var_re_formula="~ x").fit(reml=False)
    assert res.converged
    fig = graphics.plot_group_variance(res, "x", by="h", log_scale=True)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert len(ax.lines) == 50
    model = res.model
    resid_var = np.asarray(res.resid_var)
    for ln, lab in zip(ax.lines, model.group_labels):
        rows = model.row_indices[lab]
        xs = data["x"].to_numpy()[rows]
        assert ln.get_ydata()[0] == pytest.approx(resid_var[rows[np.argmin(xs)]],
                                                  rel=1e-10)
    # The q-q plot has one panel per random effect.
    fig = graphics.plot_random_effects_qq(res)
    assert [a.get_title() for a in fig.axes] == ["g", "var:g", "var:x"]


def test_group_variance_given_axes_and_numeric_by(ls_fit):
    fig, ax = plt.subplots()
    out = graphics.plot_group_variance(ls_fit, "x", by="size", ax=ax)
    assert out is fig
    # More than 10 numeric levels: a colour bar instead of a legend.
    assert len(fig.axes) == 2
    assert ax.get_legend() is None
    assert len(ax.lines) == 40


def test_group_variance_errors(ls_fit, sim):
    with pytest.raises(ValueError, match="'nope' is not a column"):
        graphics.plot_group_variance(ls_fit, "nope")
    with pytest.raises(ValueError, match="by='nope' is not a column"):
        graphics.plot_group_variance(ls_fit, "x", by="nope")
    with pytest.raises(ValueError, match="not used by var_formula"):
        graphics.plot_group_variance(ls_fit, "z")
    with pytest.raises(ValueError, match="varies within group"):
        graphics.plot_group_variance(ls_fit, "x", by="z")
    with pytest.raises(ValueError, match="n_points"):
        graphics.plot_group_variance(ls_fit, "x", n_points=1)
    with pytest.raises(ValueError, match="rows"):
        graphics.plot_group_variance(ls_fit, "x", data=sim.iloc[:10])
    shuffled = sim.sample(frac=1.0, random_state=1)
    with pytest.raises(ValueError, match="does not reproduce"):
        graphics.plot_group_variance(ls_fit, "x", data=shuffled)


def test_group_variance_needs_formulas(sim):
    from statsmodels_hetmixed import HetMixedLM

    exog = np.column_stack([np.ones(len(sim)), sim["x"]])
    res = HetMixedLM(sim["y"].to_numpy(), exog, sim["g"].to_numpy(),
                     exog_var=exog).fit(reml=False)
    with pytest.raises(ValueError, match="formulas|data"):
        graphics.plot_group_variance(res, "x", data=sim)


def test_group_variance_group_level_binary_x_as_points(ls_fit, sim):
    """x constant within groups (h, like HSB's sector) drew an empty plot
    (a zero-length line per group): now one point per group at its value,
    on a 0/1 axis with a tick per value."""
    fig = graphics.plot_group_variance(ls_fit, "h")
    ax = fig.axes[0]
    model = ls_fit.model
    assert len(ax.lines) == len(model.group_labels)
    a = np.asarray(ls_fit.var_params)
    re = ls_fit.random_effects
    for line, lab in zip(ax.lines, model.group_labels):
        assert line.get_linestyle() == "None" and line.get_marker() == "o"
        sub = sim.iloc[model.row_indices[lab]]
        h = sub["h"].iloc[0]
        assert list(line.get_xdata()) == [float(h)]
        # the group's variance with x held at its mean
        expected = np.exp(a[0] + a[1] * sub["x"].mean() + a[2] * h
                          + float(re[lab]["var:g"]))
        np.testing.assert_allclose(line.get_ydata(), [expected], rtol=1e-10)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]
    assert "one point per group" in ax.get_title()


def test_group_variance_categorical_x_as_points(sim):
    """A within-group categorical (text) x: points at each level observed in
    the group, one tick per level (it was refused as non-numeric)."""
    rng = np.random.default_rng(0)
    data = sim.assign(k=rng.choice(["lo", "mid", "hi"], size=len(sim)))
    res = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x + k").fit(
        reml=False)
    fig = graphics.plot_group_variance(res, "k", log_scale=True)
    ax = fig.axes[0]
    levels = sorted(data["k"].unique())
    assert [t.get_text() for t in ax.get_xticklabels()] == levels
    for line, lab in zip(ax.lines, res.model.group_labels):
        sub = data.iloc[res.model.row_indices[lab]]
        observed = sorted(sub["k"].unique())
        assert list(line.get_xdata()) == [float(levels.index(v)) for v in observed]
        new = pd.DataFrame({"x": sub["x"].mean(), "k": observed})
        np.testing.assert_allclose(line.get_ydata(), res.predict_variance(new),
                                   rtol=1e-10)
    assert ax.get_ylabel() == "Predicted residual variance (log scale)"


def test_qq_labels_say_the_scale(ls_fit):
    fig = graphics.plot_random_effects_qq(ls_fit)
    labels = {ax.get_title(): ax.get_ylabel() for ax in fig.axes}
    assert "log-variance scale" in labels["var:g"]
    assert "response scale" in labels["g"]
