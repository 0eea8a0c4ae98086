"""The batched engine against dense linear algebra and numerical derivatives."""

import dataclasses

import numpy as np
import pytest

from statsmodels_hetmixed import _engine
from statsmodels_hetmixed._engine import (GroupedData, centred_directions, evaluate,
                                          fe_score_jacobian, observed_information)


LAYOUTS = ["padded", "sparse"]


def _problem(seed=1, layout="auto", q=3, sorted_rows=False):
    rng = np.random.default_rng(seed)
    m = 7
    sizes = rng.integers(1, 6, m)  # includes one-row groups
    n = sizes.sum()
    g = rng.permutation(np.repeat(np.arange(m), sizes))  # rows not sorted by group
    if sorted_rows:
        g = np.sort(g)
    X = np.column_stack([np.ones(n), rng.standard_normal((n, 2))])
    Z = np.column_stack([np.ones(n), rng.standard_normal((n, 2))])[:, :q]
    y = 2 * rng.standard_normal(n) + X @ [1, 2, 3]
    W = np.column_stack([np.ones(n), rng.standard_normal(n)])
    L = np.tril(rng.standard_normal((3, 3)))[:q, :q] * 0.7
    return GroupedData.build(y, X, Z, g, m, layout=layout), g, W, L


def dense_llf(data, g, W, L, a, reml, beta=None):
    """Log-likelihood from the n x n marginal covariance matrix."""
    y, X, Z = data.endog, data.exog, data.exog_z
    n, p = X.shape
    V = np.diag(np.exp(W @ a))
    for i in range(data.n_groups):
        rows = g == i
        V[np.ix_(rows, rows)] += Z[rows] @ L @ L.T @ Z[rows].T
    Vi = np.linalg.inv(V)
    H = X.T @ Vi @ X
    if beta is None:
        beta = np.linalg.solve(H, X.T @ Vi @ y)
    e = y - X @ beta
    llf = -0.5 * (np.linalg.slogdet(V)[1] + e @ Vi @ e)
    if reml:
        return llf - 0.5 * ((n - p) * np.log(2 * np.pi) + np.linalg.slogdet(H)[1])
    return llf - 0.5 * n * np.log(2 * np.pi)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("fixed_beta", [False, True])
