"""Formula processing (_formula): every design is built by statsmodels'
configured formula engine (``statsmodels.formula.options.formula_engine``),
and the two engines give the same model, names, predictions and pickles."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import _formula

formulaic = pytest.importorskip("formulaic")


@pytest.fixture
def frame():
    rng = np.random.default_rng(3)
    m, k = 30, 8
    g = np.repeat(np.arange(m), k)
    x = rng.standard_normal(m * k)
    c = rng.choice(["a", "b", "c"], size=m * k)
    u = rng.standard_normal(m)[g] * 0.7 + rng.standard_normal(m)[g] * 0.2 * x
    sd = np.exp(0.5 * (0.3 * x + (c == "b") * 0.5))
    y = 1 + 0.5 * x + (c == "c") + u + sd * rng.standard_normal(m * k)
    return pd.DataFrame({"y": y, "x": x, "c": c, "g": g, "v": np.abs(x) + 0.5})


@pytest.fixture
def engine(monkeypatch):
    """Set statsmodels' formula engine for one test (restored after)."""
    def use(name):
        monkeypatch.setattr(statsmodels.formula.options, "_formula_engine", name)
    return use


def _fit(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hmf.hetmixedlm("y ~ x + C(c)", frame, groups="g", re_formula="~ x",
                               var_formula="~ x + C(c)")
        return model, model.fit(reml=False)


def test_every_design_follows_statsmodels_engine(frame, engine):
    engine("patsy")
    mod_p, res_p = _fit(frame)
    engine("formulaic")
    mod_f, res_f = _fit(frame)
    assert mod_p._formula_engine == "patsy" and mod_f._formula_engine == "formulaic"
    for info in (mod_f.data.model_spec, mod_f._var_design_info, mod_f._re_design_info):
        assert isinstance(info, formulaic.ModelSpec)
    # the same model: names and column order, categorical coding, estimates
    assert list(res_f.params.index) == list(res_p.params.index)
    assert mod_f.data.exog_var_names == mod_p.data.exog_var_names
    np.testing.assert_array_equal(mod_f.exog_var, mod_p.exog_var)
    np.testing.assert_array_equal(mod_f.exog, mod_p.exog)
    np.testing.assert_allclose(res_f.params, res_p.params, rtol=1e-10, atol=1e-12)
    assert res_f.llf == pytest.approx(res_p.llf, rel=1e-12)
    # predictions on new data from the stored specifications, NaN rows kept
    new = frame.iloc[[0, 9, 17, 30]].copy()
    new.loc[new.index[1], "x"] = np.nan
    pf = res_f.get_prediction(new).summary_frame()
    pp = res_p.get_prediction(new).summary_frame()
    pd.testing.assert_frame_equal(pf, pp, rtol=1e-8)
    assert pf.iloc[1][["mean", "obs_ci_lower"]].isna().all()
    np.testing.assert_allclose(res_f.predict_variance(new.dropna()),
                               res_p.predict_variance(new.dropna()), rtol=1e-8)
    # a string hypothesis on a variance parameter (formulaic's own
    # constraint parser reads the ':' of var:x as an operator)
    assert res_f.wald_test("var:x = 0", scalar=True).statistic == pytest.approx(
        res_p.wald_test("var:x = 0", scalar=True).statistic, rel=1e-8)


def test_pickle_rebuilds_the_engine_s_specification(frame, engine):
    engine("formulaic")
    _, res = _fit(frame)
    back = pickle.loads(pickle.dumps(res))
    engine("patsy")  # the engine the model was built with is used again
    assert isinstance(back.model._var_design_info, formulaic.ModelSpec)
    new = frame.iloc[[1, 2, 40]]
    np.testing.assert_allclose(back.get_prediction(new).predicted_mean,
                               res.get_prediction(new).predicted_mean, rtol=1e-12)


def test_missing_values_of_var_formula_named_with_either_engine(frame, engine):
    bad = frame.assign(v=frame["v"] - 1.0)
    for name in ("patsy", "formulaic"):
        engine(name)
        with pytest.raises(ValueError, match="gives missing values"), \
                np.errstate(invalid="ignore"):
            hmf.hetmixedlm("y ~ x", bad, groups="g", var_formula="~ np.log(v)")


def test_consolidated_design_is_one_float_block(frame):
    f = _formula.design("~ x + C(c)", frame, {}, "formulaic")
    assert f._mgr.nblocks > 1  # formulaic: a block per column
    one = _formula.consolidated(f)
    assert one._mgr.nblocks == 1 and set(one.dtypes) == {np.dtype(float)}
    assert one.to_numpy().flags.f_contiguous  # patsy's layout
    np.testing.assert_array_equal(one.to_numpy(), f.to_numpy(dtype=float))
    assert list(one.columns) == list(f.columns)
    p = _formula.design("~ x + C(c)", frame, {}, "patsy")
    assert _formula.consolidated(p) is p
    plain = frame[["x", "c"]]  # not a design: left for the input checks
    assert _formula.consolidated(plain) is plain


@pytest.mark.parametrize("formula, var_formula, same", [
    ("y ~ x + C(c)", "~ x + C(c)", True),
    ("y ~ x + C(c)", "~x+C(c)", True),
    ("y ~ x + C(c)", "~ C(c) + x", False),   # another column order
    ("y ~ x + C(c)", "~ 1 + x + C(c)", False),
    ("y ~ x + C(c)", "v ~ x + C(c)", False),  # not one-sided
    ("y ~ x", "~ x + C(c)", False),
])
def test_same_terms(formula, var_formula, same):
    assert _formula.same_terms(formula, var_formula) is same


@pytest.mark.parametrize("name", ["patsy", "formulaic"])
def test_variance_formula_equal_to_the_mean_s_is_built_once(frame, engine, monkeypatch,
                                                            name):
    """var_formula the mean formula's right-hand side: the variance design
    is the mean design (no second build; its columns shared), with the
    results, names, predictions and pickles of the same design built on
    its own (the formula written differently)."""
    engine(name)
    built = []
    design = _formula.design
    monkeypatch.setattr(_formula, "design",
                        lambda f, *a, **k: built.append(f) or design(f, *a, **k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        once = hmf.hetmixedlm("y ~ x + C(c)", frame, groups="g",
                              var_formula="~ x + C(c)")
        twice = hmf.hetmixedlm("y ~ x + C(c)", frame, groups="g",
                               var_formula="~ 1 + x + C(c)")
        a, b = once.fit(reml=False), twice.fit(reml=False)
    assert built == ["~ 1 + x + C(c)"]
    assert np.shares_memory(once.exog_var, once.exog)
    assert list(a.params.index) == list(b.params.index)
    np.testing.assert_allclose(np.asarray(a.params), np.asarray(b.params), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(a.bse), np.asarray(b.bse), rtol=1e-10)
    new = frame.head(5)
    np.testing.assert_allclose(a.predict_variance(new), b.predict_variance(new),
                               rtol=1e-12)
    again = pickle.loads(pickle.dumps(a))
    np.testing.assert_allclose(again.predict_variance(new), a.predict_variance(new),
                               rtol=1e-12)


@pytest.mark.parametrize("where", ["formula", "var_formula", "re_formula"])
def test_numbers_with_some_text_warn_that_the_column_turns_categorical(frame, where):
    """A numeric column with a stray text value ("n/a", a decimal comma)
    is read as text, which the formula engine codes as one dummy per
    distinct value: a silently different model unless the user is told."""
    from statsmodels.tools.sm_exceptions import ValueWarning

    data = frame.copy()
    data["x"] = data["x"].astype(object)
    data.loc[7, "x"] = "n/a"
    args = {"formula": "y ~ 1", "var_formula": None, "re_formula": None}
    args[where] = ("y ~ x" if where == "formula" else "~ x")
    with pytest.warns(ValueWarning, match=r"column 'x' holds numbers and some "
                      r"text, such as 'n/a' \(row 7\).*C\(x\)"):
        hmf.hetmixedlm(args["formula"], data, groups="g", re_formula=args["re_formula"],
                       var_formula=args["var_formula"])


def test_text_columns_meant_as_categorical_do_not_warn(frame):
    """C(k) says a column of codes with a text level is categorical on
    purpose; an all-text column is categorical too: no warning."""
    from statsmodels.tools.sm_exceptions import ValueWarning

    data = frame.copy()
    data["k"] = np.where(np.arange(len(data)) % 5 == 0, "n/a",
                         (np.arange(len(data)) % 2 + 1).astype(str)).astype(object)
    with pytest.warns(ValueWarning, match="column 'k'"):
        hmf.hetmixedlm("y ~ k", data, groups="g")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ValueWarning)
        model = hmf.hetmixedlm("y ~ C(k)", data, groups="g", var_formula="~ c")
    assert model.exog_names == ["Intercept", "C(k)[T.2]", "C(k)[T.n/a]"]
