"""The finite-difference Hessian routine (_hessian) and its accuracy on
HetMixedLM's log-likelihood."""

import warnings

import numpy as np
import pytest

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed import _hessian

from .conftest import simulate_recoding_data


def _cubic(a_mat, c):
    """Gradient and Hessian of f(x) = x'Ax/2 + c sum x^3 / 6."""
    return (lambda x: a_mat @ x + 0.5 * c * x**2,
            lambda x: a_mat + np.diag(c * x))


def _spd(k, seed, cond=10.0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((k, k)))
    return (q * np.geomspace(1.0, cond, k)) @ q.T


def test_whitening_basis_whitens_the_information():
    info = _spd(4, 0) * np.array([1e-12, 1.0, 1e6, 3.0])[:, None] \
        * np.array([1e-12, 1.0, 1e6, 3.0])[None, :]
    basis = _hessian.whitening_basis(info, 1 / np.sqrt(np.diag(info)))
    np.testing.assert_allclose(basis.T @ info @ basis, np.eye(4), atol=1e-10)
    assert np.allclose(basis, np.triu(basis))


def test_quadratic_hessian_exact_in_any_basis():
    a_mat = -_spd(3, 1)
    grad, _ = _cubic(a_mat, 0.0)
    x = np.array([0.3, -2.0, 5.0])
    for basis in (_hessian.whitening_basis(-a_mat, np.ones(3)), np.diag([1e-3, 1, 2])):
        hess = _hessian.hessian(grad, x, grad(x), basis)
        # forward differences of a linear gradient: rounding only
        np.testing.assert_allclose(hess, a_mat, rtol=1e-6, atol=1e-6)


def test_recoded_parameters_give_the_recoded_hessian():
    """x = A y + c with A upper triangular (a covariate rescaled by 1e6 or
    1e-6, one shifted by a constant): the Hessian in y is A' H(x) A to
    rounding, because the whitened steps are the same points."""
    a_mat = -_spd(3, 2)
    grad_x, _ = _cubic(a_mat, 0.7)
    recode = np.array([[1.0, 2010.0, 0.0], [0.0, 1e6, 0.0], [0.0, 0.0, 1e-6]])
    shift = np.array([0.5, -1.0, 2.0])
    y = np.array([0.1, 2e-6, 3e5])
    x = recode @ y + shift

    def grad_y(v):
        return recode.T @ grad_x(recode @ v + shift)

    info_x = -a_mat
    info_y = recode.T @ info_x @ recode
    h_x = _hessian.hessian(grad_x, x, grad_x(x),
                           _hessian.whitening_basis(info_x, np.ones(3)))
    h_y = _hessian.hessian(grad_y, y, grad_y(y),
                           _hessian.whitening_basis(info_y, np.abs(y)))
    target = recode.T @ h_x @ recode
    scale = np.sqrt(np.outer(np.diag(info_y), np.diag(info_y)))
    np.testing.assert_allclose(h_y / scale, target / scale, atol=1e-7)


def test_forward_error_is_first_order_central_second():
    a_mat = -_spd(2, 3)
    grad, hess_true = _cubic(a_mat, 1.0)
    x = np.array([0.2, -0.4])
    basis = _hessian.whitening_basis(-a_mat, np.ones(2))
    err = {}
    for central in (False, True):
        for step in (1e-2, 1e-3):
            hess = _hessian.hessian(grad, x, grad(x), basis, step=step,
                                    central=central)
            err[central, step] = np.abs(hess - hess_true(x)).max()
    assert 5 < err[False, 1e-2] / err[False, 1e-3] < 20
    assert err[True, 1e-2] < 1e-9  # exact for a cubic, up to rounding


@pytest.mark.parametrize("ratio, whitened", [(1e-8, True), (1e-12, False)])
def test_nearly_singular_information_both_sides(ratio, whitened):
    """Whitened when the correlation matrix's condition is within 1e10,
    else per-parameter steps; the Hessian is right either way."""
    corr = np.array([[1.0, np.sqrt(1 - ratio)], [np.sqrt(1 - ratio), 1.0]])
    info = corr * np.outer([1e3, 1e-3], [1e3, 1e-3])
    basis = _hessian.whitening_basis(info, np.array([1.0, 1e6]))
    assert (basis[0, 1] != 0) == whitened
    a_mat = -_spd(2, 4)
    grad, _ = _cubic(a_mat, 0.0)
    x = np.array([1.0, 2.0])
    np.testing.assert_allclose(_hessian.hessian(grad, x, grad(x), basis), a_mat,
                               rtol=1e-6, atol=1e-6)


