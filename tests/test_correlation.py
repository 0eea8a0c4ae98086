"""Residual correlation structures (``correlation=``): R_i = S_i C_i S_i.

* Against nlme / glmmTMB (``results/correlation/``, the definitions and SE
  conventions in its README): every stored fit of a correlation structure
  with no variance function, ``varIdent`` (our ``var_by`` with the log
  link) or ``varExp`` (a log-linear ``var_formula``), ML and REML:
  log-likelihood, estimates and fixed-effect SEs.
* Theory: the likelihood, gradient and expected information of every
  structure against a dense multivariate normal density on small
  unbalanced data with gaps; independence = today's fit; AR(1) on equal
  spacing = CAR(1); exchangeable = random intercept; invariance to row
  order, group order and the time origin / scale.
* Structures without an R counterpart (Toeplitz(q) below the longest
  lag, banded(q)): estimates against a direct numerical maximisation of
  the dense likelihood.
* Input errors.
"""
from __future__ import annotations

import functools
import importlib.util
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from statsmodels.tools.sm_exceptions import ConvergenceWarning, ValueWarning

from statsmodels_hetmixed.model import HetMixedLM
from statsmodels_hetmixed.structures import (
    AR1,
    ARMA,
    CAR1,
    Banded,
    Exchangeable,
    Toeplitz,
    Unstructured,
    make_correlation,
)
from statsmodels_hetmixed.structures.correlation import arma_acf

from . import nlme_spec

_PATH = Path(__file__).parent / "results" / "correlation" / "check_dense.py"
_spec = importlib.util.spec_from_file_location("check_dense", _PATH)
check_dense = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_dense)

REFS = check_dense.load_references()
FITS = REFS["fits"]


# ---------------------------------------------------------------- references
def _usable(key: str) -> bool:
    fit = FITS[key]
    if not fit["fitted"] or key in check_dense.LLF_ONLY:
        return False
    if fit["spec"]["engine"] == "glmmTMB":
        return True
    if fit["spec"].get("cor") is None:        # variance functions only
        return False
    var = fit["spec"].get("var")
    return var is None or var["type"] in ("ident", "exp")


NLME_KEYS = [k for k in FITS if _usable(k) and FITS[k]["spec"]["engine"] != "glmmTMB"]
TMB_KEYS = [k for k in FITS if _usable(k) and FITS[k]["spec"]["engine"] == "glmmTMB"]


def _structure(fit):
    """Our correlation= for a reference fit."""
    return nlme_spec.model_arguments(fit["spec"])["correlation"]


def _model(fit):
    """The model of a reference fit (gls: ``re_formula="0"``, no random
    effects; varIdent as ``var_by``)."""
    spec = fit["spec"]
    df = check_dense.load_data(spec["file"])
    kwargs = nlme_spec.model_arguments(spec, ident="var_by")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HetMixedLM.from_formula(spec["fixed"], df, **kwargs)
    return model, df


@functools.lru_cache(maxsize=None)
def _fit(key):
    fit = FITS[key]
    model, df = _model(fit)
    reml = fit["method"] == "REML"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(reml=reml)
    return model, df, res


def _nlme_correlation(fit, model):
    """nlme's natural correlation parameters in our parametrisation."""
    nat = fit["cor"]["natural"]
    nat = np.array(list(nat.values()) if isinstance(nat, dict) else nat, float)
    if fit["spec"].get("structure") == "toeplitz":   # AR(K-1) -> its acf
        return arma_acf(nat, np.zeros(0), len(nat))[1:]
    return nat


def _close(actual, desired, rtol, atol):
    """|actual - desired| <= rtol |desired| + atol elementwise (atol an
    array: each entry's own absolute tolerance)."""
    actual, desired = np.asarray(actual, float), np.asarray(desired, float)
    err = np.abs(actual - desired)
    bound = rtol * np.abs(desired) + atol
    assert np.all(err <= bound), (actual, desired, np.max(err / bound))


