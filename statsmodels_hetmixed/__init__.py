"""
statsmodels-hetmixed: linear mixed models with heteroskedastic residuals.

``HetMixedLM`` extends statsmodels' ``MixedLM`` with a log-linear residual
variance function, ``log sigma2_ij = w_ij' a``.
"""

from ._dask import DaskHetMixedLM
from .model import HetMixedLM, HetMixedLMParams
from .results import HetMixedLMResults, HetMixedLMResultsWrapper

__version__ = "0.1.0"

__all__ = ["DaskHetMixedLM", "HetMixedLM", "HetMixedLMParams", "HetMixedLMResults", "HetMixedLMResultsWrapper",
           "__version__"]
