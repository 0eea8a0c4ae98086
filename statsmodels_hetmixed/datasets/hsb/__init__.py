"""
High School and Beyond (HSB) mathematics achievement data.

7,185 students in 160 US high schools (90 public, 70 Catholic) from the 1982
High School and Beyond survey, as analysed by Raudenbush and Bryk (2002,
*Hierarchical Linear Models*, 2nd ed., chapter 4) and used throughout the
HLM, nlme and Stata literature.

Source: R package nlme, data sets ``MathAchieve`` (students) and
``MathAchSchool`` (schools), merged by school with ``derive_hsb.R`` in this
folder.  Rows keep the order of ``MathAchieve``.

Columns:

- ``school``: school identifier
- ``mathach``: mathematics achievement score
- ``female``: 1 for female students, 0 for male
- ``minority``: 1 for minority students, 0 otherwise
- ``ses``: socio-economic status (standardized composite)
- ``meanses``: school mean of ``ses`` in these 7,185 rows (differs slightly
  from nlme's ``MEANSES`` column, which was computed on a larger sample)
- ``cses``: ``ses - meanses`` (school-centred ses)
- ``sector``: 0 public, 1 Catholic
- ``size``: school enrolment
- ``pracad``: proportion of students in the academic track
- ``disclim``: disciplinary climate scale
- ``himinty``: 1 if more than 40% of students are minority, else 0
"""

from pathlib import Path

from .._csv import load_csv

__all__ = ["load", "load_pandas", "COPYRIGHT", "TITLE", "SOURCE",
           "DESCRSHORT", "DESCRLONG", "NOTE"]

COPYRIGHT = "Public-use data of the High School and Beyond survey (NCES)."
TITLE = "High School and Beyond: mathematics achievement"
SOURCE = "R package nlme: MathAchieve and MathAchSchool (Raudenbush and Bryk 2002)."
DESCRSHORT = "Mathematics achievement of 7,185 students in 160 schools."
DESCRLONG = __doc__
NOTE = """::

    Number of observations: 7185 students in 160 schools
    Number of variables: 12
    Variables: school, mathach, female, minority, ses, meanses, cses,
    sector, size, pracad, disclim, himinty (described in DESCRLONG).
"""

_CSV = Path(__file__).with_name("hsb.csv")


def load_pandas():
    """
    Load the HSB data.

    Returns
    -------
    statsmodels.datasets.utils.Dataset
        ``.data`` is a DataFrame with the columns described in the module
        docstring; ``.endog`` is ``mathach`` and ``.exog`` the other columns.
    """
    return load_csv(_CSV, "mathach")


def load():
    """Load the HSB data (same as :func:`load_pandas`)."""
    return load_pandas()
