"""
Input checks shared by the array and the formula interfaces.

Every check raises ``ValueError`` with a message that names what is wrong
(the argument, the columns) and says what to do.  ``HetMixedLM.__init__``
runs them all, so a model built from arrays and one built from formulas
pass through the same checks; ``from_formula`` only translates formulas
into arrays.
"""

from __future__ import annotations

import datetime
import warnings
from typing import Sequence

import numpy as np
import pandas as pd


def column_names(arr, prefix: str) -> list[str]:
    """Column names of a DataFrame or Series, else ``prefix1, prefix2, ...``."""
    if arr is None:
        return []
    if isinstance(arr, pd.DataFrame):
        return [str(c) for c in arr.columns]
    if isinstance(arr, pd.Series):
        return [str(arr.name) if arr.name is not None else f"{prefix}1"]
    a = np.asarray(arr)
    k = 1 if a.ndim <= 1 else a.shape[1]
    return [f"{prefix}{j + 1}" for j in range(k)]


def var_column_names(exog_var, prefix: str = "w") -> list[str]:
    """Names of a design's columns (by default the variance design's); for
    arrays, statsmodels' convention for exog ("const" for a constant
    column, else w1, w2, ...)."""
    if isinstance(exog_var, (pd.DataFrame, pd.Series)):
        return column_names(exog_var, prefix)
    a = np.asarray(exog_var)
    a = a[:, None] if a.ndim == 1 else a
    names, k = [], 0
    for j in range(a.shape[1]):
        try:
            col = np.asarray(a[:, j], dtype=np.float64)
        except (TypeError, ValueError):  # named here, reported by check_numeric
            col = np.full(a.shape[0], np.nan)
        if len(col) and np.all(col == col[0]) and col[0] != 0 \
                and "const" not in names:
            names.append("const")
        else:
            k += 1
            names.append(f"{prefix}{k}")
    return names


def _is_numeric_column(col: pd.Series) -> bool:
    if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return True
    # Strings are not numbers even when they parse as numbers ("1.5"): a
    # column read as text is a data error to fix, not to guess at.
    values = np.asarray(col, dtype=object)
    if any(isinstance(v, (str, bytes)) for v in values):
        return False
    try:
        np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True


def check_numeric(arr, what: str, names: Sequence[str] | None = None) -> None:
    """Raise an error naming the non-numeric columns of an input (by
    ``names`` when given, else by the DataFrame's columns)."""
    if arr is None:
        return
    if isinstance(arr, (pd.DataFrame, pd.Series)):
        # Every column of a numeric dtype shows in the dtype of the joint
        # array (a view for patsy's designs), which is far cheaper to get
        # than ``frame.dtypes`` (a Series); mixed dtypes are inspected below.
        if arr.to_numpy().dtype.kind in "biuf":
            return
        frame = arr if isinstance(arr, pd.DataFrame) else arr.to_frame()
    else:
        a = np.asarray(arr)
        if a.ndim > 2:
            raise ValueError(f"{what} must be 1- or 2-dimensional, not "
                             f"{a.ndim}-dimensional.")
        if a.dtype.kind in "biuf":  # numbers: nothing to look at per column
            return
        frame = pd.DataFrame(a)
    # Columns of a numeric dtype need no look at their values (a pass per
    # column creates a Series each); only the others are inspected.
    to_inspect = [j for j, dtype in enumerate(frame.dtypes)
                  if not (pd.api.types.is_numeric_dtype(dtype)
                          or pd.api.types.is_bool_dtype(dtype))]
    if not to_inspect:
        return
    labels = list(names) if names is not None and len(names) == frame.shape[1] \
        else [str(c) for c in frame.columns]
    bad = [labels[j] for j in to_inspect
           if not _is_numeric_column(frame.iloc[:, j])]
    if bad:
        raise ValueError(
            f"{what} has non-numeric column(s) {bad}. Encode categorical "
            "variables as dummy columns (the formula interface does this "
            "with C(...)), and convert numbers stored as text to numbers."
        )


def check_finite(arr, what: str, names: Sequence[str]) -> None:
    """Raise an error naming the columns with missing or infinite values."""
    if isinstance(arr, (pd.DataFrame, pd.Series)):
        # to_numpy: np.asarray on a DataFrame takes a pass through pandas'
        # __array__ machinery that costs more than the check itself;
        # missing values of nullable dtypes (pd.NA) become NaN, reported below.
        a = arr.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    finite = np.isfinite(a)
    if not finite.all():
        bad = [names[j] if j < len(names) else str(j)
               for j in np.flatnonzero(~finite.all(axis=0))]
        raise ValueError(
            f"{what} has missing or infinite values in column(s) {bad} "
            f"({int((~finite).any(axis=1).sum())} rows). Drop those rows, or "
            "pass missing='drop'."
        )


