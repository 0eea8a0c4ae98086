"""
Wald / F tests of several fixed-effect contrasts under CR2: Pustejovsky and
Tipton's Hotelling T2 approximation with estimated df ("HTZ"), against
clubSandwich's ``Wald_test(..., vcov = "CR2", test = "HTZ")``.

The reference numbers come from tests/results/robust_htz/r_robust_htz.R
(clubSandwich 0.5.8 on the nlme fits of ../robust and ../robust_correlation:
HSB with varIdent, Orthodont with random slopes and varIdent on subjects and
on pairs of subjects, BodyWeight with corCAR1 and varIdent).  The package is
evaluated at nlme's estimates (the other tests' fixtures), so only the test
is compared.
"""

import json

import numpy as np
import pytest
from scipy import stats

from statsmodels_hetmixed import robust

from . import test_robust as tr
from . import test_robust_correlation as trc
from .conftest import RESULTS


@pytest.fixture(scope="module")
def ref():
    with open(RESULTS / "robust_htz" / "r_robust_htz.json") as fh:
        return json.load(fh)["cases"]


@pytest.fixture(scope="module")
def sources():
    out = {}
    for name in ("robust/r_robust.json",
                 "robust_correlation/r_robust_correlation.json"):
        with open(RESULTS / name) as fh:
            out[name] = json.load(fh)["cases"]
    return out


def fit_at_r(case, spec, sources):
    """The CR2 inputs at nlme's estimates and R's coefficient positions."""
    src = sources[spec["source"]][case]
    if "correlation" in spec["source"]:
        res = trc.at_r_estimates(case, src)
        order = trc.r_order(res, src)
    else:
        res = tr.at_r_estimates(src)
        order = list(range(res.k_fe))
    # the same estimates as the scripts' JSON (so the same fit)
    assert np.allclose(np.asarray(res.fe_params)[order],
                       list(spec["fe_params"].values()), rtol=1e-7, atol=1e-9)
    return res, src, order


def ours(constraint, order, k):
    """A constraint of R's coefficient order in the package's order."""
    C = np.atleast_2d(np.array(constraint, dtype=float))
    out = np.zeros((C.shape[0], k))
    out[:, order] = C
    return out


CASES = [("hsb_ident_REML", "school"), ("orthodont_ident_REML", "Subject"),
         ("orthodont_ident_REML", "pair"), ("bodyweight_car1_ident_REML", "Rat")]


@pytest.mark.parametrize("case, cluster", CASES)
def test_htz_matches_clubsandwich(ref, sources, case, cluster):
    spec = ref[case]
    res, src, order = fit_at_r(case, spec, sources)
    groups = None if cluster == src["groups"] else cluster
    rob = res.get_robustcov_results(correction="CR2", groups=groups)
    for name, hyp in spec["cluster"][cluster].items():
        L = ours(hyp["constraint"], order, res.k_fe)
        htz, chi2 = hyp["tests"]["HTZ"], hyp["tests"]["chi-sq"]
        for test in (rob.wald_test(L, scalar=True), rob.f_test(L)):
            assert np.isclose(float(np.squeeze(test.fvalue)), htz["Fstat"],
                              rtol=1e-6), name
            assert test.df_num == htz["df_num"]
            assert np.isclose(test.df_denom, htz["df_denom"], rtol=1e-6), name
            assert np.isclose(float(test.pvalue), htz["p_val"], rtol=1e-6), name
        # the Wald statistic itself and clubSandwich's F scaling
        direct = rob._cluster_robust.htz_test(L, L @ np.asarray(res.fe_params))
        assert np.isclose(direct.wald, chi2["Fstat"] * chi2["df_num"], rtol=1e-6)
        assert np.isclose(direct.scale, htz["delta"], rtol=1e-6)
        # use_f=False: the chi2 test of the same Wald statistic
        chi = rob.wald_test(L, use_f=False, scalar=True)
        assert np.isclose(float(chi.statistic), direct.wald, rtol=1e-10)


@pytest.mark.parametrize("case, cluster", CASES)
def test_one_row_is_the_satterthwaite_t_test(ref, sources, case, cluster):
    """One row: F = t^2, df_denom = the contrast's Satterthwaite df."""
    spec = ref[case]
    res, src, order = fit_at_r(case, spec, sources)
    groups = None if cluster == src["groups"] else cluster
    rob = res.get_robustcov_results(correction="CR2", groups=groups)
    L = ours(spec["cluster"][cluster]["one"]["constraint"], order, res.k_fe)
    t = rob.t_test(L)
    F = rob.wald_test(L, scalar=True)
    assert np.isclose(float(np.squeeze(F.fvalue)), float(np.squeeze(t.tvalue)) ** 2,
                      rtol=1e-10)
    assert np.isclose(F.df_denom, float(np.squeeze(t.df_denom)), rtol=1e-10)
    assert np.isclose(float(F.pvalue), float(np.squeeze(t.pvalue)), rtol=1e-8)


# ----------------------------------------------------------------------
# Invariance and the other corrections

@pytest.fixture(scope="module")
def bodyweight(ref, sources):
    """CR2 at nlme's estimates of the BodyWeight fit (6 fixed effects,
    corCAR1, 16 rats) and its four-row Diet hypothesis."""
    case = "bodyweight_car1_ident_REML"
    res, src, order = fit_at_r(case, ref[case], sources)
    rob = res.get_robustcov_results(correction="CR2")
    L = ours(ref[case]["cluster"]["Rat"]["diet"]["constraint"], order, res.k_fe)
    return rob, L