def test_llf_and_gradient_match_dense(reml, fixed_beta, layout):
    data, g, W, L = _problem(layout=layout)
    a = np.array([0.3, 0.5])
    beta = np.array([0.5, 1.5, 2.5]) if fixed_beta and not reml else None
    ev = evaluate(data, L, np.exp(W @ a), reml, fe_params=beta, gradient=True)
    assert ev.llf == pytest.approx(dense_llf(data, g, W, L, a, reml, beta), abs=1e-10)

    h = 1e-6
    grad_a = W.T @ ev.grad_eta
    for k in range(2):
        e = h * np.eye(2)[k]
        num = (dense_llf(data, g, W, L, a + e, reml, beta)
               - dense_llf(data, g, W, L, a - e, reml, beta)) / (2 * h)
        assert grad_a[k] == pytest.approx(num, rel=1e-6, abs=1e-7)
    grad_L = 2 * ev.grad_cov @ L  # d llf / dL for G = L L'
    for i in range(3):
        for j in range(i + 1):
            e = np.zeros((3, 3))
            e[i, j] = h
            num = (dense_llf(data, g, W, L + e, a, reml, beta)
                   - dense_llf(data, g, W, L - e, a, reml, beta)) / (2 * h)
            assert grad_L[i, j] == pytest.approx(num, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_blup_and_conditional_covariance_match_dense(layout):
    data, g, W, L = _problem(3, layout)
    a = np.array([-0.2, 0.4])
    r = np.exp(W @ a)
    ev = evaluate(data, L, r, reml=False)
    G = L @ L.T
    Z, X, y = data.exog_z, data.exog, data.endog
    for i in range(data.n_groups):
        rows = g == i
        V = np.diag(r[rows]) + Z[rows] @ G @ Z[rows].T
        Vi = np.linalg.inv(V)
        blup = G @ Z[rows].T @ Vi @ (y[rows] - X[rows] @ ev.fe_params)
        cond = G - G @ Z[rows].T @ Vi @ Z[rows] @ G
        np.testing.assert_allclose(ev.blup[i], blup, atol=1e-10)
        np.testing.assert_allclose(ev.cond_cov[i], cond, atol=1e-10)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_singular_random_effects_covariance_is_allowed(layout):
    """A singular G (variance on the boundary) still gives the likelihood."""
    data, g, W, L = _problem(5, layout)
    L[1:, 1:] = 0.0
    L[1:, 0] = 0.0
    a = np.array([0.1, 0.2])
    ev = evaluate(data, L, np.exp(W @ a), reml=True)
    assert ev.llf == pytest.approx(dense_llf(data, g, W, L, a, True), abs=1e-10)


def _vech_directions(q):
    """dG / d(each lower-triangle entry of G), (q (q + 1) / 2, q, q)."""
    dirs = []
    for i in range(q):
        for j in range(i + 1):
            e = np.zeros((q, q))
            e[i, j] = e[j, i] = 1.0
            dirs.append(e)
    return np.array(dirs)


@pytest.mark.parametrize("q", [1, 3])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_expected_information_matches_dense_trace_formula(layout, q):
    """I_kl = 1/2 tr(V^-1 V_k V^-1 V_l), computed with the n x n matrices."""
    data, g, W, L = _problem(7, layout, q=q)
    a = np.array([0.2, -0.3])
    r = np.exp(W @ a)
    q = L.shape[0]
    cov_dirs = _vech_directions(q)
    ev = evaluate(data, L, r, False, gradient=True, info_directions=(cov_dirs, W))
    Z = data.exog_z
    n = len(r)
    same = g[:, None] == g[None, :]
    V = np.diag(r) + (Z @ L @ L.T @ Z.T) * same
    Vi = np.linalg.inv(V)
    derivs = [(Z @ d @ Z.T) * same for d in cov_dirs]
    derivs += [np.diag(r * W[:, k]) for k in range(W.shape[1])]
    k = len(derivs)
    dense = np.array([[0.5 * np.trace(Vi @ derivs[i] @ Vi @ derivs[j])
                       for j in range(k)] for i in range(k)])
    assert n == Z.shape[0]
    np.testing.assert_allclose(ev.info, dense, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_per_group_pieces_sum_to_totals(layout):
    data, g, W, L = _problem(11, layout)
    a = np.array([0.1, -0.2])
    beta = np.array([0.3, 1.0, 2.0])
    y = data.endog + 0.5
    ev = evaluate(data, L, np.exp(W @ a), False, fe_params=beta, gradient=True,
                  endog=y, per_group=True)
    shifted = GroupedData.build(y, data.exog, data.exog_z, g, data.n_groups,
                                layout=layout)
    ref = evaluate(shifted, L, np.exp(W @ a), False, fe_params=beta, gradient=True)
    assert ev.llf == pytest.approx(ref.llf, abs=1e-10)
    assert ev.llf_groups.sum() == pytest.approx(ev.llf, abs=1e-10)
    np.testing.assert_allclose(ev.grad_cov_groups.sum(axis=0), ref.grad_cov, atol=1e-10)
    # One group's llf is the dense likelihood of that group alone.
    rows = g == 0
    V = np.diag(np.exp(W[rows] @ a)) + data.exog_z[rows] @ L @ L.T @ data.exog_z[rows].T
    e = y[rows] - data.exog[rows] @ beta
    dense = -0.5 * (rows.sum() * np.log(2 * np.pi) + np.linalg.slogdet(V)[1]
                    + e @ np.linalg.solve(V, e))
    assert ev.llf_groups[0] == pytest.approx(dense, abs=1e-10)


def test_psd_factor_of_singular_matrix_is_lower_triangular():
    from statsmodels_hetmixed.structures import psd_factor

    a = np.array([[1.0, 2.0, 0.5]])
    cov = a.T @ a  # rank one
    L = psd_factor(cov)
    np.testing.assert_allclose(np.triu(L, 1), 0)
    np.testing.assert_allclose(L @ L.T, cov, atol=1e-12)
    assert np.all(np.diag(L) >= 0)


@pytest.mark.parametrize("reml", [False, True])
def test_fixed_effects_in_other_units_and_collinear_design(reml):
    """X'V^-1 X is factored equilibrated: a column times 1e14 (or 1e-14)
    gives the same fit with its coefficient rescaled (REML: its log
    determinant shifts by 2 log|factor|); only a collinear column raises."""
    from statsmodels_hetmixed._engine import NotPositiveDefiniteError

    data, g, W, L = _problem()
    r = np.exp(W @ np.array([0.3, 0.5]))
    base = evaluate(data, L, r, reml)
    for s in (1e14, 1e-14):
        X = data.exog * np.array([1.0, s, 1.0])
        scaled = GroupedData.build(data.endog, X, data.exog_z, g, data.n_groups)
        ev = evaluate(scaled, L, r, reml)
        np.testing.assert_allclose(ev.fe_params, base.fe_params / [1.0, s, 1.0],
                                   rtol=1e-8)
        shift = -np.log(s) if reml else 0.0  # -1/2 log det(D H D)
        assert ev.llf == pytest.approx(base.llf + shift, rel=1e-10)
    X = np.column_stack([data.exog, 1e8 * data.exog[:, 1] - 3.0])
    collinear = GroupedData.build(data.endog, X, data.exog_z, g, data.n_groups)
    with pytest.raises(NotPositiveDefiniteError, match="collinear"):
        evaluate(collinear, L, r, reml)


@pytest.mark.parametrize("reml", [False, True])
def test_centred_fixed_effects_columns_give_the_same_answers(reml):
    """GroupedData(centre=True) works in centred columns and reports the
    fixed effects, X'V^-1X, the score and the covariance of X's columns;
    the dense log-likelihood (of the uncentred X) is the check."""
    plain, g, W, L = _problem(3)
    X = plain.exog.copy()
    X[:, 1] += 50.0  # a covariate away from its origin
    centred = GroupedData.build(plain.endog, X, plain.exog_z, g, plain.n_groups,
                                centre=True)
    uncentred = GroupedData.build(plain.endog, X, plain.exog_z, g, plain.n_groups)
    assert centred.fe_basis is not None and uncentred.fe_basis is None
    assert abs(centred.exog[:, 1].mean()) < 1e-10
    a = np.array([0.2, 0.3])
    r = np.exp(W @ a)
    evs = [evaluate(d, L, r, reml, gradient=True) for d in (centred, uncentred)]
    assert evs[0].llf == pytest.approx(dense_llf(uncentred, g, W, L, a, reml), rel=1e-10)
    for name in ("llf", "fe_params", "xtvix", "score_fe", "grad_eta", "grad_cov"):
        np.testing.assert_allclose(getattr(evs[0], name), getattr(evs[1], name),
                                   rtol=1e-8, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(evs[0].fe_covariance(), np.linalg.inv(evs[1].xtvix),
                               rtol=1e-8)
    if not reml:  # given fixed effects are those of X
        beta = evs[1].fe_params + 0.1
        given = [evaluate(d, L, r, False, fe_params=beta) for d in (centred, uncentred)]
        assert given[0].llf == pytest.approx(given[1].llf, rel=1e-12)
        np.testing.assert_allclose(given[0].fe_params, beta, rtol=1e-12)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("centre", [False, True])
def test_fe_score_jacobian_matches_dense(layout, centre):
    """d (X'V^-1 (y - X b)) / d param = -X'V^-1 V_k V^-1 (y - X b), with the
    n x n matrices; in X's own fixed effects when the engine centres."""
    plain, g, W, L = _problem(5, layout)
    X = plain.exog.copy()
    X[:, 1] += 20.0  # centring changes the engine's columns, not the answer
    data = GroupedData.build(plain.endog, X, plain.exog_z, g, plain.n_groups,
                             layout=layout, centre=centre)
    a = np.array([0.2, -0.3])
    r = np.exp(W @ a)
    q = L.shape[0]
    cov_dirs = _vech_directions(q)
    beta = np.array([0.5, 1.5, 2.5])
    got = fe_score_jacobian(data, L, r, beta, cov_dirs, W)
    Z = plain.exog_z
    same = g[:, None] == g[None, :]
    Vi = np.linalg.inv(np.diag(r) + (Z @ L @ L.T @ Z.T) * same)
    resid = plain.endog - X @ beta
    derivs = [(Z @ d @ Z.T) * same for d in cov_dirs]
    derivs += [np.diag(r * W[:, k]) for k in range(W.shape[1])]
    dense = np.column_stack([-X.T @ Vi @ d @ Vi @ resid for d in derivs])
    np.testing.assert_allclose(got, dense, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("reml", [False, True])
def test_centred_random_effects_columns_give_the_same_answers(layout, reml):
    """GroupedData(centre=True, k_re=...) evaluates with Z_c = Z M^-1 and a
    factor of G_c = M G M' (M L for G = L L'), and reports the BLUPs, their
    covariances, d llf / dG in Z's coordinates, and the expected
    information and the score's Jacobian of G's parameters given their
    directions in G_c (``centred_directions``); the variance-component
    column (past k_re)
    is not centred.  The uncentred engine and the dense log-likelihood are
    the check."""
    plain, g, W, L = _problem(4, layout)
    Z = plain.exog_z.copy()
    Z[:, 1] += 40.0  # a random slope's covariate away from its origin
    Z[:, 2] += 5.0   # a variance component's column: left as it is
    args = (plain.endog, plain.exog, Z, g, plain.n_groups)
    centred = GroupedData.build(*args, layout=layout, centre=True, k_re=2)
    uncentred = GroupedData.build(*args, layout=layout)
    M = centred.re_basis
    assert M is not None and uncentred.re_basis is None
    np.testing.assert_allclose(centred.exog_zc[:, 1].mean(), 0.0, atol=1e-12)
    np.testing.assert_array_equal(centred.exog_zc[:, 2], Z[:, 2])
    np.testing.assert_allclose(centred.exog_zc @ M, Z, rtol=1e-14, atol=1e-12)
    a = np.array([0.2, 0.3])
    r = np.exp(W @ a)
    q = L.shape[0]
    dirs = np.zeros((q * (q + 1) // 2, q, q))  # dG / d vech(G)
    for k, (i, j) in enumerate(zip(*np.tril_indices(q))):
        dirs[k, i, j] = dirs[k, j, i] = 1.0
    evs = [evaluate(d, factor, r, reml, gradient=True, info_directions=(E, W),
                    per_group=not reml)
           for d, factor, E in ((centred, M @ L, centred_directions(centred, dirs)),
                                (uncentred, L, dirs))]
    assert evs[0].llf == pytest.approx(dense_llf(uncentred, g, W, L, a, reml), rel=1e-10)
    names = ["llf", "fe_params", "blup", "cond_cov", "grad_cov", "grad_eta", "info"]
    for name in names + ([] if reml else ["grad_cov_groups", "llf_groups"]):
        np.testing.assert_allclose(getattr(evs[0], name), getattr(evs[1], name),
                                   rtol=1e-8, atol=1e-10, err_msg=name)
    # the centred gradient is that of G_c: d llf / dG = M' (d llf / dG_c) M
    np.testing.assert_allclose(M.T @ evs[0].grad_cov_centred @ M, evs[1].grad_cov,
                               rtol=1e-8, atol=1e-10)
    beta = evs[1].fe_params + 0.1
    np.testing.assert_allclose(fe_score_jacobian(centred, M @ L, r, beta,
                                                 centred_directions(centred, dirs), W),
                               fe_score_jacobian(uncentred, L, r, beta, dirs, W),
                               rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("centre", [False, True])
def test_fe_score_jacobian_from_the_evaluation_matches_dense(layout, centre):
    """With a residual variance common to all rows (constant variance
    directions) the cross block comes from the evaluation's per-group sums,
    without a pass over the rows: the same numbers as the dense formula."""
    from statsmodels_hetmixed._engine import evaluate

    plain, g, W, L = _problem(5, layout)
    X = plain.exog.copy()
    X[:, 1] += 20.0
    data = GroupedData.build(plain.endog, X, plain.exog_z, g, plain.n_groups,
                             layout=layout, centre=centre)
    r = np.full(len(g), 1.7)
    dirs_var = np.full((len(g), 1), 1.0)
    q = L.shape[0]
    cov_dirs = _vech_directions(q)
    ev = evaluate(data, L, r, reml=False)  # at the GLS estimate
    beta = ev.fe_params
    got = fe_score_jacobian(data, L, r, beta, cov_dirs, dirs_var, evaluation=ev)
    rows = fe_score_jacobian(data, L, r, beta, cov_dirs, dirs_var)
    Z = plain.exog_z
    same = g[:, None] == g[None, :]
    Vi = np.linalg.inv(np.diag(r) + (Z @ L @ L.T @ Z.T) * same)
    resid = plain.endog - X @ beta
    derivs = [(Z @ d @ Z.T) * same for d in cov_dirs] + [np.diag(r)]
    dense = np.column_stack([-X.T @ Vi @ d @ Vi @ resid for d in derivs])
    np.testing.assert_allclose(got, dense, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(rows, dense, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("sorted_rows", [False, True])
@pytest.mark.parametrize("q", [1, 3])
@pytest.mark.parametrize("reml", [False, True])
def test_observed_information_matches_dense_formula(reml, q, sorted_rows):
    """The analytic Hessian of the profiled log-likelihood (REML criterion)
    against the n x n formulas: at fixed b, 1/2 tr(V^-1 V_k V^-1 V_l)
    - 1/2 tr(V^-1 V_kl) + 1/2 s'V_kl s - (V_k s)'V^-1 (V_l s) with
    s = V^-1 (y - X b), plus J'(X'V^-1 X)^-1 J (J_k = -X'V^-1 V_k s), and
    for REML minus half the Hessian of log|X'V^-1 X| (P = V^-1 - V^-1 X
    H^-1 X'V^-1: 1/2 tr(P V_k P V_l) - 1/2 tr(P V_kl) + 1/2 s'V_kl s -
    s'V_k P V_l s)."""
    data, g, W, L = _problem(11, "sparse", q=q, sorted_rows=sorted_rows)
    assert data.sorted_groups == sorted_rows
    r = np.exp(W @ np.array([0.2, -0.3]))
    cov_dirs = _vech_directions(q)
    hess, ev = observed_information(data, L, r, reml, cov_dirs, W)
    Z, X, y = data.exog_z, data.exog, data.endog
    same = g[:, None] == g[None, :]
    Vi = np.linalg.inv(np.diag(r) + (Z @ L @ L.T @ Z.T) * same)
    H = X.T @ Vi @ X
    P = Vi - Vi @ X @ np.linalg.solve(H, X.T @ Vi)
    s = P @ y
    derivs = [(Z @ d @ Z.T) * same for d in cov_dirs]
    derivs += [np.diag(r * W[:, k]) for k in range(W.shape[1])]
    k_cov, k = len(cov_dirs), len(derivs)
    dense = np.zeros((k, k))
    J = np.column_stack([-X.T @ Vi @ D @ s for D in derivs])
    M = P if reml else Vi
    for i in range(k):
        for j in range(k):
            Dij = (np.diag(r * W[:, i - k_cov] * W[:, j - k_cov])
                   if min(i, j) >= k_cov else np.zeros_like(Vi))
            dense[i, j] = (0.5 * np.trace(M @ derivs[i] @ M @ derivs[j])
                           - 0.5 * np.trace(M @ Dij) + 0.5 * s @ Dij @ s
                           - (derivs[i] @ s) @ M @ (derivs[j] @ s))
    if not reml:
        dense += J.T @ np.linalg.solve(H, J)
    np.testing.assert_allclose(hess, dense, rtol=1e-9, atol=1e-10 * np.abs(dense).max())
    np.testing.assert_allclose(ev.vinv_resid, s, atol=1e-12)


@pytest.mark.parametrize("sorted_rows", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_segment_sums_match_bincount(layout, sorted_rows):
    """Per-group sums: contiguous segments where the rows come sorted by
    group (no indicator built), the indicator or the padded array where
    not; vectors and (n, k) arrays in either memory order."""
    data, g, W, _ = _problem(3, layout, q=1, sorted_rows=sorted_rows)
    assert (data.starts is not None) == sorted_rows
    if layout == "sparse":
        assert (data.indicator is None) == sorted_rows
    m = data.n_groups
    np.testing.assert_allclose(_engine.segment_sums(data, W[:, 1]),
                               np.bincount(g, W[:, 1], m), rtol=1e-13, atol=1e-14)
    expected = np.column_stack([np.bincount(g, W[:, j], m) for j in range(2)])
    for rows in (np.ascontiguousarray(W), np.asfortranarray(W)):
        np.testing.assert_allclose(_engine.segment_sums(data, rows), expected,
                                   rtol=1e-13, atol=1e-14)


def _general_path(data):
    """The same data with the random intercept not recognised as one
    (``unit_z``) and no segment sums (``starts``): every sum by the
    general products and the group indicator."""
    import scipy.sparse as sp
    n = data.nobs
    indicator = sp.csr_array((np.ones(n), (data.group_index, np.arange(n))),
                             shape=(data.n_groups, n))
    return dataclasses.replace(data, unit_z=None, starts=None, indicator=indicator)


@pytest.mark.parametrize("reml", [False, True])
def test_random_intercept_pass_equals_general_path(reml, monkeypatch):
    """With a random intercept and rows sorted by group, the sums of an
    evaluation come from one pass over blocks of whole groups
    (``_fe_sums``) and products with the column of ones are
    skipped; value, gradient, expected and observed information equal
    those of the general products (blocks of a few rows, so that they
    end inside and between groups)."""
    monkeypatch.setattr(_engine, "_GRAM_ROWS", 4)
    data, g, W, L = _problem(11, "sparse", q=1, sorted_rows=True)
    assert _engine.unit_design(data, data.exog_zc) and data.starts is not None
    general = _general_path(data)
    assert not _engine.unit_design(general, general.exog_zc)
    r = np.exp(W @ np.array([0.2, -0.3]))
    dirs = (_vech_directions(1), W)
    one = evaluate(data, L, r, reml, gradient=True, info_directions=dirs)
    other = evaluate(general, L, r, reml, gradient=True, info_directions=dirs)
    for name in ("llf", "fe_params", "xtvix", "blup", "grad_cov", "grad_eta",
                 "info", "vinv_resid"):
        np.testing.assert_allclose(getattr(one, name), getattr(other, name),
                                   rtol=1e-11, atol=1e-12, err_msg=name)
    h_one = observed_information(data, L, r, reml, *dirs)[0]
    h_other = observed_information(general, L, r, reml, *dirs)[0]
    np.testing.assert_allclose(h_one, h_other, rtol=1e-11, atol=1e-12)


def test_a_copy_of_the_intercept_column_is_not_taken_for_it():
    """``unit_z`` is held by identity: data whose random-effects design
    was replaced (whitened rows of a correlated model) take the general
    products, whatever its values."""
    data = _problem(2, "sparse", q=1, sorted_rows=True)[0]
    other = dataclasses.replace(data, exog_zc=data.exog_zc * 2.0)
    assert _engine.unit_design(data, data.exog_zc)
    assert not _engine.unit_design(other, other.exog_zc)


@pytest.mark.parametrize("re_formula", [None, "~ x"])
def test_fit_on_sorted_and_shuffled_rows_agree(re_formula):
    """Segment sums (rows sorted by group: ``starts``, no indicator) and
    the sparse indicator (rows in any order) give the same fit."""
    import pandas as pd

    import statsmodels_hetmixed.formula.api as hmf

    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(40), rng.integers(2, 9, 40))
    x = rng.standard_normal(g.size)
    y = (1 + x + rng.standard_normal(40)[g] + 0.5 * rng.standard_normal(40)[g] * x
         + rng.standard_normal(g.size) * np.exp(0.3 * x))
    data = pd.DataFrame({"y": y, "x": x, "g": g})
    kw = dict(groups="g", var_formula="~ x", re_formula=re_formula)
    sorted_fit = hmf.hetmixedlm("y ~ x", data, **kw).fit(reml=False)
    shuffled = data.iloc[rng.permutation(len(data))]
    model = hmf.hetmixedlm("y ~ x", shuffled, **kw)
    grouped = sorted_fit.model._grouped
    assert grouped.starts is not None and grouped.indicator is None
    assert model._grouped.starts is None and model._grouped.indicator is not None
    other = model.fit(reml=False)
    np.testing.assert_allclose(other.params, sorted_fit.params, rtol=1e-8)
    np.testing.assert_allclose(other.llf, sorted_fit.llf, rtol=1e-12)
    np.testing.assert_allclose(other.bse, sorted_fit.bse, rtol=1e-6)


@pytest.mark.parametrize("reml", [False, True])
def test_reused_arrays_and_variance_directions_of_x_columns(reml, monkeypatch):
    """``evaluate(reuse=...)`` writes the reciprocal variances over
    ``resid_var`` and its row-sized results into the given arrays (not
    into a view of another array), with the values of an evaluation
    without them; variance directions given as columns of X (a slice)
    give the information of the same columns given as an array, by the
    random intercept's pass and by the general products."""
    monkeypatch.setattr(_engine, "_GRAM_ROWS", 4)
    data, g, W, L = _problem(11, "sparse", q=1, sorted_rows=True)
    n = data.nobs
    r = np.exp(W @ np.array([0.2, -0.3]))
    cov_dirs = _vech_directions(1)
    plain = evaluate(data, L, r, reml, gradient=True, info_directions=(cov_dirs, W))
    arrays = [np.full(n, np.nan) for _ in range(3)]
    view = np.empty(2 * n)[::2]
    rv = r.copy()
    ev = evaluate(data, L, rv, reml, gradient=True, info_directions=(cov_dirs, W),
                  reuse=[rv, view, *arrays])
    np.testing.assert_allclose(rv, 1.0 / r, rtol=1e-15)
    for name in ("llf", "fe_params", "resid_marginal", "vinv_resid", "grad_eta",
                 "info", "grad_cov"):
        np.testing.assert_allclose(getattr(ev, name), getattr(plain, name),
                                   rtol=1e-13, atol=1e-14, err_msg=name)
    for name in ("resid_marginal", "vinv_resid", "grad_eta"):
        assert any(getattr(ev, name) is a for a in arrays), name
    X = data.exog
    for d in (data, _general_path(data)):
        as_array = evaluate(d, L, r, reml, gradient=True,
                            info_directions=(cov_dirs, X[:, 1:3]))
        as_slice = evaluate(d, L, r, reml, gradient=True,
                            info_directions=(cov_dirs, slice(1, 3)))
        np.testing.assert_allclose(as_slice.info, as_array.info, rtol=1e-12, atol=1e-13)
