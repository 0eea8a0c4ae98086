"""
From formulas to the model's arrays: what ``HetMixedLM.from_formula`` does
before the constructor (one missing-value mask over every formula, the
variance, scale-effect and level-2 designs, the random effects' names).

Every design is built by the formula engine statsmodels is configured to
use (``statsmodels.formula.options.formula_engine``, or the environment
variable ``SM_FORMULA_ENGINE`` read when statsmodels is imported: patsy by
default when it is installed, else formulaic), the engine that builds the
mean design in statsmodels' own ``from_formula``.  With formulaic the
designs follow statsmodels' ``FormulaManager`` conventions (its "legacy"
column order, which matches patsy's).  The helpers below are the one place
that knows the two engines apart: ``design`` (a design and its
specification), ``design_spec`` (the specification of a design frame),
``build_rows`` (rows of a stored specification for new data),
``spec_names`` (the variables a specification reads) and
``FORMULA_ERRORS``.
"""

from __future__ import annotations

import keyword
import re
import warnings

import numpy as np
import pandas as pd
import patsy
from statsmodels.regression.mixed_linear_model import _handle_missing
from statsmodels.tools.sm_exceptions import ValueWarning

from ._validate import check_not_empty

__all__ = ["capture_eval_env", "level2_design", "model_arguments", "re_names",
           "formula_engine", "design", "design_spec", "build_rows", "spec_names",
           "FORMULA_ERRORS", "numeric_text_columns"]

try:  # optional in statsmodels 0.15, as patsy is
    import formulaic
    import formulaic.errors

    FORMULA_ERRORS: tuple = (patsy.PatsyError, formulaic.errors.FormulaicError)
except ImportError:  # pragma: no cover - formulaic not installed
    formulaic = None
    FORMULA_ERRORS = (patsy.PatsyError,)


def formula_engine() -> str:
    """The formula engine statsmodels is configured to use ("patsy" or
    "formulaic"; ``statsmodels.formula.options.formula_engine``)."""
    from statsmodels.formula._manager import FormulaManager

    return FormulaManager().engine


def design(formula: str, data: pd.DataFrame, eval_env: dict,
           engine: str | None = None) -> pd.DataFrame:
    """
    The design of a one-sided formula on ``data``, as a DataFrame with its
    engine's specification attached (``design_spec``); a missing value in
    it raises an error (the rows with missing values were dropped before).

    Parameters
    ----------
    formula : str
    data : pandas.DataFrame
    eval_env : dict
        Names the formula may use beside the data's columns.
    engine : {"patsy", "formulaic"}, optional
        Default: statsmodels' configured engine (``formula_engine``).
    """
    engine = engine or formula_engine()
    if engine == "patsy":
        return patsy.dmatrix(formula, data, eval_env=patsy.EvalEnvironment([eval_env]),
                             NA_action="raise", return_type="dataframe")
    from statsmodels.formula._manager import FormulaManager

    return FormulaManager("formulaic").get_matrices(
        formula, data, eval_env=eval_env, na_action="raise")


def design_spec(frame):
    """The specification (patsy ``DesignInfo`` or formulaic ``ModelSpec``)
    attached to a design frame, or None."""
    spec = getattr(frame, "design_info", None)
    if spec is None:
        spec = getattr(frame, "model_spec", None)
    return spec


def consolidated(frame):
    """
    A formula's design as one float64 block (the same frame when it is one
    already, as patsy's are).  formulaic's designs hold one block per
    column, of mixed dtypes, and every ``np.asarray`` of such a frame (the
    input checks, statsmodels' data handling, the engine's copies) copies
    and interleaves the columns again: at a million rows that costs more
    than building the design.  Frames that are not formula designs (no
    specification attached) are left alone, so that the input checks name
    a non-numeric column.
    """
    if not isinstance(frame, pd.DataFrame) or design_spec(frame) is None:
        return frame
    dtypes = set(frame.dtypes)
    if dtypes == {np.dtype(np.float64)} and frame._mgr.nblocks == 1:
        return frame
    # patsy's layout: one (k, n) C-ordered block, whose .values is an
    # F-ordered (n, k) view (reductions over the rows, as statsmodels'
    # constant check and the engine's centring do, run down contiguous
    # columns: several times faster than over a C-ordered array).
    values = frame.to_numpy(dtype=np.float64)
    if not values.flags.f_contiguous:
        values = np.asfortranarray(values)
    return pd.DataFrame(values, index=frame.index, columns=frame.columns, copy=False)


