"""The text summary and summary_col (issue 13: "Reads right")."""

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy.stats import norm
from statsmodels.iolib.summary2 import summary_col as sm_summary_col
from statsmodels.tools.sm_exceptions import HypothesisTestWarning

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed.summary import summary_col

from .conftest import RESULTS
from .test_locscale import _simulate

Q = norm.ppf(0.975)


@pytest.fixture(scope="module")
def hsb():
    from statsmodels_hetmixed.datasets import hsb as dataset

    return dataset.load_pandas().data


@pytest.fixture(scope="module")
def readme(hsb):
    """The README example: residual variance by sex, ML."""
    return hmf.hetmixedlm("mathach ~ female", hsb, groups="school",
                          var_formula="~ female").fit(reml=False)


@pytest.fixture(scope="module")
def homoskedastic(hsb):
    return hmf.hetmixedlm("mathach ~ female", hsb, groups="school").fit(reml=False)


@pytest.fixture(scope="module")
def mixedlm(hsb, homoskedastic):
    # MixedLM's default optimiser stops short on these data; started at the
    # HetMixedLM estimate it converges to the same maximum.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = smf.mixedlm("mathach ~ female", hsb, groups="school").fit(
            reml=False, start_params=np.asarray(homoskedastic.params))
    assert res.converged
    return res


def _row(text, label):
    """The cells of the summary row that starts with ``label``."""
    rows = [line for line in text.splitlines() if line.startswith(label + " ")]
    assert len(rows) == 1, (label, rows)
    return rows[0][len(label):].split()


def _info_labels(smry):
    """The labels of the rows above the tables, in the order of the dict
    (summary2 lays it out in two columns)."""
    top = smry.tables[0]
    return [x for col in (0, 2) for x in top.iloc[:, col] if x]


def _info_values(smry):
    top = smry.tables[0]
    return {k: v for col in (0, 2) for k, v in zip(top.iloc[:, col], top.iloc[:, col + 1])
            if k}


def test_variance_ratio_with_its_interval(readme):
    a, se = readme.params["var:female"], readme.bse["var:female"]
    cells = _row(readme.summary().as_text(), "exp(var:female)")
    assert cells == [f"{np.exp(a):.4f}", f"{np.exp(a - Q * se):.4f}",
                     f"{np.exp(a + Q * se):.4f}"]
    # the interval the issue computed by hand
    assert [round(float(c), 3) for c in cells[1:]] == [0.852, 0.974]


def test_residual_variance_per_sex_with_intervals(readme):
    text = readme.summary().as_text()
    a, cov = readme.params[["var:Intercept", "var:female"]], readme.cov_params()
    for female, contrast in ((0, [1, 0]), (1, [1, 1])):
        c = np.array(contrast, float)
        log_var = c @ a
        se_log = np.sqrt(c @ cov.loc[a.index, a.index].to_numpy() @ c)
        cells = _row(text, f"female={female}")
        assert cells == [f"{np.exp(log_var):.3f}",
                         f"{np.exp(log_var) * se_log:.3f}",
                         f"{np.exp(log_var - Q * se_log):.3f}",
                         f"{np.exp(log_var + Q * se_log):.3f}"]
    assert "Residual variance" in text


def test_random_intercept_variance_interval_on_log_scale(readme):
    v = readme.params["var(school)"]
    se = readme.bse["var(school)"]
    cells = _row(readme.summary().as_text(), "var(school)")
    assert cells == [f"{v:.3f}", f"{se:.3f}", f"{v * np.exp(-Q * se / v):.3f}",
                     f"{v * np.exp(Q * se / v):.3f}"]


def test_variance_block_uses_the_names_tests_take(readme):
    text = readme.summary().as_text()
    for name in ("var:Intercept", "var:female", "var(school)"):
        assert name in readme.params.index
        _row(text, name)  # one row under this name
        if name.startswith("var:"):
            readme.t_test(f"{name} = 0")
        else:
            with pytest.warns(HypothesisTestWarning, match="boundary"):
                readme.t_test(f"{name} = 0")
    # z-tests only where 0 is meaningful: var:Intercept = 0 means variance 1
    assert len(_row(text, "var:Intercept")) == 4  # Coef., Std.Err., interval
    z, p = _row(text, "var:female")[2:4]
    assert float(z) == pytest.approx(readme.tvalues["var:female"], abs=1e-3)
    assert float(p) == pytest.approx(readme.pvalues["var:female"], abs=1e-3)


