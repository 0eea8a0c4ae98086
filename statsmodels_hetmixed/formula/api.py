"""
Formula API, like ``statsmodels.formula.api``.

>>> import statsmodels_hetmixed.formula.api as hmf
>>> model = hmf.hetmixedlm("mathach ~ female", data, groups="school",
...                        var_formula="~ female")
"""

from ..model import HetMixedLM

hetmixedlm = HetMixedLM.from_formula

__all__ = ["hetmixedlm"]
