"""
Stata's dummy-variance-level trick, literally.

Stata's ``mixed`` has no residual variance function.  Group-specific
residual variances are fitted by adding a level below the observation, one
unit per observation, with a random slope on a dummy and no intercept::

    generate nid = _n
    mixed y x || school: || nid: male, nocons

so that ``sigma2_ij = var(Residual) + var(male) * male_ij``.  In
statsmodels terms this is a variance component whose design has one column
per observation in each group.  ``dummy_variance_level`` builds it; the same
model is fitted directly (and far faster) by
``hetmixedlm(..., var_formula="~ male", var_link="identity")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["DummyVarianceLevel", "dummy_variance_level"]


@dataclass
class DummyVarianceLevel:
    """
    What ``MixedLM.from_formula`` / ``HetMixedLM.from_formula`` need for the
    expanded model.

    Attributes
    ----------
    data : pandas.DataFrame
        The data with the observation-level id column added.
    vc_formula : dict
        One variance component per dummy: ``{"male": "0 + C(nid):male"}``.
    re_formula : str
        ``"1"``: the random intercept of the grouping level (Stata's
        ``|| school:``).
    id_name : str
        Name of the observation-level id column.
    """

    data: pd.DataFrame
    vc_formula: dict = field(default_factory=dict)
    re_formula: str = "1"
    id_name: str = "nid"

    def kwargs(self):
        """Keyword arguments for ``from_formula`` (besides formula, groups)."""
        return {"data": self.data, "re_formula": self.re_formula,
                "vc_formula": dict(self.vc_formula)}


def dummy_variance_level(data, dummies, id_name="nid"):
    """
    Expand each observation into its own level with random dummy slopes.

    Parameters
    ----------
    data : pandas.DataFrame
    dummies : str or list of str
        0/1 columns; each adds a variance to the observations where it is 1
        (Stata: ``|| nid: male, nocons``).
    id_name : str
        Name of the observation-level id column to add.

    Returns
    -------
    DummyVarianceLevel

    Examples
    --------
    Stata::

        generate nid = _n
        mixed mathach female || school: || nid: male, nocons, mle

    Python::

        spec = dummy_variance_level(data, "male")
        res = hmf.hetmixedlm("mathach ~ female", groups="school",
                             **spec.kwargs()).fit(reml=False)

    ``res.params_natural["male Var"]`` is Stata's ``var(male)`` and the
    intercept of the residual variance,
    ``exp(res.params_natural["var:Intercept"])``, its ``var(Residual)``
    (``res.params`` holds MixedLM's values, relative to the scale).
    """
    if isinstance(dummies, str):
        dummies = [dummies]
    if id_name in data.columns:
        raise ValueError(f"data already has a column {id_name!r}; pass id_name")
    for d in dummies:
        if d not in data.columns:
            raise ValueError(f"dummy column {d!r} is not in data")
        values = pd.to_numeric(data[d], errors="coerce")
        if values.isna().any() or not np.isin(values, [0, 1]).all():
            raise ValueError(
                f"column {d!r} must be a 0/1 dummy: the Stata trick adds "
                "var(dummy) to the observations where it is 1.")
    out = data.copy()
    out[id_name] = np.arange(len(out))
    vc = {d: f"0 + C({id_name}):{d}" for d in dummies}
    return DummyVarianceLevel(out, vc, "1", id_name)
