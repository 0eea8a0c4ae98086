"""
Progress of long computations: the optimisers' one per-iteration hook.

``fit(disp=True)`` prints a line per optimiser iteration (statsmodels'
convention: the log-likelihood and the gradient), ``fit(callback=f)`` calls
``f`` with the current parameter vector, and ``full_output=True`` records
the log-likelihood trace (``results.hist``).  The optimisers call one
``Trace`` per iteration and know nothing of printing.
"""

from __future__ import annotations

import sys
from typing import Callable, NamedTuple

import numpy as np


class Trace:
    """
    Called by the optimisers once per iteration as
    ``trace(llf, params, grad)``.

    Parameters
    ----------
    disp : bool
        Print ``Iteration k: log-likelihood ..., max |gradient| ...`` per
        iteration on ``stream`` (default: stdout, as statsmodels' fits).
    callback : callable, optional
        Called as ``callback(params)`` with a copy of the parameter vector
        after each iteration.
    record : bool
        Keep the log-likelihood of each iteration in ``hist``.
    stream : file, optional
    """

    def __init__(self, disp: bool = False, callback: Callable | None = None,
                 record: bool = False, stream=None):
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, not {callback!r}")
        self.disp = bool(disp)
        self.callback = callback
        self.hist = [] if record else None
        self.stream = stream
        self.iteration = 0

    @classmethod
    def make(cls, disp=False, callback=None, record=False):
        """A Trace, or None when nothing is asked (the optimisers skip it)."""
        if not disp and callback is None and not record:
            return None
        return cls(disp, callback, record)

    def __call__(self, llf: float, params: np.ndarray, grad: np.ndarray | None):
        self.iteration += 1
        if self.hist is not None:
            self.hist.append(float(llf))
        if self.disp:
            grad_text = ("" if grad is None or np.size(grad) == 0 else
                         f", max |gradient| {np.max(np.abs(grad)):.3e}")
            print(f"Iteration {self.iteration:4d}: log-likelihood "
                  f"{llf:.6f}{grad_text}", file=self.stream or sys.stdout,
                  flush=True)
        if self.callback is not None:
            self.callback(np.array(params, dtype=float, copy=True))


class ProfileProgress(NamedTuple):
    """What ``profile_ci(callback=f)`` passes to ``f`` after each refit."""

    row: str        #: the row of ``re_table()`` being profiled, e.g. "SD(school)"
    number: int     #: its position among the rows profiled (1-based)
    total: int      #: how many rows are profiled
    refits: int     #: refits for this row so far
    value: float    #: the held log variance or atanh correlation
    llf: float      #: the refit's log-likelihood