def test_homoskedastic_summary_has_mixedlm_rows_and_title(homoskedastic, mixedlm):
    ours, theirs = homoskedastic.summary(), mixedlm.summary()
    assert ours.title == theirs.title == "Mixed Linear Model Regression Results"
    assert _info_labels(ours) == _info_labels(theirs)
    mine, ref = _info_values(ours), _info_values(theirs)
    for label in ("No. Observations:", "No. Groups:", "Min. group size:",
                  "Max. group size:", "Mean group size:", "Dependent Variable:",
                  "Method:", "Converged:"):
        assert mine[label] == ref[label], label
    assert float(mine["Scale:"]) == pytest.approx(float(ref["Scale:"]), rel=1e-4)
    assert float(mine["Log-Likelihood:"]) == pytest.approx(
        float(ref["Log-Likelihood:"]), abs=1e-3)
    table, ref_table = ours.tables[1], theirs.tables[1]
    assert list(table.index) == list(ref_table.index) == [
        "Intercept", "female", "school Var"]
    assert list(table.columns) == list(ref_table.columns)
    num = table.replace("", np.nan).astype(float)
    ref_num = ref_table.replace("", np.nan).astype(float)
    # estimates to the printed digits; the fixed effects' SEs (ours from
    # (X'V^-1 X)^-1, MixedLM's from the joint Hessian) to 0.5%
    np.testing.assert_allclose(num["Coef."], ref_num["Coef."], atol=1.5e-3)
    np.testing.assert_allclose(num["Std.Err."].iloc[:2], ref_num["Std.Err."].iloc[:2],
                               rtol=5e-3)
    # The variance's SE is the natural one (deliberately not MixedLM's
    # sqrt(scale) x relative SE, docs/moving_from_mixedlm.rst), with an interval.
    assert num.loc["school Var", "Std.Err."] == pytest.approx(
        homoskedastic.bse_natural["var(school)"], abs=1e-3)
    assert np.isfinite(num.loc["school Var", "[0.025"])
    text = ours.as_text()
    assert "Log variance" not in text and "Heteroskedastic" not in text


@pytest.fixture(scope="module")
def random_slope():
    data = pd.read_csv(RESULTS / "data" / "sim_slope.csv")
    return hmf.hetmixedlm("y ~ x + t", data, groups="g", re_formula="1 + t",
                          var_formula="~ C(f)").fit(reml=False)


@pytest.fixture(scope="module")
def location_scale():
    data, _ = _simulate(n_groups=30, size=8, seed=5)
    return hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x + h",
                          var_re_formula="~ 1").fit(reml=False, n_quad=1)


@pytest.mark.parametrize("name", ["readme", "random_slope", "location_scale"])
def test_no_row_wider_than_the_frame(name, request):
    text = request.getfixturevalue(name).summary().as_text()
    lines = text.splitlines()
    frames = [line for line in lines if line and set(line) <= {"="}]
    assert len(frames) == 2
    width = len(frames[0])
    assert len(frames[1]) == width
    assert max(len(line) for line in lines) == width
    # the rules between the tables span the frame too
    assert {len(line) for line in lines if line and set(line) <= {"-"}} == {width}


def test_location_scale_shows_the_random_effects_once(location_scale):
    text = location_scale.summary().as_text()
    _row(text, "corr(g, var:g)")
    _row(text, "SD(var:g)")
    for name in ("var(g)", "cov(g, var:g)", "var(var:g)"):
        assert not any(line.startswith(name + " ") for line in text.splitlines())
    # the parameter names stay findable for t_test / nlcom
    assert "cov(g, var:g)" in " ".join(text.split())
    assert len(_row(text, "var:Intercept")) == 4  # no z-test of "variance 1"


def test_level2_log_variance_intercepts_are_not_tested():
    data, _ = _simulate(n_groups=30, size=8, seed=5)
    res = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x",
                         var_re_formula="~ 1", re_var_formula="~ h").fit(
                             reml=False, n_quad=1)
    text = res.summary().as_text()
    assert len(_row(text, "logvar(g):Intercept")) == 4
    assert len(_row(text, "logvar(g):h")) == 6  # a ratio of variances: tested
    assert len(_row(text, "atanh corr(g, var:g):Intercept")) == 6  # corr = 0


def test_reml_labels(random_slope):
    reml = hmf.hetmixedlm("y ~ x + t", random_slope.model.data.frame, groups="g",
                          re_formula="1 + t", var_formula="~ C(f)").fit()
    info = _info_values(reml.summary())
    # lme4's REML criterion is -2 x the REML log-likelihood
    assert float(info["REML log-likelihood:"]) == pytest.approx(reml.llf, abs=1e-4)
    assert float(info["REML criterion:"]) == pytest.approx(-2 * reml.llf, abs=1e-4)
    assert "Log-Likelihood:" not in info


