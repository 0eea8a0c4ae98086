"""
HetMixedLM: statsmodels' MixedLM with a residual variance function.

    y_ij = x_ij' beta + z_ij' u_i + e_ij,   u_i ~ N(0, G),
    e_ij ~ N(0, sigma2_ij),                  log sigma2_ij = w_ij' a.

With no variance design (``exog_var`` / ``var_formula``), W is a column of
ones and the model is MixedLM's.
"""

from __future__ import annotations

import copy
import functools
import types
import warnings

import numpy as np
from statsmodels.base import model as base
from statsmodels.tools.sm_exceptions import ValueWarning
from statsmodels.regression.mixed_linear_model import (
    MixedLM,
    MixedLMParams,
    VCSpec,
    _convert_vc,
)

from . import _engine, _formula, _linalg, ddf as _ddf, fixedpoint, inference, optim, robust
from ._validate import (
    as_float_matrix,
    check_finite,
    check_groups,
    check_has_columns,
    check_not_empty,
    check_numeric,
    check_rows,
    column_names,
    constant_column,
    fit_options,
    param_vector,
    rows_array,
    shared_columns,
    time_values,
    var_column_names,
)
from ._progress import Trace
from .locscale import fit_location_scale
from .locscale import loglike as location_scale_loglike
from .objective import HeteroskedasticObjective
from .results import HetMixedLMResults, HetMixedLMResultsWrapper, mixedlm_parameters
from .structures import (
    Layout,
    UnstructuredCovariance,
    VarianceBlock,
    VarianceComponent,
    covariance_names,
)
from .structures.correlation import make_correlation
from .structures.variance import (
    FITTED,
    ConstPowerVariance,
    PowerVariance,
    make_variance_function,
)

__all__ = ["HetMixedLM", "HetMixedLMParams"]

# Keyword arguments of fit passed to the optimisers; others warn (as in
# statsmodels' MixedLM.fit) and are ignored.
_FIT_OPTIONS = ("gtol", "maxiter", "disp", "callback", "fitted_tol",
                "fitted_maxiter")
_NO_EXOG_COLUMNS = ("The fixed-effects design (exog)", "For an intercept-only "
                    "mean use a column of ones (formula 'y ~ 1').")

# Keyword arguments of the constructor that record the formulas the design
# matrices came from (set by from_formula; None for the array interface).
_FORMULA_KEYS = ("var_formula", "var_by", "var_re_formula", "re_var_formula")
# Set by from_formula for predictions on new data: the groups' column name,
# re_formula and its patsy design (rebuilt after unpickling, as var_formula's).
_PREDICTION_KEYS = ("_group_name", "_re_formula", "_re_design_info",
                    "_formula_engine")


def _check_full_rank(mat, what, names, hint):
    # The rule (unit-free, decided far from rounding) lives in _linalg.
    _linalg.check_full_rank(mat, what, names, hint)


class HetMixedLMParams(MixedLMParams):
    """
    MixedLMParams extended with the residual variance function.

    ``MixedLMParams`` holds the fixed effects and the random-effects
    covariances *relative to one residual variance* (MixedLM profiles that
    scale out).  A model with a variance function has no such common scale,
    so this extension holds every block on its natural scale:

    * ``fe_params`` -- the fixed effects (or None);
    * ``cov_re`` -- the random-effects covariance matrix (variances, not
      divided by a scale);
    * ``vcomp`` -- the variance-component variances;
    * ``var_params`` -- the variance function's coefficients, then those
      of any further ``variance_blocks`` (``model.layout.names`` from
      ``var:...`` on).

    ``HetMixedLM.loglike``, ``score``, ``hessian`` and ``fit(start_params=)``
    accept it for every model; a plain ``MixedLMParams`` is read as MixedLM
    reads it, for models without a variance formula.
    """

    def __init__(self, k_fe: int, k_re: int, k_vc: int, k_var: int):
        super().__init__(k_fe, k_re, k_vc)
        self.k_var = k_var
        self.var_params = np.zeros(k_var)

    @staticmethod
    def from_components(fe_params=None, cov_re=None, cov_re_sqrt=None,
                        vcomp=None, var_params=None) -> HetMixedLMParams:
        """As ``MixedLMParams.from_components``, with ``var_params``."""
        base_params = MixedLMParams.from_components(
            fe_params=fe_params, cov_re=cov_re, cov_re_sqrt=cov_re_sqrt, vcomp=vcomp)
        var_params = np.atleast_1d(np.asarray(
            [] if var_params is None else var_params, dtype=float))
        obj = HetMixedLMParams(base_params.k_fe, base_params.k_re,
                               base_params.k_vc, len(var_params))
        obj.fe_params = base_params.fe_params
        obj.cov_re = base_params.cov_re
        obj.vcomp = base_params.vcomp
        obj.var_params = var_params
        return obj

    def copy(self) -> HetMixedLMParams:
        obj = HetMixedLMParams(self.k_fe, self.k_re, self.k_vc, self.k_var)
        obj.fe_params = None if self.fe_params is None else self.fe_params.copy()
        obj.cov_re = self.cov_re.copy()
        obj.vcomp = self.vcomp.copy()
        obj.var_params = self.var_params.copy()
        return obj


class _MixedLMView(MixedLM):
    """
    MixedLM's own methods on a HetMixedLM's data (models with a common
    scale only): penalised fits run MixedLM's code, which calls
    ``self.loglike`` / ``score`` / ``hessian`` with MixedLM's packed
    vectors.  Unpenalised refits inside that code (``fit_regularized``'s
    first fit) are HetMixedLM's fits, reported in MixedLM's terms.
    """

    def __init__(self, model: HetMixedLM):  # noqa: D107 (shares the data)
        self.__dict__.update(model.__dict__)
        self._het = model
        for name in ("endog_li", "exog_li", "exog_re_li", "exog_re2_li",
                     "_aex_r", "_aex_r2", "row_indices"):
            setattr(self, name, getattr(model, name))
        self._lin, self._quad = model._lin, model._quad
        self.k_params = self.k_fe + self.k_re2 + self.k_vc
        self.data = copy.copy(model.data)
        self.data.param_names = list(model.data.param_names)
        self.data.cov_param_names = self.data.param_names  # nothing else

    def fit(self, *args, **kwargs):
        if kwargs.get("fe_pen") is not None or kwargs.get("cov_pen") is not None:
            return MixedLM.fit(self, *args, **kwargs)
        return self._het._as_mixedlm_fit(self._het.fit(*args, **kwargs))


