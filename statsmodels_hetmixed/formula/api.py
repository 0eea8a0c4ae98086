"""
Formula API, like ``statsmodels.formula.api``.

>>> import statsmodels_hetmixed.formula.api as hmf
>>> model = hmf.hetmixedlm("mathach ~ female", data, groups="school",
...                        var_formula="~ female")

``data`` may be a pandas DataFrame or a Dask DataFrame (then the model is a
:class:`~statsmodels_hetmixed.DaskHetMixedLM`: the rows stay in its
partitions; see the documentation page "Dask").
"""

import functools

from .._dask import DaskHetMixedLM
from .._daskframe import is_dask_frame
from ..model import HetMixedLM


@functools.wraps(HetMixedLM.from_formula)
def hetmixedlm(formula, data, *args, **kwargs):
    # formulas see the namespace of hetmixedlm's caller: one frame more
    # than from_formula's caller (an int eval_env is a depth; -1 none)
    env = kwargs.get("eval_env")
    if env is None or (isinstance(env, int) and env >= 0):
        kwargs["eval_env"] = (env or 0) + 1
    if is_dask_frame(data):
        return DaskHetMixedLM.from_formula(formula, data, *args, **kwargs)
    return HetMixedLM.from_formula(formula, data, *args, **kwargs)


__all__ = ["hetmixedlm"]
