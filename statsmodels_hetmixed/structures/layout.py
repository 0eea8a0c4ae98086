"""
The parameter layout: fixed effects, then the blocks' parameters.

One :class:`Layout` per model, composed from its blocks (see
:mod:`.base`).  It is the one place that knows where each parameter sits:
it packs and unpacks vectors, names them, maps between the optimiser's
free scale and the natural scale, assembles the random-effects factor and
the residual variances from the blocks, applies the chain rule to the
engine's gradient, and collects the blocks' bound and boundary masks.

Vectors
-------
``params``
    Everything, natural scale: fixed effects (``k_fe``), then the blocks'
    parameters.  ``results.params`` is such a vector.
``natural``
    The blocks' parameters on the natural scale, without the fixed effects
    (which the likelihood profiles out by GLS).
``free``
    The same on the free scale, searched by the optimiser without
    constraints.

Blocks are ordered by role: the random-effects covariance blocks first
(MixedLM's order: ``cov_re``, then the variance components), then the
residual variance blocks.

``theta``
    The location-scale fitter's vector (``pack``, ``unpack``, ``gradient``):
    the fixed effects, which it estimates with the rest rather than
    profiling them out, then the blocks' *free* parameters, the blocks
    ordered by the ``roles`` given (the variance function before the
    random effects' covariance, so that the fixed effects and the variance
    function are the leading entries).  ``estimated`` marks the entries it
    estimates (the blocks' ``estimated``); the others are held.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from .base import Block, CovarianceBlock, StartContext, VarianceBlock
from .recov import UnstructuredCovariance, VarianceComponent

__all__ = ["Layout", "ROLES"]

#: Roles in the order their blocks appear in the parameter vector: the
#: random-effects covariance, the residual variances, and (for residual
#: correlation structures) the residual correlation.
ROLES = ("re_cov", "variance", "correlation")


class Layout:
    """
    Fixed effects and an ordered list of blocks.

    Parameters
    ----------
    fe_names : list of str
        Names of the fixed effects.
    blocks : sequence of Block
        The structures; they are ordered by role (``ROLES``), keeping the
        given order within a role.
    q : int
        Columns of the padded random-effects design (the dimension of G).
    roles : sequence of str, optional
        The order of the roles in the vectors (default ``ROLES``).
    """

    def __init__(self, fe_names: Sequence[str], blocks: Sequence[Block], q: int,
                 roles: Sequence[str] = ROLES) -> None:
        roles = tuple(roles)
        unknown = [type(b).__name__ for b in blocks if b.role not in roles]
        if unknown:
            raise ValueError(f"blocks with unknown roles: {unknown}")
        self.roles = roles
        self.blocks = sorted(blocks, key=lambda b: roles.index(b.role))
        self.fe_names = list(fe_names)
        self.k_fe = len(self.fe_names)
        self.q = int(q)
        # Blocks that describe G as a matrix common to all groups (the
        # engine's factor); location-scale level-2 coefficients do not.
        self.cov_blocks = [b for b in self.blocks if isinstance(b, CovarianceBlock)]
        self.variance_blocks = [b for b in self.blocks if isinstance(b, VarianceBlock)]
        # The residual correlation structure, if any (at most one block).
        corr = [b for b in self.blocks if b.role == "correlation"]
        if len(corr) > 1:
            raise ValueError("a model takes one residual correlation structure")
        self.correlation_block = corr[0] if corr else None
        # Where each block's parameters sit in a natural / free vector.
        self.block_slices = []
        offset = 0
        for block in self.blocks:
            self.block_slices.append(slice(offset, offset + block.k))
            offset += block.k
        # Computed once: the fitter asks for them at every evaluation.
        self._pairs = {
            kind: [(b, sl) for b, sl in zip(self.blocks, self.block_slices)
                   if isinstance(b, kind)]
            for kind in (CovarianceBlock, VarianceBlock)}
        self._is_cov = [isinstance(b, CovarianceBlock) for b in self.blocks]
        self._slots_ix = [np.ix_(b.slots, b.slots) if cov else None
                          for b, cov in zip(self.blocks, self._is_cov)]
        self._cov_slots_ix = [ix for ix in self._slots_ix if ix is not None]
        self.k_cov = sum(b.k for b in self.blocks if b.role == "re_cov")
        self.k_var = sum(b.k for b in self.variance_blocks)
        self.k_structure = offset
        self.k_params = self.k_fe + offset
        # Slices of params (with the fixed effects) by role.
        self.fe = slice(0, self.k_fe)
        # (the residual blocks: variances, and correlations if any)
        self.cov = self._span(True, self.k_fe)
        self.var = self._span(False, self.k_fe)
        # The same inside a natural / free vector.
        self.cov_natural = self._span(True, 0)
        self.var_natural = self._span(False, 0)
        # the correlation block's parameters in a natural / free vector
        self.corr_natural = slice(self.k_structure, self.k_structure)
        for b, sl in zip(self.blocks, self.block_slices):
            if b is self.correlation_block:
                self.corr_natural = sl
        self.k_corr = self.corr_natural.stop - self.corr_natural.start
        # theta entries the location-scale fitter estimates (a plain
        # attribute: refits with some entries held set it).
        self.estimated = np.concatenate([np.ones(self.k_fe, bool)]
                                   + [np.asarray(b.estimated, bool) for b in self.blocks])

    def _span(self, re_cov, offset) -> slice:
        """Where the random-effects covariance blocks (``re_cov``) or the
        residual blocks sit, from offset (each kind is contiguous)."""
        where = [sl for b, sl in zip(self.blocks, self.block_slices)
                 if (b.role == "re_cov") == re_cov]
        if not where:  # none: empty, where the default order puts them
            at = offset + (0 if re_cov else self.k_cov)
            return slice(at, at)
        return slice(offset + where[0].start, offset + where[-1].stop)

    @property
    def p(self) -> int:
        """Number of fixed effects (the leading entries of theta)."""
        return self.k_fe

    @property
    def size(self) -> int:
        """Length of theta (that of ``params``)."""
        return self.k_params

    @property
    def depends_on_fitted(self) -> bool:
        """Whether a block depends on the fitted mean (a fit is then nlme's
        fixed-point iteration, :mod:`statsmodels_hetmixed.fixedpoint`)."""
        return any(b.depends_on_fitted for b in self.blocks)

    @property
    def scoring(self) -> bool:
        """Whether every block suits Fisher scoring on the natural scale
        (``Block.scoring``): the default methods of a fit."""
        return all(b.scoring for b in self.blocks)

    def update(self, fitted) -> None:
        """Every block's ``update`` hook with the fitted values."""
        for block in self.blocks:
            if block.depends_on_fitted:
                block.update(fitted)

    def with_copies(self, blocks) -> "Layout":
        """A layout of the same blocks, with copies of ``blocks`` (whose
        state a later fit of the model would change) in their places."""
        import copy

        replaced = [copy.copy(b) if any(b is c for c in blocks) else b
                    for b in self.blocks]
        return Layout(self.fe_names, replaced, self.q, roles=self.roles)

    def role_block(self, role: str) -> Block:
        """The one block of a role (ValueError if there are none or several)."""
        found = [b for b in self.blocks if b.role == role]
        if len(found) != 1:
            raise ValueError(f"the layout has {len(found)} blocks of role {role!r}, "
                             "not one")
        return found[0]

    # ------------------------------------------------------------------
    # Names and vectors
    @property
    def names(self) -> list[str]:
        """Names of ``params``: fixed effects, then every block's."""
        return self.fe_names + [n for b in self.blocks for n in b.names]

    @property
    def structure_names(self) -> list[str]:
        """Names of a natural vector (the blocks' parameters)."""
        return self.names[self.k_fe:]

    def split(self, params) -> tuple[np.ndarray | None, np.ndarray]:
        """
        ``(fe_params, natural)`` of a vector with (length ``k_params``) or
        without (``k_params - k_fe``; fe_params is then None) the fixed
        effects.

        Raises
        ------
        ValueError
            For any other length, saying what was expected.
        """
        params = np.asarray(params, dtype=np.float64)
        if params.shape == (self.k_params,):
            return params[self.fe].copy(), params[self.k_fe:].copy()
        if params.shape == (self.k_structure,):
            return None, params.copy()
        got = f"length {params.size}" if params.ndim == 1 else f"shape {params.shape}"
        raise ValueError(
            f"The parameter vector has {got}; this model has {self.k_params} "
            f"parameters {self.names} (or {self.k_structure} without the "
            f"{self.k_fe} fixed effects)."
        )

    def join(self, fe_params, natural) -> np.ndarray:
        """``params`` from the fixed effects and a natural vector."""
        return np.concatenate([np.asarray(fe_params, float),
                               np.asarray(natural, float)])

    def slice_of(self, block: Block) -> slice:
        """Where ``block``'s parameters sit in ``params`` (with the fixed
        effects)."""
        for b, sl in zip(self.blocks, self.block_slices):
            if b is block:
                return slice(self.k_fe + sl.start, self.k_fe + sl.stop)
        raise ValueError(f"{type(block).__name__} is not a block of this layout")

    def parts(self, vector) -> list[np.ndarray]:
        """A natural or free vector cut into the blocks' pieces."""
        return [vector[s] for s in self.block_slices]

    def _blockwise(self, method: str, vector) -> np.ndarray:
        vector = np.asarray(vector, dtype=np.float64)
        out = [getattr(b, method)(v) for b, v in zip(self.blocks, self.parts(vector))]
        return np.concatenate(out) if out else np.zeros(0)

    # ------------------------------------------------------------------
    # theta: the location-scale fitter's vector
    def pack(self, fe_params, *parts) -> np.ndarray:
        """theta from the fixed effects and each block's free vector, in
        the layout's block order."""
        if len(parts) != len(self.blocks):
            raise ValueError(f"{len(parts)} free vectors for {len(self.blocks)} blocks")
        return np.concatenate([np.asarray(fe_params, float)]
                              + [np.ravel(np.asarray(v, float)) for v in parts])

    def unpack(self, theta):
        """
        ``(fe_params, variance parameters, factor)`` of theta: the variance
        blocks' natural parameters and the covariance block's factor of the
        joint covariance (per group for blocks whose covariance varies over
        groups; ``np.linalg.LinAlgError`` where one is not positive
        definite).
        """
        theta = np.asarray(theta, dtype=np.float64)
        free = theta[self.k_fe:]
        var = [b.to_natural(v) for b, v in self._of(VarianceBlock, free)]
        factor = self.role_block("re_cov").factor_from_free(free[self.cov_natural])
        return theta[:self.k_fe], (np.concatenate(var) if var else np.zeros(0)), factor

    def gradient(self, grad: dict, theta) -> np.ndarray:
        """
        d llf / d theta from the location-scale engine's gradient ``grad``:
        ``beta`` (the fixed effects), ``a`` (the variance blocks' natural
        parameters, carried to the free scale by each block's ``jacobian``)
        and the joint factor's entries (read by the covariance block's
        ``factor_gradient``).
        """
        free = np.asarray(theta, dtype=np.float64)[self.k_fe:]
        grad_var, offset, out = np.asarray(grad["a"]), 0, [np.asarray(grad["beta"])]
        for block, v in zip(self.blocks, self.parts(free)):
            if block.role == "variance":
                g = grad_var[offset:offset + block.k]
                offset += block.k
                out.append(block.jacobian(v).T @ g)
            else:
                out.append(block.factor_gradient(v, grad))
        return np.concatenate(out)

    def unit_scale(self, data) -> np.ndarray:
        """Typical size of each theta entry in the units of the data (the
        blocks' ``unit_scale``; 1 for the fixed effects, which the fitter
        never tests for flatness)."""
        return np.concatenate([np.ones(self.k_fe)]
                              + [b.unit_scale(data) for b in self.blocks])

    # ------------------------------------------------------------------
    # Scales
    def to_natural(self, free) -> np.ndarray:
        """Natural vector from a free one."""
        return self._blockwise("to_natural", free)

    def from_natural(self, natural) -> np.ndarray:
        """Free vector from a natural one (ValueError outside the space)."""
        return self._blockwise("from_natural", natural)

    def natural_jacobian(self, free) -> np.ndarray:
        """d natural / d free, block diagonal (k_structure x k_structure)."""
        jac = np.zeros((self.k_structure, self.k_structure))
        for block, sl, v in zip(self.blocks, self.block_slices, self.parts(free)):
            jac[sl, sl] = block.jacobian(v)
        return jac

    def start(self, context: StartContext) -> np.ndarray:
        """Starting natural vector: every block's starting values."""
        out = [b.start(context) for b in self.blocks]
        # The variance blocks' factors multiply (varComb), and each block's
        # start alone matches the residuals' level: the first block that
        # can (the variance function, whose intercept carries the scale)
        # absorbs the others' mean log factor, so that their product does
        # too (a varConstPower start otherwise began 300 log-likelihood
        # units from Orthodont's maximum and ran to another edge).
        pairs = [(b, v) for b, v in zip(self.blocks, out) if b.role == "variance"]
        absorbing = [i for i, (b, _) in enumerate(pairs)
                     if hasattr(b, "absorb_log_scale")]
        if absorbing and len(pairs) > 1:
            i = absorbing[0]
            shift = sum(b.log_scale(v) for j, (b, v) in enumerate(pairs) if j != i)
            block, v = pairs[i]
            out[[k for k, b in enumerate(self.blocks) if b is block][0]] = \
                block.absorb_log_scale(v, -shift)
        return np.concatenate(out) if out else np.zeros(0)

    # ------------------------------------------------------------------
    # What the engine needs
    def _assemble_factor(self, pieces) -> np.ndarray:
        L = np.zeros((self.q, self.q))
        for ix, piece in zip(self._cov_slots_ix, pieces):
            L[ix] = piece
        return L

    def _of(self, kind, vector):
        """The blocks of a kind, with their pieces of a vector."""
        if kind in self._pairs:
            return [(b, vector[sl]) for b, sl in self._pairs[kind]]
        return [(b, v) for b, v in zip(self.blocks, self.parts(vector))
                if isinstance(b, kind)]

    def factor(self, natural, basis=None) -> np.ndarray:
        """L (q x q) with G = L L', block diagonal, from a natural vector;
        with ``basis`` (M, q x q: ``_engine.GroupedData.re_basis``), of the
        centred effects' G_c = M G M' instead, factored from G_c itself
        (what the engine takes)."""
        if basis is not None:
            natural = self.centring(basis) @ np.asarray(natural, dtype=np.float64)
        return self._assemble_factor(
            b.factor(v) for b, v in self._of(CovarianceBlock, natural))

    def centring(self, basis) -> np.ndarray:
        """
        T (k_structure x k_structure, block diagonal): ``T natural`` holds
        the natural parameters of the centred effects' covariance
        ``G_c = M G M'`` (``basis`` = M, q x q, block diagonal over the
        covariance blocks' slots) where the natural vector holds G's; the
        identity outside the covariance blocks (each block's
        ``conditioner``).
        """
        T = np.eye(self.k_structure)
        if basis is None:
            return T
        basis = np.asarray(basis, dtype=np.float64)
        for block, sl, ix in zip(self.blocks, self.block_slices, self._slots_ix):
            if ix is not None:
                T[sl, sl] = block.conditioner(basis[ix])
        return T

    def factor_from_free(self, free) -> np.ndarray:
        """The same from a free vector (the optimiser's own factor)."""
        return self._assemble_factor(
            b.factor_from_free(v) for b, v in self._of(CovarianceBlock, free))

    def _variance_parts(self, vector):
        return [v for _, v in self._of(VarianceBlock, vector)]

    def resid_var_into(self, natural, out) -> tuple[np.ndarray, float | None]:
        """``(resid_var(natural), sum of its logs or None)``, the variances
        written into ``out`` (an (n,) float64 array, or None) where a
        single block can (``variance_into``, the log-linear block, which
        also gives the sum of the logs from its linear predictor)."""
        blocks = self.variance_blocks
        if len(blocks) == 1 and hasattr(blocks[0], "variance_into"):
            return blocks[0].variance_into(self._variance_parts(natural)[0], out)
        return self.resid_var(natural), None

    def resid_var(self, natural, designs=None) -> np.ndarray:
        """Residual variances sigma2_ij: the product of the variance
        blocks' factors (of new designs, one per block, if given)."""
        pieces = self._variance_parts(natural)
        designs = designs or [None] * len(pieces)
        out = None
        for block, v, design in zip(self.variance_blocks, pieces, designs):
            r = block.variance(v, design)
            out = r if out is None else out * r
        if out is None:
            raise ValueError("the layout has no residual variance block")
        return out

    def log_scale(self, natural) -> float:
        """Mean over rows of log sigma2_ij (log of the geometric mean)."""
        return float(sum(b.log_scale(v) for b, v in
                         zip(self.variance_blocks, self._variance_parts(natural))))

    def natural_gradient(self, natural, grad_cov, grad_log_var, grad_corr=None,
                         variance_gradient=None) -> np.ndarray:
        """d llf / d natural from the engine's d llf / dG (q x q),
        d llf / d log sigma2_ij (n,) and, with a correlation block,
        d llf / d its natural parameters (``grad_corr``);
        ``variance_gradient``: the natural gradient of the (single)
        variance block where the caller has it."""
        if variance_gradient is not None and len(self.variance_blocks) != 1:
            raise ValueError("variance_gradient is for a single variance block")
        out = [b.natural_gradient(grad_cov[ix]) if cov
               else b.natural_gradient(grad_corr) if b is self.correlation_block
               else (b.natural_gradient(v, grad_log_var) if variance_gradient is None
                     else variance_gradient)
               for b, v, cov, ix in zip(self.blocks, self.parts(natural),
                                        self._is_cov, self._slots_ix)]
        return np.concatenate(out) if out else np.zeros(0)

    def free_gradient(self, free, grad_cov, grad_log_var, grad_corr=None
                      ) -> np.ndarray:
        """d llf / d free, the chain rule of every block."""
        out = [b.free_gradient(v, grad_cov[ix]) if cov
               else b.free_gradient(v, grad_corr) if b is self.correlation_block
               else b.free_gradient(v, grad_log_var)
               for b, v, cov, ix in zip(self.blocks, self.parts(free),
                                        self._is_cov, self._slots_ix)]
        return np.concatenate(out) if out else np.zeros(0)

    @property
    def log_linear(self) -> bool:
        """Whether G is linear in the covariance parameters (always) and
        log sigma2_ij in the variance parameters (every variance block's
        ``log_linear``), with independent residuals (no correlation
        block: the engine's formulas are those of a diagonal R): the
        condition of the engine's analytic observed information."""
        return (self.correlation_block is None
                and all(b.log_linear for b in self.variance_blocks))

    def info_directions(self, natural) -> tuple[np.ndarray, np.ndarray]:
        """
        The derivatives of V the engine's expected information needs:
        dG / d natural covariance parameter, (k_cov, q, q), and
        d log sigma2_ij / d natural variance parameter, (n, k_var).
        """
        var_dirs = [b.log_derivative(v) for b, v in
                    zip(self.variance_blocks, self._variance_parts(natural))]
        return self._cov_directions, (var_dirs[0] if len(var_dirs) == 1
                                      else np.hstack(var_dirs))

    @functools.cached_property
    def _cov_directions(self) -> np.ndarray:
        """dG / d natural covariance parameter (k_cov, q, q), built once:
        it does not depend on the parameters (read-only)."""
        cov_dirs = np.zeros((self.k_cov, self.q, self.q))
        for block, sl in zip(self.blocks, self.block_slices):
            if isinstance(block, CovarianceBlock):
                idx = np.ix_(np.arange(sl.start, sl.stop), block.slots, block.slots)
                cov_dirs[idx] = block._directions
        cov_dirs.flags.writeable = False
        return cov_dirs

    # ------------------------------------------------------------------
    # Bounds
    @property
    def bounded(self) -> np.ndarray:
        """Mask of natural parameters that are single variances >= 0."""
        return self._mask("bounded")

    @property
    def variances(self) -> np.ndarray:
        """Mask of natural parameters that are variances (boundary at 0)."""
        return self._mask("variances")

    def _mask(self, name) -> np.ndarray:
        out = [np.asarray(getattr(b, name), bool) for b in self.blocks]
        return np.concatenate(out) if out else np.zeros(0, bool)

    def at_boundary(self, natural, scale: float) -> np.ndarray:
        """Mask of variances at zero, relative to the residual scale."""
        out = [b.at_boundary(v, scale) for b, v in zip(self.blocks, self.parts(natural))]
        return np.concatenate(out) if out else np.zeros(0, bool)

    def hold(self, mask, free) -> np.ndarray:
        """The free vector adjusted so that the natural parameters ``mask``
        leaves out (False) are held at their values (every block's
        ``hold``)."""
        mask = np.asarray(mask, bool)
        out = [b.hold(m, v) for b, m, v in
               zip(self.blocks, self.parts(mask), self.parts(np.asarray(free, float)))]
        return np.concatenate(out) if out else np.zeros(0)

    def admissible(self, natural) -> bool:
        """Whether every block accepts its natural parameters."""
        return all(b.admissible(v) for b, v in zip(self.blocks, self.parts(natural)))

    # ------------------------------------------------------------------
    # MixedLM's views of the random-effects covariance
    def cov_re(self, natural) -> np.ndarray:
        """MixedLM's ``cov_re``: the correlated random effects' matrix."""
        for block, v in self._of(UnstructuredCovariance, natural):
            return block.matrix(v)
        return np.zeros((0, 0))

    def vcomp(self, natural) -> np.ndarray:
        """MixedLM's ``vcomp``: the variance components' variances."""
        out = [v for _, v in self._of(VarianceComponent, natural)]
        return np.concatenate(out) if out else np.zeros(0)

    @property
    def vc_slots(self) -> list[np.ndarray]:
        """The padded design's columns of each variance component."""
        return [b.slots for b in self.cov_blocks if isinstance(b, VarianceComponent)]
