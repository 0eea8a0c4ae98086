"""
Plots for fitted HetMixedLM and location-scale models.

matplotlib is an optional dependency: it is imported only when a plot is
drawn (``pip install matplotlib``, or ``pip install ".[plots]"`` from the
checkout).

* :func:`plot_random_effects_qq` -- normal Q-Q plots of the predicted
  (empirical-Bayes) random effects, one panel per effect.
* :func:`plot_group_variance` -- each group's predicted residual variance as
  a function of a level-1 predictor of the variance function.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from . import _formula

__all__ = ["plot_random_effects_qq", "plot_group_variance"]


def _import_pyplot():
    """matplotlib.pyplot, or an ImportError saying how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "statsmodels_hetmixed.graphics needs matplotlib, which is not "
            "installed. Install it with `pip install matplotlib` (or, in "
            "the package's checkout, `pip install \".[plots]\"`).") from exc
    return plt


def _axes_list(ax, n, plt, panel_size=(3.4, 3.4)):
    """n axes: new ones in one row, or the ones given (checked)."""
    if ax is None:
        fig, axes = plt.subplots(1, n, figsize=(panel_size[0] * n, panel_size[1]),
                                 squeeze=False)
        return fig, list(axes.ravel())
    axes = list(np.atleast_1d(np.asarray(ax, dtype=object)).ravel())
    if len(axes) != n:
        raise ValueError(f"ax must hold {n} Axes (one per random effect), "
                         f"got {len(axes)}")
    return axes[0].figure, axes


def _ppoints(n):
    """Plotting positions of R's ``ppoints`` (a = 3/8 for n <= 10, else 1/2)."""
    a = 3.0 / 8.0 if n <= 10 else 0.5
    return (np.arange(1, n + 1) - a) / (n + 1 - 2 * a)


def _random_effects_frame(results):
    """Predicted random effects as a DataFrame (groups x effects)."""
    re = results.random_effects
    frame = pd.DataFrame({lab: s for lab, s in re.items()}).T
    if frame.shape[1] == 0:
        raise ValueError("The model has no random effects to plot.")
    return frame


def plot_random_effects_qq(results, ax=None):
    """
    Normal Q-Q plots of the predicted random effects.

    One panel per random effect: for location-scale models the mean's
    random effects (e.g. ``school``, ``cses``) and the scale effects
    (``var:school``, ``var:cses``).  The empirical-Bayes predictions
    (posterior means, ``results.random_effects``) are plotted, unstandardised,
    against normal quantiles, with a reference line through the first and
    third quartiles (as R's ``qqline``).

    Parameters
    ----------
    results : HetMixedLMResults or LocationScaleResults
        A fitted model (the results wrapper returned by ``fit`` works too).
    ax : matplotlib Axes or sequence of Axes, optional
        One Axes per random effect.  By default a new figure with one row
        of panels is created.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the panels.

    Raises
    ------
    ValueError
        If ``ax`` does not hold one Axes per random effect.
    ImportError
        If matplotlib is not installed.

    Notes
    -----
    Empirical-Bayes predictions are shrunk towards zero, more so in small
    groups, so their spread is smaller than the random effects' variance
    and their distribution need not be exactly normal even when the model
    holds.  The plot is a screening tool for outlying groups and gross
    departures (skewness, heavy tails), not a test.

    Examples
    --------
    >>> from statsmodels_hetmixed.graphics import plot_random_effects_qq
    >>> fig = plot_random_effects_qq(result)            # doctest: +SKIP
    """
    plt = _import_pyplot()
    frame = _random_effects_frame(results)
    fig, axes = _axes_list(ax, frame.shape[1], plt)
    for name, axis in zip(frame.columns, axes):
        values = np.sort(frame[name].dropna().to_numpy(dtype=float))
        n = len(values)
        theo = stats.norm.ppf(_ppoints(n))
        axis.plot(theo, values, "o", markersize=3.5, alpha=0.75, color="C0")
        q_sample = np.quantile(values, [0.25, 0.75])
        q_theo = stats.norm.ppf([0.25, 0.75])
        if q_theo[1] > q_theo[0] and n > 1:
            slope = (q_sample[1] - q_sample[0]) / (q_theo[1] - q_theo[0])
            intercept = q_sample[0] - slope * q_theo[0]
            axis.axline((0.0, intercept), slope=slope, color="C1", lw=1.2)
        axis.set_title(str(name))
        axis.set_xlabel("Normal quantiles")
        if str(name).startswith("var:"):
            # scale effects act on the log residual variance
            axis.set_ylabel("Predicted scale effect (log-variance scale)")
        else:
            axis.set_ylabel("Predicted random effect (response scale)")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------