def as_float_matrix(arr, what: str, names: Sequence[str]) -> np.ndarray:
    """2-d float array, with an error that names columns with bad values."""
    a = np.asarray(arr)
    if a.ndim == 1:
        a = a[:, None]
    a = np.asarray(a, dtype=np.float64)
    check_finite(a, what, names)
    return a


def shared_columns(sub: np.ndarray, full: np.ndarray, sub_names: Sequence[str],
                   full_names: Sequence[str]) -> slice | None:
    """
    The columns of ``full`` that ``sub`` repeats, as a slice (``full[:,
    cols]`` is then a view equal to ``sub``), or None.

    A variance design is often (part of) the mean design (``y ~ z*x`` with
    ``var_formula="~ z*x"``): the model then holds one copy of those
    columns, not two (at 10,000,000 rows and four columns, 320 MB less).
    Columns are paired by name and must be equal value for value; a view
    needs them at evenly spaced positions of ``full`` (equal designs, a
    run of columns, every other column), otherwise None.
    """
    if sub.shape[0] != full.shape[0] or not sub.shape[1] or sub.dtype != full.dtype:
        return None
    if sub is full and list(map(str, sub_names)) == list(map(str, full_names)):
        return slice(0, full.shape[1])
    position = {str(name): j for j, name in enumerate(full_names)}
    cols = [position.get(str(name)) for name in sub_names]
    if len(cols) != sub.shape[1] or None in cols:
        return None
    step = cols[1] - cols[0] if len(cols) > 1 else 1
    if step < 1 or cols != list(range(cols[0], cols[0] + step * len(cols), step)):
        return None
    found = slice(cols[0], cols[-1] + 1, step)
    view = full[:, found]
    # equal values, not only names: the designs may come from different
    # data (arrays given by the user)
    if not all(np.array_equal(view[:, j], sub[:, j]) for j in range(sub.shape[1])):
        return None
    return found


def constant_column(n_rows: int) -> np.ndarray:
    """
    A read-only (n_rows, 1) column of ones that stores one value: a random
    intercept's design (``exog_re``) or a constant variance's (``exog_var``)
    without 8 bytes a row (80 MB at 10,000,000 rows).  Products and sums
    read it as any array; ``rows_array`` keeps it as it is.
    """
    return np.broadcast_to(np.ones((1, 1)), (n_rows, 1))


def rows_array(arr, order: str = "C") -> np.ndarray:
    """
    A float64 (n, k) array contiguous in ``order`` ("C": row by row, for
    row-wise products; "F": column by column, the engine's designs), except
    an array whose rows are all one row (``constant_column``, a zero row
    stride), which is kept as it is rather than expanded.
    """
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 2 and a.shape[0] > 1 and a.strides[0] == 0:
        return a
    return np.asfortranarray(a) if order == "F" else np.ascontiguousarray(a)


def time_values(time) -> tuple[np.ndarray, str | None]:
    """
    Each row's time as floats, for a correlation structure's ``time=``:
    numbers as given; dates (datetime64, or with a time zone their wall
    time; text in ISO 8601, as a CSV file's dates) as days since the
    earliest, and durations (timedelta64) as days,
    so that ``car1``'s phi is the correlation one day apart and dates at
    midnight are integer times for ``ar1``.  (As numbers, dates were
    nanoseconds since 1970: a CAR(1) phi of 1 - 1e-15 that rounded to 1,
    and a fit that did not converge.)  Returns the times and their unit
    ("days" for dates and durations, else None: the user's own).
    """
    values = np.asarray(time)
    if values.dtype.kind in "OUS" and values.size and \
            isinstance(values.ravel()[0], str):
        # text: numbers, else ISO 8601 dates (a CSV's date column)
        try:
            return np.asarray(values, dtype=np.float64), None
        except (TypeError, ValueError):
            try:
                values = pd.to_datetime(values.ravel().astype(str), format="ISO8601"
                                        ).to_numpy().reshape(values.shape)
            except (TypeError, ValueError):
                pass
    if values.dtype == object and values.size and \
            isinstance(values.ravel()[0], datetime.datetime):
        # dates with a time zone (an object array of Timestamps): their
        # wall time, so that visits at midnight stay whole days apart
        # across a change to or from daylight saving time
        stamps = pd.DatetimeIndex(pd.to_datetime(values.ravel()))
        if stamps.tz is not None:
            stamps = stamps.tz_localize(None)
        values = stamps.to_numpy().reshape(values.shape)
    day = np.timedelta64(1, "D")
    if np.issubdtype(values.dtype, np.datetime64):
        return (values - values.min()) / day, "days"
    if np.issubdtype(values.dtype, np.timedelta64):
        return values / day, "days"
    try:
        return np.asarray(values, dtype=np.float64), None
    except (TypeError, ValueError):
        raise ValueError("time must be numeric, dates or durations (each row's "
                         "time or occasion within its group)") from None


