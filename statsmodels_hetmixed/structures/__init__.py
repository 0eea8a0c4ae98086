"""
Structures of the model as blocks with one small interface.

See :mod:`.base` for the interface, :mod:`.layout` for how a model's blocks
compose into its parameter vector, :mod:`.variance` for the residual
variance functions, :mod:`.recov` for the random-effects covariance and
:mod:`.correlation` for the residual correlation structures and
:mod:`.level2` for the level-2 variance functions of location-scale models.
"""

from .base import BOUNDARY_RTOL, Block, CovarianceBlock, StartContext, VarianceBlock
from .correlation import (
    AR1,
    ARMA,
    CAR1,
    Banded,
    CorrelationStructure,
    Exchangeable,
    Toeplitz,
    Unstructured,
    make_correlation,
)
from .layout import ROLES, Layout
from .level2 import Level2Coefficients, Level2Functions
from .recov import (
    JointCovariance,
    UnstructuredCovariance,
    VarianceComponent,
    covariance_names,
    gram_jacobian,
    psd_factor,
)
from .variance import (
    VAR_PREFIX,
    AdditiveVariance,
    LogLinearVariance,
    FITTED,
    ConstPowerVariance,
    PowerVariance,
    make_variance_function,
)

__all__ = [
    "BOUNDARY_RTOL", "Block", "CovarianceBlock", "StartContext", "VarianceBlock",
    "ROLES", "Layout", "Level2Coefficients", "Level2Functions", "JointCovariance", "UnstructuredCovariance", "VarianceComponent", "covariance_names", "gram_jacobian",
    "psd_factor",
    "AR1", "ARMA", "CAR1", "Banded", "CorrelationStructure", "Exchangeable",
    "Toeplitz", "Unstructured", "make_correlation",
        "VAR_PREFIX", "AdditiveVariance", "LogLinearVariance", "PowerVariance",
    "ConstPowerVariance", "FITTED", "make_variance_function",
]
