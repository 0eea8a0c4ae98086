"""Loading a bundled CSV as a statsmodels ``Dataset``."""

from pathlib import Path

import pandas as pd
from statsmodels.datasets.utils import Dataset


def load_csv(path: Path, endog_name: str) -> Dataset:
    """
    The CSV at ``path`` as a ``Dataset``: ``.data`` the whole DataFrame,
    ``.endog`` the column ``endog_name`` and ``.exog`` the other columns.
    """
    data = pd.read_csv(path)
    exog_names = [c for c in data.columns if c != endog_name]
    return Dataset(data=data, names=list(data.columns), endog=data[endog_name],
                   exog=data[exog_names], endog_name=endog_name,
                   exog_name=exog_names)
