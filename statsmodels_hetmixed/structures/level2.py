"""
Level-2 variance functions of location-scale models, as a block.

The log variance of every random effect and the atanh of every correlation
are linear in group-level variables S (``re_var_formula``).  The block's
parameters are those coefficients (``logvar(<effect>):<column>`` and
``atanh corr(<a>, <b>):<column>``); they are unbounded, and natural and
free scales coincide.  Each group's covariance is built from them by
``_locscale.Level2Layout``, which the location-scale fitter uses.
"""

from __future__ import annotations

import numpy as np

from .base import Block, StartContext

__all__ = ["Level2Coefficients"]


class Level2Coefficients(Block):
    """The coefficients of the level-2 variance functions.

    Parameters
    ----------
    names : list of str
        One per coefficient estimated.
    """

    role = "re_cov"

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)

    def start(self, context: StartContext) -> np.ndarray:
        return np.zeros(self.k)

    def to_natural(self, free):
        return np.array(free, dtype=np.float64)

    def from_natural(self, natural):
        return np.array(natural, dtype=np.float64)
