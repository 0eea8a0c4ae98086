"""
Orthodontic growth data (Potthoff and Roy 1964).

The distance (mm) from the centre of the pituitary to the pterygomaxillary
fissure, measured on 27 children (16 boys, 11 girls) at ages 8, 10, 12 and
14: 108 rows, four occasions per child, the classic example of residuals
correlated over time (Pinheiro and Bates 2000, *Mixed-Effects Models in S
and S-PLUS*, sections 1.4 and 5.3).

Source: R package nlme, data set ``Orthodont``.  Rows are sorted by child
and age.

Columns:

- ``Subject``: child identifier (``M01``..``M16`` boys, ``F01``..``F11``
  girls)
- ``Sex``: ``Male`` or ``Female``
- ``age``: age in years (8, 10, 12, 14)
- ``occ``: occasion, 1..4 (``(age - 8) / 2 + 1``)
- ``distance``: the measured distance (mm)
"""

from pathlib import Path

from .._csv import load_csv

__all__ = ["load", "load_pandas", "COPYRIGHT", "TITLE", "SOURCE",
           "DESCRSHORT", "DESCRLONG", "NOTE"]

COPYRIGHT = "Published data (Potthoff and Roy 1964), as distributed with the R package nlme."
TITLE = "Orthodontic growth measurements"
SOURCE = "R package nlme: Orthodont (Potthoff and Roy 1964, Biometrika 51, 313-326)."
DESCRSHORT = "Growth of a jaw distance in 27 children measured at four ages."
DESCRLONG = __doc__
NOTE = """::

    Number of observations: 108 (27 children x 4 ages)
    Number of variables: 5
    Variables: Subject, Sex, age, occ, distance (described in DESCRLONG).
"""

_CSV = Path(__file__).with_name("orthodont.csv")


def load_pandas():
    """
    Load the Orthodont data.

    Returns
    -------
    statsmodels.datasets.utils.Dataset
        ``.data`` is a DataFrame with the columns described in the module
        docstring; ``.endog`` is ``distance`` and ``.exog`` the other columns.
    """
    return load_csv(_CSV, "distance")


def load():
    """Load the Orthodont data (same as :func:`load_pandas`)."""
    return load_pandas()