def build_rows(spec, frame: pd.DataFrame, na_action: str = "raise") -> pd.DataFrame:
    """
    The rows of the design ``spec`` for (new) data ``frame``, with the
    categories, codings and transforms' state learnt on the fitted data.

    Parameters
    ----------
    spec : patsy.DesignInfo or formulaic.ModelSpec
    frame : pandas.DataFrame
    na_action : {"raise", "drop"}
        "drop" leaves out the rows with missing values (the returned
        frame's index says which rows are kept).
    """
    if isinstance(spec, patsy.DesignInfo):
        (mat,) = patsy.build_design_matrices(
            [spec], frame, NA_action=na_action, return_type="dataframe")
        return mat
    return spec.get_model_matrix(frame, na_action=na_action, output="pandas")


def spec_names(spec) -> tuple[list[str], set[str]]:
    """
    The Python names a design's factors read (in order of appearance) and,
    among them, those its coding treats as categorical.
    """
    import ast

    names, categorical = [], set()
    if spec is None:
        return names, categorical
    if isinstance(spec, patsy.DesignInfo):
        factors = [(getattr(f, "code", None), info.type == "categorical")
                   for f, info in spec.factor_infos.items()]
    else:
        kinds = getattr(spec, "encoder_state", {})
        factors = [(str(f), f in getattr(spec, "factor_contrasts", {})
                    or kinds.get(str(f), (None,))[0] == "categorical")
                   for f in spec.factors]
    for code, is_categorical in factors:
        if code is None or code == "1":
            continue
        try:
            tree = ast.parse(code, mode="eval")
        except SyntaxError:
            continue
        used = [node.id for node in ast.walk(tree) if isinstance(node, ast.Name)]
        names += [n for n in used if n not in names]
        if is_categorical:
            categorical.update(used)
    return names, categorical


def numeric_text_columns(data: pd.DataFrame, formulas) -> list[tuple]:
    """
    Columns used in a formula that hold numbers except for some values (a
    stray "1,5" or "n/a"): pandas reads them as text, and the formula
    engine would make them categorical (one dummy per distinct value) --
    the fit then fails far from the cause, or silently fits a different
    model.  Returns (column, first text value, its index label) tuples.
    A column written ``C(name)`` is meant as categorical and not checked;
    an all-text column is categorical, not a broken numeric one.
    """
    text = " ".join(f for f in formulas if f)
    found = []
    for name in data.columns:
        column = data[name]
        # text columns: object dtype, or pandas' string dtype (pandas 3)
        if not (column.dtype == object or pd.api.types.is_string_dtype(column)) \
                or not isinstance(name, str):
            continue
        # used as a variable, and not explicitly as categorical: C(name ...)
        used = re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)
        if not used or re.search(rf"C\(\s*{re.escape(name)}\s*[,)]", text):
            continue
        values = column.dropna()
        bad = pd.to_numeric(values, errors="coerce").isna().to_numpy()
        # mostly numbers: more values read as numbers than not
        if 0 < bad.sum() < (~bad).sum():
            first = int(np.flatnonzero(bad)[0])
            found.append((name, values.iloc[first], values.index[first]))
    return found


def _warn_numeric_text(data, texts):
    for name, value, label in numeric_text_columns(data, texts):
        warnings.warn(
            f"column {name!r} holds numbers and some text, such as {value!r} "
            f"(row {label!r}): the formula treats it as categorical, one "
            f"dummy per distinct value. Convert it with "
            f"pd.to_numeric(data[{name!r}], errors='coerce') (text becomes "
            f"missing), or write C({name}) if it is categorical.",
            ValueWarning, stacklevel=4)


