"""
HetMixedLM: statsmodels' MixedLM with a residual variance function.

    y_ij = x_ij' beta + z_ij' u_i + e_ij,   u_i ~ N(0, G),
    e_ij ~ N(0, sigma2_ij),                  log sigma2_ij = w_ij' a.

With no variance design (``exog_var`` / ``var_formula``), W is a column of
ones and the model is MixedLM's.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import patsy
from scipy import optimize
from statsmodels.base import model as base
from statsmodels.regression.mixed_linear_model import (
    MixedLM,
    MixedLMParams,
    VCSpec,
    _convert_vc,
    _handle_missing,
)
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from . import _engine, _hessian
from .params import ParamLayout
from .variance import make_variance_function

__all__ = ["HetMixedLM"]

# Convergence: the Newton decrement g' (-H)^-1 g bounds twice the possible
# further gain in log-likelihood.  Below this the fit is converged.
_NEWTON_DECREMENT_TOL = 1e-10
_MAX_NEWTON_STEPS = 20


def _column_names(arr, prefix):
    if isinstance(arr, pd.DataFrame):
        return [str(c) for c in arr.columns]
    if isinstance(arr, pd.Series):
        return [str(arr.name) if arr.name is not None else f"{prefix}1"]
    a = np.asarray(arr)
    k = 1 if a.ndim == 1 else a.shape[1]
    return [f"{prefix}{j + 1}" for j in range(k)]


def _check_numeric(arr, what):
    """Raise an error naming the non-numeric columns of an input."""
    if arr is None:
        return
    frame = pd.DataFrame(arr) if not isinstance(arr, pd.DataFrame) else arr
    bad = []
    for name, col in frame.items():
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        try:
            np.asarray(col, dtype=np.float64)
        except (TypeError, ValueError):
            bad.append(str(name))
    if bad:
        raise ValueError(
            f"{what} has non-numeric column(s) {bad}. Encode categorical "
            "variables as dummy columns (the formula interface does this "
            "with C(...))."
        )


def _var_column_names(exog_var):
    """Names of the variance design's columns; for arrays, statsmodels'
    convention for exog ("const" for a constant column, else w1, w2, ...)."""
    if isinstance(exog_var, (pd.DataFrame, pd.Series)):
        return _column_names(exog_var, "w")
    a = np.asarray(exog_var)
    a = a[:, None] if a.ndim == 1 else a
    names, k = [], 0
    for j in range(a.shape[1]):
        col = a[:, j]
        if np.issubdtype(col.dtype, np.number) and len(col) and np.all(col == col[0]) \
                and col[0] != 0 and "const" not in names:
            names.append("const")
        else:
            k += 1
            names.append(f"w{k}")
    return names


def _as_float_matrix(arr, what, names):
    """2-d float array, with an error that names columns with bad values."""
    a = np.asarray(arr)
    if a.ndim == 1:
        a = a[:, None]
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        bad = [names[j] if j < len(names) else str(j)
               for j in np.flatnonzero(~finite.all(axis=0))]
        raise ValueError(
            f"{what} has missing or infinite values in column(s) {bad} "
            f"({int((~finite).any(axis=1).sum())} rows). Drop those rows, or "
            "pass missing='drop'."
        )
    return a


def _check_full_rank(mat, what, names, hint):
    if mat.shape[1] == 0:
        return
    rank = np.linalg.matrix_rank(mat)
    if rank < mat.shape[1]:
        # Name the columns that are linear combinations of earlier ones.
        redundant, kept = [], []
        for j in range(mat.shape[1]):
            if np.linalg.matrix_rank(mat[:, kept + [j]]) == len(kept) + 1:
                kept.append(j)
            else:
                redundant.append(names[j])
        raise ValueError(
            f"{what} is singular (rank {rank} < {mat.shape[1]} columns): "
            f"{redundant} are linear combinations of the other columns. {hint}"
        )


def _level2_design(re_var_formula, data, eval_env):
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
        part = patsy.dmatrix(formula, data, eval_env=eval_env, NA_action="raise",
                             return_type="dataframe")
        if key is not None and (part.shape[1] == 0 or part.columns[0] != "Intercept"):
            raise ValueError(
                f"re_var_formula[{key!r}] = {formula!r} needs an intercept: each "
                "level-2 function is an intercept plus the formula's terms.")
        parts.append(part)
        if key is not None:
            columns[key] = list(part.columns)
    design = pd.concat(parts, axis=1)
    for name in design.columns[design.columns.duplicated()].unique():
        same = design.loc[:, design.columns == name].to_numpy()
        if not np.allclose(same, same[:, :1]):
            raise ValueError(f"Two formulas of re_var_formula give different "
                             f"columns named {name!r}; rename one variable.")
    design = design.loc[:, ~design.columns.duplicated()]
    return design, (columns if isinstance(re_var_formula, dict) else None)


class HetMixedLM(MixedLM):
    __doc__ = """
    Linear mixed model with a log-linear residual variance function.

    The mean and random-effects structure are those of
    :class:`statsmodels.regression.mixed_linear_model.MixedLM`; in addition
    the residual variance of observation j in group i is
    ``sigma2_ij = exp(w_ij' a)``, with ``w_ij`` the rows of ``exog_var``.

    Parameters
    ----------
    endog : 1d array_like
        The dependent variable.
    exog : 2d array_like
        Fixed-effects design (include a constant column for an intercept).
    groups : 1d array_like
        Group labels; observations in different groups are independent.
    exog_re : 2d array_like, optional
        Random-effects design.  Defaults to a random intercept (unless only
        variance components are given), as in MixedLM.
    exog_vc : VCSpec, optional
        Variance components, as in MixedLM.
    exog_var : 2d array_like, optional
        Residual variance design W (include a constant column).  Defaults to
        a single constant column named ``Intercept``: the model is then
        MixedLM's.
    exog_var_re : 2d array_like, optional
        Design of random effects in the log residual variance (one or two
        columns): ``log sigma2_ij = w_ij' a + v_ij' omega_i``, with
        ``(u_i, omega_i)`` jointly normal (a mixed-effects location-scale
        model, fitted by ML with adaptive Gauss-Hermite quadrature).
    exog_re_var : 2d array_like, optional
        Location-scale models: group-level design S of level-2 variance
        functions (constant within groups, first column a constant): the log
        variance of each random effect and the atanh of each correlation
        are linear in S.
    var_link : {"log", "identity"}
        ``"log"`` (default): ``log sigma2_ij = w_ij' a``.  ``"identity"``:
        ``sigma2_ij = w_ij' theta`` with ``theta >= 0`` on non-negative
        columns (additive variances, the parameterisation of Stata's
        dummy-variance-level models; one variance per level with
        ``"~ 0 + C(g)"``).
    use_sqrt : bool
        Accepted for compatibility with MixedLM; the optimisation always
        uses a Cholesky factor of the random-effects covariance.
    missing : {"none", "drop", "raise"}
        Missing-value handling.  With "none" or "raise", missing values give
        an error that names the columns.

    See Also
    --------
    HetMixedLM.from_formula, statsmodels_hetmixed.formula.api.hetmixedlm

    Notes
    -----
    The log-likelihood is evaluated with per-group cross products of the
    rows weighted by 1 / sigma2_ij and q x q algebra broadcast over groups
    (q = number of random effects), with analytic gradients.  ``params``
    holds, in order: fixed effects, the lower triangle of ``cov_re``, the
    variance-component variances and the variance-function coefficients
    (named ``var:<column>``).  Unlike ``MixedLMResults.params``, variances
    are on their natural scale, not divided by a residual scale.

    Examples
    --------
    >>> import statsmodels_hetmixed.formula.api as hmf
    >>> from statsmodels_hetmixed.datasets import hsb
    >>> data = hsb.load_pandas().data
    >>> model = hmf.hetmixedlm("mathach ~ female", data, groups="school",
    ...                        var_formula="~ female")
    >>> result = model.fit(reml=False)
    >>> print(result.summary())
    """

    def __init__(
        self,
        endog,
        exog,
        groups,
        exog_re=None,
        exog_vc=None,
        exog_var=None,
        use_sqrt=True,
        missing="none",
        var_link="log",
        exog_var_re=None,
        exog_re_var=None,
        **kwargs,
    ):
        allowed = ["missing_idx", "model_spec", "formula"]
        for key in kwargs:
            if key not in allowed:
                raise ValueError(
                    f"argument {key} not permitted for HetMixedLM initialization"
                )
        if exog is None:
            raise ValueError(
                "exog is required; for an intercept-only mean use a column of ones"
            )
        if missing not in ("none", "drop", "raise"):
            raise ValueError("missing must be 'none', 'drop' or 'raise'")
        self.use_sqrt = use_sqrt
        self.reml = True
        self.fe_pen = None
        self.re_pen = None
        self.cov_pen = None
        self._freepat = None

        if isinstance(exog_vc, dict):
            warnings.warn(
                "Using deprecated variance components format",
                FutureWarning,
                stacklevel=2,
            )
            exog_vc = _convert_vc(exog_vc)
        self.exog_vc = exog_vc if exog_vc is not None else VCSpec([], [], [])
        self.k_vc = len(self.exog_vc.names)

        var_names = (
            ["Intercept"] if exog_var is None else _var_column_names(exog_var)
        )
        re_given = exog_re is not None
        extra = {"groups": groups, "exog_re": exog_re}
        if exog_var is not None:
            extra["exog_var"] = exog_var
        var_re_names = None
        if exog_var_re is not None:
            var_re_names = ["var:" + v for v in _column_names(exog_var_re, "v")]
            extra["exog_var_re"] = exog_var_re
        re_var_names = None
        if exog_re_var is not None:
            re_var_names = _column_names(exog_re_var, "s")
            extra["exog_re_var"] = exog_re_var
        for name in ("exog", "exog_re", "exog_var", "exog_var_re", "exog_re_var"):
            arr = exog if name == "exog" else extra.get(name)
            if isinstance(arr, np.ndarray) and arr.ndim == 1:
                if name == "exog":
                    exog = arr[:, None]
                else:
                    extra[name] = arr[:, None]
        for what, arr in (("endog", endog), ("exog", exog),
                          ("exog_re", extra["exog_re"]),
                          ("exog_var", extra.get("exog_var")),
                          ("exog_var_re", extra.get("exog_var_re")),
                          ("exog_re_var", extra.get("exog_re_var"))):
            _check_numeric(arr, what)
        base.LikelihoodModel.__init__(
            self, endog, exog, missing=missing, **extra, **kwargs
        )
        self._init_keys.extend(["use_sqrt", "exog_vc", "var_link"])

        # Validate and convert the data.
        self.endog = _as_float_matrix(self.endog, "endog", [self.endog_names])[:, 0]
        self.exog = _as_float_matrix(self.exog, "exog", self.exog_names or [])
        if self.exog_names is None:
            self.exog_names = [f"FE{k + 1:d}" for k in range(self.exog.shape[1])]
        self.k_fe = self.exog.shape[1]
        n = len(self.endog)
        if exog_var is None:
            self.exog_var = np.ones((n, 1))
        else:
            self.exog_var = _as_float_matrix(self.exog_var, "exog_var", var_names)
        if self.exog_var.shape[0] != n:
            raise ValueError("exog_var must have one row per observation")
        self.data.exog_var_names = var_names

        if re_given:
            self.exog_re = _as_float_matrix(
                self.exog_re, "exog_re", _column_names(exog_re, "Z")
            )
            self.data.exog_re = self.exog_re
            self.k_re = self.exog_re.shape[1]
            self.k_re2 = self.k_re * (self.k_re + 1) // 2
        elif self.k_vc == 0:
            self.k_re = 1
            self.k_re2 = 1
            self.exog_re = np.ones((n, 1))
            self.data.exog_re = self.exog_re
            exog_re = ["Group"]  # MixedLM's name for a default random intercept
        else:
            self.k_re = 0
            self.k_re2 = 0
            self.exog_re = None

        self._set_groups(self.groups)
        self._set_scale_effects(var_re_names)
        self._set_level2_design(re_var_names)
        self.variance_function = make_variance_function(
            var_link, self.exog_var, var_names)
        self.var_link = var_link
        self.k_var = self.variance_function.k_var
        exog_z, vc_slots = self._build_exog_z()
        self.layout = ParamLayout(self.k_fe, self.k_re, self.k_vc, self.k_var,
                                  vc_slots, self.variance_function.square_root)
        self._grouped = _engine.GroupedData.build(
            self.endog, self.exog, exog_z, self._group_index, self.n_groups
        )

        if not self.data._param_names:
            names, re_names, re_names_full = self._make_param_names(exog_re)
            self.data.param_names = names
            self.data.exog_re_names = re_names
            self.data.exog_re_names_full = re_names_full
        self._set_k_params()
        self.nobs = n
        self.n_totobs = n

        _check_full_rank(self.exog, "The fixed-effects design (exog)",
                         self.exog_names,
                         "Remove or recode those terms of the mean formula.")
        _check_full_rank(self.exog_var, "The variance design (exog_var)",
                         var_names,
                         "Remove those terms from var_formula / exog_var.")
        if self.k_re + self.k_vc > 0 and self._group_sizes.max() < 2:
            raise ValueError(
                "Every group has a single observation, so the random effects "
                "cannot be told apart from the residual variance. Check the "
                "groups variable."
            )

    # ------------------------------------------------------------------
    # Construction helpers
    def _set_scale_effects(self, names):
        """Validate the random scale-effects design (location-scale models)."""
        if names is None:
            self.exog_var_re = None
            self.k_var_re = 0
            self.var_re_names = []
            return
        v = _as_float_matrix(self.exog_var_re, "exog_var_re",
                             [n[len("var:"):] for n in names])
        if v.shape[1] not in (1, 2):
            raise ValueError("Random scale effects (exog_var_re / var_re_formula) "
                             f"need one or two columns, not {v.shape[1]}.")
        if self.k_vc:
            raise NotImplementedError(
                "Random scale effects together with variance components are "
                "not available; use re_formula for the mean's random effects.")
        gi, m = self._group_index, self.n_groups
        sizes = np.maximum(self._group_sizes, 1)
        constant = []
        for j in range(v.shape[1]):
            mean_j = np.bincount(gi, weights=v[:, j], minlength=m) / sizes
            spread = np.abs(v[:, j] - mean_j[gi]).max()
            constant.append(spread <= 1e-12 * max(1.0, np.abs(v[:, j]).max()))
        if v.shape[1] == 2 and all(constant):
            raise ValueError(
                f"The random scale effects {names} do not vary within groups: "
                "a random scale slope on a group-level variable cannot be told "
                "apart from the random scale intercept. Use the variable in "
                "var_formula (fixed) instead.")
        self.exog_var_re = v
        self.k_var_re = v.shape[1]
        self.var_re_names = list(names)

    def _set_level2_design(self, names):
        """Validate the level-2 variance-function design (group level)."""
        self._re_var_terms = None  # every level-2 function uses every column
        if names is None:
            self.exog_re_var = None
            self.re_var_names = []
            self._re_var_group_design = None
            return
        if not self.k_var_re:
            raise ValueError(
                "Level-2 variance functions (re_var_formula / exog_re_var) are "
                "available for location-scale models: give var_re_formula too.")
        s = _as_float_matrix(self.exog_re_var, "exog_re_var", names)
        gi, m = self._group_index, self.n_groups
        first = np.zeros(m, dtype=np.intp)
        first[gi[::-1]] = np.arange(len(gi))[::-1]  # first row of each group
        group_rows = s[first]
        varying = [names[j] for j in range(s.shape[1])
                   if np.abs(s[:, j] - group_rows[gi, j]).max() > 1e-12 * max(
                       1.0, np.abs(s[:, j]).max())]
        if varying:
            raise ValueError(
                f"The level-2 variance formula uses {varying}, which vary within "
                "groups: a group's random-effect variances can only depend on "
                "group-level variables (e.g. school means).")
        if not np.allclose(s[:, 0], 1.0):
            raise ValueError("The level-2 variance design needs an intercept "
                             "as its first column.")
        _check_full_rank(group_rows, "The level-2 variance design", names,
                         "Remove those terms from re_var_formula.")
        self.exog_re_var = s
        self.re_var_names = list(names)
        self._re_var_group_design = group_rows

    def _set_k_params(self):
        self.k_params = self.layout.k_params
        if self.k_var_re:
            d = self.k_re + self.k_var_re
            k_s = len(self.re_var_names)
            if not k_s:
                n_cov = d * (d + 1) // 2
            elif self._re_var_terms is None:
                n_cov = (d + d * (d - 1) // 2) * k_s
            else:
                n_cov = int(self._re_var_terms.sum())
            self.k_params = self.k_fe + n_cov + self.k_var

    def _level2_components(self, re_names):
        """
        The level-2 functions in the layout's order (variances of the
        scale effects, then of the mean's, then the correlations): for
        each, the random effects it concerns (one, or two in the order of
        ``re_table``, mean effects first).
        """
        effects = list(self.var_re_names) + list(re_names)  # layout order
        shown = list(re_names) + list(self.var_re_names)
        pairs = [tuple(sorted((effects[j], effects[k]), key=shown.index))
                 for k in range(len(effects)) for j in range(k)]
        return [(e,) for e in effects] + pairs

    @staticmethod
    def _level2_key(component):
        """A level-2 function's key in a ``re_var_formula`` dict."""
        if len(component) == 1:
            return component[0]
        return "corr({}, {})".format(*component)

    def _set_level2_terms(self, columns):
        """
        Restrict level-2 functions to some columns of the level-2 design:
        ``columns`` maps ``re_var_formula`` dict keys to the names of the
        columns of that function (intercept first); the other functions
        keep only the intercept.  Coefficients of other columns are held
        at zero and are not parameters of the model.

        Keys: a random effect's name as in ``cov_re_joint`` (or
        ``"SD(<name>)"`` as in ``re_table``) for its variance;
        ``"corr(<a>, <b>)"`` or a tuple ``(a, b)``, in either order, for a
        correlation.
        """
        re_names = list(self.data.exog_re_names)
        shown = re_names + list(self.var_re_names)  # as in cov_re_joint
        components = self._level2_components(re_names)
        accepted = {}
        for c, comp in enumerate(components):
            if len(comp) == 1:
                names = [comp[0], f"SD({comp[0]})"]
            else:
                names = [f"corr({a}, {b})" for a, b in (comp, comp[::-1])]
                accepted[comp] = accepted[comp[::-1]] = c
            accepted.update({"".join(n.split()): c for n in names})
        mask = np.zeros((len(components), len(self.re_var_names)), bool)
        mask[:, 0] = True  # every function has an intercept
        given, unknown = {}, []
        for key, cols in columns.items():
            c = accepted.get("".join(key.split()) if isinstance(key, str) else key)
            if c is None:
                unknown.append(key)
            elif c in given:
                raise ValueError(
                    f"re_var_formula keys {given[c]!r} and {key!r} name the same "
                    f"level-2 function ({self._level2_key(components[c])}).")
            else:
                given[c] = key
                mask[c] = np.isin(self.re_var_names, cols)
        if unknown:
            d = len(shown)
            corrs = [repr(self._level2_key(comp)) for comp in components[d:]]
            raise ValueError(
                f"re_var_formula has unknown key(s) {unknown}. The keys are the "
                f"random effects, for their variances ({', '.join(map(repr, shown))}"
                f"), and their correlations ({', '.join(corrs)}; a tuple of two "
                "effect names also works).")
        self._re_var_terms = mask
        self.data.param_names = self._make_param_names(re_names)[0]
        self._set_k_params()

    def _set_groups(self, groups):
        groups = np.asarray(groups)
        if groups.ndim != 1 or len(groups) != len(self.endog):
            raise ValueError("groups must be 1-dimensional with one label per row")
        if pd.isna(groups).any():
            raise ValueError(
                "groups has missing values; drop those rows or pass missing='drop'"
            )
        codes, labels = pd.factorize(groups, sort=True)
        if len(labels) < 2:
            raise ValueError(
                "groups has a single level: a mixed model needs at least two "
                "groups. Use OLS/WLS for data without grouping."
            )
        self._group_index = codes.astype(np.intp)
        self.group_labels = list(np.asarray(labels).tolist())
        self.n_groups = len(self.group_labels)
        self._group_sizes = np.bincount(codes, minlength=self.n_groups)
        order = np.argsort(codes, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(self._group_sizes)])
        self.row_indices = {
            lab: order[bounds[i]:bounds[i + 1]]
            for i, lab in enumerate(self.group_labels)
        }

    def _build_exog_z(self):
        """Random-effects design with variance components padded per group."""
        n = len(self.endog)
        parts = [self.exog_re] if self.k_re > 0 else []
        slots, offset = [], self.k_re
        for k in range(self.k_vc):
            mats = self.exog_vc.mats[k]
            width = max((m.shape[1] for m in mats), default=0)
            block = np.zeros((n, width))
            for i, lab in enumerate(self.group_labels):
                mat = mats[i]
                mat = mat.toarray() if hasattr(mat, "toarray") else np.asarray(mat)
                block[self.row_indices[lab], : mat.shape[1]] = mat
            if not np.isfinite(block).all():
                raise ValueError(
                    f"variance component {self.exog_vc.names[k]!r} has missing "
                    "or infinite values"
                )
            parts.append(block)
            slots.append(np.arange(offset, offset + width))
            offset += width
        exog_z = np.hstack(parts) if parts else np.zeros((n, 0))
        return exog_z, slots

    def __getstate__(self):
        # patsy design information cannot be pickled; rebuild it from the
        # data on unpickling, as statsmodels does for its own formulas.
        state = self.__dict__.copy()
        state["_var_design_info"] = None
        state["_var_re_design_info"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        frame = getattr(self.data, "frame", None)
        for formula_key, info_key in (("var_formula", "_var_design_info"),
                                      ("var_re_formula", "_var_re_design_info")):
            formula = state.get(formula_key)
            if formula is None or frame is None:
                continue
            try:
                setattr(self, info_key, patsy.dmatrix(
                    formula, frame, eval_env=patsy.EvalEnvironment([{"np": np}]),
                    return_type="dataframe").design_info)
            except (patsy.PatsyError, NameError):
                pass  # using it on new data will say it cannot

    def fit_regularized(self, *args, **kwargs):
        """Not available: HetMixedLM has no penalised estimation."""
        raise NotImplementedError(
            "fit_regularized is not available for HetMixedLM; use statsmodels' "
            "MixedLM.fit_regularized (homoskedastic residuals) instead.")

    def _make_param_names(self, exog_re):
        names, re_names, re_names_full = super()._make_param_names(exog_re)
        if getattr(self, "re_var_names", None):
            # Level-2 variance functions: coefficients of each effect's log
            # variance and each correlation's atanh (scale effects first),
            # on the columns each function uses.
            terms = self._re_var_terms
            names = names[:self.k_fe]
            for c, comp in enumerate(self._level2_components(re_names)):
                stem = (f"logvar({comp[0]})" if len(comp) == 1
                        else f"atanh {self._level2_key(comp)}")
                names += [f"{stem}:{col}" for j, col in enumerate(self.re_var_names)
                          if terms is None or terms[c, j]]
        elif getattr(self, "k_var_re", 0):
            # Location-scale: the (co)variances of the joint random effects,
            # the mean's first, then the scale effects.
            joint, _, _ = super()._make_param_names(list(re_names) + self.var_re_names)
            names = joint
        names = names + self._var_param_names()
        return names, re_names, re_names_full

    def _var_param_names(self):
        from .params import VAR_PREFIX

        return [VAR_PREFIX + v for v in self.data.exog_var_names]

    # MixedLM keeps per-group copies of the data; its own methods (and
    # user code written for MixedLM) may read them, so build them on demand.
    @functools.cached_property
    def endog_li(self):
        return self.group_list(self.endog)

    @functools.cached_property
    def exog_li(self):
        return self.group_list(self.exog)

    @functools.cached_property
    def exog_re_li(self):
        return None if self.exog_re is None else self.group_list(self.exog_re)

    @functools.cached_property
    def exog_re2_li(self):
        if self.exog_re_li is None:
            return None
        return [x.T @ x for x in self.exog_re_li]

    @functools.cached_property
    def _aex_r(self):
        return [self._augment_exog(i) for i in range(self.n_groups)]

    @functools.cached_property
    def _aex_r2(self):
        return [a.T @ a for a in self._aex_r]

    @functools.cached_property
    def _lin_quad(self):
        return self._reparam()

    @property
    def _lin(self):
        return self._lin_quad[0]

    @property
    def _quad(self):
        return self._lin_quad[1]

    # ------------------------------------------------------------------
    @classmethod
    def from_formula(
        cls,
        formula,
        data,
        re_formula=None,
        vc_formula=None,
        var_formula=None,
        subset=None,
        use_sparse=False,
        missing="none",
        *args,
        var_by=None,
        var_re_formula=None,
        re_var_formula=None,
        **kwargs,
    ):
        """
        Create a HetMixedLM from formulas and a DataFrame.

        Parameters
        ----------
        formula : str
            Mean formula, e.g. ``"mathach ~ female + ses"``.
        data : pandas.DataFrame
            The data.
        re_formula : str, optional
            One-sided formula for the random effects (default: random
            intercept), as in ``MixedLM.from_formula``.
        vc_formula : dict, optional
            Variance-component formulas, as in ``MixedLM.from_formula``.
        var_formula : str, optional
            One-sided formula for the residual variance function, e.g.
            ``"~ female + ses"`` (log link: for log sigma2).  Default: a
            constant variance.
        var_by : str, optional
            Name of a categorical column: one residual variance per level
            (Stata's ``residuals(independent, by(g))``, nlme's ``varIdent``),
            i.e. ``var_formula="~ 0 + C(var_by)"`` with ``var_link="identity"``
            unless ``var_link`` is given.  Excludes ``var_formula``.
        var_link : {"log", "identity"}
            Keyword: the link of the variance function (see HetMixedLM).
        var_re_formula : str, optional
            Keyword: random effects in the log residual variance, e.g.
            ``"~ 1"`` (a random scale intercept) or ``"~ cses"`` (intercept
            and slope): a location-scale model, fitted by ML with adaptive
            quadrature (see ``fit``).
        re_var_formula : str or dict, optional
            Keyword, location-scale models: level-2 variance functions, e.g.
            ``"~ sector"``: the log variance of every random effect and the
            atanh of every correlation are linear in these group-level
            variables.  A dict gives functions one by one, e.g.
            ``{"var:school": "~ sector"}``: only the variance of the scale
            effect ``var:school`` depends on ``sector``, the other variances
            and correlations are constant.  Keys: a random effect's name as
            in ``cov_re_joint`` (its variance) or ``"corr(a, b)"`` (a
            correlation; also a tuple ``(a, b)``); every formula needs the
            intercept.
        subset : array_like, optional
            Rows of ``data`` to use (boolean mask or index labels).
        use_sparse : bool
            Passed on to the variance-component design, as in MixedLM.
        missing : {"none", "drop", "raise"}
            "drop" removes rows with a missing value in any variable used by
            any formula or in ``groups``; "none" and "raise" give an error
            naming the columns with missing values.
        groups : str or array_like
            Keyword, required: the grouping variable (a column name or one
            label per row).
        **kwargs
            Passed on to the model; ``eval_env`` as in statsmodels.

        Returns
        -------
        HetMixedLM
        """
        if "groups" not in kwargs:
            raise TypeError("'groups' is a required keyword argument of from_formula")
        if not isinstance(data, pd.DataFrame):
            data = pd.DataFrame(data)
        if subset is not None:
            data = data.loc[subset]
        groups = kwargs.pop("groups")
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
        eval_env = _capture_eval_env(kwargs.pop("eval_env", None))
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
            kwargs.setdefault("var_link", "identity")

        # One missing-value mask over every formula, var_formula included.
        formulas = {} if vc_formula is None else dict(vc_formula)
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
        kept, kept_groups = _handle_missing(
            data, groups, formula, re_formula, formulas or None
        )
        if len(kept) < len(data):
            if missing == "drop":
                data, groups = data.loc[kept.index], kept_groups
            else:
                cols = [c for c in kept.columns if data[c].isna().any()]
                if pd.isna(groups).any():
                    cols.append(group_name or "groups")
                raise ValueError(
                    f"Missing values in {cols} ({len(data) - len(kept)} rows). "
                    "Drop those rows or pass missing='drop'."
                )
        kwargs["missing"] = "none"

        exog_var = None
        var_spec = None
        if var_formula is not None:
            try:
                exog_var = patsy.dmatrix(
                    var_formula, data, eval_env=patsy.EvalEnvironment([eval_env]),
                    NA_action="raise", return_type="dataframe",
                )
            except patsy.PatsyError as exc:
                if "missing values" not in str(exc):
                    raise
                raise ValueError(
                    f"var_formula {var_formula!r} gives missing values (for "
                    "example the log of a non-positive number). Drop or fix "
                    "those rows before fitting.") from exc
            var_spec = exog_var.design_info
        if var_re_formula is not None:
            exog_var_re = patsy.dmatrix(
                var_re_formula, data, eval_env=patsy.EvalEnvironment([eval_env]),
                NA_action="raise", return_type="dataframe")
            var_re_spec = exog_var_re.design_info
            exog_var_re.columns = [
                (group_name or "Group") if c == "Intercept" else c
                for c in exog_var_re.columns]
            kwargs["exog_var_re"] = exog_var_re
        re_var_columns = None
        if re_var_formula is not None:
            kwargs["exog_re_var"], re_var_columns = _level2_design(
                re_var_formula, data, patsy.EvalEnvironment([eval_env]))
        mod = super().from_formula(
            formula,
            data,
            re_formula=re_formula,
            vc_formula=vc_formula,
            subset=None,
            use_sparse=use_sparse,
            # A column name lets MixedLM label the random intercept with it.
            groups=group_name if group_name is not None else groups,
            exog_var=exog_var,
            eval_env=eval_env,
            *args,
            **kwargs,
        )
        mod.var_formula = var_formula
        mod.var_by = var_by
        mod.var_re_formula = var_re_formula
        mod.re_var_formula = re_var_formula
        if isinstance(re_var_formula, dict):
            mod._set_level2_terms(re_var_columns)
        mod._var_re_design_info = var_re_spec if var_re_formula is not None else None
        mod._var_design_info = var_spec
        return mod

    # ------------------------------------------------------------------
    # Likelihood
    def _evaluate_factor(self, factor, var_params, fe_params=None,
                         gradient=False, reml=None):
        reml = self.reml if reml is None else reml
        r = self.variance_function.variance(var_params)
        return _engine.evaluate(self._grouped, factor, r, reml,
                                fe_params=fe_params, gradient=gradient)

    def _split_any(self, params):
        if isinstance(params, MixedLMParams):
            raise TypeError(
                "HetMixedLM takes packed parameter vectors in its own layout "
                "(see HetMixedLM.layout), not MixedLMParams"
            )
        return self.layout.split(params)

    def loglike(self, params, profile_fe=True):
        """
        Log-likelihood (REML criterion when the model was last fit by REML).

        Parameters
        ----------
        params : array_like
            Natural parameter vector, with (``k_params``) or without
            (``k_params - k_fe``) the fixed effects.
        profile_fe : bool
            If True, or if ``params`` has no fixed effects, the fixed effects
            are replaced by their GLS estimates.

        Returns
        -------
        float
        """
        fe, cov_re, vcomp, var_params = self._split_any(params)
        natural = self.layout.join(None, cov_re, vcomp, var_params)
        factor = self.layout.factor_from_natural(natural)
        fe = None if profile_fe else fe
        try:
            return self._evaluate_factor(factor, var_params, fe_params=fe).llf
        except np.linalg.LinAlgError:
            return -np.inf

    def score(self, params, profile_fe=True):
        """
        Gradient of ``loglike`` in the natural parameters.

        With ``profile_fe`` (or a vector without fixed effects) the gradient
        of the profile log-likelihood in the covariance and variance-function
        parameters; otherwise (ML only) also the fixed-effects block first.
        """
        fe, cov_re, vcomp, var_params = self._split_any(params)
        natural = self.layout.join(None, cov_re, vcomp, var_params)
        use_fe = None if profile_fe else fe
        ev = self._evaluate_factor(self.layout.factor_from_natural(natural),
                                   var_params, fe_params=use_fe, gradient=True)
        g = self._grad_natural(ev, var_params)
        if use_fe is None:
            return g
        return np.concatenate([ev.score_fe, g])

    def _grad_natural(self, ev, var_params):
        g_var = self.variance_function.gradient(var_params, ev.grad_eta)
        return self.layout.grad_natural(ev.grad_cov, g_var)

    def hessian(self, params):
        """
        Hessian of the log-likelihood in the natural parameters.

        The fixed-effects block is ``-X'V^-1 X``; the covariance and
        variance-function block is the Hessian of the log-likelihood profiled
        over the fixed effects (REML: of the REML criterion), computed by
        finite differences of the analytic gradient; the cross block is
        zero (see the documentation on standard errors).

        Returns
        -------
        hess : ndarray
        sing : bool
            True if the fixed-effects information matrix is singular.
        """
        fe, cov_re, vcomp, var_params = self._split_any(params)
        natural = self.layout.join(None, cov_re, vcomp, var_params)
        h_cov, ev = self._hessian_natural(natural)
        kfe = self.k_fe
        hess = np.zeros((self.k_params, self.k_params))
        hess[:kfe, :kfe] = -ev.xtvix
        hess[kfe:, kfe:] = h_cov
        return hess, False

    def _evaluate_natural(self, natural, info=False):
        """Engine evaluation at a natural vector (without fixed effects):
        (Evaluation, gradient in the natural parameters)."""
        lay, vf = self.layout, self.variance_function
        var_params = natural[lay.var_nofe]
        directions = (lay.cov_directions(), vf.log_derivative(var_params)) \
            if info else None
        ev = _engine.evaluate(self._grouped, lay.factor_from_natural(natural),
                              vf.variance(var_params), self.reml, gradient=True,
                              info_directions=directions)
        if info:  # for the difference steps of _hessian_natural
            self._last_info = (natural.copy(), ev.info)
        return ev, self._grad_natural(ev, var_params)

    def _hessian_natural(self, natural, free=None):
        """
        Hessian in the natural parameters (without fixed effects): forward
        differences of the analytic gradient along directions that whiten
        the analytic expected information (``_hessian``), so that it does
        not depend on the units or origin of the covariates.  Returns
        (Hessian, Evaluation at ``natural``).
        """
        info = self._nearby_information(natural)
        ev0, g0 = self._evaluate_natural(natural, info=info is None)
        if info is None:
            info = ev0.info
        idx = np.arange(natural.size) if free is None else np.flatnonzero(free)
        basis = _hessian.whitening_basis(
            info[np.ix_(idx, idx)], self._typical_size(natural)[idx],
            bounded=self._at_boundary(natural)[idx])
        hess = _hessian.hessian(lambda x: self._evaluate_natural(x)[1],
                                natural, g0, basis, free=free)
        return hess, ev0

    def _nearby_information(self, natural):
        """
        The expected information last computed (by Fisher scoring, usually
        at this very point) if it was within 0.1 standard errors of
        ``natural`` (a distance in its own metric, free of units), else
        None.  The difference directions need only an approximate
        information, and computing it costs twice a gradient evaluation.
        """
        last = getattr(self, "_last_info", None)
        if last is None or last[0].shape != natural.shape:
            return None
        delta = natural - last[0]
        dist2 = float(delta @ last[1] @ delta)
        return last[1] if np.isfinite(dist2) and dist2 <= 1e-2 else None

    def _typical_size(self, natural):
        """Typical size of each natural parameter (``_hessian`` step unit
        where the information gives none): its absolute value, floored by
        a thousandth of the residual scale (covariances) or 1 (the
        variance function's coefficients)."""
        lay = self.layout
        scale = np.exp(self.variance_function.log_scale(natural[lay.var_nofe]))
        floor = np.full(natural.size, 1e-3 * scale)
        floor[lay.var_nofe] = 1.0
        return np.maximum(np.abs(natural), floor)

    # ------------------------------------------------------------------
    def _start_theta(self):
        """Starting values: OLS, then log squared residuals regressed on W."""
        y, X = self.endog, self.exog
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ beta
        total = max(float(np.mean(resid**2)), 1e-12)
        share_re = 0.25 if self.k_re + self.k_vc > 0 else 0.0
        lay = self.layout
        Z = self._grouped.exog_z
        # Mean square of each random-effects column over the rows where it is
        # non-zero: columns of a variance component often touch few rows.
        nonzero = np.maximum((Z != 0).sum(axis=0), 1)
        zz = np.maximum((Z**2).sum(axis=0) / nonzero, 1e-12)
        chol = np.zeros((self.k_re, self.k_re))
        np.fill_diagonal(chol, np.sqrt(share_re * total / zz[: self.k_re]))
        vc_sd = [np.sqrt(share_re * total / zz[s].mean()) for s in lay.vc_slots]
        a = self.variance_function.start_params(resid, 1.0 - share_re)
        return np.concatenate([chol[np.tril_indices(self.k_re)], vc_sd, a])

    def _objective(self, theta, info=False):
        """Minus the log-likelihood and its gradient in theta; with
        ``info`` also the expected information in theta (None where the
        likelihood is not defined)."""
        lay = self.layout
        try:
            var_params = lay.var_from_theta(theta)
            directions = (lay.cov_directions(),
                          self.variance_function.log_derivative(var_params)) \
                if info else None
            ev = _engine.evaluate(self._grouped, lay.factor(theta),
                                  self.variance_function.variance(var_params),
                                  self.reml, gradient=True,
                                  info_directions=directions)
        except np.linalg.LinAlgError:
            out = np.inf, np.zeros_like(theta)
            return out + (None,) if info else out
        g_var = self.variance_function.gradient(var_params, ev.grad_eta)
        g = lay.grad_theta(theta, ev.grad_cov, g_var)
        if not info:
            return -ev.llf, -g
        jac = lay.natural_jacobian(theta)
        return -ev.llf, -g, jac.T @ ev.info @ jac

    def fit(
        self,
        start_params=None,
        reml=True,
        niter_sa=0,
        do_cg=True,
        fe_pen=None,
        cov_pen=None,
        free=None,
        full_output=False,
        method=None,
        n_quad=None,
        re_cov="joint",
        **fit_kwargs,
    ):
        """
        Fit the model by ML or REML.

        Parameters
        ----------
        start_params : array_like, optional
            Natural parameter vector (with or without fixed effects).  The
            default starts from OLS residuals: a regression of their log
            squares on W gives the variance function.
        reml : bool
            REML if True (the default, as in MixedLM), else ML.
        niter_sa : int
            Ignored (as in MixedLM).
        do_cg : bool
            If False, return results at the starting values.
        fe_pen, cov_pen : None
            Penalties are not supported; passing one raises an error.
        free : array_like or MixedLMParams, optional
            0/1 mask over the natural parameter vector (with or without the
            fixed effects): 0 holds a covariance or variance-function
            parameter at its starting value.  Fixed effects cannot be held.
            Holding off-diagonal ``cov_re`` entries at zero fits independent
            random effects.
        full_output : bool
            Record the log-likelihood at each iteration in ``results.hist``.
        method : str or list of str, optional
            Optimisers tried in turn: "scoring" (Fisher scoring with the
            analytic expected information, the default first choice) or a
            scipy.optimize.minimize method (default fallback "bfgs"); the
            result is checked, and if needed polished, by Newton steps on
            the analytic gradient.
        n_quad : int, optional
            Location-scale models: quadrature nodes per dimension of the
            random scale effects (default 15 for one, 5 for two; 1 is the
            Laplace approximation).
        re_cov : {"joint", "independent"}
            Location-scale models: correlated mean and scale random effects
            (default) or independent blocks.
        **fit_kwargs
            ``gtol`` and ``maxiter`` for the optimiser.

        Returns
        -------
        HetMixedLMResults
            (wrapped so that pandas input gives labelled output).
        """
        from .results import HetMixedLMResults, HetMixedLMResultsWrapper

        if self.k_var_re:
            from .locscale import fit_location_scale

            return fit_location_scale(self, reml=reml, start_params=start_params,
                                      n_quad=n_quad, re_cov=re_cov, do_cg=do_cg)
        if n_quad is not None or re_cov != "joint":
            raise ValueError("n_quad and re_cov apply to location-scale models "
                             "(var_re_formula / exog_var_re) only")
        if fe_pen is not None or cov_pen is not None:
            raise NotImplementedError(
                "Penalised estimation is not available in HetMixedLM; use "
                "statsmodels' MixedLM.fit_regularized for penalised fits."
            )
        unknown = set(fit_kwargs) - {"gtol", "maxiter", "disp"}
        if unknown:
            raise TypeError(f"unexpected fit arguments: {sorted(unknown)}")
        self.reml = bool(reml)
        lay = self.layout
        if method is None:
            method = ["scoring", "bfgs"]
        elif isinstance(method, str):
            method = [method]

        if start_params is None:
            theta = self._start_theta()
        else:
            if isinstance(start_params, MixedLMParams):
                raise TypeError("start_params must be a natural parameter vector")
            _, cov_re, vcomp, var_params = lay.split(start_params)
            theta = lay.theta_from_natural(lay.join(None, cov_re, vcomp, var_params))
        free_theta = self._free_mask(free, theta)

        hist = [] if full_output else None
        n_iter = 0
        if do_cg:
            for meth in method:
                if meth == "scoring":
                    theta, n_it, done = self._fisher_scoring(
                        theta, free_theta, fit_kwargs.get("maxiter", 200), hist)
                else:
                    theta, n_it, done = self._minimize(
                        theta, free_theta, meth, fit_kwargs, hist)
                n_iter += n_it
                if done:
                    break
        # Convergence is judged on the observed information: the Newton
        # decrement of the analytic gradient, over the free parameters that
        # are not variances on the boundary.
        natural = lay.natural_from_theta(theta)
        free_nat = None if free_theta is None else free_theta.copy()
        h_cov, ev = self._hessian_natural(natural, free_nat)
        decrement = self._observed_decrement(natural, h_cov, ev, free_nat)
        converged = do_cg and decrement is not None and \
            decrement < _NEWTON_DECREMENT_TOL
        if do_cg and not converged:
            # Newton steps in the Cholesky parameterisation.  Its stationary
            # points include maxima on the boundary of the covariance cone (a
            # singular cov_re, e.g. a correlation of +-1), where the natural
            # gradient need not vanish; there its decrement is the test.
            theta, polished, theta_decrement = self._newton_polish(theta, free_theta)
            natural = lay.natural_from_theta(theta)
            h_cov, ev = self._hessian_natural(natural, free_nat)
            decrement = self._observed_decrement(natural, h_cov, ev, free_nat)
            converged = decrement is not None and decrement < _NEWTON_DECREMENT_TOL
            if not converged and polished:
                converged, decrement = True, theta_decrement
        g_nat = self._grad_natural(ev, natural[lay.var_nofe])
        # Variances at zero are on the boundary: their gradient need not
        # vanish there, and the MLE may sit on it.
        at_bound = self._at_boundary(natural)
        judged = ~at_bound if free_nat is None else (free_nat & ~at_bound)
        max_grad = float(np.max(np.abs(g_nat[judged]), initial=0.0))
        if not do_cg:
            warnings.warn("do_cg=False: the optimization was skipped and the "
                          "results are at the starting values.", UserWarning,
                          stacklevel=2)
        elif not converged:
            warnings.warn(
                "HetMixedLM optimization did not converge: the largest "
                f"log-likelihood gradient component is {max_grad:.3g}. Try other "
                "start_params or method, or simplify the model.",
                ConvergenceWarning, stacklevel=2)
        cov_re = lay.cov_re_from_vech(natural[lay.re_nofe])
        if do_cg and self.k_re > 1 and not at_bound.any():
            eig = np.linalg.eigvalsh(cov_re)
            if eig[0] <= 1e-6 * max(eig[-1], 1e-300):
                warnings.warn(
                    "The random-effects covariance matrix is singular at the "
                    "estimate (a correlation of +-1 or a redundant random "
                    "effect): the estimate is on the boundary of the parameter "
                    "space, and standard errors of cov_re are not reliable. "
                    "Consider dropping a random effect.",
                    ConvergenceWarning, stacklevel=2)
        if do_cg and at_bound.any():
            names = list(self.data.param_names)[self.k_fe:]
            zero = [names[j] for j in np.flatnonzero(at_bound)]
            warnings.warn(
                f"The {'REML' if self.reml else 'ML'} estimate is on the "
                f"boundary of the parameter space: the variance(s) {zero} are "
                "zero; their standard errors and Wald tests are not reliable.",
                ConvergenceWarning, stacklevel=2)

        cov_params = self._cov_params(ev, h_cov, free_nat)
        fe_params = ev.fe_params
        params = np.concatenate([fe_params, natural])
        # statsmodels multiplies normalized_cov_params by results.scale.
        scale = np.exp(self.variance_function.log_scale(natural[lay.var_nofe]))
        res = HetMixedLMResults(self, params, cov_params / scale)
        res._finish(ev, converged=converged, max_grad=max_grad,
                    decrement=decrement, n_iter=n_iter, hist=hist,
                    method=method, free=free_nat)
        return HetMixedLMResultsWrapper(res)

    def _observed_decrement(self, natural, h_cov, ev, free):
        """g' (-H)^-1 g over free parameters not on the boundary, or None
        when -H is not positive definite there."""
        g = self._grad_natural(ev, natural[self.layout.var_nofe])
        keep = ~self._at_boundary(natural)
        if free is not None:
            keep &= free
        idx = np.flatnonzero(keep)
        if idx.size == 0:
            return 0.0
        try:
            chol = np.linalg.cholesky(-h_cov[np.ix_(idx, idx)])
        except np.linalg.LinAlgError:
            return None
        return float(g[idx] @ _engine._chol_solve(chol, g[idx]))

    def _fisher_scoring(self, theta, free, maxiter, hist):
        """
        Fisher scoring in the natural parameters, with the analytic expected
        information (engine) as scoring matrix and a backtracking line search.

        Variances with a boundary at zero are handled by an active set: a
        step never takes them below zero, and one at zero whose gradient
        points outside is held there (the Kuhn-Tucker condition of a
        boundary maximum).  Random-effect covariance matrices must stay
        positive semi-definite; where that blocks progress, the caller falls
        back to quasi-Newton in the Cholesky parameterisation.

        Returns (theta, iterations, converged by the scoring decrement).
        """
        lay = self.layout
        nat = lay.natural_from_theta(theta)
        k = nat.size
        free_mask = np.ones(k, bool) if free is None else np.asarray(free, bool)
        box = self._scalar_variances()

        def evaluate(x):
            cov_re = lay.cov_re_from_vech(x[lay.re_nofe])
            if self.k_re > 1 and np.linalg.eigvalsh(cov_re)[0] < -1e-12 * max(
                    1.0, np.abs(cov_re).max()):
                raise np.linalg.LinAlgError("cov_re is not positive semi-definite")
            return self._evaluate_natural(x, info=True)

        try:
            ev, g = evaluate(nat)
        except np.linalg.LinAlgError:
            return theta, 0, False
        for it in range(1, maxiter + 1):
            if hist is not None:
                hist.append(ev.llf)
            active = box & (nat <= 0) & (g <= 0)
            work = np.flatnonzero(free_mask & ~active)
            if work.size == 0:
                return lay.theta_from_natural(nat), it, True
            info = ev.info[np.ix_(work, work)]
            info = 0.5 * (info + info.T)
            ridge = 1e-12 * max(np.max(np.diag(info)), 1e-300)
            try:
                chol = np.linalg.cholesky(info + ridge * np.eye(work.size))
            except np.linalg.LinAlgError:
                return lay.theta_from_natural(nat), it, False
            step = _engine._chol_solve(chol, g[work])
            decrement = float(g[work] @ step)
            if decrement < _NEWTON_DECREMENT_TOL:
                return lay.theta_from_natural(nat), it, True
            # Longest step that keeps the boxed variances non-negative.
            t_max = 1.0
            bounded = box[work] & (step < 0)
            if bounded.any():
                t_max = min(1.0, float(np.min(-nat[work][bounded] / step[bounded])))
            t = t_max
            while True:
                cand = nat.copy()
                cand[work] += t * step
                cand[box] = np.maximum(cand[box], 0.0)
                if t == t_max and t_max < 1.0:
                    hit = work[bounded][np.argmin(-nat[work][bounded] / step[bounded])]
                    cand[hit] = 0.0
                try:
                    ev_c, g_c = evaluate(cand)
                    if ev_c.llf >= ev.llf - 1e-12 * abs(ev.llf):
                        break
                except np.linalg.LinAlgError:
                    pass
                t *= 0.5
                if t < 1e-10:
                    return lay.theta_from_natural(nat), it, False
            nat, ev, g = cand, ev_c, g_c
        return lay.theta_from_natural(nat), maxiter, False

    def _scalar_variances(self):
        """Mask of natural parameters that are single variances >= 0."""
        lay = self.layout
        mask = np.zeros(lay.k_cov + lay.k_var, bool)
        if self.k_re == 1:
            mask[0] = True
        mask[lay.k_re2:lay.k_cov] = True
        if lay.var_square_root:
            mask[lay.var_nofe] = True
        return mask

    def _minimize(self, theta, free, meth, fit_kwargs, hist):
        full = theta.copy()
        idx = np.arange(theta.size) if free is None else np.flatnonzero(free)
        nobs = self.nobs

        def fun(x):
            full[idx] = x
            f, g = self._objective(full)
            return f / nobs, g[idx] / nobs

        def callback(xk, *args):
            if hist is not None:
                hist.append(-fun(np.asarray(xk))[0] * nobs)

        if idx.size == 0:
            return theta, 0, True
        options = {"maxiter": fit_kwargs.get("maxiter", 1000)}
        if meth.lower() in ("bfgs", "l-bfgs-b", "lbfgs", "cg"):
            options["gtol"] = fit_kwargs.get("gtol", 1e-7)
        meth = {"lbfgs": "L-BFGS-B"}.get(meth.lower(), meth)
        jac = meth.lower() not in ("nelder-mead", "nm", "powell")
        meth = {"nm": "Nelder-Mead"}.get(meth.lower(), meth)
        objective = fun if jac else (lambda x: fun(x)[0])
        with np.errstate(all="ignore"):
            res = optimize.minimize(objective, theta[idx], jac=jac, method=meth,
                                    options=options, callback=callback)
        full[idx] = res.x
        return full, int(getattr(res, "nit", 0)), bool(res.success)

    def _newton_polish(self, theta, free):
        """Newton steps in theta with a finite-difference Hessian of the
        gradient (``_hessian``), along directions that whiten the expected
        information at the first point: the steps are short, and an
        approximate information whitens as well (each computed one costs
        about 2.5 gradient evaluations)."""
        idx = np.arange(theta.size) if free is None else np.flatnonzero(free)
        if idx.size == 0:
            return theta, True, 0.0
        decrement = None
        basis = None
        for _ in range(_MAX_NEWTON_STEPS):
            if basis is None:
                f0, g0, info = self._objective(theta, info=True)
                if info is None:
                    return theta, False, None
                basis = _hessian.whitening_basis(
                    info[np.ix_(idx, idx)], np.maximum(np.abs(theta[idx]), 1e-2))
            else:
                f0, g0 = self._objective(theta)
            hess = _hessian.hessian(lambda t: self._objective(t)[1], theta, g0,
                                    basis, free=free)[np.ix_(idx, idx)]
            g0 = g0[idx]
            try:
                chol = np.linalg.cholesky(hess)
            except np.linalg.LinAlgError:
                return theta, False, None  # not locally convex: leave as is
            step = -_engine._chol_solve(chol, g0)
            decrement = float(-g0 @ step)
            if decrement < _NEWTON_DECREMENT_TOL:
                return theta, True, decrement
            t = 1.0
            while t > 1e-4:
                cand = theta.copy()
                cand[idx] += t * step
                if self._objective(cand)[0] <= f0 + 1e-12 * abs(f0):
                    theta = cand
                    break
                t *= 0.5
            else:
                return theta, False, decrement
        return theta, False, decrement

    def _free_mask(self, free, theta):
        """0/1 mask over theta, from a mask over the natural parameters."""
        if free is None:
            return None
        lay = self.layout
        if isinstance(free, MixedLMParams):
            mask = np.concatenate([
                np.asarray(free.cov_re)[np.tril_indices(self.k_re)],
                np.asarray(free.vcomp, dtype=float),
                np.ones(self.k_var),
            ])
            fe_mask = np.asarray(free.fe_params)
        else:
            free = np.asarray(free, dtype=float)
            if free.size == lay.k_params:
                fe_mask, mask = free[lay.fe], free[lay.k_fe:]
            elif free.size == lay.k_params - lay.k_fe:
                fe_mask, mask = np.ones(self.k_fe), free
            else:
                raise ValueError(f"free must have length {lay.k_params} or "
                                 f"{lay.k_params - lay.k_fe}")
        if np.any(np.asarray(fe_mask) == 0):
            raise NotImplementedError(
                "HetMixedLM cannot hold fixed effects at given values; use an "
                "offset (subtract them from endog) instead.")
        mask = mask != 0
        # Cholesky entries held at their value keep the matching cov_re
        # entries fixed only in two cases, checked here: a random effect
        # held out entirely (its variance and covariances at zero), and
        # covariances held at zero in patterns without fill-in.
        k = self.k_re
        if k > 0:
            fixed = np.zeros((k, k), bool)
            fixed[np.tril_indices(k)] = ~mask[lay.re_nofe]
            fixed = fixed | fixed.T
            start = lay.cov_re_from_vech(
                lay.natural_from_theta(theta)[lay.re_nofe])
            held_out = np.diag(fixed).copy()
            for i in np.flatnonzero(held_out):
                if not fixed[i].all() or not np.allclose(start[i], 0):
                    raise NotImplementedError(
                        "A random-effect variance can only be held at zero, "
                        "together with all its covariances.")
            rng = np.random.default_rng(0)
            L = np.tril(rng.uniform(1, 2, (k, k))) * ~fixed
            L[held_out] = 0.0
            if not np.allclose(start[fixed], 0) or \
                    not np.allclose((L @ L.T)[fixed], 0):
                raise NotImplementedError(
                    "Covariances can only be held at zero, in a pattern of "
                    "independent blocks of random effects.")
            chol = np.zeros((k, k))
            chol[np.tril_indices(k)] = theta[lay.re_nofe]
            chol[fixed] = 0.0
            chol[held_out] = 0.0
            theta[lay.re_nofe] = chol[np.tril_indices(k)]
        return mask

    def _at_boundary(self, natural):
        """Mask of variances at zero: cov_re diagonal, variance components,
        and identity-link variance-function parameters."""
        lay = self.layout
        scale = np.exp(self.variance_function.log_scale(natural[lay.var_nofe]))
        mask = np.zeros(natural.size, bool)
        diag = np.cumsum(np.arange(1, self.k_re + 1)) - 1  # (i, i) in the vech
        variances = [diag, np.arange(lay.k_re2, lay.k_cov)]
        if lay.var_square_root:
            variances.append(np.arange(lay.k_cov, lay.k_cov + lay.k_var))
        variances = np.concatenate(variances)
        mask[variances] = natural[variances] <= 1e-8 * scale
        return mask

    def _cov_params(self, ev, h_cov, free):
        kfe = self.k_fe
        cov = np.zeros((self.k_params, self.k_params))
        cov[:kfe, :kfe] = np.linalg.inv(ev.xtvix)
        idx = np.arange(h_cov.shape[0]) if free is None else np.flatnonzero(free)
        if idx.size:
            info = -h_cov[np.ix_(idx, idx)]
            try:
                np.linalg.cholesky(info)
                inv = np.linalg.inv(info)
            except np.linalg.LinAlgError:
                warnings.warn(
                    "The Hessian of the log-likelihood in the variance "
                    "parameters is not negative definite (a variance on the "
                    "boundary or a non-identified parameter); their standard "
                    "errors are unreliable.", ConvergenceWarning, stacklevel=3)
                inv = np.linalg.pinv(info)
            full = kfe + idx
            cov[np.ix_(full, full)] = inv
        return cov


def _capture_eval_env(eval_env):
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
