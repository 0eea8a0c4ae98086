"""The bundled data sets load as documented."""
from pathlib import Path

import pandas as pd

from statsmodels_hetmixed.datasets import hsb, orthodont


def test_orthodont_is_the_reference_fits_data():
    """The bundled Orthodont rows are those the stored nlme fits used
    (tests/results/correlation), in the same order."""
    ds = orthodont.load_pandas()
    ref = pd.read_csv(Path(__file__).parent / "results" / "correlation"
                      / "orthodont.csv")
    assert ds.data.shape == (108, 5)
    pd.testing.assert_frame_equal(ds.data, ref, check_dtype=False)
    assert ds.endog_name == "distance"
    assert ds.data.groupby("Subject").size().eq(4).all()
    assert (ds.data["occ"] == (ds.data["age"] - 8) // 2 + 1).all()
    assert list(ds.exog.columns) == ["Subject", "Sex", "age", "occ"]


def test_hsb_loads():
    ds = hsb.load_pandas()
    assert ds.data.shape == (7185, 12)
    assert ds.endog_name == "mathach"
