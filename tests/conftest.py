"""Shared fixtures: reference numbers and data sets."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from statsmodels_hetmixed.datasets import hsb

RESULTS = Path(__file__).parent / "results"


@pytest.fixture(scope="session")
def r_reference():
    """Numbers from R (nlme, glmmTMB, lme4) made by results/r_reference.R."""
    with open(RESULTS / "r_reference.json") as fh:
        return json.load(fh)


@pytest.fixture(scope="session")
def hsb_data():
    return hsb.load_pandas().data


def load_case_data(name):
    if name == "hsb":
        return hsb.load_pandas().data
    return pd.read_csv(RESULTS / "data" / f"{name}.csv")


@pytest.fixture(scope="session")
def recoding_data():
    return simulate_recoding_data()


def simulate_recoding_data():
    """60 groups x 15 rows: a random intercept and a random scale effect
    (variance 0.3), ``year`` in 2000-2020 and ``income`` about 5e4 dollars,
    with the log residual variance linear in both; for checks that
    standard errors do not depend on the covariates' units and origin."""
    rng = np.random.default_rng(2024)
    n_groups, size = 60, 15
    g = np.repeat(np.arange(n_groups), size)
    year = rng.integers(2000, 2021, g.size).astype(float)
    income = rng.lognormal(np.log(5e4), 0.4, g.size)
    u = rng.normal(0.0, 0.7, n_groups)[g]
    omega = rng.normal(0.0, np.sqrt(0.3), n_groups)[g]
    log_var = 0.1 + 0.04 * (year - 2010) - 0.5 * (income - 5e4) / 2e4 + omega
    y = 1 + 0.02 * (year - 2010) + u + np.exp(0.5 * log_var) * \
        rng.standard_normal(g.size)
    return pd.DataFrame({"y": y, "g": g, "year": year, "income": income})


# Recodings of ``year``: (transformation, factor that brings a coefficient
# of the recoded covariate back to years).
YEAR_CODINGS = {
    "year": (lambda v: v, 1.0),
    "year - 2010": (lambda v: v - 2010, 1.0),
    "year * 1e6": (lambda v: v * 1e6, 1e6),
    "year * 1e-6": (lambda v: v * 1e-6, 1e-6),
}


def fit_year_codings(data, fit_kwargs, **model_kwargs):
    """``y ~ year`` with ``var_formula="~ year + income"`` fitted under each
    coding of ``year`` (warnings are errors; each fit must converge with
    finite SEs): {coding: (results, factor)}."""
    import warnings

    import numpy as np

    import statsmodels_hetmixed.formula.api as hmf

    out = {}
    for name, (recode, factor) in YEAR_CODINGS.items():
        recoded = data.assign(year=recode(data["year"]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = hmf.hetmixedlm("y ~ year", recoded, groups="g",
                                 var_formula="~ year + income",
                                 **model_kwargs).fit(**fit_kwargs)
        assert res.converged, name
        assert np.all(np.isfinite(res.bse)), name
        out[name] = (res, factor)
    return out
