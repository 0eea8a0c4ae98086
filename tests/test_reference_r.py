"""
Estimates, standard errors and log-likelihoods against R.

The reference numbers come from tests/results/r_reference.R (nlme 3.1-162,
glmmTMB 1.1.5, lme4 1.1-31; see the JSON's "meta").  Tolerances follow the
acceptance criteria: estimates and llf to 4 significant digits or better
(checked far tighter), standard errors within 1%.

Which reference each standard error is checked against:
* fixed effects: nlme's (X'V^-1 X)^-1, the convention HetMixedLM follows;
* variance-function and random-effects parameters: glmmTMB, whose standard
  errors come from the exact (automatic-differentiation) Hessian; nlme's
  apVar is a cruder numerical approximation.
"""

import numpy as np
import pytest

import statsmodels_hetmixed.formula.api as hmf

from .conftest import load_case_data

# case -> (groups, re_formula, vc_formula)
CASES = {
    "hsb_null": ("school", None, None),
    "hsb_female": ("school", None, None),
    "hsb_multi": ("school", None, None),
    "hsb_slope": ("school", "1 + cses", None),
    "sim_cont": ("g", None, None),
    "sim_slope": ("g", "1 + t", None),
    "sim_vc": ("g", "1", {"c": "0 + C(c)"}),
    "sim_vc_hom": ("g", "1", {"c": "0 + C(c)"}),
}


def as_list(value):
    """jsonlite writes vectors of length one as scalars."""
    return value if isinstance(value, list) else [value]


def our_cov_names(r_names, groups):
    """Our natural-scale names (params_natural; issue 9: var(a), cov(a, b))
    for R's re_cov_elements names such as 'school: var((Intercept))',
    'school: cov((Intercept),cses)', 'g:c: var((Intercept))' (a nested
    variance component)."""
    out = []
    for name in as_list(r_names):
        level, term = name.rsplit(": ", 1)
        inner = term[term.index("(") + 1:-1].replace("(Intercept)", level)
        if level != groups:  # nested level: a variance component
            out.append(f"var({level.split(':')[-1]})")
        elif term.startswith("var("):
            out.append(f"var({inner})")
        else:
            first, second = inner.split(",")
            out.append(f"cov({first}, {second})")
    return out

_fits = {}


def fit_case(ref, case, method):
    key = (case, method)
    if key not in _fits:
        spec = ref["cases"][case]
        groups, re_formula, vc_formula = CASES[case]
        data = load_case_data(spec["data"])
        var_formula = spec["var_formula"]
        model = hmf.hetmixedlm(
            spec["mean_formula"], data, groups=groups, re_formula=re_formula,
            vc_formula=vc_formula,
            var_formula=None if var_formula == "~1" else var_formula)
        _fits[key] = model.fit(reml=(method == "REML"))
    return _fits[key]


def _rename(d):
    return {("Intercept" if k == "(Intercept)" else k): v for k, v in d.items()}


params = [(c, m) for c in CASES for m in ("ML", "REML")]


@pytest.mark.parametrize("case,method", params)
def test_llf_and_estimates(r_reference, case, method):
    ref = r_reference["cases"][case][method]["nlme"]
    tmb = r_reference["cases"][case][method]["glmmTMB"]
    res = fit_case(r_reference, case, method)
    assert res.converged
    assert res.method == method
    # log-likelihood / REML criterion
    assert abs(res.llf - ref["llf"]) < 1e-6
    assert abs(res.llf - tmb["llf"]) < 1e-6
    # fixed effects
    fe = _rename(ref["fixef"])
    ours = res.fe_params[list(fe)]
    np.testing.assert_allclose(ours.values, list(fe.values()), rtol=1e-5, atol=1e-6)
    # log-linear variance function
    a = _rename(ref["a"])
    np.testing.assert_allclose(res.var_params[list(a)].values, list(a.values()),
                               rtol=0, atol=1e-5)
    # random-effects (co)variances: 4 significant digits (the acceptance
    # bar); they are weakly determined, and the log-likelihoods agree to
    # 1e-9, so the remaining differences are the optimisers' tolerances.
    names = our_cov_names(ref["re_cov_elements"]["names"], CASES[case][0])
    # Natural scale: without a variance formula params holds MixedLM's
    # covariances relative to the scale (issue 9).
    np.testing.assert_allclose(res.params_natural[names].values,
                               as_list(ref["re_cov_elements"]["est"]), rtol=1e-4)


@pytest.mark.parametrize("case,method", params)
def test_standard_errors(r_reference, case, method):
    ref = r_reference["cases"][case][method]
    res = fit_case(r_reference, case, method)
    # fixed effects: nlme's (X'V^-1 X)^-1
    vc = ref["nlme"]["vcov_fixef"]
    se_fe = np.sqrt(np.diag(np.asarray(vc["values"])))
    names = [("Intercept" if k == "(Intercept)" else k) for k in vc["rownames"]]
    np.testing.assert_allclose(res.bse_fe[names].values, se_fe, rtol=1e-3)
    # variance function and random effects: glmmTMB
    a_se = _rename(ref["glmmTMB"]["a_se"])
    np.testing.assert_allclose(res.bse_var[list(a_se)].values,
                               list(a_se.values()), rtol=0.01)
    tmb = ref["glmmTMB"]["re_cov_elements"]
    names = our_cov_names(tmb["names"], CASES[case][0])
    # natural scale (issue 9: without a variance formula bse is MixedLM's)
    np.testing.assert_allclose(res.bse_natural[names].values, as_list(tmb["se"]),
                               rtol=0.01)