# Group-specific variance functions

def _formula_names(design_info):
    """Variable names used by a design, and those used categorically."""
    names, categorical = _formula.spec_names(design_info)
    return set(names), categorical


def _var_re_design_info(model, frame):
    """Design information of ``var_re_formula`` (rebuilt from the data)."""
    formula = getattr(model, "var_re_formula", None)
    if formula is None:
        return None
    stored = getattr(model, "_var_re_design_info", None)
    if stored is not None:
        return stored
    try:
        mat = _formula.design(formula, frame, {"np": np},
                              getattr(model, "_formula_engine", None) or "patsy")
    except (*_formula.FORMULA_ERRORS, NameError) as exc:
        raise ValueError(
            f"var_re_formula {formula!r} could not be rebuilt from the data "
            f"({exc}).") from exc
    if mat.shape != model.exog_var_re.shape or not np.allclose(
            np.asarray(mat, dtype=float), model.exog_var_re):
        raise ValueError("var_re_formula rebuilt from data does not reproduce "
                         "the model's exog_var_re: pass the data the model was "
                         "fitted on.")
    return _formula.design_spec(mat)


def _hold_value(values, categorical):
    """A group's value of a variable: its mean (numeric) or its mode."""
    if not categorical and pd.api.types.is_numeric_dtype(values) and \
            not pd.api.types.is_bool_dtype(values):
        return float(np.mean(values))
    counts = values.value_counts(sort=True)
    return counts.index[0]


def _group_colours(levels, plt):
    """A colour per level: the colour cycle for up to 10 categories, a
    colormap beyond that.  Returns (colours, colorbar mappable or None)."""
    import matplotlib as mpl

    k = len(levels)
    numeric = all(isinstance(v, (int, float, np.integer, np.floating))
                  and not isinstance(v, (bool, np.bool_)) for v in levels)
    if k <= 10:
        return {lev: f"C{j}" for j, lev in enumerate(levels)}, None
    cmap = mpl.colormaps["viridis"]
    if numeric:
        norm = mpl.colors.Normalize(vmin=min(levels), vmax=max(levels))
        mappable = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        return {lev: cmap(norm(lev)) for lev in levels}, mappable
    return {lev: cmap(j / (k - 1)) for j, lev in enumerate(levels)}, None


