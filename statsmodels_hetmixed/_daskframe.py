"""
What the rest of the package needs to know of Dask DataFrames without
importing dask or the Dask fit (``_dask``): whether an argument is one, and
predictions mapped over its partitions.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

__all__ = ["is_dask_frame", "predict_partitions"]


def is_dask_frame(data) -> bool:
    """Whether ``data`` is a Dask DataFrame (dask is not imported: if the
    caller has not imported it, ``data`` cannot be one)."""
    module = sys.modules.get("dask.dataframe")
    return module is not None and isinstance(data, module.DataFrame)


def _predict_frame(pdf, results, kwargs):
    # Dask stores text columns as pandas' pyarrow-backed strings, which
    # patsy before 1.0 cannot read (numpy does not know the dtype); as
    # Python objects every formula engine reads them
    text = [c for c in pdf.columns if isinstance(pdf[c].dtype, pd.StringDtype)]
    if text:
        pdf = pdf.astype(dict.fromkeys(text, object))
    return results.predict(pdf, **kwargs)


def predict_partitions(results, ddf, **kwargs):
    """``results.predict`` of every partition of ``ddf``: a lazy Dask
    Series with the frame's index (the results travel to the workers; the
    rows stay there)."""
    return ddf.map_partitions(_predict_frame, results, kwargs,
                              meta=pd.Series(dtype=np.float64))
