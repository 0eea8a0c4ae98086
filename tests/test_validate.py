"""Input checks (_validate.py): the array and the formula interfaces alike."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import HetMixedLM, _locscale
from statsmodels_hetmixed._validate import check_groups


def _data(n_groups=30, size=5, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    s = rng.integers(0, 2, n_groups)[g]
    x = rng.normal(size=g.size)
    y = (1 + x + rng.normal(size=n_groups)[g]
         + rng.normal(size=g.size) * np.exp(0.3 * rng.normal(size=n_groups))[g])
    return pd.DataFrame({"y": y, "x": x, "s": s, "g": g})


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module")
def ls_fit(data):
    """A location-scale model and its fit (random scale intercept)."""
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_re_formula="~ 1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, model.fit(reml=False)


def _arrays(data):
    return data["y"].to_numpy(), np.c_[np.ones(len(data)), data["x"]], \
        data["g"].to_numpy()


# ----------------------------------------------------------------------
# Data
def test_missing_drop_masks_by_position_with_repeated_index_labels(data):
    frame = data.copy()
    frame.index = [0] + list(range(len(frame) - 1))  # label 0 twice
    frame.iloc[5, frame.columns.get_loc("x")] = np.nan
    model = hmf.hetmixedlm("y ~ x", frame, groups="g", missing="drop")
    assert model.nobs == len(frame) - 1
    expected = frame["y"].to_numpy()[np.arange(len(frame)) != 5]
    np.testing.assert_array_equal(model.endog, expected)


@pytest.mark.parametrize("api", ["formula", "array"])
def test_empty_data(data, api):
    with pytest.raises(ValueError, match="no observations"):
        if api == "formula":
            hmf.hetmixedlm("y ~ x", data.iloc[:0], groups="g")
        else:
            HetMixedLM(*_arrays(data.iloc[:0]))


def test_no_rows_left_after_dropping_missing_values(data):
    frame = data.assign(x=np.nan)
    with pytest.raises(ValueError, match="no observations"):
        hmf.hetmixedlm("y ~ x", frame, groups="g", missing="drop")


def test_formula_without_response(data):
    with pytest.raises(ValueError, match="has no response.*'y ~ x'"):
        hmf.hetmixedlm("~ x", data, groups="g")


@pytest.mark.parametrize("api", ["formula", "array"])
def test_random_effects_design_without_columns(data, api):
    with pytest.raises(ValueError, match="random-effects design.*no columns"):
        if api == "formula":
            hmf.hetmixedlm("y ~ x", data, groups="g", re_formula="~ 0")
        else:
            HetMixedLM(*_arrays(data), exog_re=np.zeros((len(data), 0)))


def test_mean_and_variance_designs_without_columns(data):
    y, X, g = _arrays(data)
    with pytest.raises(ValueError, match="fixed-effects design.*no columns"):
        HetMixedLM(y, np.zeros((len(y), 0)), g)
    with pytest.raises(ValueError, match="variance design.*no columns.*constant"):
        HetMixedLM(y, X, g, exog_var=np.zeros((len(y), 0)))


def test_designs_with_another_number_of_rows(data):
    y, X, g = _arrays(data)
    with pytest.raises(ValueError,
                       match=r"exog has \d+ rows, but there are \d+ observations"):
        HetMixedLM(y, X[:-1], g)
    with pytest.raises(ValueError, match=r"exog_var has \d+ rows"):
        HetMixedLM(y, X, g, exog_var=X[:-1])
    with pytest.raises(ValueError, match="one label per row"):
        HetMixedLM(y, X, g[:-1])


def test_one_missing_value_names_the_column(data):
    y, X, g = _arrays(data)
    X = X.copy()
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"exog has missing or infinite values in "
                                         r"column\(s\) \['x1'\] \(1 rows\)"):
        HetMixedLM(y, X, g)
    X[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"\['x1'\]"):
        HetMixedLM(y, X, g)
    # missing='drop' on arrays drops that row
    X[3, 1] = np.nan
    assert HetMixedLM(y, X, g, missing="drop").nobs == len(y) - 1
    with pytest.raises(ValueError, match=r"Missing values in \['x'\] \(1 rows\)"):
        hmf.hetmixedlm("y ~ x", data.assign(x=np.where(data.index == 3, np.nan,
                                                        data["x"])), groups="g")


def test_missing_group_labels(data):
    y, X, g = _arrays(data)
    g = g.astype(float)
    g[0] = np.nan
    with pytest.raises(ValueError, match="groups has missing values"):
        HetMixedLM(y, X, g)


def test_string_column(data):
    y, X, g = _arrays(data)
    # Numbers stored as text are not taken as numbers.
    text = pd.DataFrame({"const": 1.0, "x": data["x"].astype(str)})
    with pytest.raises(ValueError, match=r"exog has non-numeric column\(s\) \['x'\]"):
        HetMixedLM(y, text, g)
    with pytest.raises(ValueError, match=r"exog has non-numeric column\(s\) \['x1'\]"):
        HetMixedLM(y, np.c_[X[:, :1], data["x"].astype(str)], g)
    with pytest.raises(ValueError, match=r"exog_var has non-numeric"):
        HetMixedLM(y, X, g, exog_var=text)


def test_single_group_level(data):
    y, X, _ = _arrays(data)
    with pytest.raises(ValueError, match="single level"):
        HetMixedLM(y, X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="single level"):
        hmf.hetmixedlm("y ~ x", data.assign(g=7), groups="g")


def test_one_row_groups(data):
    # Some groups of one row: allowed, and the likelihood is MixedLM's.
    frame = data.copy()
    frame.loc[frame.index[::5], "g"] = -1 - np.arange(len(frame[::5]))
    assert (frame["g"].value_counts() == 1).sum() == len(frame[::5])
    model = hmf.hetmixedlm("y ~ x", frame, groups="g")
    res = model.fit(reml=False)
    mixed = MixedLM.from_formula("y ~ x", frame, groups="g")
    mixed.cov_pen, mixed.reml = None, False  # set by MixedLM.fit only
    pars = MixedLMParams.from_components(
        fe_params=np.asarray(res.fe_params),
        cov_re=np.asarray(res.cov_re) / res.scale)
    assert mixed.loglike(pars, profile_fe=False) == pytest.approx(res.llf, rel=1e-8)
    # All groups of one row: the random effects are not identified.
    with pytest.raises(ValueError, match="single observation"):
        HetMixedLM(frame["y"], np.c_[np.ones(len(frame)), frame["x"]],
                   np.arange(len(frame)))


@pytest.mark.parametrize("api", ["formula", "array"])
def test_identity_link_with_negative_variance_design(data, api):
    with pytest.raises(ValueError, match="non-negative variance-design columns"):
        if api == "formula":
            hmf.hetmixedlm("y ~ x", data, groups="g", var_formula="~ x",
                           var_link="identity")
        else:
            y, X, g = _arrays(data)
            HetMixedLM(y, X, g, exog_var=X, var_link="identity")


# ----------------------------------------------------------------------
# Parameter vectors
def test_nonfinite_start_params(data):
    model = hmf.hetmixedlm("y ~ x", data, groups="g")
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match=r"start_params has missing or infinite "
                                             r"values for \['var\(g\)'\]"):
            model.fit(start_params=[bad, 0.0])


@pytest.mark.parametrize("var_formula", [None, "~ x"])
def test_wrong_length_parameter_vectors(data, var_formula):
    model = hmf.hetmixedlm("y ~ x", data, groups="g", var_formula=var_formula)
    k = model.k_params
    # natural vectors: named by the layout (issue 9: without a variance
    # formula data.param_names are MixedLM's, without var:Intercept)
    names = list(model.layout.names)
    for call in (model.loglike, model.score, lambda p: model.hessian(p),
                 lambda p: model.fit(start_params=p)):
        with pytest.raises(ValueError, match=rf"has length {k + 1}.*{k} values"):
            call(np.zeros(k + 1))
        with pytest.raises(ValueError, match=rf"has shape \(1, {k}\)"):
            call(np.zeros((1, k)))
    with pytest.raises(ValueError,
                       match=re.escape("[" + ", ".join(f"'{n}'" for n in names))):
        model.loglike(np.zeros(k - 1))


def test_location_scale_loglike_needs_its_own_layout(ls_fit):
    model, res = ls_fit
    k = model.k_params
    assert len(res.params) == k
    # The vector of the model without scale effects: an error, not that model.
    plain = np.r_[res.fe_params, res.cov_re.iloc[0, 0], res.var_params]
    with pytest.raises(ValueError, match=rf"has length {plain.size}.*{k} values.*"
                                         r"'var\(var:g\)'"):
        model.loglike(plain)
    assert model.loglike(np.asarray(res.params)) == pytest.approx(res.llf, rel=1e-10)
    with pytest.raises(ValueError, match="has length 2"):
        model.score(np.zeros(2))
    with pytest.raises(NotImplementedError, match="location-scale models use loglike"):
        model.score(np.asarray(res.params))
    with pytest.raises(NotImplementedError, match="location-scale"):
        model.hessian(np.asarray(res.params))
    with pytest.raises(ValueError, match="start_params has length 4"):
        model.fit(reml=False, start_params=plain)


def test_location_scale_start_params(ls_fit):
    model, res = ls_fit
    refit = model.fit(reml=False, start_params=np.asarray(res.params))
    assert refit.llf == pytest.approx(res.llf, rel=1e-10)
    np.testing.assert_allclose(refit.params, res.params, rtol=1e-5, atol=1e-8)
    bad = np.asarray(res.params).copy()
    bad[2] = -1.0  # a negative variance
    with pytest.raises(ValueError, match="not positive semi-definite"):
        model.fit(reml=False, start_params=bad)
    with pytest.raises(ValueError, match="re_cov='independent' holds"):
        model.fit(reml=False, re_cov="independent",
                  start_params=np.asarray(res.params))


# ----------------------------------------------------------------------
# Fit arguments: the same for every model kind
def test_unknown_fit_arguments_warn_as_in_mixedlm(data, ls_fit):
    model = hmf.hetmixedlm("y ~ x", data, groups="g")
    with pytest.warns(FutureWarning, match="Argument bogus not used by HetMixedLM"):
        model.fit(bogus=1)
    ls_model, _ = ls_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        with pytest.warns(FutureWarning, match="Arguments bogus, gtol_x not used"):
            ls_model.fit(reml=False, bogus=1, gtol_x=1, do_cg=False)
    # cov_type is fit's own argument now (cluster-robust covariances); a
    # type of statsmodels' other models is warned about and ignored, as
    # MixedLM.fit does (statsmodels' own suite tests it)
    with pytest.warns(FutureWarning, match="Argument cov_type='hc1' not used"):
        model.fit(cov_type="hc1")


def test_location_scale_fit_options(ls_fit, monkeypatch):
    model, res = ls_fit
    for kw in ({"method": "bfgs"}, {"gtol": 1e-3}, {"free": np.ones(4)},
               {"full_output": True}):
        with pytest.raises(ValueError, match=f"{list(kw)}.*cannot be used with "
                                             "location-scale"):
            model.fit(reml=False, **kw)
    seen = {}
    fit = _locscale.fit

    def recording_fit(*args, **kwargs):
        seen.update(kwargs)
        return fit(*args, **kwargs)

    monkeypatch.setattr(_locscale, "fit", recording_fit)
    model.fit(reml=False, maxiter=7, start_params=np.asarray(res.params))
    assert seen["maxiter"] == 7


# ----------------------------------------------------------------------
# One constructor for both interfaces
def test_array_interface_restricts_level2_functions(data):
    kw = dict(var_re_formula="~ 1", re_var_formula={"var:g": "~ s"})
    formula_model = hmf.hetmixedlm("y ~ x", data, groups="g", **kw)
    y, X, g = _arrays(data)
    S = pd.DataFrame({"Intercept": 1.0, "s": data["s"]})
    array_model = HetMixedLM(
        y, pd.DataFrame(X, columns=["Intercept", "x"]), g,
        exog_var_re=pd.DataFrame({"g": np.ones(len(y))}), exog_re_var=S,
        re_var_terms={"var:g": ["Intercept", "s"]}, exog_re_names=["g"])
    assert array_model.k_params == formula_model.k_params == 7
    assert list(array_model.data.param_names) == list(formula_model.data.param_names)
    assert formula_model.re_var_formula == kw["re_var_formula"]
    assert array_model.re_var_formula is None
    vec = np.array([1.0, 1.0, np.log(0.1), 0.2, 0.0, 0.1, 0.0])
    assert array_model.loglike(vec) == pytest.approx(formula_model.loglike(vec),
                                                     rel=1e-12)
    with pytest.raises(ValueError, match="give exog_re_var"):
        HetMixedLM(y, X, g, re_var_terms={"g": ["Intercept"]})


# ----------------------------------------------------------------------
# Data handling: shared columns, constant columns


def test_shared_columns_pairs_names_and_checks_values():
    from statsmodels_hetmixed._validate import shared_columns

    rng = np.random.default_rng(0)
    X = np.asfortranarray(rng.standard_normal((20, 4)))
    names = ["a", "b", "c", "d"]
    assert shared_columns(X.copy(), X, names, names) == slice(0, 4, 1)
    assert shared_columns(X[:, [1, 3]].copy(), X, ["b", "d"], names) == slice(1, 4, 2)
    assert shared_columns(X[:, [2]].copy(), X, ["c"], names) == slice(2, 3, 1)
    # not evenly spaced, reordered, unknown names, other values, other rows
    assert shared_columns(X[:, [0, 1, 3]].copy(), X, ["a", "b", "d"], names) is None
    assert shared_columns(X[:, [1, 0]].copy(), X, ["b", "a"], names) is None
    assert shared_columns(X.copy(), X, ["w1", "w2", "w3", "w4"], names) is None
    other = X.copy()
    other[7, 2] += 1e-12
    assert shared_columns(other, X, names, names) is None
    assert shared_columns(X[:10].copy(), X, names, names) is None


def test_constant_column_stores_one_value_and_rows_array_keeps_it():
    from statsmodels_hetmixed._validate import constant_column, rows_array

    ones = constant_column(1000)
    assert ones.shape == (1000, 1) and np.all(ones == 1)
    assert ones.strides[0] == 0 and not ones.flags.writeable
    assert rows_array(ones) is ones
    f = np.asfortranarray(np.ones((5, 2)))
    c = rows_array(f)
    assert c.flags.c_contiguous and np.array_equal(c, f)
    assert rows_array(np.ones((1, 1))).flags.c_contiguous


@pytest.mark.parametrize("labels", [
    np.repeat([3, 7, 8, 20], [2, 1, 3, 2]),                 # sorted integers
    np.repeat([-1.5, 0.0, 2.25], [3, 1, 2]),                # sorted floats
    np.array([2, 2, 1, 1, 3, 2]),                           # not sorted
    np.array(["b", "b", "a", "c", "c", "a"], dtype=object),  # strings
])
def test_check_groups_codes_are_factorize_sorted(labels):
    """Sorted numeric labels take their codes from the changes of label
    (no hash pass): the same codes and labels as ``pd.factorize(sort=True)``."""
    codes, levels = check_groups(labels, len(labels))
    expected_codes, expected_levels = pd.factorize(labels, sort=True)
    np.testing.assert_array_equal(codes, expected_codes)
    np.testing.assert_array_equal(levels, np.asarray(expected_levels))
    assert codes.dtype == np.intp and levels.dtype == np.asarray(expected_levels).dtype
