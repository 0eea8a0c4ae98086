"""
The block interface: one small class per variance or covariance structure.

A model's parameters are the fixed effects followed by the parameters of an
ordered list of *blocks*.  Each block owns its parameters and knows

* how many there are (``k``) and their names (``names``);
* its *role* in the model: ``"re_cov"`` (the random-effects covariance G),
  ``"variance"`` (the residual variances sigma2_ij) or ``"correlation"``
  (the residual correlation C_i, :mod:`.correlation`); the role decides
  which engine quantities the block reads and in which results table its
  parameters appear;
* two scales of its parameters: the *natural* scale reported to users
  (variances, covariances, log-variance coefficients) and the *free* scale
  the optimiser searches without constraints (Cholesky factors, standard
  deviations, square roots), with ``to_natural`` / ``from_natural``;
* the chain rule from the engine's gradient to its natural parameters and
  to its free parameters;
* which natural parameters are variances bounded below by zero
  (``bounded``) and which sit on that bound at an estimate
  (``at_boundary``);
* an ``update`` hook for structures whose quantities depend on the fitted
  mean (``depends_on_fitted``: a variance that is a power of the fitted
  values, :mod:`.variance`); the fitter calls it between refits.

The fitter and the results never name a structure: they ask the
:class:`~statsmodels_hetmixed.structures.layout.Layout`, which asks its
blocks.  This follows nlme's ``varFunc`` / ``pdMat`` / ``corStruct`` classes
(``coef(unconstrained=)``, ``coef<-``, ``Initialize``, ``update``).
"""

from __future__ import annotations

import abc
import functools
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

__all__ = ["Block", "CovarianceBlock", "VarianceBlock", "StartContext",
           "IdentityScale", "SquareRootScale", "BOUNDARY_RTOL"]

# A variance counts as zero (on the boundary of the parameter space) when it
# is at most this fraction of the model's residual scale.  Fits put such
# variances at exactly zero or within rounding of it (the free scale is a
# square root: 1e-8 of the scale is an SD 1e-4 of the residual SD, far from
# any variance a fit leaves inside the parameter space).
BOUNDARY_RTOL = 1e-8


@dataclass(frozen=True)
class StartContext:
    """What blocks may use for their starting values.

    Attributes
    ----------
    resid : ndarray (n,)
        OLS residuals of the mean model.
    total : float
        Their mean square (the total variance to share out).
    share_re : float
        The share of ``total`` given to the random effects (0 without any).
    z_mean_square : ndarray (q,)
        Mean square of each column of the padded random-effects design over
        the rows where it is non-zero.
    """

    resid: np.ndarray
    total: float
    share_re: float
    z_mean_square: np.ndarray