class HetMixedLM(MixedLM):
    _partition = False  # see __init__ (pickles made before it have none)
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
    var_power : array_like or "fitted", optional
        nlme's ``varPower``: the residual sd is also proportional to
        ``|v| ** delta`` for this covariate v (non-zero; a Series's name
        names the parameter ``power(<name>)``, else ``power(v)``), or for
        the fitted values ``X beta + Z b`` with ``"fitted"`` (a fixed point,
        see ``fit``).  The factor multiplies the variance function's
        (nlme's ``varComb``), whose intercept carries the scale.
    var_const_power : array_like or "fitted", optional
        nlme's ``varConstPower``: the residual sd is proportional to
        ``c + |v| ** delta``, ``c > 0`` (parameters ``const(<name>)`` and
        ``power(<name>)``; zeros in v allowed).
    variance_blocks : list of VarianceBlock, optional
        Further factors of the residual variance, multiplied with the
        variance function's (nlme's ``varComb``): blocks of
        :mod:`statsmodels_hetmixed.structures` such as ``PowerVariance``, or
        your own (see the documentation page "Adding a structure").  Their
        parameters follow the variance function's in ``params``.
    use_sqrt : bool
        Accepted for compatibility with MixedLM; the optimisation always
        uses a Cholesky factor of the random-effects covariance.
    missing : {"none", "drop", "raise"}
        Missing-value handling.  With "none" or "raise", missing values give
        an error that names the columns.
    re_var_terms : dict, optional
        Location-scale models with ``exog_re_var``: restrict level-2
        functions to some columns of ``exog_re_var``.  Maps a function's
        key -- a random effect's name (its variance, e.g. ``"var:g"`` for
        a scale effect) or ``"corr(a, b)"`` / a tuple ``(a, b)`` (a
        correlation) -- to the names of its columns, intercept first; the
        other functions keep only the intercept.  ``from_formula`` builds
        it from a dict ``re_var_formula``.
    exog_re_names : list of str, optional
        Names of the random effects (default: the columns of ``exog_re``,
        or ``"Group"`` for the default random intercept).  Keys of
        ``re_var_terms`` and parameter names use them.
    **kwargs
        ``var_formula``, ``var_by``, ``var_re_formula``, ``re_var_formula``:
        the formulas the designs came from, recorded on the model (set by
        ``from_formula``; predictions on new data use them).  A patsy
        design given as ``exog_var`` / ``exog_var_re`` carries its
        ``design_info`` along.

    All inputs pass the same checks whichever interface built them
    (``_validate``): numeric columns, finite values unless
    ``missing="drop"``, one row per observation, at least one
    observation, designs with columns, at least two groups.

    See Also
    --------
    HetMixedLM.from_formula, statsmodels_hetmixed.formula.api.hetmixedlm

    Notes
    -----
    The log-likelihood is evaluated with per-group cross products of the
    rows weighted by 1 / sigma2_ij and q x q algebra broadcast over groups
    (q = number of random effects), with analytic gradients.  The natural
    parameter vector (``layout.names``, a fit's ``params_natural``) holds,
    in order: fixed effects, the lower triangle of ``cov_re``, the
    variance-component variances and the variance-function coefficients
    (named ``var:<column>``), variances on their natural scale.  Without a
    variance formula (``has_common_scale``) a fit's ``params`` are
    MixedLM's instead: the covariances divided by the residual scale,
    under MixedLM's names; with one, ``params`` is the natural vector.

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
        variance_blocks=None,
        re_var_terms=None,
        exog_re_names=None,
        var_power=None,
        var_const_power=None,
        correlation=None,
        time=None,
        correlation_by=None,
        **kwargs,
    ):
        # A partition of a Dask fit (_dask.py): its design may lack a level
        # or hold one group; those checks are made on the whole data there.
        self._partition = bool(kwargs.pop("_partition", False))
        allowed = (["missing_idx", "model_spec", "formula", "_time_name",
                    "_correlation_by_name"] + list(_FORMULA_KEYS)
                   + list(_PREDICTION_KEYS))
        for key in kwargs:
            if key not in allowed:
                raise ValueError(
                    f"argument {key} not permitted for HetMixedLM initialization"
                )
        # The formulas the design matrices came from (from_formula), kept
        # for display, prediction on new data and pickling.
        for key in _FORMULA_KEYS + _PREDICTION_KEYS:
            setattr(self, key, kwargs.pop(key, None))
        same_as_exog = isinstance(exog_var, str) and exog_var == _formula.SAME_AS_EXOG
        if same_as_exog:
            exog_var = exog   # from_formula: the variance formula is the mean's
        self._var_design_info = _formula.design_spec(exog_var)
        self._var_re_design_info = _formula.design_spec(exog_var_re)
        exog, exog_var, exog_var_re, exog_re_var = (
            _formula.consolidated(a) for a in (exog, exog_var, exog_var_re, exog_re_var))
        if endog is None or exog is None:
            raise ValueError(
                "endog and exog are required; for an intercept-only mean use a "
                "column of ones as exog"
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
            ["Intercept"] if exog_var is None else var_column_names(exog_var)
        )
        inputs = {"endog": endog, "exog": exog, "exog_re": exog_re,
                  "exog_var": exog_var, "exog_var_re": exog_var_re,
                  "exog_re_var": exog_re_var}
        # var_power / var_const_power: a covariate (an array, dropped with
        # the other inputs' missing rows) or "fitted"
        power_args = {"var_power": var_power, "var_const_power": var_const_power}
        power_names = {}
        for key, value in power_args.items():
            if value is None or isinstance(value, str):
                if isinstance(value, str) and value != FITTED:
                    raise ValueError(
                        f"{key}={value!r}: the constructor takes an array (one "
                        f"value per row) or {FITTED!r}; from_formula takes a "
                        "column name.")
                continue
            name = getattr(value, "name", None)
            power_names[key] = str(name) if name is not None else "v"
            inputs[key] = value
        names = {"endog": column_names(endog, "y"), "exog": var_column_names(exog, "x"),
                 "exog_re": column_names(exog_re, "Z"), "exog_var": var_names,
                 "exog_var_re": column_names(exog_var_re, "v"),
                 "exog_re_var": column_names(exog_re_var, "s")}
        for key, name in power_names.items():
            names[key] = [name]
        for what, arr in inputs.items():
            check_numeric(arr, what, names[what])
        # len() where it exists: np.asarray of a DataFrame is a costly
        # pass through pandas for a row count.
        check_not_empty(len(endog) if hasattr(endog, "__len__")
                        else len(np.asarray(endog)))
        if missing != "drop":
            # Before statsmodels' own check, whose message names no column.
            for what, arr in inputs.items():
                # the mean design as the variance design: checked once
                if arr is not None and not (same_as_exog and what == "exog_var"):
                    check_finite(arr, what, names[what])
        for what, arr in inputs.items():
            if arr is not None:
                check_rows(len(arr), len(endog), what)
        re_given = exog_re is not None
        extra = {"groups": groups, "exog_re": exog_re}
        for name in ("exog_var", "exog_var_re", "exog_re_var", *power_names):
            if inputs[name] is not None:
                extra[name] = inputs[name]
        # time and correlation_by follow the rows through missing='drop'
        self._time_name = kwargs.pop("_time_name", None)
        self._correlation_by_name = kwargs.pop("_correlation_by_name", None)
        for name, arr in (("time", time), ("correlation_by", correlation_by)):
            if arr is not None:
                if np.ndim(arr) != 1 or len(arr) != len(endog):
                    raise ValueError(f"{name} must have one value per row of "
                                     f"endog ({len(endog)}), not shape {np.shape(arr)}")
                extra[name] = np.asarray(arr)
        for name in ("exog", "exog_re", "exog_var", "exog_var_re", "exog_re_var"):
            arr = exog if name == "exog" else extra.get(name)
            if isinstance(arr, np.ndarray) and arr.ndim == 1:
                if name == "exog":
                    exog = arr[:, None]
                else:
                    extra[name] = arr[:, None]
        # MixedLM names the columns of the design it is given (a 1-d
        # exog_re is one column, as in MixedLM).
        exog_re = extra["exog_re"]
        if np.ndim(exog) == 2 and np.shape(exog)[1] == 0:
            # before statsmodels' init: its rank of an empty design fails on
            # numpy 1.24 ("zero-size array to reduction operation")
            check_has_columns(np.asarray(exog), *_NO_EXOG_COLUMNS)
        base.LikelihoodModel.__init__(
            self, endog, exog, missing=missing, **extra, **kwargs
        )
        self._init_keys.extend(["use_sqrt", "exog_vc", "var_link", "variance_blocks",
                                "correlation"])
        self._init_keys.extend(k for k in power_args if k not in self._init_keys)
        for key, value in power_args.items():
            if key not in power_names:  # None or "fitted" (arrays: set above)
                setattr(self, key, value)
        for name in ("time", "correlation_by"):
            if name not in extra:
                setattr(self, name, None)

        # Validate and convert the data.
        n = len(self.endog)
        check_not_empty(n)  # again: missing='drop' may have removed every row
        self.endog = as_float_matrix(self.endog, "endog", [self.endog_names])[:, 0]
        self.exog = as_float_matrix(self.exog, "exog", self.exog_names or [])
        check_has_columns(self.exog, *_NO_EXOG_COLUMNS)
        if self.exog_names is None:
            self.exog_names = [f"FE{k + 1:d}" for k in range(self.exog.shape[1])]
        self.k_fe = self.exog.shape[1]
        if exog_var is None:
            self.exog_var = constant_column(n)
            self._exog_var_columns = None
        else:
            # the mean design as the variance design: the same rows
            # (missing='drop' drops them from both), checked above
            self.exog_var = (self.exog if same_as_exog else
                             as_float_matrix(self.exog_var, "exog_var", var_names))
            check_has_columns(self.exog_var, "The variance design (exog_var / "
                              "var_formula)", "Leave it out for a constant "
                              "residual variance.")
            # columns of the mean design: one copy (the variance blocks
            # only read W)
            self._exog_var_columns = shared_columns(self.exog_var, self.exog,
                                                    var_names, self.exog_names)
            if self._exog_var_columns is not None:
                self.exog_var = self.exog[:, self._exog_var_columns]
        self.data.exog_var_names = var_names

        # exog_re without columns (re_formula="0"): no random effects (nlme's
        # gls), as a random intercept whose variance fit() holds at exactly
        # 0, where V_i = R_i (the engine's algebra needs q >= 1)
        self._no_random_effects = bool(
            re_given and np.shape(self.exog_re)[-1] == 0 and not self.k_vc)
        if self._no_random_effects and exog_var_re is not None:
            raise ValueError(
                "A location-scale model (var_re_formula / exog_var_re) needs "
                "random effects in the mean: re_formula='0' removes them.")
        residual_structure = (
            correlation not in (None, "independent") or self.exog_var.shape[1] > 1
            or variance_blocks or any(v is not None for v in power_args.values()))
        if self._no_random_effects and not residual_structure:
            # nothing left to estimate beyond one variance: OLS
            check_has_columns(
                self.exog_re, "The random-effects design (exog_re / re_formula)",
                "Leave re_formula out for a random intercept; for a model "
                "without random effects use OLS or WLS (with correlation= or "
                "a variance function, re_formula='0' fits nlme's gls).")
        if self._no_random_effects:
            exog_re_names = None    # the held intercept's name, "Group"
        if re_given and np.shape(self.exog_re)[-1] == 0:
            re_given = False  # variance components only, as without exog_re
        if re_given:
            self.exog_re = as_float_matrix(self.exog_re, "exog_re",
                                           names["exog_re"])
            check_has_columns(
                self.exog_re, "The random-effects design (exog_re / re_formula)",
                "Leave re_formula out for a random intercept; for a model "
                "without random effects use OLS or WLS.")
            self.data.exog_re = self.exog_re
            self.k_re = self.exog_re.shape[1]
            self.k_re2 = self.k_re * (self.k_re + 1) // 2
        elif self.k_vc == 0:
            self.k_re = 1
            self.k_re2 = 1
            self.exog_re = constant_column(n)
            self.data.exog_re = self.exog_re
            exog_re = ["Group"]  # MixedLM's name for a default random intercept
        else:
            self.k_re = 0
            self.k_re2 = 0
            self.exog_re = None

        self._set_groups(self.groups)
        var_re_names = None
        if exog_var_re is not None:
            var_re_names = ["var:" + v for v in names["exog_var_re"]]
        self._set_scale_effects(var_re_names)
        self._set_level2_design(
            None if exog_re_var is None else names["exog_re_var"])
        self.variance_function = make_variance_function(
            var_link, self.exog_var, var_names)
        self.var_link = var_link
        self.k_var = self.variance_function.k_var
        self.variance_blocks = self._check_variance_blocks(
            list(variance_blocks or []) + self._power_blocks(power_names, n), n)
        self.correlation = correlation
        self.correlation_structure = self._bind_correlation(
            correlation, location_scale=exog_var_re is not None)
        exog_z, self._vc_slots = self._build_exog_z()
        self._grouped = _engine.GroupedData.build(
            self.endog, self.exog, exog_z, self._group_index, self.n_groups,
            centre=True, k_re=self.k_re)

        names, re_names, re_names_full = self._make_param_names(
            exog_re if exog_re_names is None else list(exog_re_names))
        if not self.data._param_names:
            self.data.param_names = names
            self.data.exog_re_names = re_names
            self.data.exog_re_names_full = re_names_full
        self._set_k_params()
        if re_var_terms is not None:
            if self.exog_re_var is None:
                raise ValueError("re_var_terms restricts level-2 variance "
                                 "functions: give exog_re_var (re_var_formula) too.")
            self._set_level2_terms(re_var_terms)
        self.nobs = n
        self.n_totobs = n

        if self._partition:
            return
        _check_full_rank(self.exog, "The fixed-effects design (exog)",
                         self.exog_names,
                         "Remove or recode those terms of the mean formula.")
        if self._exog_var_columns is None:
            # (columns of the full-rank mean design have full rank)
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
    def _bind_correlation(self, correlation, location_scale=False):
        """The residual correlation block bound to the rows (None without
        one): each row's time (``time``, else its position in its group)
        and the by-variable."""
        structure = make_correlation(correlation)
        self._time_unit = None   # "days" for dates and durations
        if structure is None:
            if self.time is not None or self.correlation_by is not None:
                raise ValueError("time and correlation_by describe a residual "
                                 "correlation structure: give correlation= too "
                                 "(e.g. correlation='ar1').")
            return None
        if location_scale:
            raise NotImplementedError(
                "Residual correlation structures are not available for "
                "location-scale models (random scale effects, var_re_formula / "
                "exog_var_re): fit the correlation without random scale effects, "
                "or the location-scale model without correlation=.")
        gi = self._group_index
        if self.time is None:
            # the row order within each group (nlme's form = ~ 1 | g)
            order = np.argsort(gi, kind="stable")
            starts = np.concatenate([[0], np.cumsum(self._group_sizes)[:-1]])
            time = np.empty(len(gi))
            time[order] = np.arange(len(gi)) - starts[gi[order]]
        else:
            time, self._time_unit = time_values(self.time)
        block = structure.bind(time, gi, self.n_groups, by=self.correlation_by,
                               by_name=self._correlation_by_name or "correlation_by",
                               time_given=self.time is not None)
        if block.absorbs_random_intercept and not self._no_random_effects and \
                self._has_random_intercept() and \
                self._variance_constant_within_groups():
            warnings.warn(
                f"{block.label.capitalize()} residual correlations and a random "
                "intercept both add a covariance common to every pair of a "
                "group's rows: with residual variances constant within groups "
                "they are not separately identified, and the fit may stop "
                "anywhere on a ridge of equal likelihood. Drop the random "
                "intercept (exchangeable residuals alone are the random-"
                "intercept model when rho >= 0), or use a structure whose "
                "correlations decay (ar1, car1, arma, banded).",
                ValueWarning, stacklevel=4)
        return block

    def _variance_constant_within_groups(self) -> bool:
        """Whether the variance design is constant within every group
        (and there are no further variance blocks)."""
        if self.variance_blocks:
            return False
        w = self.exog_var
        order = np.argsort(self._group_index, kind="stable")
        gs, ws = self._group_index[order], w[order]
        same = gs[1:] == gs[:-1]
        return not np.any(same[:, None] & (ws[1:] != ws[:-1]))

    def _has_random_intercept(self) -> bool:
        """Whether a random effect is constant within groups (a random
        intercept, in exog_re or a variance component's single column)."""
        if self.k_re:
            z = self.exog_re
            if np.any(np.all(z == z[0], axis=0) & (z[0] != 0)):
                return True
        return False

    def _correlation_matrices(self, natural, group):
        """
        ``(rows, C_i)`` of a group (its index in ``group_labels`` or a
        label): the row indices of the group in the order the engine uses
        (sorted by time) and its residual correlation matrix at the natural
        correlation parameters ``natural`` (the correlation block's part
        of a natural vector).  R_i = S_i C_i S_i with
        S_i = diag(sqrt(resid_var[rows])).
        """
        block = self.correlation_structure
        if block is None:
            raise ValueError("the model has no residual correlation structure")
        if not isinstance(group, (int, np.integer)) or group not in range(self.n_groups):
            group = self.group_labels.index(group)
        return block.group_matrix(np.asarray(natural, dtype=np.float64), int(group))

    def _check_variance_blocks(self, blocks, n):
        """Validate extra variance blocks (``variance_blocks``)."""
        blocks = [] if blocks is None else list(blocks)
        for block in blocks:
            if not isinstance(block, VarianceBlock):
                raise TypeError(
                    "variance_blocks takes blocks of statsmodels_hetmixed."
                    f"structures (VarianceBlock subclasses), not {type(block).__name__}")
            if block.nobs != n:
                raise ValueError(
                    f"The variance block {block.names} describes {block.nobs} rows "
                    f"but the model has {n} observations: build it from the rows "
                    "the model uses (after dropping missing values).")
        if blocks and self.k_var_re:
            raise NotImplementedError(
                "variance_blocks are not available for location-scale models "
                "(random scale effects); use var_formula for their variance "
                "function.")
        names = [n for b in blocks for n in b.names]
        taken = set(self.variance_function.names)
        clash = [n for n in names if n in taken or names.count(n) > 1]
        if clash:
            raise ValueError(f"variance_blocks give parameter names {clash} twice "
                             "or as names of the variance function; rename them.")
        return blocks

    def _power_blocks(self, names, n):
        """The blocks of ``var_power`` and ``var_const_power`` (nlme's
        varPower and varConstPower), multiplied with the variance function
        as nlme's varComb."""
        given = {key: getattr(self, key) for key in ("var_power", "var_const_power")
                 if getattr(self, key) is not None}
        if not given:
            return []
        if self.k_var_re:
            raise NotImplementedError(
                f"{sorted(given)} is not available for location-scale models "
                "(random scale effects); give the variance function of those "
                "models with var_formula.")
        covariates = {key: FITTED if isinstance(value, str) else names[key]
                      for key, value in given.items()}
        if len(covariates) == 2 and len(set(covariates.values())) == 1:
            raise ValueError(
                "var_power and var_const_power are given the same covariate "
                f"({covariates['var_power']!r}): varConstPower contains "
                "varPower (its constant c -> 0), and both together are not "
                "identified. Give one of them.")
        classes = {"var_power": PowerVariance, "var_const_power": ConstPowerVariance}
        blocks = []
        for key, value in given.items():
            if isinstance(value, str):
                blocks.append(classes[key](FITTED, nobs=n))
            else:
                blocks.append(classes[key](value, names[key], nobs=n))
        return blocks

    def _set_scale_effects(self, names):
        """Validate the random scale-effects design (location-scale models)."""
        if names is None:
            self.exog_var_re = None
            self.k_var_re = 0
            self.var_re_names = []
            return
        v = as_float_matrix(self.exog_var_re, "exog_var_re",
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
        s = as_float_matrix(self.exog_re_var, "exog_re_var", names)
        check_has_columns(s, "The level-2 variance design (exog_re_var / "
                          "re_var_formula)", "Give at least an intercept "
                          "('~ 1'), or leave it out.")
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

    def _level2_functions(self, re_names):
        """Labels of the level-2 functions (``_level2_components`` order):
        ``logvar(<effect>)`` and ``atanh corr(<a>, <b>)``."""
        return [f"logvar({comp[0]})" if len(comp) == 1
                else f"atanh {self._level2_key(comp)}"
                for comp in self._level2_components(re_names)]

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
        codes, labels = check_groups(groups, len(self.endog),
                                     variance_components=(self.k_vc > 0
                                                          or self._partition))
        self._group_index = codes
        self.group_labels = labels.tolist()
        self.n_groups = len(self.group_labels)
        self._group_sizes = np.bincount(codes, minlength=self.n_groups)
        self.__dict__.pop("row_indices", None)

    @functools.cached_property
    def row_indices(self) -> dict:
        """MixedLM's rows of each group, {label: row positions}: built on
        first use (the fit does not need it; one array per group)."""
        order = np.argsort(self._group_index, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(self._group_sizes)])
        return {lab: order[bounds[i]:bounds[i + 1]]
                for i, lab in enumerate(self.group_labels)}

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
        if len(parts) == 1:  # exog_re alone: no copy of it
            return rows_array(parts[0]), slots
        exog_z = np.hstack(parts) if parts else np.zeros((n, 0))
        return exog_z, slots

    def __getstate__(self):
        # patsy design information cannot be pickled; rebuild it from the
        # data on unpickling, as statsmodels does for its own formulas
        # (formulaic's could, but both engines take the same route).
        state = self.__dict__.copy()
        state["_var_design_info"] = None
        state["_var_re_design_info"] = None
        state["_re_design_info"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        # pickle stores a view of exog as an array of its own: the
        # variance design shares the mean design's columns again
        cols = state.get("_exog_var_columns")
        if cols is not None and self.exog is not None and self.exog_var is not None:
            view = self.exog[:, cols]
            vf = getattr(self, "variance_function", None)
            if vf is not None and vf.exog_var is self.exog_var:
                vf.exog_var = view
            self.exog_var = view
        frame = getattr(self.data, "frame", None)
        engine = state.get("_formula_engine") or "patsy"
        for formula_key, info_key in (("var_formula", "_var_design_info"),
                                      ("var_re_formula", "_var_re_design_info"),
                                      ("_re_formula", "_re_design_info")):
            formula = state.get(formula_key)
            if formula is None or frame is None:
                continue
            try:
                setattr(self, info_key, _formula.design_spec(_formula.design(
                    formula, frame, {"np": np}, engine=engine)))
            except (*_formula.FORMULA_ERRORS, NameError, ValueError):
                pass  # using it on new data will say it cannot

    def fit_regularized(self, start_params=None, method="l1", alpha=0, ceps=1e-4,
                        ptol=1e-6, maxit=200, **fit_kwargs):
        """
        MixedLM's penalised fit (``MixedLM.fit_regularized``), for models
        without a variance function.

        The L1 path penalises the fixed effects with the covariance
        structure held at the unpenalised (HetMixedLM) fit; a smooth
        ``Penalty`` runs MixedLM's penalised fit.  The results are
        MixedLM's (``MixedLMResults``, covariances relative to the scale).
        With a variance function this raises ``NotImplementedError``:
        penalised estimation with the variance function estimated too is
        not implemented.
        """
        view = self._as_mixedlm("fit_regularized")
        res = MixedLM.fit_regularized(view, start_params=start_params, method=method,
                                      alpha=alpha, ceps=ceps, ptol=ptol, maxit=maxit,
                                      **fit_kwargs)
        self.reml = view.reml
        return res

    @property
    def has_common_scale(self) -> bool:
        """
        Whether the residual variance is one constant (no variance formula,
        no further variance blocks, no random scale effects): the model is
        MixedLM's, and its results report MixedLM's parameters
        (covariances relative to the residual variance ``scale``).
        """
        known = self.__dict__.get("_has_common_scale")
        if known is not None:  # decided while the data were there
            return known
        vf = getattr(self, "variance_function", None)
        if getattr(self, "correlation_structure", None) is not None:
            return False
        if vf is None or getattr(self, "k_var_re", 0) or \
                getattr(self, "variance_blocks", None) or vf.k_var != 1:
            return False
        w = vf.exog_var[:, 0]
        self._has_common_scale = bool(w.size and np.all(w == w[0]) and w[0] != 0)
        return self._has_common_scale

    def _make_layout(self, names):
        """The heteroskedastic model's layout: its random-effects covariance
        blocks (natural-scale names, ``covariance_names``) and its variance
        function."""
        cov_names = names[self.k_fe:]
        blocks = []
        if self.k_re:
            blocks.append(UnstructuredCovariance(cov_names[:self.k_re2],
                                                 np.arange(self.k_re)))
        for k, slots in enumerate(self._vc_slots):
            blocks.append(VarianceComponent(cov_names[self.k_re2 + k], slots))
        blocks.append(self.variance_function)
        blocks.extend(self.variance_blocks)
        if self.correlation_structure is not None:
            blocks.append(self.correlation_structure)
        return Layout(names[:self.k_fe], blocks,
                      q=self._grouped.exog_z.shape[1])

    def _make_param_names(self, exog_re):
        # Both construction paths come here (the constructor, and MixedLM's
        # from_formula once it knows the random effects' names), so the
        # layout is built here, with the names.
        if getattr(self, "_no_random_effects", False):
            exog_re = ["Group"]   # the held intercept (re_formula="0")
        names, re_names, re_names_full = super()._make_param_names(exog_re)
        fe_names = names[:self.k_fe]
        # Natural-scale (co)variances are named var(a), cov(a, b): MixedLM's
        # "a Var" means a variance relative to the residual variance.
        natural = fe_names + covariance_names(re_names, self.exog_vc.names)
        self.layout = self._make_layout(natural)
        if not self.has_common_scale:
            names = natural
            re_names_full = natural[self.k_fe:self.k_fe + self.k_re2]
        if getattr(self, "re_var_names", None):
            # Level-2 variance functions: coefficients of each effect's log
            # variance and each correlation's atanh (scale effects first),
            # on the columns each function uses.
            terms = self._re_var_terms
            names = names[:self.k_fe]
            for c, stem in enumerate(self._level2_functions(re_names)):
                names += [f"{stem}:{col}" for j, col in enumerate(self.re_var_names)
                          if terms is None or terms[c, j]]
        elif getattr(self, "k_var_re", 0):
            # Location-scale: the (co)variances of the joint random effects,
            # the mean's first, then the scale effects.
            names = fe_names + covariance_names(list(re_names) + self.var_re_names)
        if not self.has_common_scale:
            names = names + self.variance_function.names
            names += [n for b in self.variance_blocks for n in b.names]
            if self.correlation_structure is not None:
                names += self.correlation_structure.names
        # else MixedLM's names: results report MixedLM's parameters (the
        # covariances relative to the scale, which is not among them); the
        # natural vector keeps its names in self.layout.names.
        return names, re_names, re_names_full


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
        var_power=None,
        var_const_power=None,
        correlation=None,
        time=None,
        correlation_by=None,
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
            intercept), as in ``MixedLM.from_formula``.  ``"0"`` (or
            ``"~ 0"``): no random effects, nlme's ``gls`` (with
            ``correlation=`` the groups delimit the correlated rows): a
            random intercept whose variance ``fit`` holds at exactly 0, so
            V_i = R_i; the summary leaves it out and ``df_modl``, AIC and
            BIC do not count it.
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
            unless ``var_link`` is given (``"log"`` with ``var_power`` or
            ``var_const_power``: one log variance per level).  Excludes
            ``var_formula``.
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
        var_power : str, optional
            Keyword: nlme's ``varPower``, a factor ``|v| ** (2 delta)`` of
            the residual variance (sd proportional to ``|v| ** delta``),
            multiplied with the variance function (nlme's ``varComb``),
            whose intercept carries the scale.  ``v`` is a numeric column
            (no zeros), or ``"fitted"``: the fitted values ``X beta + Z b``,
            estimated by nlme's fixed-point iteration (see ``fit``).  The
            parameter is ``power(<column>)``.
        var_const_power : str, optional
            Keyword: nlme's ``varConstPower``, a factor
            ``(c + |v| ** delta) ** 2`` with ``c > 0`` (parameters
            ``const(<column>)``, ``power(<column>)``); a column (zeros
            allowed) or ``"fitted"``.
        correlation : str or CorrelationStructure, optional
            Keyword: the residual correlation within groups (see
            ``HetMixedLM``), e.g. ``"ar1"``, ``"car1"``, ``"arma(1,1)"``,
            ``"toeplitz"``, ``"unstructured"``.
        time : str, optional
            Keyword: the column that places each row within its group
            (Stata's ``t()``, nlme's ``form = ~ time | g``); default: the
            row's position among its group's rows.
        correlation_by : str, optional
            Keyword: a column constant within groups; separate correlation
            parameters per level (Stata's ``by()``).
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
        from ._daskframe import is_dask_frame
        if is_dask_frame(data):
            raise TypeError(
                "data is a Dask DataFrame: build the model with "
                "statsmodels_hetmixed.formula.api.hetmixedlm or "
                "DaskHetMixedLM.from_formula (see the documentation page "
                "'Dask'), which keep the rows in the partitions.")
        eval_env = _formula.capture_eval_env(kwargs.pop("eval_env", None))
        data, groups, kwargs = _formula.model_arguments(
            formula, data, kwargs.pop("groups"), eval_env, re_formula=re_formula,
            vc_formula=vc_formula, var_formula=var_formula, subset=subset,
            missing=missing, var_by=var_by, var_re_formula=var_re_formula,
            re_var_formula=re_var_formula, kwargs=kwargs, var_power=var_power,
            var_const_power=var_const_power, time=time,
            correlation_by=correlation_by)
        if correlation is not None:
            kwargs["correlation"] = correlation
        return super().from_formula(
            formula,
            data,
            re_formula=re_formula,
            vc_formula=vc_formula,
            subset=None,
            use_sparse=use_sparse,
            # A column name lets MixedLM label the random intercept with it.
            groups=groups,
            eval_env=eval_env,
            *args,
            **kwargs,
        )

    # ------------------------------------------------------------------
    # Likelihood
    def _objective(self, reml=None):
        """The heteroskedastic objective of this model's data and layout
        (REML as the model's ``reml`` attribute unless given)."""
        reml = self.reml if reml is None else reml
        return HeteroskedasticObjective(self._grouped, self.layout, reml,
                                        var_columns=self._exog_var_columns)

    def _split_any(self, params, what="params"):
        """(fe_params or None, natural) of a parameter vector or a
        ``HetMixedLMParams`` / ``MixedLMParams``, after checking it against
        the model."""
        if isinstance(params, MixedLMParams):
            self._not_location_scale(what)
            return self._natural_of_params(params, what)
        # location-scale models: their own layout of params
        names = self.data.param_names if self.k_var_re else self.layout.names
        vec, _ = param_vector(params, names, self.k_fe, what,
                              without_fe=not self.k_var_re)
        self._not_location_scale(what)
        return self.layout.split(vec)

    def _natural_of_params(self, params, what):
        """(fe_params or None, natural vector) of a ``HetMixedLMParams``
        (natural scale) or, for models with a common scale, a
        ``MixedLMParams`` (MixedLM's: covariances relative to the scale,
        which is profiled out as MixedLM does)."""
        k = (self.k_fe, self.k_re, self.k_vc)
        if (params.k_fe, params.k_re, params.k_vc) != k:
            raise ValueError(
                f"{what} has k_fe, k_re, k_vc = {params.k_fe}, {params.k_re}, "
                f"{params.k_vc}; this model has {k[0]}, {k[1]}, {k[2]}.")
        fe = None if params.fe_params is None else np.asarray(params.fe_params, float)
        cov_re = np.asarray(params.cov_re, float).reshape(self.k_re, self.k_re)
        vcomp = np.asarray(params.vcomp, float).reshape(self.k_vc)
        if isinstance(params, HetMixedLMParams):
            var = np.asarray(params.var_params, float).ravel()
            k_var = self.layout.k_structure - self.k_re2 - self.k_vc
            if var.size != k_var:
                raise ValueError(
                    f"{what}.var_params has {var.size} values; this model has "
                    f"{k_var}: {self.layout.names[-k_var:]}.")
        else:
            self._mixedlm_params_allowed(what)
            # MixedLM's MixedLMParams are relative to the residual variance:
            # at these values the scale is its profile (GLS) estimate.
            fe_gls = self.get_fe_params(cov_re, vcomp) if fe is None else fe
            scale = MixedLM.get_scale(self, fe_gls, cov_re, vcomp)
            cov_re, vcomp = cov_re * scale, vcomp * scale
            w0 = self.variance_function.exog_var[0, 0]
            var = np.array([np.log(scale) / w0 if self.var_link == "log"
                            else scale / w0])
        natural = np.concatenate([cov_re[np.tril_indices(self.k_re)], vcomp, var])
        return fe, natural

    def _mixedlm_params_allowed(self, what):
        if not self.has_common_scale:
            raise TypeError(
                f"{what}: MixedLMParams hold covariances relative to one "
                "residual variance, which this model (with a variance "
                "function) does not have. Give a HetMixedLMParams (with "
                "var_params) or a vector in the order of model.layout.names.")

    def _as_mixedlm(self, what):
        """MixedLM's own code on this model's data (common scale only)."""
        if not self.has_common_scale:
            raise NotImplementedError(
                f"{what} is available for models without a variance function "
                "(MixedLM's model), where it is MixedLM's. With a variance "
                "function, penalised estimation of the variance function is "
                "not implemented: fit without penalties, or drop the variance "
                "formula.")
        return _MixedLMView(self)

    def _as_mixedlm_fit(self, results):
        """What MixedLM's fit_regularized reads off an unpenalised fit, in
        MixedLM's terms (covariances relative to the scale)."""
        res = getattr(results, "_results", results)
        scale = float(res.scale)
        fe = np.array(res.fe_params, dtype=float)
        cov_re = np.array(res.cov_re, dtype=float).reshape(self.k_re, self.k_re)
        vcomp = np.array(res.vcomp, dtype=float).reshape(self.k_vc)
        unscaled = MixedLMParams.from_components(fe, cov_re=cov_re / scale,
                                                 vcomp=vcomp / scale)
        return types.SimpleNamespace(
            fe_params=fe, cov_re=cov_re, vcomp=vcomp, scale=scale,
            cov_re_unscaled=cov_re / scale, method=res.method,
            params=unscaled.get_packed(use_sqrt=False, has_fe=True),
            params_object=unscaled, converged=res.converged)

    def _not_location_scale(self, what):
        if self.k_var_re:
            raise NotImplementedError(
                "score and hessian are available for models without random "
                "scale effects; for location-scale models use loglike(params) "
                "or a fit's results (llf, cov_params, profile_ci).")

    def loglike(self, params, profile_fe=True):
        """
        Log-likelihood (REML criterion when the model was last fit by REML).

        Parameters
        ----------
        params : array_like, HetMixedLMParams or MixedLMParams
            Natural parameter vector, with (``k_params``) or without
            (``k_params - k_fe``) the fixed effects, in the order of
            ``model.layout.names``; another length is an error.  Or a
            ``HetMixedLMParams`` (natural scale, with the variance
            function).  A ``MixedLMParams`` (models without a variance
            function) is read exactly as ``MixedLM.loglike`` reads it:
            covariances relative to the scale, which is profiled out.
            Location-scale models: the whole vector (fixed effects
            included) in the layout of their ``params``, evaluated by ML
            with adaptive quadrature (default nodes).
        profile_fe : bool
            If True, or if ``params`` has no fixed effects, the fixed effects
            are replaced by their GLS estimates.

        Returns
        -------
        float
        """
        if self.k_var_re:
            return location_scale_loglike(self, params)
        if type(params) is MixedLMParams and self.has_common_scale:
            return MixedLM.loglike(self, params, profile_fe=profile_fe)
        fe, natural = self._split_any(params)
        fe = None if profile_fe else fe
        try:
            return self._objective().evaluate(natural, fe_params=fe).llf
        except np.linalg.LinAlgError:
            return -np.inf

    def score(self, params, profile_fe=True):
        """
        Gradient of ``loglike`` in the natural parameters.

        Given a ``MixedLMParams`` (models without a variance function), it
        is ``MixedLM.score``: the gradient in MixedLM's packed parameters
        (square-root scale if the model's ``use_sqrt``), without the scale.

        With ``profile_fe`` (or a vector without fixed effects) the gradient
        of the profile log-likelihood in the covariance and variance-function
        parameters; otherwise (ML only) also the fixed-effects block first.
        """
        if type(params) is MixedLMParams and self.has_common_scale:
            return MixedLM.score(self, params, profile_fe=profile_fe)
        fe, natural = self._split_any(params)
        use_fe = None if profile_fe else fe
        objective = self._objective()
        ev = objective.evaluate(natural, fe_params=use_fe, gradient=True)
        g = objective.natural_gradient(ev, natural)
        if use_fe is None:
            return g
        return np.concatenate([ev.score_fe, g])

    def hessian(self, params):
        """
        Hessian of the log-likelihood in the natural parameters.

        The fixed-effects block is ``-X'V^-1 X``; the covariance and
        variance-function block is the Hessian of the log-likelihood profiled
        over the fixed effects (REML: of the REML criterion), the observed
        information of ``HeteroskedasticObjective``; the cross block is
        zero (see the documentation on standard errors).

        Given a ``MixedLMParams`` (models without a variance function), it
        is ``MixedLM.hessian``: in MixedLM's packed parameters (fixed
        effects, covariances relative to the scale), with its cross block.

        Returns
        -------
        hess : ndarray
        sing : bool
            True if the fixed-effects information matrix is singular.
        """
        if type(params) is MixedLMParams and self.has_common_scale:
            return MixedLM.hessian(self, params)
        _, natural = self._split_any(params)
        information = self._objective().observed_information(natural)
        h_cov, ev = information.hessian, information.evaluation
        kfe = self.k_fe
        hess = np.zeros((self.k_params, self.k_params))
        hess[:kfe, :kfe] = -ev.xtvix
        hess[kfe:, kfe:] = h_cov
        return hess, False

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
        ddf=None,
        cov_type="nonrobust",
        cov_kwds=None,
        **fit_kwargs,
    ):
        """
        Fit the model by ML or REML.

        Parameters
        ----------
        start_params : array_like, optional
            Natural parameter vector (with or without fixed effects), in
            the order of the model's parameter names; finite.  The default
            starts from OLS residuals: a regression of their log squares on
            W gives the variance function.  Location-scale models: the whole
            vector, fixed effects included, in the layout of their
            ``params`` (the default starts from the fit without random
            scale effects).
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
            random effects.  Not for location-scale models (an error).
        full_output : bool
            Record the log-likelihood at each iteration in ``results.hist``.
            Not for location-scale models (an error).
        method : str or list of str, optional
            Optimisers tried in turn: "scoring" (Fisher scoring with the
            analytic expected information, the default first choice) or a
            scipy.optimize.minimize method (default fallback "bfgs"; the
            only default with ``var_const_power``, whose natural scale
            does not suit scoring); the
            result is checked, and if needed polished, by Newton steps on
            the analytic gradient.  Location-scale models have their own
            optimiser: giving ``method`` is an error.
        n_quad : int, optional
            Location-scale models: quadrature nodes per dimension of the
            random scale effects (default 15 for one, 5 for two; 1 is the
            Laplace approximation).
        re_cov : {"joint", "independent"}
            Location-scale models: correlated mean and scale random effects
            (default) or independent blocks.
        ddf : {None, "satterthwaite", "kenward-roger", "residual", \
"between-within"}
            Denominator degrees of freedom of the fixed effects' tests
            (see :mod:`statsmodels_hetmixed.ddf` and the page on
            small-sample inference).  None (default): z-tests.  Otherwise
            ``results.df_fe`` holds one df per fixed effect and
            ``pvalues``, ``conf_int``, ``t_test``, ``wald_test`` (F) and
            ``summary`` use t and F distributions with them;
            ``"kenward-roger"`` also replaces the fixed effects' covariance
            (``bse_fe``, ``cov_params``) by the adjusted one.  Without a
            variance formula (where ``params`` are MixedLM's) the fixed
            effects' block of ``cov_params`` is then the model-based
            ``(X'V^-1 X)^-1`` the methods are defined on (as lmerTest and
            pbkrtest), not that of MixedLM's joint inverse Hessian.  Not
            for location-scale models.
        cov_type : {"nonrobust", "cluster"}
            Covariance of the fixed effects: model-based
            ``(X'V^-1 X)^-1`` (default, statsmodels' name), or the
            cluster-robust sandwich (see :mod:`statsmodels_hetmixed.robust`);
            the covariance parameters' block stays model-based.
        cov_kwds : dict, optional
            For ``cov_type="cluster"``: ``"correction"``, one of ``"CR0"``,
            ``"CR1"`` (default, m / (m - 1)), ``"CR1S"`` (Stata's regression
            multiplier) or ``"CR2"`` (bias-reduced linearisation, with
            Satterthwaite degrees of freedom in ``df_fe``), as R's
            clubSandwich; ``"groups"``: the clusters, a column of the
            formula's data or one label per row, the model's groups or a
            coarser level containing whole groups (default: the groups).
        **fit_kwargs
            ``gtol`` and ``maxiter`` for the optimiser (location-scale
            models: ``maxiter`` only; ``gtol`` is an error).  ``disp=True``
            prints one line per optimiser iteration on stdout: the
            log-likelihood and the largest absolute gradient entry of the
            optimiser's parameters.  ``callback`` is called after each
            iteration as ``callback(params)`` with a copy of the optimiser's
            current parameter vector: without random scale effects the
            covariance and variance-function parameters on the natural
            scale (the fixed effects are profiled out), in the order of
            ``params`` after the fixed effects, before the conversion to
            MixedLM's scaled parameters; for location-scale models the
            fixed effects, the variance-function coefficients ``a`` and the
            entries of the Cholesky factor of the random-effects covariance
            (mean effects first; with level-2 variance functions, their
            coefficients).  Other arguments are ignored with a
            ``FutureWarning``, as in ``MixedLM.fit``.

        Returns
        -------
        HetMixedLMResults
            (wrapped so that pandas input gives labelled output).
        """
        if fe_pen is not None or cov_pen is not None:
            # MixedLM's penalised fit, exactly (its optimiser and results).
            view = self._as_mixedlm("Penalised estimation (fe_pen, cov_pen)")
            res = MixedLM.fit(view, start_params=start_params, reml=reml,
                              niter_sa=niter_sa, do_cg=do_cg, fe_pen=fe_pen,
                              cov_pen=cov_pen, free=free, full_output=full_output,
                              method=method, **fit_kwargs)
            self.reml = view.reml
            return res
        if isinstance(cov_type, str) and cov_type not in robust.COV_TYPES:
            # MixedLM.fit warns and ignores cov_type (statsmodels' own suite
            # tests it); code written for MixedLM keeps working.
            warnings.warn(
                f"Argument cov_type={cov_type!r} not used by HetMixedLM.fit: "
                "its covariance types are 'nonrobust' (the default, used here) "
                "and 'cluster' (with cov_kwds={'correction': 'CR0' | 'CR1' | "
                "'CR1S' | 'CR2'}). Future versions will raise.",
                FutureWarning, stacklevel=2)
            cov_type = "nonrobust"
        # checked before the fit, so that a typo costs no optimisation
        cov_type, cov_options = robust.check_cov_args(cov_type, cov_kwds)
        if cov_type != "nonrobust":
            if self.k_var_re:
                raise NotImplementedError(
                    "cov_type='cluster' is not available for location-scale "
                    "models (random scale effects).")
            if ddf is not None:
                raise ValueError(
                    "ddf cannot be combined with cov_type='cluster': the "
                    "cluster-robust covariance has its own degrees of freedom "
                    "(CR2: cov_kwds={'correction': 'CR2'}). Give one of them.")
            robust.cluster_labels(self, cov_options["groups"])
        fit_kwargs = fit_options(fit_kwargs, _FIT_OPTIONS, "HetMixedLM.fit")
        disp = bool(fit_kwargs.pop("disp", False))
        callback = fit_kwargs.pop("callback", None)
        ddf = _ddf.normalise_method(ddf)
        if self.k_var_re and ddf is not None:
            raise NotImplementedError(
                "ddf is not available for location-scale models (random scale "
                "effects): their likelihood is not Gaussian. Fit without ddf.")
        if self.k_var_re:
            # called from here, so that the fit's warnings point at the
            # caller of fit (their stacklevels count the frames)
            self._check_location_scale_options(method, free, full_output, fit_kwargs)
            return fit_location_scale(self, reml=reml, start_params=start_params,
                                      n_quad=n_quad, re_cov=re_cov, do_cg=do_cg,
                                      maxiter=fit_kwargs.get("maxiter"),
                                      trace=Trace.make(disp, callback))
        if n_quad is not None or re_cov != "joint":
            raise ValueError("n_quad and re_cov apply to location-scale models "
                             "(var_re_formula / exog_var_re) only")
        # As MixedLM: the criterion of the last fit, read by loglike, score
        # and hessian.  Results keep their own (reml below).
        self.reml = bool(reml)
        lay = self.layout
        if method is None:
            method = ["scoring", "bfgs"] if lay.scoring else ["bfgs"]
        elif isinstance(method, str):
            method = [method]

        fitted_tol = fit_kwargs.pop("fitted_tol", fixedpoint.DEFAULT_TOL)
        fitted_maxiter = int(fit_kwargs.pop("fitted_maxiter",
                                            fixedpoint.DEFAULT_MAXITER))
        iterate = lay.depends_on_fitted and do_cg
        if lay.depends_on_fitted:
            # nlme's first v: fitted values before any variance parameter
            # is estimated (the OLS fit of the mean)
            lay.update(self._ols_fitted())
        objective = self._objective(reml=self.reml)
        if self._no_random_effects:
            start_params, free = self._without_random_effects(
                objective, start_params, free)

        def start(objective):
            if start_params is None:
                return objective.start()
            return lay.from_natural(self._start_natural(start_params))

        # a correlation structure starts from the fit without it (also the
        # first fit of the fixed-point iteration, with the OLS fitted values),
        # which makes its own start: none is needed here then
        only_correlation_start = (start_params is None and free is None and not iterate
                                  and lay.correlation_block is not None)
        theta = None if only_correlation_start else start(objective)
        mask = self._free_mask(free, theta)
        correlation_start = start_params is None and \
            lay.correlation_block is not None and (mask is None or np.all(mask))
        if correlation_start and not iterate:
            theta = self._correlation_start(reml=self.reml)

        trace = Trace.make(disp, callback, record=bool(full_output))
        hist = None if trace is None else trace.hist
        fixed_point = None
        if iterate:
            def first(objective):
                if correlation_start:
                    return self._correlation_start(reml=self.reml)
                x = start(objective)
                self._free_mask(free, x)  # held entries, as theta's
                return x

            est, objective, fixed_point = fixedpoint.iterate(
                lay, functools.partial(self._objective, reml=self.reml),
                self._fitted_of, self._ols_fitted(), first, mask,
                methods=method, options=fit_kwargs, hist=trace,
                tol=fitted_tol, maxiter=fitted_maxiter)
        else:
            est = optim.estimate(objective, theta, mask, methods=method,
                                 options=fit_kwargs, hist=trace, optimise=do_cg)
        corr = lay.correlation_block
        if est.converged and corr is not None and \
                corr.degenerate(est.natural[lay.corr_natural]) is not None:
            # singular C_i: the likelihood rises towards them, no maximum
            # (warn_fit_problems says why)
            est.converged = False
        held = None
        if self._no_random_effects:   # zero by construction, not an estimate
            held = np.zeros(lay.k_structure, bool)
            held[lay.cov_natural] = True
        inference.warn_fit_problems(est, lay, optimised=do_cg, reml=self.reml,
                                    held_zero=held,
                                    re_basis=self._grouped.re_basis)
        cov_params = inference.covariance_of_estimates(est, lay, mask)
        params = lay.join(est.evaluation.fe_params, est.natural)
        small_sample = None
        if ddf is not None:
            small_sample = self._small_sample(ddf, objective, est, mask, cov_params)
            if small_sample.cov_fe is not None:  # Kenward-Roger's adjusted one
                cov_params[:lay.k_fe, :lay.k_fe] = small_sample.cov_fe
        natural = None
        if self.has_common_scale:
            # Results report MixedLM's parameters, and keep the natural ones.
            natural = (params, cov_params)
            params, cov_params = mixedlm_parameters(
                lay, params, cov_params, objective.fe_score_jacobian(
                    est.natural, est.evaluation.fe_params, est.evaluation))
            if small_sample is not None:
                # The small-sample methods are defined on the fixed effects'
                # model-based covariance (X'V^-1 X)^-1 (Kenward-Roger: its
                # adjustment), as lmerTest and pbkrtest, not on the block of
                # MixedLM's joint inverse Hessian: the t-tests use it.
                k = lay.k_fe
                cov_params[:k, :] = 0.0
                cov_params[:, :k] = 0.0
                cov_params[:k, :k] = natural[1][:k, :k]
        # statsmodels multiplies normalized_cov_params by results.scale.
        res = HetMixedLMResults(self, params, cov_params / objective.scale(est.natural))
        res._ddf = small_sample
        # A later fit of this model moves the fitted-value blocks' v: the
        # results keep their own copies, at the v of their estimates.
        res_layout = lay.with_copies([b for b in lay.blocks if b.depends_on_fitted]
                                     ) if lay.depends_on_fitted else None
        res._finish(est.evaluation, converged=est.converged, max_grad=est.max_grad,
                    decrement=est.decrement, n_iter=est.n_iter, hist=hist,
                    method=method, free=mask, reml=self.reml, natural=natural,
                    layout=res_layout)
        res.fixed_point = fixed_point
        robust.apply_cov_type(res, cov_type, cov_kwds)
        return HetMixedLMResultsWrapper(res)

    def _ols_fitted(self) -> np.ndarray:
        """OLS fitted values of the mean: the first covariate of variance
        functions of the fitted values."""
        coef, *_ = np.linalg.lstsq(self.exog, self.endog, rcond=None)
        return self.exog @ coef

    def _fitted_of(self, evaluation) -> np.ndarray:
        """Fitted values of the innermost level, X beta + Z b, of an engine
        evaluation (nlme's ``fitted(.)`` of a variance function)."""
        grouped = self._grouped
        return self.exog @ evaluation.fe_params + _engine.rows_times_group(
            grouped, grouped.exog_z, evaluation.blup)
    def _without_random_effects(self, objective, start_params, free):
        """``(start_params, free)`` of a model without random effects
        (``re_formula="0"``): its random intercept's variance held at 0
        (V_i = R_i exactly), the other parameters as given."""
        lay = self.layout
        if start_params is None:
            natural = lay.to_natural(objective.start())
        else:
            natural = np.array(self._start_natural(start_params), dtype=float)
        natural[lay.cov_natural] = 0.0
        if free is None:
            mask = np.ones(lay.k_params)
        elif isinstance(free, MixedLMParams):
            raise TypeError("free: give a 0/1 vector over the parameters of "
                            "layout.names for a model without random effects")
        else:
            mask = np.array(free, dtype=float)
            if mask.size == lay.k_structure:
                mask = np.concatenate([np.ones(lay.k_fe), mask])
        mask[lay.k_fe:][lay.cov_natural] = 0.0
        return natural, mask

    def _correlation_start(self, reml):
        """
        Default starting values of a model with a residual correlation
        structure: the estimates of the same model without it, and the
        structure's own start (a weak correlation).  Started from the OLS
        residuals instead, fits of ARMA(1,1) with a random intercept
        (orthodont, REML) stopped at a local maximum 3.3 below nlme's,
        where a correlation near 1 had taken over the random intercept;
        from the uncorrelated fit they reach it.
        """
        lay = self.layout
        corr = lay.correlation_block
        inner = Layout(lay.fe_names, [b for b in lay.blocks if b is not corr], q=lay.q)
        objective = HeteroskedasticObjective(self._grouped, inner, reml,
                                             var_columns=self._exog_var_columns)
        free = objective.start()
        mask = np.ones(free.size, bool)
        # a few scoring steps: a start, not an estimate (scoring converges
        # in about 5 steps from the OLS start; 10 cost the same as a fit),
        # stopped once the Newton decrement (twice the log-likelihood still
        # to gain) is below 1e-3 instead of the fit's 1e-10: the steps in
        # between move the start by far less than a standard error (on
        # the AR(1) benchmark: 4 evaluations instead of 6)
        free, _, _ = optim.run_method("scoring", objective, free, mask,
                                      {"maxiter": 50, "decrement_tol": 1e-3}, None)
        natural = np.concatenate([inner.to_natural(free), corr.start(None)])
        return lay.from_natural(natural)

    def _start_natural(self, start_params):
        """The natural vector (without fixed effects) of ``start_params``:
        a vector in the order of ``layout.names``, a ``HetMixedLMParams``,
        or, for models without a variance function, what MixedLM takes
        (a ``MixedLMParams``, or its packed vector with or without the
        fixed effects, read with the model's ``use_sqrt``)."""
        if self.has_common_scale and not isinstance(start_params, MixedLMParams):
            vec = np.asarray(start_params, dtype=float)
            packed = (self.k_fe + self.k_re2 + self.k_vc, self.k_re2 + self.k_vc)
            natural = (self.layout.k_params, self.layout.k_structure)
            if vec.ndim == 1 and vec.size in packed and vec.size not in natural:
                start_params = MixedLMParams.from_packed(
                    vec, self.k_fe, self.k_re, self.use_sqrt,
                    has_fe=vec.size == packed[0])
        return self._split_any(start_params, "start_params")[1]

    def _small_sample(self, method, objective, est, mask, cov_params):
        """The small-sample method ``method`` at the estimate ``est``
        (``ddf.build``), over the estimated covariance parameters."""
        lay = self.layout
        index = (np.arange(lay.k_structure) if mask is None
                 else np.flatnonzero(mask))
        full = lay.k_fe + index
        return _ddf.build(method, objective, est.natural, index,
                          cov_params[np.ix_(full, full)], list(self.exog_names),
                          self.exog, self._group_index, self.n_groups)

    def _check_location_scale_options(self, method, free, full_output, fit_kwargs):
        """Options of ``fit`` that a location-scale fit cannot honour are
        errors, not silently dropped."""
        unusable = {"method": method is not None, "free": free is not None,
                    "full_output": bool(full_output), "gtol": "gtol" in fit_kwargs}
        unusable = [k for k, given in unusable.items() if given]
        if unusable:
            raise ValueError(
                f"{unusable} cannot be used with location-scale models (random "
                "scale effects): they are fitted by their own quasi-Newton and "
                "Newton steps on the adaptive-quadrature log-likelihood, with "
                "every parameter free. Leave these arguments out; maxiter, "
                "start_params, n_quad and re_cov apply.")

    def _free_mask(self, free, theta):
        """Boolean mask over theta from ``free`` (MixedLM's argument: a
        0/1 mask over the natural parameters, or MixedLMParams); ``theta``
        is adjusted in place to what holding those parameters means on
        the free scale (``Layout.hold``)."""
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
            fe_mask, mask = lay.split(free)
            fe_mask = np.ones(self.k_fe) if fe_mask is None else fe_mask
        if np.any(np.asarray(fe_mask) == 0):
            raise NotImplementedError(
                "HetMixedLM cannot hold fixed effects at given values; use an "
                "offset (subtract them from endog) instead.")
        mask = mask != 0
        theta[:] = lay.hold(mask, theta)
        return mask