def _test_of(rob, L, r):
    # (R, q) takes one column per parameter
    R = np.hstack([L, np.zeros((len(L), len(rob.params) - L.shape[1]))])
    test = rob.wald_test((R, r), scalar=True)
    return float(np.squeeze(test.fvalue)), test.df_num, test.df_denom, float(test.pvalue)


def test_invariant_to_reparametrising_the_constraint(bodyweight):
    """L b = r and A L b = A r (A invertible) are one hypothesis: the same
    F, df and p-value, also with a nonzero right-hand side."""
    rob, L = bodyweight
    b = np.asarray(rob.fe_params)
    r = L @ b + np.array([3.0, -2.0, 0.5, 0.1])  # not at the estimates
    base = _test_of(rob, L, r)
    A = np.array([[1.0, 2.0, 0.0, 0.0], [0.0, 1.0, -3.0, 0.0],
                  [0.5, 0.0, 1.0, 10.0], [0.0, 0.0, 0.0, 100.0]])
    other = _test_of(rob, A @ L, A @ r)
    assert other[1] == base[1] == 4
    assert np.allclose(other, base, rtol=1e-9)
    # and a different test than the default rule (smallest row df)
    wald = (L @ b - r) @ np.linalg.solve(L @ rob.cov_params().to_numpy()[:6, :6] @ L.T,
                                         L @ b - r)
    assert not np.isclose(base[0], wald / 4, rtol=1e-3)


def test_redundant_rows_are_dropped(bodyweight):
    """A row that repeats a combination of the others leaves the test as
    it is (clubSandwich's Wald_test would fail on the singular L V L')."""
    rob, L = bodyweight
    r = np.zeros(4)
    base = _test_of(rob, L, r)
    extended = np.vstack([L, L[0] - 2 * L[3]])
    other = _test_of(rob, extended, np.zeros(5))
    assert other[1] == 4
    assert np.allclose(other, base, rtol=1e-9)


def test_invariant_to_recoding_a_covariate():
    """age in months from an origin far away (the engine's centred columns
    and fe_basis): the test of both slopes does not change."""
    data = tr.case_data("orthodont")
    base = tr.robust_fit(data, "CR2")
    other = tr.robust_fit(data.assign(months=12 * data["age"] + 1e5), "CR2",
                          formula="distance ~ months + female")
    L = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    a, b = base.wald_test(L, scalar=True), other.wald_test(L, scalar=True)
    assert np.isclose(float(np.squeeze(a.fvalue)), float(np.squeeze(b.fvalue)),
                      rtol=1e-5)
    assert np.isclose(a.df_denom, b.df_denom, rtol=1e-5)


@pytest.mark.parametrize("correction", ["CR0", "CR1", "CR1S"])
def test_other_corrections_keep_the_wald_test(bodyweight, correction):
    """CR0, CR1 and CR1S: z-tests, the Wald test's chi2 (Stata's rule),
    not HTZ."""
    rob, L = bodyweight
    other = rob.get_robustcov_results(correction=correction)
    test = other.wald_test(L, scalar=True)
    cov = other.cov_params().to_numpy()[:6, :6]
    d = L @ np.asarray(other.fe_params)
    wald = d @ np.linalg.solve(L @ cov @ L.T, d)
    assert np.isclose(float(test.statistic), wald, rtol=1e-10)
    assert np.isclose(float(test.pvalue), stats.chi2.sf(wald, 4), rtol=1e-8)


def test_htz_pieces_need_one_column_per_fixed_effect(bodyweight):
    rob, _ = bodyweight
    with pytest.raises(ValueError, match="6 columns"):
        rob._cluster_robust.htz_test(np.eye(3), np.zeros(3))
    assert isinstance(rob._cluster_robust.htz_test(np.eye(6)[1], [0.0]),
                      robust.HTZResult)


def test_rows_of_very_different_scales_and_a_redundant_one(bodyweight):
    """The row space is found on the correlation-scaled L V L' (the rule
    of _linalg.covariance_rank): rows scaled by 1e6 and 1e-6 and a
    redundant combination of them give the test of the plain rows."""
    rob, L = bodyweight
    r = np.array([1.0, 2.0, 0.0, 0.0])
    base = _test_of(rob, L, r)
    scales = np.array([1e6, 1.0, 1e-6, 1.0])
    Ls, rs = L * scales[:, None], r * scales
    extended = np.vstack([Ls, Ls[0] + Ls[2]])
    other = _test_of(rob, extended, np.append(rs, rs[0] + rs[2]))
    assert other[1] == 4
    assert np.allclose(other, base, rtol=1e-8)


def test_wald_test_terms_are_htz_tests(ref, bodyweight):
    """wald_test_terms under CR2: one HTZ test per term; the Time x Diet
    term is clubSandwich's "interaction" hypothesis."""
    rob, _ = bodyweight
    out = rob.wald_test_terms(scalar=True)
    assert out.distribution == "F"
    row = out.table.loc["Time:Diet"]
    htz = ref["bodyweight_car1_ident_REML"]["cluster"]["Rat"]["interaction"][
        "tests"]["HTZ"]
    assert np.allclose([row["statistic"], row["df_denom"], row["pvalue"]],
                       [htz["Fstat"], htz["df_denom"], htz["p_val"]], rtol=1e-6)
    assert row["df_constraint"] == 2