class Block(abc.ABC):
    """One structure's parameters: names, scales, chain rule, bounds."""

    role: ClassVar[str]

    #: Parameter names, natural scale.
    names: list[str]

    #: What the parameters are, as the heading of their results table.
    title: str = ""

    #: Whether the block's quantities depend on the fitted mean (nlme's
    #: ``needUpdate``): the fitter then calls ``update`` with the fitted
    #: values between refits (:mod:`statsmodels_hetmixed.fixedpoint`).
    depends_on_fitted: bool = False

    #: Whether Fisher scoring on the natural scale suits the block.  False
    #: where the natural scale bends the likelihood's ridges (varConstPower:
    #: rescaling v moves c by |k|^delta, a curve in (c, delta) but a line in
    #: (log c, delta)); a fit's default method is then quasi-Newton on the
    #: free scale.
    scoring: bool = True

    @property
    def k(self) -> int:
        """Number of parameters."""
        return len(self.names)

    @abc.abstractmethod
    def start(self, context: StartContext) -> np.ndarray:
        """Starting values, natural scale."""

    @abc.abstractmethod
    def to_natural(self, free: np.ndarray) -> np.ndarray:
        """Natural parameters from free (optimiser-scale) ones."""

    @abc.abstractmethod
    def from_natural(self, natural: np.ndarray) -> np.ndarray:
        """Free parameters from natural ones (raises ValueError outside the
        parameter space)."""

    def jacobian(self, free: np.ndarray) -> np.ndarray:
        """d natural / d free, (k, k): carries an information matrix from
        the natural scale to the free one (``J' I J``).  The identity by
        default, for blocks whose two scales coincide."""
        return np.eye(self.k)

    @property
    def bounded(self) -> np.ndarray:
        """Mask of natural parameters that are variances >= 0 on their own
        (a box constraint the scoring optimiser can keep)."""
        return np.zeros(self.k, bool)

    @property
    def variances(self) -> np.ndarray:
        """Mask of natural parameters that are variances with a boundary at
        zero (tested with a boundary-aware LR test; at_boundary checks
        them)."""
        return self.bounded

    def at_boundary(self, natural: np.ndarray, scale: float) -> np.ndarray:
        """Mask of variances at zero (relative to the residual ``scale``)."""
        return self.variances & (natural <= BOUNDARY_RTOL * scale)

    def hold(self, mask: np.ndarray, free: np.ndarray) -> np.ndarray:
        """
        The free vector with the natural parameters ``mask`` leaves out
        (False) held at their values: the free entries to hold are the same
        ones when each natural parameter depends on its own free entry
        alone (the default).  Raises NotImplementedError for patterns the
        free scale cannot hold.
        """
        return free

    @property
    def estimated(self) -> np.ndarray:
        """Mask of free entries a fitter that searches the free scale
        directly (the location-scale fitter) estimates; the others are held
        at their values.  All by default."""
        return np.ones(self.k, bool)

    def unit_scale(self, data) -> np.ndarray:
        """Typical size of each free entry in the units of the data, so
        that curvatures of different entries can be compared (1 by
        default: parameters free of the data's units)."""
        return np.ones(self.k)

    def admissible(self, natural: np.ndarray) -> bool:
        """Whether natural parameters are inside the parameter space beyond
        what ``bounded`` expresses (e.g. a covariance matrix that is
        positive semi-definite)."""
        return True

    def singular(self, natural: np.ndarray) -> bool:
        """Whether the block's covariance matrix is singular without a
        variance at zero (a correlation of +-1, a redundant effect): an
        estimate on the boundary that ``at_boundary`` does not show."""
        return False

    def degenerate(self, natural: np.ndarray) -> str | None:
        """A sentence saying why the estimate ``natural`` sits at a limit
        where some of the block's parameters are not identified (the
        likelihood flat or still rising as one runs to infinity), or None.
        ``inference.warn_fit_problems`` warns with it."""
        return None

    def update(self, fitted: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Hook for structures that depend on the fitted mean
        (``depends_on_fitted``): set their covariate to ``fitted``, the
        fitted values ``X beta + Z b`` of each row.  Nothing by default."""


class CovarianceBlock(Block):
    """
    A block of the random-effects covariance G.

    It covers some columns (``slots``) of the padded random-effects design;
    G is block diagonal over the covariance blocks of a model, and so is its
    factor L (G = L L').
    """

    role = "re_cov"

    #: Columns of the padded random-effects design that the block covers.
    slots: np.ndarray

    @abc.abstractmethod
    def factor(self, natural: np.ndarray) -> np.ndarray:
        """A lower-triangular factor (s x s, s = len(slots)) of the block's
        covariance, from natural parameters."""

    @abc.abstractmethod
    def factor_from_free(self, free: np.ndarray) -> np.ndarray:
        """The same factor from free parameters."""

    @abc.abstractmethod
    def directions(self) -> np.ndarray:
        """dG_block / d natural parameter: (k, s, s)."""

    @abc.abstractmethod
    def free_gradient(self, free: np.ndarray, grad_cov: np.ndarray) -> np.ndarray:
        """d llf / d free parameters from ``grad_cov`` (s x s, the block's
        part of d llf / dG in symmetric form: d llf = tr(Gamma dG))."""

    def natural_gradient(self, grad_cov: np.ndarray) -> np.ndarray:
        """d llf / d natural parameters from the block's ``grad_cov``."""
        return np.einsum("kab,ab->k", self._directions, grad_cov)

    @functools.cached_property
    def _directions(self) -> np.ndarray:
        """``directions()`` built once: G is linear in the natural
        parameters, so they do not change, and the gradient and the
        expected information ask for them at every evaluation."""
        dirs = np.array(self.directions(), dtype=np.float64)
        dirs.flags.writeable = False
        return dirs

    def conditioner(self, basis: np.ndarray | None = None) -> np.ndarray:
        """
        An invertible (k, k) matrix T such that ``u = T natural`` are the
        natural parameters of ``basis G basis'``, the covariance of the
        random effects of the centred columns ``Z basis^-1``
        (``_engine.GroupedData.re_basis`` on the block's slots).  The
        identity when ``basis`` is None or the identity (the default
        supports no other basis).  Scoring steps and the observed
        information are taken in ``u``, and the semi-definiteness of G is
        decided there: with a random slope on a covariate far from its
        origin, G's entries differ by orders of magnitude and intercept and
        slope are correlated to within rounding, G_c's are not.
        """
        if basis is None or np.array_equal(basis, np.eye(len(basis))):
            return np.eye(self.k)
        raise NotImplementedError(
            f"{type(self).__name__} has no coordinates for centred columns")


class VarianceBlock(Block):
    """
    A factor of the residual variances: sigma2_ij is the product of the
    variances of the model's variance blocks (nlme's ``varComb``), so
    log sigma2_ij is a sum and each block sees d llf / d log sigma2_ij.
    """

    role = "variance"

    #: Number of rows the block describes (the model's observations).
    nobs: int

    #: Whether log sigma2_ij is linear in the natural parameters (zero
    #: second derivatives): the engine then gives the observed information
    #: analytically (``_engine.observed_information``); otherwise it is
    #: differenced from the gradient (``_hessian``).
    log_linear: bool = False

    @abc.abstractmethod
    def variance(self, natural: np.ndarray, design: np.ndarray | None = None
                 ) -> np.ndarray:
        """The block's variance factor for each row (of ``design`` if given,
        with the columns of the block's own design)."""

    @abc.abstractmethod
    def log_derivative(self, natural: np.ndarray) -> np.ndarray:
        """d log sigma2_ij / d natural parameters: (n, k)."""

    def natural_gradient(self, natural: np.ndarray,
                         grad_log_variance: np.ndarray) -> np.ndarray:
        """d llf / d natural parameters from d llf / d log sigma2_ij."""
        return self.log_derivative(natural).T @ grad_log_variance

    def free_gradient(self, free: np.ndarray, grad_log_variance: np.ndarray
                      ) -> np.ndarray:
        """d llf / d free parameters (the natural gradient by default, for
        blocks whose free and natural scales coincide)."""
        return self.natural_gradient(self.to_natural(free), grad_log_variance)

    def conditioner(self) -> np.ndarray:
        """
        An invertible (k, k) matrix T such that ``u = T natural`` are
        well-conditioned coordinates (the identity by default).  The
        observed information is differenced, inverted and tested in ``u``:
        with a covariate far from its origin (year, not year - 2010) the
        gradient in the natural coordinates cancels to a few digits.
        """
        return np.eye(self.k)

    def conditioned_gradient(self, natural: np.ndarray,
                             grad_log_variance: np.ndarray) -> np.ndarray:
        """d llf / du for ``u = conditioner() @ natural``, computed without
        the cancellation of the natural gradient where the block can."""
        return np.linalg.solve(self.conditioner().T,
                               self.natural_gradient(natural, grad_log_variance))

    def log_scale(self, natural: np.ndarray) -> float:
        """Mean over rows of the log variance factor."""
        return float(np.mean(np.log(self.variance(natural))))


class IdentityScale:
    """
    Free scale equal to the natural one: parameters that take any real
    value (coefficients of log variances, atanh correlations, powers).  A
    mixin, listed before the block's base class.
    """

    def to_natural(self, free):
        return np.array(free, dtype=np.float64)

    def from_natural(self, natural):
        return np.array(natural, dtype=np.float64)


class SquareRootScale:
    """
    Free scale of parameters that are non-negative variances: their square
    roots, so that every free value is a valid variance and zero is
    reachable.  A mixin, listed before the block's base class.
    """

    #: What the parameters are, for the error on a negative value.
    nonnegative_what = "variances"

    def to_natural(self, free):
        return np.asarray(free, dtype=np.float64) ** 2

    def from_natural(self, natural):
        natural = np.asarray(natural, dtype=np.float64)
        if np.any(natural < 0):
            raise ValueError(f"{self.nonnegative_what} must be non-negative")
        return np.sqrt(natural)

    def jacobian(self, free):
        return np.diag(2.0 * np.asarray(free, dtype=np.float64))


def stack_names(blocks: Sequence[Block]) -> list[str]:
    """The parameter names of blocks, in order."""
    return [name for block in blocks for name in block.names]