def test_bounded_and_undetermined_entries_get_their_own_steps():
    info = _spd(3, 5)
    # Entry 0 at a bound: a positive step of it alone.
    basis = _hessian.whitening_basis(info, np.ones(3),
                                     bounded=np.array([True, False, False]))
    assert basis[0, 0] > 0 and np.all(basis[1:, 0] == 0) and np.all(basis[0, 1:] == 0)
    # Entry 2 hardly determined (marginal SE far above LIMIT times its
    # size): its own direction, no longer than LIMIT * size.
    info[2] *= 1e-8
    info[:, 2] *= 1e-8
    size = np.array([1.0, 1.0, 0.5])
    basis = _hessian.whitening_basis(info, size)
    assert np.all(basis[:2, 2] == 0) and np.all(basis[2, :2] == 0)
    assert 0 < basis[2, 2] <= _hessian.LIMIT * size[2]
    np.testing.assert_allclose(basis[:2, :2].T @ info[:2, :2] @ basis[:2, :2],
                               np.eye(2), atol=1e-10)


def test_free_entries_only():
    a_mat = -_spd(3, 6)
    calls = []

    def grad(x):
        calls.append(1)
        return a_mat @ x

    free = np.array([True, False, True])
    x = np.ones(3)
    basis = _hessian.whitening_basis(-a_mat[np.ix_(free, free)], np.ones(2))
    hess = _hessian.hessian(grad, x, grad(x), basis, free=free)
    assert len(calls) == 1 + 2
    np.testing.assert_allclose(hess[np.ix_(free, free)], a_mat[np.ix_(free, free)],
                               rtol=1e-8)
    assert np.all(hess[1] == 0) and np.all(hess[:, 1] == 0)


def _richardson_hessian(f, x, steps):
    """Central second differences of f with steps h and h/2, Richardson-
    extrapolated (error O(h^4))."""
    k = x.size

    def second(h):
        out = np.empty((k, k))
        for i in range(k):
            for j in range(i, k):
                ei, ej = np.zeros(k), np.zeros(k)
                ei[i], ej[j] = h[i], h[j]
                out[i, j] = out[j, i] = (
                    f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej)
                    + f(x - ei - ej)) / (4 * h[i] * h[j])
        return out

    return (4 * second(steps / 2) - second(steps)) / 3


@pytest.mark.parametrize("centred", [True, False])
@pytest.mark.parametrize("reml", [True, False])
def test_model_hessian_matches_richardson_of_loglike(reml, centred):
    """HetMixedLM's Hessian (forward differences of the analytic gradient)
    against second differences of the log-likelihood alone, Richardson-
    extrapolated with steps of 0.02 and 0.01 along the whitening basis
    (standard errors; along the coordinates the reference itself is off by
    2 when year is not centred, from cancellation).  Compared in whitened
    units (Hessian about -1): measured 8e-6 to 1.7e-5, the forward
    truncation error (0.6 h at h = 1e-5); the reference changes by 1.4e-6
    from steps of 0.05, an upper bound on its O(h^4) error.  Tolerance
    1e-4; the old rule erred by 0.16 with year uncentred."""
    data = simulate_recoding_data().iloc[:160].copy()
    if centred:
        data["year"] -= 2010
    data["income"] /= 1e4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = hmf.hetmixedlm("y ~ year", data, groups="g",
                             var_formula="~ year + income").fit(reml=reml)
    model = res.model
    natural = np.asarray(res.params)[model.k_fe:]
    hess = model.hessian(np.asarray(res.params))[0][model.k_fe:, model.k_fe:]
    ev, _ = model._objective().evaluate_natural(natural, info=True)
    basis = _hessian.whitening_basis(ev.info, np.ones(natural.size))
    ref = _richardson_hessian(lambda z: model.loglike(natural + basis @ z),
                              np.zeros(natural.size), np.full(natural.size, 0.02))
    assert np.abs(basis.T @ hess @ basis - ref).max() < 1e-4


def test_backward_difference_where_the_forward_point_is_outside():
    # grad of -0.5 x' A x + c' x^3 / 6, defined for x[0] <= 0 only (a
    # parameter on the boundary of its space): columns whose forward step
    # leaves it are backward differences, accurate to the same order
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    c = np.array([0.3, -0.2])

    def grad(x):
        if x[0] > 0:
            raise np.linalg.LinAlgError("outside the parameter space")
        return -A @ x + 0.5 * c * x**2

    x = np.array([0.0, 0.4])
    basis = np.eye(2)
    H = _hessian.hessian(grad, x, grad(x), basis, step=1e-6)
    exact = -A + np.diag(c * x)
    np.testing.assert_allclose(H, exact, atol=1e-5)

    def nowhere(x):
        if not np.array_equal(x, [0.0, 0.4]):
            raise np.linalg.LinAlgError("outside the parameter space")
        return grad(x)
    # both ways outside: the error reaches the caller
    with pytest.raises(np.linalg.LinAlgError):
        _hessian.hessian(nowhere, x, grad(x), basis)