def model_arguments(formula, data, groups, eval_env, *, re_formula, vc_formula,
                    var_formula, subset, missing, var_by, var_re_formula,
                    re_var_formula, kwargs, var_power=None, var_const_power=None,
                    time=None, correlation_by=None):
    """
    The data, the groups argument for MixedLM.from_formula (a column name
    where one was given, so that MixedLM labels the random intercept with
    it) and the constructor's keyword arguments for the formulas.
    """
    kwargs = dict(kwargs)
    if not isinstance(formula, str) or not _has_response(formula):
        raise ValueError(
            f"formula {formula!r} has no response: give the dependent "
            "variable left of '~', e.g. 'y ~ x'.")
    if not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(data)
    if subset is not None:
        data = data.loc[subset]
    group_name = None
    if isinstance(groups, str):
        if groups not in data.columns:
            raise ValueError(f"groups column {groups!r} is not in data")
        group_name = groups
        groups = np.asarray(data[groups])
    else:
        groups = np.asarray(groups)
        if len(groups) != len(data):
            raise ValueError("groups must have one label per row of data")
    if var_by is not None:
        if var_formula is not None:
            raise ValueError("give either var_by or var_formula, not both")
        if var_by not in data.columns:
            raise ValueError(f"var_by column {var_by!r} is not in data")
        if data[var_by].nunique(dropna=True) < 2:
            raise ValueError(
                f"var_by column {var_by!r} has a single level: there is "
                "nothing to give separate variances to.")
        var_formula = f"~ 0 + C({var_by})"
        # additive variances by level, unless a power function multiplies
        # them: then log variances by level (the identity scale bends the
        # ridge along which the level variances and delta trade off: 20
        # times slower fits on BodyWeight)
        power = var_power is not None or var_const_power is not None
        kwargs.setdefault("var_link", "log" if power else "identity")

    power_columns = {}
    for key, column in (("var_power", var_power), ("var_const_power", var_const_power)):
        if column is None or column == "fitted":
            continue
        if not isinstance(column, str) or column not in data.columns:
            raise ValueError(
                f"{key}={column!r}: give the name of a numeric column of data "
                "(the covariate v of |v| ** delta) or 'fitted' (the fitted "
                "values).")
        power_columns[key] = column

    # One missing-value mask over every formula, var_formula included.
    formulas = {} if vc_formula is None else dict(vc_formula)
    for key, column in power_columns.items():
        formulas["\0" + key] = f"~ {column}"  # its name, for the mask
    if var_formula is not None:
        formulas["\0var"] = var_formula
    if var_re_formula is not None:
        formulas["\0var_re"] = var_re_formula
    if isinstance(re_var_formula, dict):
        for j, (key, f) in enumerate(re_var_formula.items()):
            if not isinstance(f, str):
                raise ValueError(f"re_var_formula[{key!r}] must be a formula "
                                 f"string such as '~ sector', not {f!r}")
            formulas[f"\0re_var{j}"] = f
    elif re_var_formula is not None:
        formulas["\0re_var"] = re_var_formula
    _warn_numeric_text(data, [formula, re_formula, *formulas.values()])
    kept, _ = _handle_missing(
        data, groups, formula, re_formula, formulas or None
    )
    # The residual correlation's columns (or arrays, one value per row).
    corr_cols = {}
    for key, col in (("time", time), ("correlation_by", correlation_by)):
        if col is None:
            continue
        if isinstance(col, str):
            if col not in data.columns:
                raise ValueError(f"{key} column {col!r} is not in data")
            corr_cols[key] = (col, np.asarray(data[col]))
        else:
            arr = np.asarray(col)
            if arr.shape != (len(data),):
                raise ValueError(f"{key} must be a column name of data or one "
                                 "value per row of data")
            corr_cols[key] = (None, arr)
    corr_na = np.zeros(len(data), bool)
    for _, arr in corr_cols.values():
        corr_na |= np.asarray(pd.isna(arr))
    # By position: with repeated index labels, selecting by label would
    # repeat rows.
    if len(kept) == len(data) and not corr_na.any():  # no missing value
        complete = None
    else:
        complete = np.asarray(pd.notna(data[kept.columns]).all(axis=1)) & \
            np.asarray(pd.notna(groups)) & ~corr_na
    if complete is not None:
        if missing == "drop":
            data, groups = data.loc[complete], groups[complete]
            corr_cols = {k: (c, a[complete]) for k, (c, a) in corr_cols.items()}
        else:
            cols = [c for c in kept.columns if data[c].isna().any()]
            cols += [c or k for k, (c, a) in corr_cols.items()
                     if np.any(pd.isna(a))]
            if pd.isna(groups).any():
                cols.append(group_name or "groups")
            raise ValueError(
                f"Missing values in {cols} ({int((~complete).sum())} rows). "
                "Drop those rows or pass missing='drop'."
            )
    check_not_empty(len(data))
    kwargs["missing"] = "none"
    for key, value in (("var_power", var_power), ("var_const_power", var_const_power)):
        if value is not None:
            kwargs[key] = data[power_columns[key]] if key in power_columns else value
    env = eval_env
    # One engine for every design of the model, the one statsmodels'
    # from_formula uses for the mean design.
    engine = kwargs["_formula_engine"] = formula_engine()

    if var_formula is not None and same_terms(formula, var_formula):
        # the mean design's own columns (y ~ z*x, var_formula="~ z*x"):
        # the model takes them from the mean design that from_formula
        # builds next, instead of a second build of the same design
        kwargs["exog_var"] = SAME_AS_EXOG
    elif var_formula is not None:
        try:
            kwargs["exog_var"] = design(var_formula, data, env, engine)
        except (*FORMULA_ERRORS, ValueError) as exc:
            # patsy: "missing values"; formulaic: "contains null values"
            if not ("missing values" in str(exc) or "null values" in str(exc)):
                raise
            raise ValueError(
                f"var_formula {var_formula!r} gives missing values (for "
                "example the log of a non-positive number). Drop or fix "
                "those rows before fitting.") from exc
    if var_re_formula is not None:
        exog_var_re = design(var_re_formula, data, env, engine)
        exog_var_re.columns = [
            (group_name or "Group") if c == "Intercept" else c
            for c in exog_var_re.columns]
        kwargs["exog_var_re"] = exog_var_re
    if re_var_formula is not None:
        kwargs["exog_re_var"], kwargs["re_var_terms"] = level2_design(
            re_var_formula, data, env, engine)
    kwargs["exog_re_names"], re_design_info = re_names(
        re_formula, vc_formula, data, env, group_name or "Group", engine)
    if re_design_info is not None:
        # For predictions on new data (HetMixedLMResults.get_prediction).
        kwargs["_re_formula"] = re_formula
        kwargs["_re_design_info"] = re_design_info
    kwargs["_group_name"] = group_name
    for key, (col, arr) in corr_cols.items():
        kwargs[key] = arr
        kwargs[f"_{key}_name"] = col
    kwargs.update(var_formula=var_formula, var_by=var_by,
                  var_re_formula=var_re_formula, re_var_formula=re_var_formula)
    return data, (group_name if group_name is not None else groups), kwargs


