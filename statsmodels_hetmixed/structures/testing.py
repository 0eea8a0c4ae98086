"""
Checks for a block's implementation against numerical derivatives.

``check_block`` is what a new structure's tests call first (see the
documentation page "Adding a structure"): it compares the block's chain
rule, directions and scales with central differences of its own values,
so a wrong derivative fails before it can mislead a fit.
"""

from __future__ import annotations

import numpy as np

from .base import Block, CovarianceBlock, VarianceBlock

__all__ = ["check_block"]


def _central(f, x, rel=1e-6):
    g = np.zeros(x.size)
    for j in range(x.size):
        h = rel * max(1.0, abs(x[j]))
        e = np.zeros(x.size)
        e[j] = h
        g[j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def check_block(block: Block, free: np.ndarray, rtol: float = 1e-6,
                atol: float = 1e-8, seed: int = 0) -> None:
    """
    Check a block at a free parameter vector.

    * ``from_natural(to_natural(free))`` maps back to the same natural values,
      and ``jacobian`` is d natural / d free;
    * covariance blocks: ``factor`` and ``factor_from_free`` give the same
      G; ``free_gradient`` and ``natural_gradient`` are the derivatives of
      ``tr(Gamma G)`` for a random symmetric Gamma; ``directions`` are
      dG / d natural;
    * variance blocks: variances are positive and finite, one per row;
      ``log_derivative`` is d log sigma2 / d natural; ``natural_gradient``
      and ``free_gradient`` are the derivatives of ``g' log sigma2`` for a
      random g; ``log_scale`` is the mean log variance;
    * blocks of the location-scale fitter's joint factor (those with
      ``factor_gradient``: one factor, or one per group):
      ``factor_gradient`` is the derivative of ``sum(Lbar * L)`` for a
      random lower-triangular ``Lbar`` given in the engine's blocks.

    Raises
    ------
    AssertionError
        Naming the first check that fails.
    """
    rng = np.random.default_rng(seed)
    free = np.asarray(free, dtype=np.float64)
    assert free.shape == (block.k,), f"free has shape {free.shape}, block.k = {block.k}"
    natural = block.to_natural(free)
    np.testing.assert_allclose(block.to_natural(block.from_natural(natural)), natural,
                               rtol=rtol, atol=atol,
                               err_msg="to_natural(from_natural(x)) != x")
    jac = block.jacobian(free)
    assert jac.shape == (block.k, block.k), "jacobian: shape (k, k)"
    for k in range(block.k):
        np.testing.assert_allclose(jac[:, k], _derivative(block.to_natural, free, k),
                                   rtol=rtol * 10, atol=atol * 10,
                                   err_msg=f"jacobian[:, {k}]")
    if isinstance(block, CovarianceBlock):
        s = len(block.slots)
        a = rng.normal(size=(s, s))
        gamma = a + a.T

        def by_free(f):
            L = block.factor_from_free(f)
            return np.sum(gamma * (L @ L.T))

        def by_natural(x):
            L = block.factor(x)
            return np.sum(gamma * (L @ L.T))

        L_free, L_nat = block.factor_from_free(free), block.factor(natural)
        np.testing.assert_allclose(L_free @ L_free.T, L_nat @ L_nat.T, rtol=rtol,
                                   atol=atol, err_msg="factor vs factor_from_free")
        np.testing.assert_allclose(block.free_gradient(free, gamma),
                                   _central(by_free, free), rtol=rtol * 10,
                                   atol=atol * 10, err_msg="free_gradient")
        np.testing.assert_allclose(block.natural_gradient(gamma),
                                   _central(by_natural, natural), rtol=rtol * 10,
                                   atol=atol * 10, err_msg="natural_gradient")
        dirs = block.directions()
        assert dirs.shape == (block.k, s, s), "directions: shape (k, s, s)"
        for k in range(block.k):
            np.testing.assert_allclose(dirs[k], _direction(block, natural, k),
                                       rtol=rtol * 10, atol=atol * 10,
                                       err_msg=f"directions()[{k}]")
    elif isinstance(block, VarianceBlock):
        r = block.variance(natural)
        assert r.shape == (block.nobs,), "variance: one value per row"
        assert np.all(np.isfinite(r) & (r > 0)), "variances must be positive"
        g = rng.normal(size=block.nobs)
        jac = block.log_derivative(natural)
        assert jac.shape == (block.nobs, block.k), "log_derivative: shape (n, k)"
        for k in range(block.k):
            np.testing.assert_allclose(
                jac[:, k], _derivative(lambda x: np.log(block.variance(x)), natural, k),
                rtol=rtol * 10, atol=atol * 10, err_msg=f"log_derivative[:, {k}]")
        np.testing.assert_allclose(
            block.natural_gradient(natural, g),
            _central(lambda x: g @ np.log(block.variance(x)), natural),
            rtol=rtol * 10, atol=atol * 10, err_msg="natural_gradient")
        np.testing.assert_allclose(
            block.free_gradient(free, g),
            _central(lambda f: g @ np.log(block.variance(block.to_natural(f))), free),
            rtol=rtol * 10, atol=atol * 10, err_msg="free_gradient")
        np.testing.assert_allclose(block.log_scale(natural), np.mean(np.log(r)),
                                   rtol=rtol, atol=atol, err_msg="log_scale")
    if hasattr(block, "factor_gradient"):
        L = block.factor_from_free(free)
        lbar = np.tril(rng.normal(size=L.shape))
        q_w = block.q_w
        grad = {"L_ww": lbar[..., :q_w, :q_w], "L_uw": lbar[..., q_w:, :q_w],
                "L_uu": lbar[..., q_w:, q_w:]}
        np.testing.assert_allclose(
            block.factor_gradient(free, grad),
            _central(lambda f: np.sum(lbar * block.factor_from_free(f)), free),
            rtol=rtol * 10, atol=atol * 10, err_msg="factor_gradient")
    assert block.estimated.shape == (block.k,), "estimated: one flag per parameter"
    assert block.bounded.shape == (block.k,), "bounded: one flag per parameter"
    assert block.variances.shape == (block.k,), "variances: one flag per parameter"


def _derivative(f, x, k, rel=1e-6):
    h = rel * max(1.0, abs(x[k]))
    e = np.zeros(x.size)
    e[k] = h
    return (f(x + e) - f(x - e)) / (2 * h)


def _direction(block, natural, k):
    def G(x):
        L = block.factor(x)
        return L @ L.T
    return _derivative(G, natural, k)
