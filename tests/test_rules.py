"""Integration rules over the random scale effects (``_rules``): what each
rule integrates exactly, and its coarse rule."""

import itertools
import math

import numpy as np
import pytest
from scipy import integrate

from statsmodels_hetmixed import _rules
from statsmodels_hetmixed._rules import AdaptiveGaussHermite, Laplace

_LOG_2PI = np.log(2 * np.pi)


def _normal_moment(k):
    """E[x^k] for a standard normal x: 0 for odd k, (k-1)!! for even."""
    return 0.0 if k % 2 else float(math.prod(range(k - 1, 0, -2)))


@pytest.mark.parametrize("n", [2, 3, 5, 15])
@pytest.mark.parametrize("dim", [1, 2])
def test_gauss_hermite_is_exact_to_degree_2n_minus_1(n, dim):
    """Tensor-product Gauss-Hermite with n nodes integrates x^a (a per
    coordinate up to 2n - 1) exactly against the normal density, and misses
    x^(2n) by exactly n! (the rule is zero on He_n^2 = x^(2n) + ...)."""
    nodes, log_w = AdaptiveGaussHermite(n).points(dim)
    assert nodes.shape == (n**dim, dim)
    w = np.exp(log_w)
    for powers in itertools.product(range(2 * n), repeat=dim):
        mono = np.prod(nodes ** np.array(powers), axis=1)
        exact = np.prod([_normal_moment(k) for k in powers])
        size = w @ np.abs(mono)
        assert abs(w @ mono - exact) <= 1e-12 * size, powers
    top = [2 * n] + [0] * (dim - 1)
    approx = w @ np.prod(nodes ** np.array(top), axis=1)
    assert approx == pytest.approx(_normal_moment(2 * n) - math.factorial(n),
                                   rel=1e-10)


def _adapted(rng, m, dim):
    """Random modes and lower-triangular scale factors of m groups."""
    mu = rng.normal(size=(m, dim))
    B = np.tril(rng.normal(scale=0.3, size=(m, dim, dim)))
    B[:, np.arange(dim), np.arange(dim)] = rng.uniform(0.3, 2.0, size=(m, dim))
    return mu, B


def _rule_inputs(rule, mu, B, log_c, log_p):
    """The arguments of ``log_integrals`` for the integrand
    g(t) = c exp(log_p(x)) N(t; mu, B B') of each group, x = B^-1 (t - mu), at the
    rule's points t = mu + B x: f = log g - log phi(t)."""
    dim = mu.shape[1]
    nodes, log_w = rule.points(dim)
    t = mu[:, None, :] + np.einsum("iab,kb->ika", B, nodes)
    log_prior = -0.5 * np.sum(t * t, axis=2) - 0.5 * dim * _LOG_2PI
    log_det_B = np.log(np.diagonal(B, axis1=1, axis2=2)).sum(axis=1)
    log_phi_x = -0.5 * np.sum(nodes**2, axis=1) - 0.5 * dim * _LOG_2PI
    log_g = ((log_c - log_det_B)[:, None]
             + (log_p(nodes) + log_phi_x)[None, :])
    return log_g - log_prior, log_prior, log_det_B, nodes, log_w


@pytest.mark.parametrize("dim", [1, 2])
def test_adaptive_gauss_hermite_integrates_gaussian_times_polynomial(dim):
    """With the nodes at t = mu + B x the rule is exact for a normal density
    N(mu, B B') times a polynomial in x of degree up to 2n - 1 per
    coordinate: here prod_j (1 + x_j + x_j^2)^2 (degree 4, mean 7 per
    coordinate) -- exact with 3 nodes, not with 2."""
    rng = np.random.default_rng(1)
    mu, B = _adapted(rng, 4, dim)
    log_c = rng.normal(size=4)

    def log_p(x):
        return np.log(np.prod((1 + x + x**2) ** 2, axis=1))

    exact = log_c + dim * np.log(7.0)
    for n, is_exact in [(3, True), (6, True), (2, False)]:
        rule = AdaptiveGaussHermite(n)
        llf, post = rule.log_integrals(*_rule_inputs(rule, mu, B, log_c, log_p))
        np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-14)
        if is_exact:
            np.testing.assert_allclose(llf, exact, rtol=0, atol=1e-12)
        else:
            assert np.all(np.abs(llf - exact) > 1e-3)


