"""
Integration rules over the random scale effects of location-scale models
(private).

A location-scale group's marginal likelihood is ``int exp(h_i(t)) dt``
with ``h_i(t) = f_i(t) + log phi(t)``, ``f_i`` the engine's Gaussian
log-likelihood given the standardized scale effects ``t`` (see
``_locscale``).  Every rule here is *adaptive*: its points sit at
``t = t_i + B_i x`` for each group's mode ``t_i`` and the Cholesky factor
``B_i`` of ``(-h_i''(t_i))^-1``, and the rule itself only knows the
points ``x`` on the standard scale.  A rule decides

* its points and log weights on the standard scale (``points``);
* how the log-likelihood of each group and the posterior weights of the
  points follow from ``f`` and the prior at the points
  (``log_integrals``), and how the exact gradient in the parameters
  weights the conditional gradients at the points (``gradient_weights``);
* whether its value depends on where the points sit, so that they must be
  re-adapted, accurately, whenever the parameters change (``readapts``);
* the cheaper rule of the quasi-Newton stage of ``_locscale.fit``
  (``coarse``);
* the difference step of the Hessian of the parameters and whether
  forward differences are accurate enough for standard errors
  (``hessian_step``, ``forward_hessian_accurate``);
* the posterior moments of the random effects (``posterior_moments``).

The fitter asks the rule; it never tests which rule it has.  A new rule
(a sparse grid, importance sampling) is a new subclass of
``IntegrationRule``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from . import _hessian

_LOG_2PI = np.log(2.0 * np.pi)


class IntegrationRule(ABC):
    """
    An adaptive rule for ``int exp(h(t)) dt`` over the 1-2 standardized
    random scale effects of each group (see the module docstring).
    """

    #: Nodes per dimension, as ``fit(n_quad=...)`` counts them.
    n_quad: int
    #: True if the rule's value depends on where its points sit (Laplace:
    #: the mode and curvature are the rule).  Its points are then
    #: re-adapted at every gradient evaluation and never adapted roughly.
    #: False: with the points held fixed the gradient is exact for the rule.
    readapts: bool = False
    #: True if forward differences of the gradient give a Hessian accurate
    #: enough for the convergence test and the standard errors; False if
    #: that needs central ones (forward ones then only give step directions).
    forward_hessian_accurate: bool = True

    @property
    def hessian_step(self) -> float:
        """Difference step of the Hessian in the parameters, in (rough)
        standard errors (see ``_locscale._hessian_fd``)."""
        return _hessian.STEP

    @abstractmethod
    def points(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """
        The rule's points ``x`` on the standard scale, (K, dim), and their
        log weights (K,) for ``int g(x) phi(x) dx ~= sum_k exp(log_w[k])
        g(x_k)``; NaN weights where the rule does not use them.
        """

    @abstractmethod
    def coarse(self, dim: int) -> IntegrationRule:
        """The rule of the quasi-Newton stage of ``_locscale.fit`` (``self``
        if no cheaper rule serves)."""

    @abstractmethod
    def log_integrals(self, f: np.ndarray, log_prior: np.ndarray,
                      log_det_B: np.ndarray, nodes: np.ndarray,
                      log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """
        Each group's log-likelihood and the posterior weights of its points.

        Parameters
        ----------
        f : ndarray, (m, K)
            Conditional log-likelihood of each group at each adapted point.
        log_prior : ndarray, (m, K)
            ``log phi(t)`` at the adapted points.
        log_det_B : ndarray, (m,)
            ``log |B_i|`` of the adapted scale factors.
        nodes, log_weights : ndarray
            The rule's ``points`` (standard scale).

        Returns
        -------
        llf_groups : ndarray, (m,)
        post : ndarray, (m, K)
            Weights of the points given the data (rows sum to 1).
        """

    @abstractmethod
    def gradient_weights(self, post: np.ndarray,
                         t_gradients: Callable[[], np.ndarray],
                         B: np.ndarray) -> np.ndarray:
        """
        Weights (m, K) on the points such that the weighted sum of the
        conditional gradients in the parameters at the points is the
        exact gradient of ``log_integrals``' log-likelihood.

        ``t_gradients()`` gives the gradients of ``f`` in ``t`` at the
        points, (m, K, dim) (computed only if the rule needs them).
        """

    @abstractmethod
    def posterior_moments(self, mu: np.ndarray, within: np.ndarray,
                          post: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """
        Posterior mean (m, d) and covariance (m, d, d) of the random
        effects from their conditional means ``mu`` (m, K, d) and
        covariances ``within`` (m, K, d, d) at the points.
        """

    def __eq__(self, other):
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self):
        return hash((type(self), tuple(sorted(vars(self).items()))))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def gauss_hermite(n_nodes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """
    Tensor-product Gauss-Hermite rule for the standard normal density:
    ``int f(x) phi_dim(x) dx ~= sum_k exp(log_w[k]) f(nodes[k])``.
    """
    x, w = hermegauss(int(n_nodes))
    w = w / np.sqrt(2.0 * np.pi)
    grids = np.meshgrid(*([x] * dim), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    wgrids = np.meshgrid(*([w] * dim), indexing="ij")
    log_w = np.sum([np.log(g.ravel()) for g in wgrids], axis=0)
    return nodes, log_w


class AdaptiveGaussHermite(IntegrationRule):
    """
    Adaptive Gauss-Hermite quadrature with ``n_nodes`` nodes per dimension
    (tensor product):

        L_i ~= |B_i| sum_k w_k exp(h_i(t_i + B_i x_k)) / phi(x_k),

    exact when ``exp(h_i(t_i + B_i x)) / phi(x)`` is a polynomial in ``x``
    of degree at most ``2 n_nodes - 1`` in each coordinate.  The nodes are
    held fixed between adaptations: the integral hardly depends on where
    they sit, and the gradient at fixed nodes (the posterior-weighted
    average of the conditional gradients) is exact for the rule.
    """

    #: Nodes per dimension of the coarse rule: accurate to about 1e-6 in
    #: the log-likelihood on most data, the Newton steps at the full rule
    #: finish from there.
    COARSE_NODES = {1: 7, 2: 3}

    def __init__(self, n_nodes: int):
        if int(n_nodes) != n_nodes or n_nodes < 1:
            raise ValueError(f"the number of quadrature nodes must be a "
                             f"positive integer, not {n_nodes!r}")
        self.n_nodes = int(n_nodes)

    @property
    def n_quad(self) -> int:
        return self.n_nodes

    def points(self, dim):
        return gauss_hermite(self.n_nodes, dim)

    def coarse(self, dim):
        coarse = self.COARSE_NODES[dim]
        return self if self.n_nodes <= coarse else AdaptiveGaussHermite(coarse)

    def log_integrals(self, f, log_prior, log_det_B, nodes, log_weights):
        d = nodes.shape[1]
        log_phi_x = -0.5 * np.sum(nodes**2, axis=1) - 0.5 * d * _LOG_2PI
        terms = f + log_prior + (log_weights - log_phi_x)[None, :]
        # log-sum-exp and the normalised weights from one exp (scipy's
        # logsumexp twice took as long as the rest of an evaluation)
        top = terms.max(axis=1, keepdims=True)
        top[~np.isfinite(top)] = 0.0
        ex = np.exp(terms - top)
        total = ex.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            return log_det_B + top[:, 0] + np.log(total[:, 0]), ex / total

    def gradient_weights(self, post, t_gradients, B):
        # The nodes held fixed, the gradient is the posterior-weighted
        # average of the conditional gradients.
        return post

    def posterior_moments(self, mu, within, post):
        # Law of total variance over the nodes.
        p = post[:, :, None]
        mean = (p * mu).sum(axis=1)
        second = np.einsum("ik,ikab->iab", post,
                           within + mu[:, :, :, None] * mu[:, :, None, :])
        return mean, second - mean[:, :, None] * mean[:, None, :]


class Laplace(IntegrationRule):
    """
    The Laplace approximation, ``L_i ~= |B_i| (2 pi)^(dim/2) exp(h_i(t_i))``
    (exact for a Gaussian integrand): adaptive Gauss-Hermite with one node,
    ``n_quad = 1``.

    Its value is its placement (the mode and the curvature there), so its
    exact gradient includes their movement with the parameters: the rule's
    points are a stencil -- the mode, then ``+-step`` along each axis of
    the scaled coordinates -- whose second differences of the conditional
    gradients give the curvature terms (``gradient_weights``).  The
    log-likelihood reads the mode only.
    """

    readapts = True
    # The gradient re-adapts the mode and takes second differences on the
    # stencil, which leaves noise: Hessians by forward differences only
    # give step directions.
    forward_hessian_accurate = False
    n_quad = 1

    def __init__(self, step: float = 3e-3):
        # Default step in units of the posterior SD of each direction:
        # small enough for a 1e-6 relative truncation error of the second
        # differences, large enough that rounding (about 1e-16 |g| /
        # step^2) stays below it.
        self.step = float(step)

    @property
    def hessian_step(self):
        # Measured on 60 groups x 15 rows: central differences of the
        # noisy gradient err by about 0.16 h^2 (truncation) + 2e-9 / h
        # (noise), relative, so 3e-3 gives 2e-6; forward ones (step
        # directions only) 0.5 h = 1.5e-3.
        return 3e-3

    def points(self, dim):
        nodes = np.zeros((2 * dim + 1, dim))
        for k in range(dim):
            nodes[1 + 2 * k, k] = self.step
            nodes[2 + 2 * k, k] = -self.step
        return nodes, np.full(len(nodes), np.nan)

    def coarse(self, dim):
        return self  # one node: nothing cheaper

    def log_integrals(self, f, log_prior, log_det_B, nodes, log_weights):
        d = nodes.shape[1]
        # h at the mode + log|B| + (d/2) log(2 pi): the one-node rule.
        llf_groups = log_det_B + f[:, 0] + log_prior[:, 0] + 0.5 * d * _LOG_2PI
        post = np.zeros(f.shape)
        post[:, 0] = 1.0
        return llf_groups, post

    def gradient_weights(self, post, t_gradients, B):
        """
        Weights on the stencil points (mode t, t +- eps b_k, b_k the
        columns of B) such that sum_p w_p grad_theta f(t_p) is the exact
        gradient of the Laplace log-likelihood h(t(theta)) - 1/2
        log|-H(t(theta), theta)|, with M = (-H)^-1 = B B':

        * grad_theta h at the mode (the mode's movement does not matter there);
        * 1/2 sum_ab M_ab d^2/dt_a dt_b grad_theta f: the change of the
          curvature at a fixed mode, = 1/2 sum_k second differences along b_k;
        * v' d/dt grad_theta f with v = M kappa, kappa_c = 1/2 tr(M dH/dt_c):
          the change of the curvature as the mode moves (dt/dtheta =
          M d grad_t h / dtheta); kappa comes from second differences of the
          t-gradients along b_k, and v = B c with c = B' kappa, so the
          directional derivative is sum_k c_k (first difference along b_k).
        """
        eps = self.step
        # t-gradients of f (the prior's is linear in t: no second difference).
        gt = t_gradients()                                                # (m, K, d)
        m, K, d = gt.shape
        second = gt[:, 1::2, :] + gt[:, 2::2, :] - 2.0 * gt[:, :1, :]   # (m, k, c)
        kappa = 0.5 * second.sum(axis=1) / eps**2                         # (m, c)
        c = np.einsum("iak,ia->ik", B, kappa)                             # B' kappa
        weights = np.empty((m, K))
        weights[:, 0] = 1.0 - d / eps**2
        weights[:, 1::2] = 0.5 / eps**2 + c / (2.0 * eps)
        weights[:, 2::2] = 0.5 / eps**2 - c / (2.0 * eps)
        return weights

    def posterior_moments(self, mu, within, post):
        # Normal approximation at the mode, t ~ N(mode, B B'): the mean at
        # the mode, and E[Cov | t] + J B B' J' with J = d mean / d t from
        # central differences along the columns of B (the stencil points).
        eps = self.step
        jac_b = (mu[:, 1::2, :] - mu[:, 2::2, :]) / (2.0 * eps)      # (m, k, d)
        return mu[:, 0, :], within[:, 0] + np.einsum("ika,ikb->iab", jac_b, jac_b)


def rule_for(n_quad: int | IntegrationRule) -> IntegrationRule:
    """The rule of ``fit(n_quad=...)``: 1 is the Laplace rule, n > 1
    adaptive Gauss-Hermite with n nodes per dimension; a rule is returned
    as it is."""
    if isinstance(n_quad, IntegrationRule):
        return n_quad
    rule = AdaptiveGaussHermite(n_quad)  # checks the number
    return Laplace() if rule.n_nodes == 1 else rule