def test_residual_variances_follow_the_levels_not_the_row_order(random_slope):
    data = random_slope.model.data.frame
    shuffled = data.sample(frac=1.0, random_state=1)
    again = hmf.hetmixedlm("y ~ x + t", shuffled, groups="g", re_formula="1 + t",
                           var_formula="~ C(f)").fit(reml=False)

    def block(res):
        lines = res.summary().as_text().splitlines()
        start = [i for i, x in enumerate(lines) if x.startswith("Residual variance ")][0]
        return [[round(float(v), 2) for v in x.split()[1:]]
                for x in lines[start + 2:start + 5]]

    assert [x.split()[0] for x in random_slope.summary().as_text().splitlines()
            if x.startswith(("reference ", "C(f)[T."))] == [
        "reference", "C(f)[T.b]", "C(f)[T.c]"]
    np.testing.assert_allclose(block(again), block(random_slope), atol=0.011)


def test_summary_col_labels_and_stars(readme, homoskedastic, mixedlm):
    table = summary_col([mixedlm, homoskedastic, readme],
                        model_names=["MixedLM", "hom", "het"],
                        float_format="%.3f").tables[0]
    # MixedLM's covariance parameters are relative to the scale, and say so
    assert "school Var / Scale" in table.index
    assert table.loc["school Var / Scale", "MixedLM"] == \
        table.loc["school Var / Scale", "hom"] == \
        f"{homoskedastic.params['school Var']:.3f}"
    assert table.loc["Scale", "hom"] == f"{homoskedastic.scale:.4f}"
    assert table.loc["Scale", "het"] == ""
    # no stars on variances or on the log-variance intercept ...
    for name, col in (("school Var / Scale", "MixedLM"), ("school Var / Scale", "hom"),
                      ("var(school)", "het"), ("var:Intercept", "het")):
        assert "*" not in table.loc[name, col], (name, col)
    # ... where statsmodels' summary_col puts them
    plain = sm_summary_col([mixedlm, readme], stars=True).tables[0]
    assert plain.loc["school Var"].iloc[0].endswith("***")
    assert plain.loc["var:Intercept"].iloc[1].endswith("***")
    # tests that mean something keep their stars
    assert table.loc["female", "het"].endswith("***")
    assert table.loc["var:female", "het"].endswith("***")  # p = 0.006
    assert table.loc["Model", "MixedLM"] == "MixedLM"
    assert table.loc["Model", "het"] == "HetMixedLM"


def test_additive_variances_by_level_are_shown_once():
    data = pd.read_csv(RESULTS / "data" / "sim_slope.csv")
    by = hmf.hetmixedlm("y ~ x", data, groups="g", var_by="f",
                        var_link="identity").fit(reml=False)
    text = by.summary().as_text()
    # Stata's var(Residual) rows by group are the parameters themselves
    assert len(_row(text, "var(Residual: f=b)")) == 4
    assert "Residual variance " not in text
    dummy = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ fb",
                           var_link="identity").fit(reml=False)
    smry = dummy.summary()
    text = smry.as_text()
    theta = dummy.params[["var:Intercept", "var:fb"]]
    assert _row(text, "fb=1")[0] == f"{theta.sum():.3f}"  # var(Residual) + var(fb)
    # the other renderings work with the label columns aligned left
    assert "fb=1" in smry.as_html() and "fb=1" in smry.as_latex()


def test_summary_col_information_rows_in_a_fixed_order(readme, homoskedastic, mixedlm):
    """statsmodels joins the information rows by an outer merge whose order
    depends on the pandas version (alphabetical in pandas 3, not in 2.0):
    they come in info_dict's order whatever pandas does."""
    from statsmodels_hetmixed.summary import summary_col

    info = {"No. groups": lambda r: f"{r.model.n_groups}",
            "Method": lambda r: r.method,
            "Log-likelihood": lambda r: f"{r.llf:.2f}"}
    frame = summary_col([mixedlm, homoskedastic, readme],
                        info_dict=info).tables[0]
    assert list(frame.index[-3:]) == list(info)
    # the estimates' rows keep their order (the SE rows share the empty label)
    default = summary_col([mixedlm, homoskedastic, readme]).tables[0]
    assert list(default.index[:2]) == ["Intercept", ""]