#: ``exog_var`` of a model whose variance formula is its mean formula's
#: right-hand side (``same_terms``): the variance design is the mean design.
SAME_AS_EXOG = "same as exog"


def same_terms(formula: str, var_formula: str) -> bool:
    """Whether a one-sided variance formula is, up to white space, the
    right-hand side of the mean formula (a response name before '~')."""
    _, tilde, rhs = formula.partition("~")
    _, var_tilde, var_rhs = var_formula.partition("~")
    return bool(tilde and var_tilde and not var_formula.partition("~")[0].strip()
                and "".join(rhs.split()) == "".join(var_rhs.split()))


def _has_response(formula: str) -> bool:
    """Whether a formula has a response (patsy's left-hand side).  A name
    before the first '~' is one; anything else is left to patsy's parser,
    which costs as much as the rest of the input checks."""
    lhs, tilde, _ = formula.partition("~")
    name = lhs.strip()
    if tilde and name.isidentifier() and not keyword.iskeyword(name):
        return True
    return bool(patsy.ModelDesc.from_formula(formula).lhs_termlist)


def level2_design(re_var_formula, data, eval_env, engine=None):
    """
    The level-2 design of ``re_var_formula``: one formula, or a dict of
    formulas by level-2 function, whose designs are joined (each column
    once, in order of appearance).  Returns the design and, for a dict, the
    columns of each function.
    """
    if isinstance(re_var_formula, dict):
        formulas = dict(re_var_formula) or {None: "~ 1"}  # {}: all constant
    else:
        formulas = {None: re_var_formula}
    parts, columns = [], {}
    for key, formula in formulas.items():
        part = design(formula, data, eval_env, engine)
        if key is not None and (part.shape[1] == 0 or part.columns[0] != "Intercept"):
            raise ValueError(
                f"re_var_formula[{key!r}] = {formula!r} needs an intercept: each "
                "level-2 function is an intercept plus the formula's terms.")
        parts.append(part)
        if key is not None:
            columns[key] = list(part.columns)
    joined = pd.concat(parts, axis=1)
    for name in joined.columns[joined.columns.duplicated()].unique():
        same = joined.loc[:, joined.columns == name].to_numpy()
        if not np.allclose(same, same[:, :1]):
            raise ValueError(f"Two formulas of re_var_formula give different "
                             f"columns named {name!r}; rename one variable.")
    joined = joined.loc[:, ~joined.columns.duplicated()]
    return joined, (columns if isinstance(re_var_formula, dict) else None)


def re_names(re_formula, vc_formula, data, eval_env, group_name, engine=None):
    """The names MixedLM.from_formula gives the random effects of
    ``re_formula`` (the intercept named after the groups), and the patsy
    design information of ``re_formula`` (None for a random intercept),
    from one evaluation of the formula."""
    if re_formula is None:
        return ([group_name] if vc_formula is None else []), None
    if re_formula.strip() == "1":
        return [group_name], None
    mat = design(re_formula, data, eval_env, engine)
    names = [str(c).replace("Intercept", group_name) for c in mat.columns]
    return names, design_spec(mat)


def capture_eval_env(eval_env):
    """
    The namespace for the formulas, as a dict (statsmodels' preferred form),
    captured relative to the user's call of from_formula.
    """
    if isinstance(eval_env, dict):
        return eval_env
    if isinstance(eval_env, patsy.EvalEnvironment):
        namespaces = eval_env._namespaces
    elif eval_env == -1:
        return {}
    else:
        depth = 0 if eval_env is None else int(eval_env)
        # +2: this helper and from_formula sit between the caller and here.
        namespaces = patsy.EvalEnvironment.capture(depth + 2)._namespaces
    merged = {}
    for ns in reversed(namespaces):  # earlier namespaces take precedence
        merged.update(ns)
    return merged