def plot_group_variance(results, x: str, data: pd.DataFrame | None = None,
                        by: str | None = None, n_points: int = 50, ax=None,
                        log_scale: bool = False, **line_kwargs: Any):
    """
    Predicted within-group residual variance as a function of ``x``.

    Draws one line per group: the group's residual variance

    .. math::

       \\hat\\sigma^2_i(x) = \\exp(w(x)'\\hat a + v(x)'\\hat\\omega_i)

    evaluated over the range of ``x`` observed in that group (points at
    the values observed in the group when ``x`` is binary, categorical or
    text, or constant within the group, such as a group-level ``x``), with
    :math:`\\hat\\omega_i` the group's empirical-Bayes scale effects
    (location-scale models; zero otherwise, and ``w(x)'a`` for the identity
    link).  The other variables of ``var_formula`` and ``var_re_formula``
    are held at the group's own value -- its mean where they vary within
    the group (its most frequent level for categorical variables).  Lines
    are coloured by the group-level variable ``by``.

    Parameters
    ----------
    results : HetMixedLMResults or LocationScaleResults
        A model fitted from formulas with ``x`` in ``var_formula`` and/or
        ``var_re_formula``.
    x : str
        Name of a variable used by the variance formulas: numeric (a line
        per group) or binary, categorical or text (points per group, one
        tick per level).
    data : pandas.DataFrame, optional
        The rows the model was fitted on, in the same order, holding ``x``,
        ``by`` and the variables of the variance formulas.  Default: the
        data the model was built from.
    by : str, optional
        A group-level column of ``data`` (constant within groups) that
        colours the lines, e.g. ``"sector"``; a legend names its levels
        (a colour bar is drawn instead for a numeric variable with more
        than 10 values).
    n_points : int
        Number of points at which each group's curve is evaluated.
    ax : matplotlib Axes, optional
        Axes to draw on; by default a new figure is created.
    log_scale : bool
        Draw the variance on a logarithmic axis (the log-linear variance
        function is then straight in a linear ``x``).
    **line_kwargs
        Passed to ``Axes.plot`` for every group's line (default
        ``lw=1, alpha=0.7``); a ``color`` given here overrides the
        colouring by ``by``.

    Returns
    -------
    matplotlib.figure.Figure
        The figure.  Its axes hold one line per group (in the order of
        ``model.group_labels``, labelled with the group label).

    Raises
    ------
    ValueError
        If ``x`` or ``by`` is not a column of the data, ``x`` is not used
        by the variance formulas or has missing values, ``by`` varies within a
        group, ``data`` does not reproduce the model's variance designs, or
        the model was not built from formulas.
    ImportError
        If matplotlib is not installed.

    Notes
    -----
    The design of ``var_re_formula`` is rebuilt from ``data`` (the model
    does not keep it), evaluated with numpy available as ``np``; the
    rebuilt design is checked against the model's ``exog_var_re``.

    Examples
    --------
    >>> from statsmodels_hetmixed.graphics import plot_group_variance
    >>> fig = plot_group_variance(result, "cses", by="sector")  # doctest: +SKIP
    """
    plt = _import_pyplot()
    model = results.model
    if not isinstance(n_points, (int, np.integer)) or n_points < 2:
        raise ValueError("n_points must be an integer of at least 2")
    if data is None:
        data = getattr(model.data, "frame", None)
        if data is None:
            raise ValueError(
                "plot_group_variance needs the data: pass data= (the rows "
                "the model was fitted on) or build the model from formulas.")
    if not isinstance(data, pd.DataFrame):
        raise ValueError("data must be a pandas DataFrame")
    if len(data) != model.nobs:
        raise ValueError(f"data must have the model's {model.nobs} rows, in "
                         f"the model's order; it has {len(data)}")
    for what, col in (("x", x), ("by", by)):
        if col is not None and col not in data.columns:
            raise ValueError(f"{what}={col!r} is not a column of the data")

    var_info = getattr(model, "_var_design_info", None)
    has_var_formula = getattr(model, "var_formula", None) is not None
    if has_var_formula and var_info is None:
        raise ValueError("The variance formula's design is not available "
                         "(e.g. a model loaded from a pickle); refit the model "
                         "from formulas.")
    if not has_var_formula and model.data.exog_var_names != ["Intercept"]:
        raise ValueError("plot_group_variance needs a model built from "
                         "formulas (var_formula), not from design arrays.")
    k_var_re = getattr(model, "k_var_re", 0)
    frame = data.reset_index(drop=True)
    re_info = _var_re_design_info(model, frame) if k_var_re else None
    if var_info is not None:
        w_check = _formula.build_rows(var_info, frame, na_action="raise")
        if not np.allclose(np.asarray(w_check, dtype=float), model.exog_var):
            raise ValueError("var_formula applied to data does not reproduce "
                             "the model's exog_var: pass the data the model "
                             "was fitted on.")

    names_w, cat_w = _formula_names(var_info)
    names_v, cat_v = _formula_names(re_info)
    used = [c for c in frame.columns if c in (names_w | names_v)]
    categorical = (cat_w | cat_v) & set(used)
    if x not in used:
        raise ValueError(
            f"x={x!r} is not used by var_formula "
            f"({getattr(model, 'var_formula', None)!r}) or "
            f"var_re_formula ({getattr(model, 'var_re_formula', None)!r})")
    if frame[x].isna().any():
        raise ValueError(f"x={x!r} has missing values: pass the rows the "
                         "model was fitted on")
    # Binary, categorical and text x: points at the values observed in each
    # group (a line between 0 and 1, or between levels, would suggest
    # values in between).
    numeric = x not in categorical and pd.api.types.is_numeric_dtype(frame[x])
    levels_x = sorted(pd.unique(frame[x]), key=lambda v: (str(type(v)), v))
    discrete = not numeric or len(levels_x) <= 2
    position = ({v: float(v) for v in levels_x} if numeric
                else {v: float(k) for k, v in enumerate(levels_x)})

    var_params = np.asarray(results.var_params, dtype=float)
    if k_var_re:
        re = results.random_effects
        omega = np.array([np.asarray(re[lab][list(model.var_re_names)], float)
                          for lab in model.group_labels])

    # Colours by the group-level variable.
    group_by = None
    if by is not None:
        by_col = frame[by]
        if by_col.isna().any():
            raise ValueError(f"by={by!r} has missing values")
        group_by = []
        for lab in model.group_labels:
            vals = by_col.iloc[model.row_indices[lab]]
            if vals.nunique() > 1:
                raise ValueError(
                    f"by={by!r} varies within group {lab!r}: it must be a "
                    "group-level variable")
            group_by.append(vals.iloc[0])
        levels = sorted(set(group_by))
        colours, mappable = _group_colours(levels, plt)

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
    else:
        fig = ax.figure
    style = {"lw": 1.0, "alpha": 0.7}
    point_style = {"marker": "o", "linestyle": "none", "markersize": 4,
                   "alpha": 0.6}
    style.update(line_kwargs)
    point_style.update(line_kwargs)
    drew_points = False

    for i, lab in enumerate(model.group_labels):
        rows = model.row_indices[lab]
        sub = frame.iloc[rows]
        if discrete:
            grid = [v for v in levels_x if (sub[x] == v).any()]
        else:
            xs = sub[x].to_numpy(dtype=float)
            # a group-level x (one value in the group): a point, not a line
            grid = np.unique(xs) if xs.min() == xs.max() else \
                np.linspace(xs.min(), xs.max(), n_points)
        new = {x: grid}
        for col in used:
            if col != x:
                new[col] = [_hold_value(sub[col], col in categorical)] * len(grid)
        new = pd.DataFrame(new)
        if var_info is not None:
            w = np.asarray(_formula.build_rows(var_info, new, na_action="raise"),
                           dtype=float)
        else:
            w = np.ones((len(grid), 1))
        sigma2 = model.variance_function.variance(var_params, w)
        if k_var_re:
            v = _formula.build_rows(re_info, new, na_action="raise")
            sigma2 = sigma2 * np.exp(np.asarray(v, dtype=float) @ omega[i])
        colour = "C0" if group_by is None else colours[group_by[i]]
        points = discrete or len(grid) == 1
        drew_points |= points
        kw = dict(point_style if points else style)
        kw.setdefault("color", colour)
        xs_plot = [position[v] for v in grid] if discrete else grid
        ax.plot(xs_plot, sigma2, label=str(lab), **kw)

    if group_by is not None:
        if mappable is not None:
            fig.colorbar(mappable, ax=ax, label=by)
        else:
            from matplotlib.lines import Line2D

            handles = [Line2D([], [], color=colours[lev], lw=2, label=str(lev))
                       for lev in levels]
            ax.legend(handles=handles, title=by, frameon=False)
    if log_scale:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")

        # Plain numbers (40, 60) rather than 4 x 10^1; fewer minor labels
        # the more decades the axis spans.
        def minor(value, _pos):
            low, high = ax.get_ylim()
            mantissa = round(value / 10 ** np.floor(np.log10(value)))
            if high < 12 * low or (high < 120 * low and mantissa in (2, 5)):
                return f"{value:.3g}"
            return ""

        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.3g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(minor))
    if discrete:
        ax.set_xticks([position[v] for v in levels_x])
        ax.set_xticklabels([str(v) for v in levels_x])
        ax.set_xlim(min(position.values()) - 0.5, max(position.values()) + 0.5)
    ax.set_xlabel(x)
    ax.set_ylabel("Predicted residual variance" + (" (log scale)" if log_scale else ""))
    ax.set_title("Within-group residual variance"
                 + (" (one point per group and value)" if drew_points else ""))
    return fig