@pytest.mark.parametrize("key", NLME_KEYS)
def test_matches_nlme(key):
    fit = FITS[key]
    model, df, res = _fit(key)
    assert res.converged
    assert res.llf == pytest.approx(fit["logLik"], rel=1e-6, abs=0)
    lay = model.layout
    natural = np.asarray(res.params)[lay.k_fe:]
    # fixed effects (R's names), their SEs in nlme's convention
    y, X, names = check_dense.design(fit, df)
    ours = dict(zip([check_dense._r_name(n) for n in model.exog_names],
                    np.asarray(res.fe_params)))
    bse = dict(zip([check_dense._r_name(n) for n in model.exog_names],
                   np.asarray(res.bse)[:lay.k_fe]))
    ref = np.array([fit["fixef"][n] for n in names])
    ref_se = np.array([fit["fixef_se"][n] for n in names])
    _close([ours[n] for n in names], ref, 1e-4, 1e-4 * ref_se)
    factor = check_dense.vcov_factor(fit, len(y), X.shape[1])
    np.testing.assert_allclose(np.array([bse[n] for n in names]) * np.sqrt(factor),
                               ref_se, rtol=0.01)
    # random-effects covariance
    if fit["spec"]["engine"] == "lme":
        G = np.atleast_2d(np.asarray(fit["re_cov"]["values"], float))
        # absolute: a thousandth of an SE's worth of the residual variance
        # (nlme leaves variances at the boundary at ~1e-6, ours at 0)
        _close(lay.cov_re(natural), G, 1e-4,
               1e-4 * (np.sqrt(np.outer(np.diag(G), np.diag(G))) + fit["sigma"] ** 2))
    # residual variances row by row: sigma^2 g_ij^2
    r_ref = fit["sigma"] ** 2 * check_dense.var_multiplier(fit, df) ** 2
    np.testing.assert_allclose(lay.resid_var(natural), r_ref, rtol=2e-4)
    if fit["spec"].get("var") and fit["spec"]["var"]["type"] == "exp":
        slope = np.asarray(res.params)[lay.slice_of(model.variance_function)][1]
        assert slope == pytest.approx(2 * fit["var"]["natural"]["expon"], abs=1e-4)
    # correlation parameters
    np.testing.assert_allclose(np.asarray(res.correlation_params),
                               _nlme_correlation(fit, model), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("key", TMB_KEYS)
def test_matches_glmmtmb(key):
    """glmmTMB's structures on an occasion random effect (residual sd fixed
    at 2^-13) are the gls models of their ``same_as`` key: the same llf
    and fixed effects (glmmTMB's SEs have another convention, README)."""
    fit = FITS[key]
    same = f"{fit['spec']['same_as']}/{fit['method']}"
    _, df, res = _fit(same)
    assert res.llf == pytest.approx(fit["logLik"], rel=1e-6, abs=0)
    y, X, names = check_dense.design(fit, df)
    model = res.model
    ours = dict(zip([check_dense._r_name(n) for n in model.exog_names],
                    np.asarray(res.fe_params)))
    np.testing.assert_allclose([ours[n] for n in names],
                               [fit["fixef"][n] for n in names], rtol=1e-4)


def test_reference_keys_cover_every_structure():
    structures = {(_structure(FITS[k]), (FITS[k]["spec"].get("var") or {}).get("type"))
                  for k in NLME_KEYS}
    for s in ("exchangeable", "ar1", "car1", "ma(1)", "arma(1,1)", "toeplitz",
              "unstructured"):
        assert (s, None) in structures or any(x[0] == s for x in structures), s
    for v in (None, "ident", "exp"):
        assert any(x[1] == v for x in structures)


def test_ar1_equals_car1_on_equal_spacing():
    """orthodont: AR(1) on occ and CAR(1) on age (step 2) are one model,
    phi_ar = phi_car^2; the stored nlme fits say the same."""
    _, _, ar = _fit("orthodont/lme_ri/ar1/none/REML")
    _, _, car = _fit("orthodont/lme_ri/car1/none/REML")
    assert ar.llf == pytest.approx(car.llf, rel=1e-9)
    assert ar.correlation_params.iloc[0] == pytest.approx(
        car.correlation_params.iloc[0] ** 2, rel=1e-5)


def test_exchangeable_equals_random_intercept():
    """gls with exchangeable residuals (rho >= 0) is the random-intercept
    model: equal llf, rho = tau^2 / (tau^2 + sigma^2)."""
    _, _, exch = _fit("orthodont/gls/compsymm/none/REML")
    df = check_dense.load_data("orthodont.csv")
    ri = HetMixedLM.from_formula("distance ~ age + Sex", df,
                                 groups="Subject").fit(reml=True)
    assert exch.llf == pytest.approx(ri.llf, rel=1e-8)
    tau2 = float(np.asarray(ri.cov_re)[0, 0])
    rho = tau2 / (tau2 + ri.scale)
    assert exch.correlation_params.iloc[0] == pytest.approx(rho, rel=1e-5)


# ---------------------------------------------------------------- theory
def _data(seed=1, m=12, max_t=7):
    """Unbalanced groups (2-5 rows) with gaps in integer times, a random
    slope and a heteroskedastic variance covariate."""
    rng = np.random.default_rng(seed)
    g, t = [], []
    for i in range(m):
        n = rng.integers(2, 6)
        g += [i] * n
        t += sorted(rng.choice(max_t, n, replace=False))
    g, t = np.array(g), np.array(t, float)
    N = len(g)
    X = np.column_stack([np.ones(N), rng.normal(size=N)])
    Z = np.column_stack([np.ones(N), t / 3])
    W = np.column_stack([np.ones(N), rng.normal(size=N)])
    y = X @ [1.0, 2.0] + rng.normal(size=N) * np.exp(0.3 * W[:, 1]) \
        + np.repeat(rng.normal(size=m), np.bincount(g))
    return y, X, Z, W, g, t


def _dense_llf(model, natural, reml):
    """The Gaussian (restricted) log-likelihood from dense V_i."""
    lay = model.layout
    G, r = lay.cov_re(natural), lay.resid_var(natural)
    y, X = model.endog, model.exog
    p, N = X.shape[1], len(y)
    H, b, logdet, blocks = np.zeros((p, p)), np.zeros(p), 0.0, []
    for i in range(model.n_groups):
        idx, C = model._correlation_matrices(natural[lay.corr_natural], i)
        s = np.sqrt(r[idx])
        Zi = model.exog_re[idx]
        V = Zi @ G @ Zi.T + s[:, None] * C * s[None, :]
        Vi = np.linalg.inv(V)
        H += X[idx].T @ Vi @ X[idx]
        b += X[idx].T @ Vi @ y[idx]
        logdet += np.linalg.slogdet(V)[1]
        blocks.append((idx, Vi))
    beta = np.linalg.solve(H, b)
    quad = sum((y[i] - X[i] @ beta) @ Vi @ (y[i] - X[i] @ beta) for i, Vi in blocks)
    if reml:
        return -0.5 * ((N - p) * np.log(2 * np.pi) + logdet + quad
                       + np.linalg.slogdet(H)[1])
    return -0.5 * (N * np.log(2 * np.pi) + logdet + quad)


STRUCTURES = ["exchangeable", "ar1", "car1", "ma(1)", "arma(1,1)", "arma(2,1)",
              "toeplitz", "toeplitz(2)", "banded(2)", "ar1 by level",
              "banded(2) by level", "car1 fractional"]


def _model_at_random_point(spec, reml):
    """(model, objective, natural): ``_data`` with the structure ``spec``
    (" by level": separate parameters per level; " fractional":
    continuous times with gaps below 1) at a random admissible point."""
    y, X, Z, W, g, t = _data()
    by = None
    if spec.endswith(" by level"):   # separate parameters per level
        # (30 groups: in 12, the 4 of level "a" never observe times 3 and
        # 4 together, and banded(2)'s correlation of that pair for the
        # level would not be identified)
        y, X, Z, W, g, t = _data(m=30)
        spec, by = spec.split()[0], np.where(g % 3 == 0, "a", "b")
    if spec.endswith(" fractional"):  # continuous times, gaps below 1
        spec = spec.split()[0]
        t = 0.37 * t + np.random.default_rng(3).uniform(0, 0.1, size=t.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HetMixedLM(y, X, g, exog_re=Z, exog_var=W, correlation=spec, time=t,
                           correlation_by=by)
    objective = model._objective(reml)
    lay = model.layout
    # a seed fixed per structure (str's hash differs between processes);
    # Toeplitz(q) and banded(q)'s free scale also reaches matrices that are
    # not positive definite: halve the step until the point is admissible
    rng = np.random.default_rng(zlib.crc32(spec.encode()))
    step = 0.2 * rng.normal(size=lay.k_structure)
    while True:
        natural = lay.to_natural(objective.start() + step)
        if objective.admissible(natural):
            break
        step /= 2
    return model, objective, natural


@pytest.mark.parametrize("reml", [False, True], ids=["ML", "REML"])
@pytest.mark.parametrize("spec", STRUCTURES)
def test_llf_gradient_information_against_dense(spec, reml):
    model, objective, natural = _model_at_random_point(spec, reml)
    lay = model.layout
    ev, grad = objective.evaluate_natural(natural, info=True)
    assert ev.llf == pytest.approx(_dense_llf(model, natural, reml), rel=1e-12)
    # the gradient without the information (AR(1) / CAR(1): their O(n) path)
    np.testing.assert_allclose(objective.evaluate_natural(natural)[1], grad,
                               rtol=1e-9, atol=1e-12 * np.abs(grad).max())
    h = 1e-6
    num = np.array([(objective.evaluate(natural + h * e).llf
                     - objective.evaluate(natural - h * e).llf) / (2 * h)
                    for e in np.eye(natural.size)])
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-7 * np.abs(num).max())
    # expected information: 1/2 sum_i tr(V^-1 dV_a V^-1 dV_b), dV by differences
    if not reml:
        def covs(nat):
            G, r = lay.cov_re(nat), lay.resid_var(nat)
            out = []
            for i in range(model.n_groups):
                idx, C = model._correlation_matrices(nat[lay.corr_natural], i)
                s, Zi = np.sqrt(r[idx]), model.exog_re[idx]
                out.append(Zi @ G @ Zi.T + s[:, None] * C * s[None, :])
            return out
        V0 = covs(natural)
        dV = [[(a - b) / (2 * h) for a, b in zip(covs(natural + h * e),
                                                 covs(natural - h * e))]
              for e in np.eye(natural.size)]
        k = natural.size
        info = np.zeros((k, k))
        for i, V in enumerate(V0):
            Vi = np.linalg.inv(V)
            M = [Vi @ d[i] for d in dV]
            info += 0.5 * np.array([[np.sum(Ma * Mb.T) for Mb in M] for Ma in M])
        np.testing.assert_allclose(ev.info, info, rtol=1e-6, atol=1e-8 * np.abs(info).max())


@pytest.mark.parametrize("reml", [False, True], ids=["ML", "REML"])
@pytest.mark.parametrize("spec", ["ar1", "ar1 gaps", "car1", "ar1 by level"])
def test_shared_rho_equals_per_group_factors(spec, reml, monkeypatch):
    """Where every group of a bucket has the same rho (the same time gaps
    and phi), the AR(1) / CAR(1) factor keeps one group's arrays,
    broadcast over the bucket: the llf, gradient, expected and observed
    information equal those of one row per group.  (" by level": phi
    differs between a bucket's groups, which then keep their own rows.)"""
    rng = np.random.default_rng(4)
    m, n = 30, 6
    g = np.repeat(np.arange(m), n)
    steps = [0, 1, 3, 4, 5, 8] if spec == "ar1 gaps" else list(range(n))
    t = np.tile(np.array(steps, float), m) * (0.4 if spec == "car1" else 1.0)
    by = np.where(g % 2 == 0, "a", "b") if spec.endswith("by level") else None
    N = m * n
    X = np.column_stack([np.ones(N), rng.normal(size=N)])
    Z = np.column_stack([np.ones(N), t / 3])
    W = np.column_stack([np.ones(N), rng.normal(size=N)])
    y = X @ [1.0, 2.0] + rng.normal(size=N) * np.exp(0.3 * W[:, 1]) \
        + np.repeat(rng.normal(size=m), n)
    model = HetMixedLM(y, X, g, exog_re=Z, exog_var=W, correlation=spec.split()[0],
                       time=t, correlation_by=by)
    lay, block = model.layout, model.layout.correlation_block
    natural = lay.to_natural(model._objective(reml).start() + 0.1)

    def at_point():
        objective = model._objective(reml)
        ev, grad = objective.evaluate_natural(natural, info=True)
        return ev.llf, grad, ev.info, objective.observed_information(natural).hessian

    shared = at_point()
    factor = block.bucket_factor(natural[lay.corr_natural], block.buckets[0], True)
    assert factor.rho.shape == ((m, n) if by is not None else (1, n))
    assert factor.shape == (m, n)
    own_rows = block._bucket_gaps
    monkeypatch.setattr(block, "_bucket_gaps", lambda b: (own_rows(b)[0], False))
    factor = block.bucket_factor(natural[lay.corr_natural], block.buckets[0], True)
    assert factor.rho.shape == (m, n)
    per_group = at_point()
    assert shared[0] == pytest.approx(per_group[0], rel=1e-13)
    for a, b in zip(shared[1:], per_group[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12 * np.abs(b).max())


def test_unstructured_llf_and_gradient_against_dense():
    rng = np.random.default_rng(5)
    m, K = 15, 4
    g = np.repeat(np.arange(m), K)
    t = np.tile(np.arange(1, K + 1), m).astype(float)
    keep = rng.random(len(g)) > 0.2
    g, t = g[keep], t[keep]
    N = len(g)
    X = np.column_stack([np.ones(N), rng.normal(size=N)])
    y = X @ [1.0, 0.5] + rng.normal(size=N)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HetMixedLM(y, X, g, exog_var=pd.get_dummies(t).to_numpy(float),
                           correlation="unstructured", time=t)
    for reml in (False, True):
        objective = model._objective(reml)
        lay = model.layout
        natural = lay.to_natural(objective.start() + 0.3 * rng.normal(size=lay.k_structure))
        ev, grad = objective.evaluate_natural(natural)
        assert ev.llf == pytest.approx(_dense_llf(model, natural, reml), rel=1e-12)
        h = 1e-6
        num = np.array([(objective.evaluate(natural + h * e).llf
                         - objective.evaluate(natural - h * e).llf) / (2 * h)
                        for e in np.eye(natural.size)])
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-7 * np.abs(num).max())


@pytest.mark.parametrize("spec", ["exchangeable", "ar1", "car1", "arma(1,1)",
                                  "toeplitz", "toeplitz(2)", "banded(2)",
                                  "unstructured"])
def test_free_scale_round_trip_and_jacobian(spec):
    y, X, Z, W, g, t = _data(m=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HetMixedLM(y, X, g, correlation=spec, time=t)
    block = model.correlation_structure
    rng = np.random.default_rng(3)
    free = 0.5 * rng.normal(size=block.k)
    nat = block.to_natural(free)
    assert block.admissible(nat) or spec in ("banded(2)", "toeplitz(2)")
    np.testing.assert_allclose(block.from_natural(nat), free, atol=1e-10)
    h = 1e-6
    num = np.column_stack([(block.to_natural(free + h * e) - block.to_natural(free - h * e))
                           / (2 * h) for e in np.eye(block.k)])
    np.testing.assert_allclose(block.jacobian(free), num, atol=1e-8)
    if spec not in ("banded(2)", "toeplitz(2)"):
        # every free vector a positive definite structure, even far out
        C, _ = block.bucket_matrices(block.to_natural(3 * rng.normal(size=block.k)),
                                     block.buckets[-1])
        np.linalg.cholesky(C)


def test_unstructured_free_scale_far_out_stays_finite():
    # canonical partial correlations within rounding of +-1: what a row of
    # the Cholesky factor has left of its unit length fell below zero by
    # rounding, and its square root was NaN (a BFGS fit of unstructured
    # correlations with var_by on the times warned "invalid value
    # encountered in sqrt")
    y, X, g, t, _ = _four_occasions()
    block = HetMixedLM(y, X, g, exog_re=np.zeros((len(y), 0)), correlation="unstructured",
                       time=t).correlation_structure
    free = np.array([-13.07657219, -2.59227267, 15.6795094, 29.8686229,
                     -25.18131064, 30.27847549])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        nat = block.to_natural(free)
    assert np.all(np.isfinite(nat)) and np.all(np.abs(nat) <= 1.0)


@pytest.mark.parametrize("spec", ["toeplitz(1)", "banded(1)"])
def test_positive_definite_by_one_rule(spec):
    """Lag-1 correlations rho over K times: the K x K matrix's eigenvalues
    are 1 + 2 rho cos(k pi / (K + 1)), so it is positive definite for
    |rho| < 1 / (2 cos(pi / (K + 1))).  Admissibility is decided by the
    package's rule (eigenvalue ratio above COV_RTOL = 1e-8), clear of
    rounding on both sides: 1e-4 inside is admissible; 1e-10 inside, the
    boundary itself (smallest eigenvalue 0 up to rounding) and 1e-4
    outside are not."""
    y, X, Z, W, g, t = _data(m=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        block = HetMixedLM(y, X, g, correlation=spec, time=t).correlation_structure
    # the times 0-6: Toeplitz's matrix spans the longest lag, banded's the
    # distinct times (one correlation per adjacent pair, all equal here)
    K = block.K if spec.startswith("banded") else block.max_lag + 1
    assert K == 7
    edge = 1 / (2 * np.cos(np.pi / (K + 1)))
    ones = np.ones(block.k)
    for sign in (1, -1):
        assert block.admissible(sign * edge * (1 - 1e-4) * ones)
        assert not block.admissible(sign * edge * ones)
        # smallest eigenvalue about 1e-10 of the largest: a Cholesky factor
        # exists, but the matrix is singular by the package's rule
        assert not block.admissible(sign * edge * (1 - 1e-10) * ones)
        assert not block.admissible(sign * edge * (1 + 1e-4) * ones)


def test_independent_is_todays_fit():
    y, X, Z, W, g, t = _data()
    base = HetMixedLM(y, X, g, exog_re=Z, exog_var=W).fit()
    indep = HetMixedLM(y, X, g, exog_re=Z, exog_var=W, correlation="independent").fit()
    np.testing.assert_array_equal(np.asarray(base.params), np.asarray(indep.params))
    assert base.llf == indep.llf
    # a structure at correlation zero gives today's likelihood and gradient
    model = HetMixedLM(y, X, g, exog_re=Z, exog_var=W, correlation="ar1", time=t)
    natural = np.concatenate([np.asarray(base.params)[2:], [0.0]])
    ev = model._objective(True).evaluate(natural, gradient=True)
    assert ev.llf == pytest.approx(base.llf, rel=1e-12)
    g0 = base.model.score(np.asarray(base.params)[2:])
    np.testing.assert_allclose(model.score(natural)[:-1], g0, atol=1e-8)


def _ar_data(m=40, seed=12):
    """Groups of 4-7 rows at integer times 0..9 with gaps, a random
    intercept, AR(1) errors (phi 0.7) and a heteroskedastic variance."""
    rng = np.random.default_rng(seed)
    g, t = [], []
    for i in range(m):
        n = rng.integers(4, 8)
        g += [i] * n
        t += sorted(rng.choice(10, n, replace=False))
    g, t = np.array(g), np.array(t, float)
    N = len(g)
    X = np.column_stack([np.ones(N), rng.normal(size=N)])
    W = np.column_stack([np.ones(N), rng.normal(size=N)])
    y = X @ [1.0, 2.0] + np.repeat(0.5 * rng.normal(size=m), np.bincount(g))
    for i in range(m):   # AR(1) errors, phi 0.7, heteroskedastic
        idx = np.flatnonzero(g == i)
        C = 0.7 ** np.abs(np.subtract.outer(t[idx], t[idx]))
        y[idx] += np.exp(0.3 * W[idx, 1]) * (np.linalg.cholesky(C) @ rng.normal(size=len(idx)))
    return y, X, W, g, t


def test_ar1_on_scaled_times_and_car1_scaling():
    """AR(1) depends on time differences (origin free); CAR(1)'s phi on
    times scaled by c is phi^(1/c), and so is AR(1)'s on integer times
    scaled by an integer (months for times two years apart: the start adapts
    to the typical gap, where phi = 0.1 left correlations of 0.1^24, a
    flat log-likelihood in phi); AR(1) on integer times equals CAR(1)."""
    y, X, W, g, t = _ar_data()
    fits = {}
    for name, spec, time in [("ar", "ar1", t), ("ar_shift", "ar1", t + 100),
                             ("car", "car1", t), ("car_x3", "car1", 3 * t + 7),
                             ("ar_x24", "ar1", 24 * t + 5)]:
        fits[name] = HetMixedLM(y, X, g, exog_var=W, correlation=spec, time=time).fit()
    base = fits["ar"]
    for name in ("ar_shift", "car"):
        np.testing.assert_allclose(np.asarray(fits[name].params), np.asarray(base.params),
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.asarray(fits[name].bse), np.asarray(base.bse),
                                   rtol=1e-3)
    for name, c in (("car_x3", 3), ("ar_x24", 24)):
        phi_c = fits[name].correlation_params.iloc[0]
        assert phi_c ** c == pytest.approx(base.correlation_params.iloc[0], rel=1e-5)
        assert fits[name].llf == pytest.approx(base.llf, rel=1e-10)
    np.testing.assert_allclose(np.asarray(fits["ar_x24"].bse)[:X.shape[1]],
                               np.asarray(base.bse)[:X.shape[1]], rtol=1e-4)


def test_reordering_rows_and_groups():
    y, X, W, g, t = _ar_data(m=30, seed=4)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    relabel = rng.permutation(g.max() + 1)[g]
    for spec in ("ar1", "toeplitz(3)"):
        a = HetMixedLM(y, X, g, exog_var=W, correlation=spec, time=t).fit()
        b = HetMixedLM(y[perm], X[perm], relabel[perm], exog_var=W[perm],
                       correlation=spec, time=t[perm]).fit()
        assert a.llf == pytest.approx(b.llf, rel=1e-10)
        np.testing.assert_allclose(np.asarray(a.params), np.asarray(b.params),
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.asarray(a.bse), np.asarray(b.bse), rtol=1e-3)


def test_fit_stays_within_positive_definite_correlations():
    # AR(1) data (phi 0.7) cut to banded(2): the maximum lies where the
    # matrix over all times stops being positive definite.  Scoring stops
    # there and the free-scale fallbacks (BFGS, Newton steps) took the
    # fit beyond it, to an eigenvalue of -0.06 and an llf 3 above the
    # model's supremum; now they are held inside, and the fit says it
    # did not converge.
    y, X, W, g, t = _ar_data(m=40, seed=7)
    model = HetMixedLM(y, X, g, exog_var=W, correlation="banded(2)", time=t)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        res = model.fit()
    corr = model.correlation_structure
    assert corr.admissible(np.asarray(res.correlation_params))
    assert np.linalg.eigvalsh(corr._full(np.asarray(res.correlation_params)))[0] > 0


def _direct_fit(model, reml, start):
    """Maximise the dense likelihood with scipy (Nelder-Mead, then BFGS)."""
    lay = model.layout

    def neg(free):
        nat = lay.to_natural(free)
        if not lay.admissible(nat):
            return 1e10
        try:
            return -_dense_llf(model, nat, reml)
        except np.linalg.LinAlgError:
            return 1e10
    out = optimize.minimize(neg, start, method="Nelder-Mead",
                            options={"maxiter": 20000, "xatol": 1e-9, "fatol": 1e-12})
    out = optimize.minimize(neg, out.x, method="BFGS", options={"gtol": 1e-9})
    return lay.to_natural(out.x), -out.fun


@pytest.mark.parametrize("spec", ["toeplitz(2)", "banded(2)"])
def test_structures_without_r_counterpart_against_direct_maximisation(spec):
    rng = np.random.default_rng(11)
    m, K = 20, 5
    g = np.repeat(np.arange(m), K)
    t = np.tile(np.arange(K), m).astype(float)
    keep = rng.random(len(g)) > 0.15
    g, t = g[keep], t[keep]
    N = len(g)
    X = np.column_stack([np.ones(N), rng.normal(size=N)])
    e = np.zeros(N)
    for i in range(m):          # MA(1)-like errors
        idx = np.flatnonzero(g == i)
        u = rng.normal(size=len(idx) + 1)
        e[idx] = u[1:] + 0.5 * u[:-1]
    y = X @ [1.0, 0.5] + e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HetMixedLM(y, X, g, correlation=spec, time=t)
    lay = model.layout
    nat0 = lay.to_natural(model._objective(False).start())
    nat0[lay.cov_natural] = 0.0
    free = np.ones(nat0.size)
    free[lay.cov_natural] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(reml=False, start_params=nat0, free=free)
    # the direct maximisation over the same parameters (held intercept 0)
    mask = np.ones(lay.k_structure, bool)
    mask[lay.cov_natural] = False
    start = lay.from_natural(nat0)[mask]

    class _Sub:
        pass
    sub = _Sub()

    def to_nat(f):
        full = lay.from_natural(nat0)
        full[mask] = f
        return lay.to_natural(full)
    sub.to_natural = to_nat
    sub.admissible = lay.admissible
    nat_hat = np.asarray(res.params)[lay.k_fe:]
    assert res.llf == pytest.approx(_dense_llf(model, nat_hat, False), rel=1e-12)

    def neg(f):
        nat = to_nat(f)
        if not lay.admissible(nat):
            return 1e10
        return -_dense_llf(model, nat, False)
    out = optimize.minimize(neg, start, method="BFGS", options={"gtol": 1e-8})
    assert res.llf >= -out.fun - 1e-7
    np.testing.assert_allclose(nat_hat, to_nat(out.x), rtol=1e-3, atol=1e-4)


def test_correlation_by_separate_parameters():
    y, X, Z, W, g, t = _data(seed=6, m=40)
    level = np.where(g % 2 == 0, "a", "b")
    model = HetMixedLM(y, X, g, exog_var=W, correlation="ar1", time=t,
                       correlation_by=level)
    assert model.layout.names[-2:] == ["ar1:a", "ar1:b"]
    res = model.fit()
    # each level's parameter equals the fit of that level's groups alone when
    # nothing else is shared: check the likelihood against the dense one
    nat = np.asarray(res.params)[model.k_fe:]
    assert res.llf == pytest.approx(_dense_llf(model, nat, True), rel=1e-12)
    assert res.correlation_params.index.tolist() == ["ar1:a", "ar1:b"]


def test_results_and_helpers():
    y, X, Z, W, g, t = _data(seed=7, m=30)
    res = HetMixedLM(y, X, g, exog_var=W, correlation="ar1", time=t).fit()
    model = res.model
    assert res.model.layout.names[-1] == "ar1"
    assert list(res.params.index if hasattr(res.params, "index") else
                model.layout.names)[-1] == "ar1"
    assert res.correlation_params.shape == (1,)
    phi = res.correlation_params.iloc[0]
    rows, C = model._correlation_matrices(res.correlation_params.to_numpy(), 0)
    lag = np.abs(np.subtract.outer(t[rows], t[rows]))
    np.testing.assert_allclose(C, phi ** lag)
    assert np.all(np.diff(t[rows]) > 0)
    assert np.isfinite(np.asarray(res.bse)).all()


def test_formula_interface():
    df = check_dense.load_data("sleepstudy_gaps.csv")
    m = HetMixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
                                correlation="ar1", time="Days")
    m2 = HetMixedLM(df["Reaction"], np.column_stack([np.ones(len(df)), df["Days"]]),
                    df["Subject"], correlation=AR1(), time=df["Days"].to_numpy())
    assert m.loglike(m.layout.to_natural(m._objective().start())) == pytest.approx(
        m2.loglike(m2.layout.to_natural(m2._objective().start())))
    df2 = df.copy()
    df2.loc[3, "Days"] = np.nan
    with pytest.raises(ValueError, match="Days"):
        HetMixedLM.from_formula("Reaction ~ Days", df2, groups="Subject",
                                correlation="ar1", time="Days")
    m3 = HetMixedLM.from_formula("Reaction ~ Days", df2, groups="Subject",
                                 correlation="ar1", time="Days", missing="drop")
    assert m3.nobs == len(df) - 1


# ---------------------------------------------------------------- parsing
@pytest.mark.parametrize("text, cls, attrs", [
    ("exchangeable", Exchangeable, {}), ("AR1", AR1, {}), ("car1", CAR1, {}),
    ("exponential", CAR1, {}), ("ma(2)", ARMA, {"p": 0, "q": 2}),
    ("arma(1, 1)", ARMA, {"p": 1, "q": 1}), ("toeplitz", Toeplitz, {"q_given": None}),
    ("toeplitz(2)", Toeplitz, {"q_given": 2}), ("banded(1)", Banded, {"_band": 1}),
    ("unstructured", Unstructured, {})])
def test_parse(text, cls, attrs):
    s = make_correlation(text)
    assert type(s) is cls
    for k, v in attrs.items():
        assert getattr(s, k) == v
    assert make_correlation("independent") is None
    assert make_correlation(None) is None


def test_parse_errors():
    with pytest.raises(ValueError, match="not a known structure"):
        make_correlation("ar(")
    with pytest.raises(TypeError):
        make_correlation(3)


# ---------------------------------------------------------------- errors
def _small():
    y, X, Z, W, g, t = _data(seed=8, m=10)
    return y, X, g, t


def test_error_duplicated_times():
    y, X, g, t = _small()
    t2 = t.copy()
    t2[1] = t2[0]
    with pytest.raises(ValueError, match="repeated values within a group"):
        HetMixedLM(y, X, g, correlation="ar1", time=t2)


def test_error_non_integer_times():
    y, X, g, t = _small()
    for spec in ("ar1", "ma(1)", "arma(1,1)", "toeplitz", "banded(1)", "unstructured"):
        with pytest.raises(ValueError, match="integer times") as err:
            HetMixedLM(y, X, g, correlation=spec, time=t + 0.5)
    with pytest.raises(ValueError, match="car1"):
        HetMixedLM(y, X, g, correlation="ar1", time=t + 0.5)
    HetMixedLM(y, X, g, correlation="car1", time=t + 0.5)   # fine
    del err


def test_error_order_too_large():
    y, X, g, t = _small()
    for spec in ("ma(9)", "toeplitz(9)", "banded(9)"):
        with pytest.raises(ValueError, match="longest"):
            HetMixedLM(y, X, g, correlation=spec, time=t)


def test_error_by_varies_within_group():
    y, X, g, t = _small()
    with pytest.raises(ValueError, match="varies within a group"):
        HetMixedLM(y, X, g, correlation="ar1", time=t,
                   correlation_by=np.arange(len(y)) % 2)


def test_error_unstructured_pair_never_observed():
    g = np.repeat(np.arange(6), 2)
    t = np.array([0, 1, 1, 2] * 3, float)          # 0 and 2 never together
    y = np.random.default_rng(0).normal(size=12)
    X = np.ones((12, 1))
    with pytest.raises(ValueError, match="never occur in the same group"):
        HetMixedLM(y, X, g, correlation="unstructured", time=t)
    HetMixedLM(y, X, g, correlation="banded(1)", time=t)   # lag 2 not needed


def _four_occasions(m=16, seed=21):
    """Groups of 4 rows at times 0-3 with MA(1)-like errors and a random
    intercept; half of the groups (``by`` = 1) after them."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), 4)
    t = np.tile(np.arange(4), m).astype(float)
    u = rng.normal(size=(m, 5))
    e = (u[:, 1:] + 0.5 * u[:, :-1]).ravel()
    X = np.column_stack([np.ones(g.size), rng.normal(size=g.size)])
    y = X @ [1.0, 0.5] + 0.7 * rng.normal(size=m)[g] + e
    return y, X, g, t, (g >= m // 2).astype(int)


@pytest.mark.parametrize("spec, names", [
    ("toeplitz(1)", r"rho\(lag 1\) not identified: no two rows of a group are 1 apart"),
    ("toeplitz", r"rho\(lag 1\), rho\(lag 3\), rho\(lag 5\) not identified"),
    ("ma(1)", "ma1 not identified: the rows of a group are 2, 4, 6 apart"),
    ("ma(2)", "ma1, ma2 not identified"),
])
def test_error_lags_never_observed(spec, names):
    # times 0, 2, 4, 6: the correlations at odd lags never enter the
    # likelihood (before: the fits reported them at their start with a
    # standard error of 0 as converged)
    y, X, g, t, _ = _four_occasions()
    with pytest.raises(ValueError, match=names):
        HetMixedLM(y, X, g, correlation=spec, time=2 * t)
    # the same times one step apart: identified
    HetMixedLM(y, X, g, correlation=spec, time=t)


def test_arma_identified_from_the_lags_observed():
    # ARMA(1,1) on times two apart: the correlations at lags 2, 4, 6 are
    # rho(2) = phi rho(1), rho(4) = phi^3 rho(1), ...: both parameters are
    # identified (the Jacobian test, not a rule on the gaps); on groups of
    # two rows one lag does not identify two parameters
    y, X, g, t, _ = _four_occasions()
    HetMixedLM(y, X, g, correlation="arma(1,1)", time=2 * t)
    pairs = t < 2
    with pytest.raises(ValueError, match="ARMA.1,1. correlation: ar1, ma1 not identified: .* determine only 1 of the 2"):
        HetMixedLM(y[pairs], X[pairs], g[pairs], correlation="arma(1,1)", time=t[pairs])
    HetMixedLM(y[pairs], X[pairs], g[pairs], correlation="ar1", time=t[pairs])


def test_error_banded_without_a_pair_in_the_band():
    y, X, g, t, _ = _four_occasions()
    with pytest.raises(ValueError, match=r"banded\(1\): no two time values are at "
                       "most 1 apart .the closest are 2 apart"):
        HetMixedLM(y, X, g, correlation="banded(1)", time=2 * t)
    HetMixedLM(y, X, g, correlation="banded(2)", time=2 * t)


@pytest.mark.parametrize("spec", ["ar1", "car1", "exchangeable", "ma(1)", "toeplitz(2)",
                                  "unstructured"])
def test_error_no_group_of_two_rows(spec):
    y, X, g, t, by = _four_occasions()
    one = t == 0
    with pytest.raises(ValueError, match="not identified: no group has two rows or more"):
        HetMixedLM(y[one], X[one], g[one], correlation=spec, time=t[one])
    # only the groups of one level of correlation_by have one row
    keep = (by == 0) | (t == 0)
    with pytest.raises(ValueError, match="in the groups with correlation_by = 1: .* not "
                       "identified: no group has two rows or more"):
        HetMixedLM(y[keep], X[keep], g[keep], correlation=spec, time=t[keep],
                   correlation_by=by[keep])
    HetMixedLM(y, X, g, correlation=spec, time=t, correlation_by=by)


@pytest.mark.parametrize("spec, names", [
    ("toeplitz(1)", r"rho\(lag 1\):1 not identified"),
    ("ma(1)", "ma1:1 not identified"),
    ("arma(1,1)", "ar1:1, ma1:1 not identified"),
    ("unstructured", r"rho\(0,1\):1, rho\(0,3\):1, .* never occur in the same group"),
    ("banded(1)", r"rho\(0,1\):1, rho\(1,2\):1, rho\(2,3\):1 not identified"),
])
def test_error_level_of_correlation_by_leaves_parameters_unidentified(spec, names):
    # the groups with by = 1 observe times 0 and 2 only: the level's own
    # parameters (its lag-1 correlations, its pairs of times) are not
    # identified, although the other level's groups observe them (before:
    # the check of unstructured pairs ran over all groups, and the fits
    # kept that level's parameters at their start)
    y, X, g, t, by = _four_occasions()
    keep = (by == 0) | np.isin(t, [0, 2])
    with pytest.raises(ValueError, match=f"in the groups with correlation_by = 1: {names}"):
        HetMixedLM(y[keep], X[keep], g[keep], correlation=spec, time=t[keep],
                   correlation_by=by[keep])


def test_error_time_without_correlation_and_locscale():
    y, X, g, t = _small()
    with pytest.raises(ValueError, match="give correlation="):
        HetMixedLM(y, X, g, time=t)
    with pytest.raises(NotImplementedError, match="location-scale"):
        HetMixedLM(y, X, g, exog_var_re=np.ones((len(y), 1)), correlation="ar1", time=t)


def test_position_within_group_without_time():
    """Without time=, a row's place is its position in its group (nlme's
    form = ~ 1 | g): the same as time = 0, 1, ... in row order."""
    y, X, g, t = _small()
    pos = np.concatenate([np.arange(n) for n in np.bincount(g)])
    a = HetMixedLM(y, X, g, correlation="ar1")
    b = HetMixedLM(y, X, g, correlation="ar1", time=pos)
    nat = a.layout.to_natural(a._objective().start())
    assert a.loglike(nat) == b.loglike(nat)


def test_exchangeable_with_random_intercept_warns():
    """Exchangeable (or unstructured, full Toeplitz) residuals and a random
    intercept are not separately identified when the residual variances
    are constant within groups: a warning.  With variances that vary
    within groups they are, and with decaying correlations too: none."""
    y, X, Z, W, g, t = _data(seed=8, m=40)
    for spec in ("exchangeable", "unstructured", "toeplitz"):
        with pytest.warns(ValueWarning, match="not separately identified"):
            HetMixedLM(y, X, g, correlation=spec, time=t)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HetMixedLM(y, X, g, exog_var=W, correlation="exchangeable")
        HetMixedLM(y, X, g, correlation="toeplitz(2)", time=t)
        HetMixedLM(y, X, g, correlation="ar1", time=t)
        HetMixedLM(y, X, g, exog_re=Z[:, 1:], correlation="exchangeable")


def test_exchangeable_and_random_intercept_ridge():
    """The ridge behind the warning: with a constant variance the
    likelihood depends on (tau^2, sigma^2, rho) only through
    sigma^2 (1 - rho) and tau^2 + rho sigma^2, negative rho included."""
    y, X, Z, W, g, t = _data(seed=9, m=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HetMixedLM(y, X, g, correlation="exchangeable")
    tau2, s2, rho = 0.5, 1.2, 0.2
    d, e = s2 * (1 - rho), tau2 + rho * s2
    base = model.loglike(np.array([tau2, np.log(s2), rho]))
    for rho_b in (0.05, -0.05):
        s2_b = d / (1 - rho_b)
        llf = model.loglike(np.array([e - rho_b * s2_b, np.log(s2_b), rho_b]))
        assert llf == pytest.approx(base, rel=1e-12)
    assert model.loglike(np.array([tau2, np.log(s2), 0.05])) != pytest.approx(base)


@pytest.mark.parametrize("reml", [False, True], ids=["ML", "REML"])
@pytest.mark.parametrize("spec", ["ar1", "car1", "ar1 by level", "car1 fractional"])
def test_analytic_observed_information_against_differences(spec, reml):
    # AR(1) / CAR(1): the observed information is analytic
    # (_correlated.observed_information), on unbalanced groups with gaps, a
    # random slope and a 2-term variance function, away from the estimate
    # (the formula holds at any point): against central differences of
    # the analytic gradient in the natural parameters
    model, objective, natural = _model_at_random_point(spec, reml)
    assert objective._has_analytic_information()
    hess = objective.observed_information(natural).hessian
    _assert_is_differenced_hessian(hess, objective, natural)


def _assert_is_differenced_hessian(hess, objective, natural):
    """``hess`` against central differences of the analytic gradient in
    the natural parameters."""
    k = natural.size
    num = np.empty((k, k))
    for j in range(k):
        h = 1e-5 * max(abs(natural[j]), 1e-2)
        e = np.zeros(k)
        e[j] = h
        num[:, j] = (objective.evaluate_natural(natural + e)[1]
                     - objective.evaluate_natural(natural - e)[1]) / (2 * h)
    np.testing.assert_allclose(hess, 0.5 * (num + num.T), rtol=1e-6,
                               atol=1e-8 * np.abs(num).max())


@pytest.mark.parametrize("reml", [False, True], ids=["ML", "REML"])
@pytest.mark.parametrize("spec", ["ar1", "car1"])
def test_analytic_observed_information_groups_alone(spec, reml, monkeypatch):
    # a random intercept (q = 1) and chunks of one group: a chunk's (1, n,
    # 1) arrays are laid out alike by group and by position, so that a
    # position-major copy made by np.ascontiguousarray is the array itself
    # (a draft of the observed information ran a recursion in place on
    # such a "copy" and changed what it read afterwards; the random-slope
    # tests above did not see it); against central differences of the
    # gradient
    from statsmodels_hetmixed.structures import correlation
    monkeypatch.setattr(correlation, "_CHUNK_ROWS", 1)
    y, X, Z, W, g, t = _data(seed=4)
    if spec == "car1":
        t = 0.37 * t + np.random.default_rng(3).uniform(0, 0.1, size=t.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = HetMixedLM(y, X, g, exog_var=W, correlation=spec, time=t)
    objective = model._objective(reml)
    assert len(model.layout.correlation_block.buckets) == model.n_groups
    natural = model.layout.to_natural(objective.start() + 0.2)
    hess = objective.observed_information(natural).hessian
    _assert_is_differenced_hessian(hess, objective, natural)


@pytest.mark.parametrize("reml", [False, True], ids=["ML", "REML"])
def test_chunks_of_groups_change_nothing(reml, monkeypatch):
    # AR(1) / CAR(1) take a size bucket's groups in chunks of about
    # _CHUNK_ROWS rows: chunks of one group give the gradient and the
    # expected and observed information of whole buckets
    from statsmodels_hetmixed.structures import correlation
    model, objective, natural = _model_at_random_point("ar1 by level", reml)
    whole = objective.evaluate_natural(natural, info=True)
    hess = objective.observed_information(natural).hessian
    monkeypatch.setattr(correlation, "_CHUNK_ROWS", 1)
    chunked, objective, _ = _model_at_random_point("ar1 by level", reml)
    buckets = chunked.layout.correlation_block.buckets
    assert len(buckets) == chunked.n_groups > len(model.layout.correlation_block.buckets)
    ours = objective.evaluate_natural(natural, info=True)
    assert ours[0].llf == pytest.approx(whole[0].llf, rel=1e-14)
    np.testing.assert_allclose(ours[1], whole[1], rtol=1e-12)
    np.testing.assert_allclose(ours[0].grad_eta, whole[0].grad_eta, rtol=1e-12)
    np.testing.assert_allclose(ours[0].info, whole[0].info, rtol=1e-12)
    np.testing.assert_allclose(objective.observed_information(natural).hessian, hess,
                               rtol=1e-12)


@pytest.mark.parametrize("spec", ["ar1", "car1"])
def test_analytic_observed_information_invariance(spec):
    # the analytic observed information's standard errors do not depend on
    # the units or origin of a variance covariate (carried by the delta
    # method for the variance coefficients) nor on the order of rows and
    # groups
    y, X, W, g, t = _ar_data(m=30, seed=5)
    a, b_, c = 1000.0, 5000.0, None
    W2 = W.copy()
    W2[:, 1] = a * W[:, 1] + b_
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(y))
    relabel = rng.permutation(g.max() + 1)[g]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r0 = HetMixedLM(y, X, g, exog_var=W, correlation=spec, time=t).fit(reml=False)
        r1 = HetMixedLM(y[perm], X[perm], relabel[perm], exog_var=W2[perm],
                        correlation=spec, time=t[perm]).fit(reml=False)
    assert r1.model._objective(False)._has_analytic_information()
    assert r1.llf == pytest.approx(r0.llf, rel=1e-10)
    # (fixed effects, random-intercept variance, variance intercept and
    # slope, phi): recoded as v1 = v0 - 5 slope, slope / 1000
    J = np.eye(6)
    J[3, 4], J[4, 4] = -b_ / a, 1.0 / a
    p0, p1 = np.asarray(r0.params), np.asarray(r1.params)
    np.testing.assert_allclose(p1, J @ p0, rtol=1e-6, atol=1e-8)
    cov0 = np.asarray(r0.cov_params())
    c = J @ cov0 @ J.T
    np.testing.assert_allclose(np.asarray(r1.bse), np.sqrt(np.diag(c)), rtol=1e-5)


def test_observed_information_where_every_step_leaves_the_space(monkeypatch):
    # an estimate whose correlation matrix is singular to within the
    # difference step (an unstructured model with too many correlations
    # for its groups ended there): the differenced Hessian cannot be taken
    # either way, and the information is NaN, not an exception out of fit()
    y, X, g, t, _ = _four_occasions()
    model = HetMixedLM(y, X, g, exog_re=np.zeros((len(y), 0)), correlation="toeplitz(2)",
                       time=t)
    objective = model._objective(False)
    natural = objective.layout.to_natural(objective.start())
    assert not objective._has_analytic_information()
    evaluate_natural = objective.evaluate_natural

    def only_there(x, **kwargs):
        if not np.array_equal(x, natural):
            raise np.linalg.LinAlgError("not positive definite")
        return evaluate_natural(x, **kwargs)

    monkeypatch.setattr(objective, "evaluate_natural", only_there)
    info = objective.observed_information(natural)
    assert np.isnan(info.hess_u).all()
    assert np.all(np.isfinite(info.grad_u))


def test_dates_and_durations_as_days():
    # dates are days since the earliest (a time zone's wall time, whole
    # days apart across the start of daylight saving time), durations days;
    # before, dates were nanoseconds since 1970 and CAR(1)'s phi rounded
    # to 1 in a fit that did not converge
    y, X, W, g, t = _ar_data(m=30, seed=3)
    days = 7.0 * t
    base = HetMixedLM(y, X, g, exog_var=W, correlation="car1", time=days).fit()
    start = pd.Timestamp("2020-03-15")           # Europe/Berlin: DST on 03-29
    dates = pd.Series(start + pd.to_timedelta(days, unit="D"))
    for time in (dates, dates.to_numpy(), dates.dt.tz_localize("Europe/Berlin"),
                 dates.dt.strftime("%Y-%m-%d"),      # a CSV file's column
                 pd.Series(pd.to_timedelta(days + 3, unit="D"))):
        model = HetMixedLM(y, X, g, exog_var=W, correlation="car1", time=time)
        np.testing.assert_array_equal(model.correlation_structure.time, days
                                      + (3 if time.dtype.kind == "m" else 0))
        res = model.fit()
        assert "Residual correlation: CAR(1) in time (days)" in str(res.summary())
        assert res.llf == pytest.approx(base.llf, rel=1e-12)
        assert res.correlation_params.iloc[0] == pytest.approx(
            base.correlation_params.iloc[0], rel=1e-8)
    # integer days: AR(1) takes the zoned dates too
    HetMixedLM(y, X, g, correlation="ar1", time=dates.dt.tz_localize("Europe/Berlin"))
    assert "(days)" not in str(base.summary())
    with pytest.raises(ValueError, match="time must be numeric, dates or durations"):
        HetMixedLM(y, X, g, correlation="car1", time=np.array(["a"] * len(y), object))


def test_error_car1_times_in_units_far_below_the_gaps():
    # phi is the correlation one unit apart: with gaps of 1e-6 units the
    # start 0.1^(1e6) underflowed to 0 and the fit stopped in the free
    # scale's check; now the model says to rescale time
    y, X, W, g, t = _ar_data(m=30, seed=3)
    with pytest.raises(ValueError, match="typical gap between a group's times is 1e-06 "
                       "units of time.*Rescale time, e.g. divide it by 1e-06"):
        HetMixedLM(y, X, g, correlation="car1", time=1e-6 * t)
    a = HetMixedLM(y, X, g, exog_var=W, correlation="car1", time=t).fit()
    b = HetMixedLM(y, X, g, exog_var=W, correlation="car1", time=0.01 * t).fit()
    assert b.llf == pytest.approx(a.llf, rel=1e-10)


def test_scoring_hands_over_once_it_stalls():
    # ARMA(2,1) on AR(1) data: the AR and MA roots nearly cancel, and the
    # log-likelihood is flat along a ridge; scoring's steps stopped gaining
    # beyond rounding while its decrement stayed above the tolerance, for
    # all of its 200 iterations (2.8 s) before BFGS finished the fit.  It
    # now hands over after 5 such steps (about 74 iterations, 1.1 s), to
    # the same maximum.
    y, X, W, g, t = _ar_data(m=60, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = HetMixedLM(y, X, g, exog_var=W, correlation="arma(2,1)", time=t).fit()
    assert res.converged
    assert res.n_iter < 150
    assert res.llf == pytest.approx(-429.7219371196307, rel=1e-10)


def test_singular_correlation_matrices_at_the_estimate():
    # unstructured correlations (10) of 5 occasions from 4 complete groups:
    # the residuals span at most 4 directions, and the (REML) likelihood
    # rises without bound towards a singular C; the fit stops on the way
    # and says so (before: no word of the singular matrices, and with 45
    # correlations for 40 groups once "Converged: Yes")
    rng = np.random.default_rng(2)
    m, K = 4, 5
    g = np.repeat(np.arange(m), K)
    t = np.tile(np.arange(K), m).astype(float)
    y = rng.normal(size=m * K) + rng.normal(size=m)[g]
    X = np.ones((m * K, 1))
    none = np.zeros((m * K, 0))
    with pytest.warns(ConvergenceWarning, match="correlation matrices of 4 of 4 groups are "
                      "singular at the estimate"):
        res = HetMixedLM(y, X, g, exog_re=none, correlation="unstructured", time=t).fit()
    assert not res.converged
    assert "Warning: The residual correlation matrices of 4 of 4" in str(res.summary())
    # the other side: 40 groups determine the 10 correlations
    m = 40
    g = np.repeat(np.arange(m), K)
    t = np.tile(np.arange(K), m).astype(float)
    y = rng.normal(size=m * K) + rng.normal(size=m)[g]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        res = HetMixedLM(y, np.ones((m * K, 1)), g, exog_re=np.zeros((m * K, 0)),
                         correlation="unstructured", time=t).fit()
    assert res.converged
    assert "singular" not in str(res.summary())


@pytest.mark.parametrize("spec", ["ar1", "car1"])
def test_bidiagonal_structures_hold_no_square_arrays(spec):
    # AR(1) / CAR(1) fits read each group's gaps, never its n x n time
    # differences: the buckets keep rows, not rows squared (at 1,000,000
    # rows of 50 occasions the differences were 400 MB, and the model took
    # 1.03 s instead of 0.16 s to build); dense matrices, where asked for
    # (resid_cov, Kenward-Roger), are made from the times
    y, X, W, g, t = _ar_data(m=40, seed=7)
    model = HetMixedLM(y, X, g, exog_var=W, correlation=spec, time=t)
    corr = model.correlation_structure
    held = sum(a.nbytes for bucket in corr.buckets for a in bucket if a is not None)
    assert held <= 24 * len(y)
    phi = 0.63
    for bucket in corr.buckets:
        C, dC = corr.bucket_matrices(np.array([phi]), bucket, derivative=True)
        lag = np.abs(bucket[2][:, :, None] - bucket[2][:, None, :])
        np.testing.assert_allclose(C, phi ** lag, rtol=1e-14)
        np.testing.assert_allclose(dC[0], lag * phi ** np.maximum(lag - 1, 0), rtol=1e-13)