@pytest.mark.parametrize("dim", [1, 2])
def test_laplace_is_exact_for_a_gaussian_integrand(dim):
    """The Laplace rule at the mode and curvature of c N(t; mu, B B') gives
    log c exactly; for an integrand with the same mode and curvature but a
    quartic term it is off, which more Gauss-Hermite nodes recover."""
    rng = np.random.default_rng(2)
    mu, B = _adapted(rng, 5, dim)
    log_c = rng.normal(size=5)
    rule = Laplace()
    llf, post = rule.log_integrals(*_rule_inputs(rule, mu, B, log_c,
                                                 lambda x: np.zeros(len(x))))
    np.testing.assert_allclose(llf, log_c, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(post[:, 0], 1.0)

    # exp(-x^4 / 10) N(x): mode 0, curvature 1, integral < 1
    def quartic(x):
        return -0.1 * np.sum(x**4, axis=1)

    truth = dim * np.log(integrate.quad(
        lambda x: np.exp(-0.1 * x**4 - 0.5 * x * x) / np.sqrt(2 * np.pi),
        -np.inf, np.inf, epsabs=1e-14)[0])
    for rule, close in [(Laplace(), False), (AdaptiveGaussHermite(30), True)]:
        llf, _ = rule.log_integrals(*_rule_inputs(rule, mu, B, log_c, quartic))
        error = np.abs(llf - log_c - truth)
        assert np.all(error < 1e-6) if close else np.all(error > 1e-2)


@pytest.mark.parametrize("rule", [AdaptiveGaussHermite(5), Laplace()])
@pytest.mark.parametrize("dim", [1, 2])
def test_posterior_moments_of_a_gaussian_posterior(rule, dim):
    """t ~ N(mu, B B') given the data and a conditional mean linear in t:
    both rules give the exact mean A mu + b and covariance
    E[Cov | t] + A B B' A'."""
    rng = np.random.default_rng(3)
    m, d = 3, dim + 1
    mu, B = _adapted(rng, m, dim)
    A, b = rng.normal(size=(d, dim)), rng.normal(size=d)
    within_one = np.diag(rng.uniform(0.5, 1.0, size=d))
    nodes, log_w = rule.points(dim)
    t = mu[:, None, :] + np.einsum("iab,kb->ika", B, nodes)
    log_prior = -0.5 * np.sum(t * t, axis=2) - 0.5 * dim * _LOG_2PI
    f = -0.5 * np.sum(nodes**2, axis=1)[None, :] - log_prior   # h = log phi(x)
    log_det_B = np.log(np.diagonal(B, axis1=1, axis2=2)).sum(axis=1)
    _, post = rule.log_integrals(f, log_prior, log_det_B, nodes, log_w)
    mean, cov = rule.posterior_moments(t @ A.T + b, np.broadcast_to(
        within_one, (m, len(nodes), d, d)), post)
    np.testing.assert_allclose(mean, mu @ A.T + b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cov, within_one + A @ B @ np.swapaxes(B, 1, 2) @ A.T,
                               rtol=1e-6, atol=1e-12)


def test_coarse_rules():
    """The quasi-Newton stage's rule: 7 nodes for one scale effect, 3 x 3
    for two, never finer than the rule itself; Laplace is its own."""
    assert AdaptiveGaussHermite(15).coarse(1) == AdaptiveGaussHermite(7)
    assert AdaptiveGaussHermite(5).coarse(2) == AdaptiveGaussHermite(3)
    assert AdaptiveGaussHermite(8).coarse(1) != AdaptiveGaussHermite(8)
    for n, dim in [(7, 1), (4, 1), (3, 2), (2, 2)]:
        rule = AdaptiveGaussHermite(n)
        assert rule.coarse(dim) is rule
    laplace = Laplace()
    assert laplace.coarse(1) is laplace and laplace.coarse(2) is laplace


def test_rule_for_n_quad():
    """fit(n_quad=...): 1 is the Laplace rule, n > 1 n-node Gauss-Hermite;
    anything but a positive integer is refused."""
    assert isinstance(_rules.rule_for(1), Laplace)
    assert _rules.rule_for(1).n_quad == 1
    assert _rules.rule_for(15) == AdaptiveGaussHermite(15)
    assert _rules.rule_for(15).n_quad == 15
    rule = Laplace(step=1e-3)
    assert _rules.rule_for(rule) is rule
    for bad in (0, -2, 2.5):
        with pytest.raises(ValueError, match="positive integer"):
            _rules.rule_for(bad)
