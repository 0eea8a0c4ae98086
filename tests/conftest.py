"""Shared fixtures: reference numbers and data sets."""

import json
from pathlib import Path

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