def check_not_empty(n_rows: int) -> None:
    """Raise an error for data without observations."""
    if n_rows == 0:
        raise ValueError(
            "The data have no observations (none given, or none left after "
            "dropping rows with missing values). Check the data, subset and "
            "missing arguments.")


def check_has_columns(mat: np.ndarray, what: str, hint: str) -> None:
    """Raise an error for a design matrix without columns."""
    if mat.shape[1] == 0:
        raise ValueError(f"{what} has no columns. {hint}")


def check_rows(n_given: int, n_rows: int, what: str) -> None:
    """Raise an error unless an input has one row per observation."""
    if n_given != n_rows:
        raise ValueError(
            f"{what} has {n_given} rows, but there are {n_rows} "
            "observations (rows of endog): give one row per observation.")


def check_groups(groups, n_rows: int, variance_components: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The group labels checked for length, missing values and at least two
    levels -- or one, with ``variance_components`` (MixedLM's idiom for
    crossed random effects: every effect a variance component of one group
    spanning the data).  Returns each row's group code and the sorted
    labels (``pd.factorize``: the one hash pass over the labels)."""
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != n_rows:
        raise ValueError("groups must be 1-dimensional with one label per row "
                         f"({n_rows} rows), not of shape {groups.shape}")
    if pd.isna(groups).any():
        raise ValueError(
            "groups has missing values; drop those rows or pass missing='drop'"
        )
    codes, labels = _sorted_codes(groups)
    if codes is None:
        codes, labels = pd.factorize(groups, sort=True)
    if len(labels) < 2 and not variance_components:
        raise ValueError(
            "groups has a single level: a mixed model needs at least two "
            "groups, or variance components (exog_vc / vc_formula: crossed "
            "random effects in one group). Use OLS/WLS for data without "
            "grouping or random effects."
        )
    return codes.astype(np.intp, copy=False), np.asarray(labels)


def _sorted_codes(groups: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``pd.factorize(groups, sort=True)`` for numeric labels that come
    sorted (rows ordered by group, as panel data usually are): the codes
    count the changes of label, with no hash pass (measured at 1,000,000
    rows: 6 ms against 20 ms); ``(None, None)`` for other labels."""
    if groups.dtype.kind not in "iuf" or groups.size < 2:
        return None, None
    if not np.all(groups[1:] >= groups[:-1]):
        return None, None
    first = np.empty(groups.size, bool)
    first[0] = True
    np.not_equal(groups[1:], groups[:-1], out=first[1:])
    codes = np.cumsum(first, dtype=np.intp)
    codes -= 1
    return codes, groups[first]


def param_vector(params, names: Sequence[str], k_fe: int, what: str = "params",
                 without_fe: bool = True) -> tuple[np.ndarray, bool]:
    """
    A parameter vector as a finite 1-d float array, checked against the
    model's layout.

    Parameters
    ----------
    params : array_like
        The vector.
    names : sequence of str
        The model's parameter names, fixed effects first.
    k_fe : int
        The number of fixed effects.
    what : str
        The argument's name, for messages.
    without_fe : bool
        Whether a vector without the fixed effects is accepted too.

    Returns
    -------
    params : ndarray
    has_fe : bool
        Whether the vector holds the fixed effects.
    """
    try:
        vec = np.asarray(params, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a vector of numbers, not "
                         f"{type(params).__name__}") from None
    names = list(names)
    k = len(names)
    if vec.ndim == 1 and vec.size == k:
        has_fe = True
    elif without_fe and vec.ndim == 1 and vec.size == k - k_fe:
        has_fe = False
    else:
        shape = f"length {vec.size}" if vec.ndim == 1 else f"shape {vec.shape}"
        expected = f"{k} values {names}"
        if without_fe:
            expected += f", or {k - k_fe} without the fixed effects {names[k_fe:]}"
        raise ValueError(
            f"{what} has {shape}, but this model's parameter vector has "
            f"{expected}. Build it from the model's parameter names "
            "(model.exog_names / a fit's params.index).")
    if not np.isfinite(vec).all():
        used = names if has_fe else names[k_fe:]
        bad = [used[j] for j in np.flatnonzero(~np.isfinite(vec))]
        raise ValueError(f"{what} has missing or infinite values for {bad}: "
                         "give finite values.")
    return vec, has_fe


def fit_options(fit_kwargs: dict, supported: Sequence[str], owner: str) -> dict:
    """
    The keyword arguments of a fit that it uses, with a ``FutureWarning``
    for the others, as statsmodels' ``MixedLM.fit`` treats them.
    """
    unused = sorted(set(fit_kwargs).difference(supported))
    if unused:
        ending = "s" if len(unused) > 1 else ""
        warnings.warn(
            f"Argument{ending} {', '.join(unused)} not used by {owner}. Future "
            f"versions will raise on these arguments; the supported ones are "
            f"{', '.join(supported)}.", FutureWarning, stacklevel=3)
    return {k: v for k, v in fit_kwargs.items() if k in supported}
