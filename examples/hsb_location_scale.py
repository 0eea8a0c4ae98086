"""
Mixed-effects location-scale models for the High School and Beyond data.

Four models of mathematics achievement (``mathach``) of 7,185 students in
160 schools, each with random school effects in the mean *and* in the log
residual (within-school) variance:

1. ``mathach ~ sector``, log variance ``~ sector``; random intercepts in
   both, correlated.
2. Mean adds ``meanses``, ``cses`` (random slope), ``sector:cses`` and
   ``meanses:cses`` (Raudenbush and Bryk's intercepts-and-slopes-as-outcomes
   model); variance function as in (1).
3. (2) plus the school mean and standard deviation of ``ses`` in the
   variance function.
4. (2) with ``cses`` and ``sector:cses`` in the variance function and a
   random ``cses`` slope there too: four correlated random effects
   (mean intercept and slope, scale intercept and slope).
5. (1) with level-2 variance functions (``re_var_formula="~ sector"``):
   the variances of the school's mean and scale effects and their
   correlation differ by sector.  (5b): only the scale effects' variance
   and the correlation do (``re_var_formula`` as a dict).

Models (1) and (5) also get profile-likelihood intervals for their SDs
and correlations (model 5 in two codings of sector).  Each fit is timed
and must converge without any warning (warnings are turned into errors).
The exceptions are fits whose estimate is on the boundary of the
parameter space, where the package's warning is expected, caught and
printed (any other warning is still an error): models (2) to (4), whose
joint covariance of the mean and scale effects is singular (the random
cses slope is a linear combination of the other effects: rank 2 of 3,
and 2 of 4 in model (4)), and the variants of model (5), whose
public-school correlation or scale-effect SD goes to +1 or 0.  Run from a
source checkout::

    python examples/hsb_location_scale.py [--figures DIR] [--check-nodes]

``--figures DIR`` also saves Q-Q plots of the predicted random effects and
the schools' residual-variance functions of model (4) (needs matplotlib).
"""

import argparse
import re
import textwrap
import time
import warnings

import numpy as np
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning

import statsmodels_hetmixed.formula.api as hmf
from statsmodels_hetmixed.datasets import hsb

pd.set_option("display.width", 100)

# The warning of a fit whose random-effects covariance is on the boundary.
BOUNDARY = "The estimate is on the boundary of the parameter space"


def load_data():
    """HSB with the school SD of ses as a school-level column."""
    data = hsb.load_pandas().data
    # meanses (school mean of ses in these rows) is in the data already;
    # add the within-school standard deviation of ses.
    data["sdses"] = data.groupby("school")["ses"].transform("std")
    return data


def fit(label, formula, data, **kwargs):
    """Fit a model, time it (wall clock and CPU), insist on convergence."""
    fit_kw = {"reml": False}
    for key in ("re_cov", "n_quad"):
        if key in kwargs:
            fit_kw[key] = kwargs.pop(key)
    start, start_cpu = time.perf_counter(), time.process_time()
    model = hmf.hetmixedlm(formula, data, groups="school", **kwargs)
    result = model.fit(**fit_kw)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    if not result.converged:
        raise RuntimeError(f"model {label} did not converge")
    print(f"\n{'=' * 78}\nModel {label}: fitted in {seconds:.2f} s "
          f"({cpu:.2f} s CPU), "
          f"converged: {result.converged}, llf = {result.llf:.4f}\n{'=' * 78}")
    return result, (seconds, cpu)


def fit_on_boundary(label, formula, data, **kwargs):
    """``fit`` for a model expected to end on the boundary: the warning
    that names the quantities on the boundary is caught and printed, every
    other warning is still an error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")
        warnings.filterwarnings("always", message=re.escape(BOUNDARY),
                                category=ConvergenceWarning)
        result, times = fit(label, formula, data, **kwargs)
    for w in caught:
        print("\n" + textwrap.fill(f"Warning caught: {w.category.__name__}: "
                                  f"{w.message}", 78))
    return result, times


def print_icc(result, sector):
    """Range and by-sector medians of the school ICCs."""
    icc = result.group_icc()
    sector = sector.reindex(icc.index)
    print(f"\nSchool ICCs: min {icc.min():.3f}, median {icc.median():.3f}, "
          f"max {icc.max():.3f}")
    print("  by sector (median): "
          + ", ".join(f"{'Catholic' if s else 'public'} {m:.3f}"
                      for s, m in icc.groupby(sector.to_numpy()).median().items()))


def report(result, sector, design_rows=None):
    """The summary, the joint random-effects covariance and correlation,
    population-averaged residual variances and the range of school ICCs."""
    print(result.summary())
    print("\nJoint covariance of the random effects (cov_re_joint):")
    print(result.cov_re_joint.to_string(float_format="{:.4f}".format))
    print("\nCorrelations (corr_re_joint):")
    print(result.corr_re_joint.to_string(float_format="{:.3f}".format))
    print("\nPopulation-averaged residual variance E[sigma2]:")
    if design_rows is None:
        table = result.population_residual_variance()
    else:
        index, w, v = design_rows
        table = result.population_residual_variance(exog_var=w, exog_var_re=v)
        table.index = index
    print(table.to_string(float_format="{:.3f}".format))
    print_icc(result, sector)


def lr(larger, smaller, what):
    test = larger.compare_lr_test(smaller)
    print(f"\nLR test {what}: statistic {test.statistic:.2f}, df {test.df}, "
          f"p = {test.pvalue:.3g}\n  reference: {test.distribution}")
    return test


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--figures", metavar="DIR",
                        help="save plots of model (4) into DIR")
    parser.add_argument("--check-nodes", action="store_true",
                        help="refit model (4) with 8 instead of 5 quadrature "
                             "nodes per dimension and compare")
    args = parser.parse_args(argv)

    data = load_data()
    sector = data.groupby("school")["sector"].first()
    warnings.simplefilter("error")  # any warning during the fits is an error
    times = {}

    # (1) sector in mean and log variance, random intercepts in both.
    base1 = hmf.hetmixedlm("mathach ~ sector", data, groups="school",
                           var_formula="~ sector").fit(reml=False)
    m1, times[1] = fit("1", "mathach ~ sector", data, var_formula="~ sector",
                       var_re_formula="~ 1")
    report(m1, sector)
    lr(m1, base1, "(1) vs no random scale effect")
    print("\nProfile-likelihood intervals (profile_ci):")
    print(m1.profile_ci(variances=True).to_string(float_format="{:.4f}".format))

    # (2) Raudenbush and Bryk's intercepts- and slopes-as-outcomes mean.
    mean2 = "mathach ~ sector + meanses + cses + sector:cses + meanses:cses"
    m2, times[2] = fit_on_boundary("2", mean2, data, re_formula="~ cses",
                                   var_formula="~ sector", var_re_formula="~ 1")
    report(m2, sector)
    lr(m2, m1, "(2) vs (1)")

    # (3) school mean and SD of ses in the variance function.
    m3, times[3] = fit_on_boundary("3", mean2, data, re_formula="~ cses",
                                   var_formula="~ sector + meanses + sdses",
                                   var_re_formula="~ 1")
    schools = data.groupby("school")[["meanses", "sdses"]].first()
    avg = schools.mean()
    rows3 = (["public, average school", "Catholic, average school"],
             [[1, 0, avg.meanses, avg.sdses], [1, 1, avg.meanses, avg.sdses]],
             [[1], [1]])
    report(m3, sector, rows3)
    print(f"\n(average school: meanses {avg.meanses:.3f}, sdses {avg.sdses:.3f}; "
          f"SD over schools: meanses {schools.meanses.std():.3f}, "
          f"sdses {schools.sdses.std():.3f})")
    lr(m3, m2, "(3) vs (2)")

    # (4) cses in the variance function, fixed and random; four correlated
    # random effects.
    m4, times[4] = fit_on_boundary("4", mean2, data, re_formula="~ cses",
                                   var_formula="~ sector + cses + sector:cses",
                                   var_re_formula="~ cses")
    rows4 = (["public, cses = 0", "Catholic, cses = 0"],
             [[1, 0, 0, 0], [1, 1, 0, 0]], [[1, 0], [1, 0]])
    report(m4, sector, rows4)
    slope = m4.t_test("var:cses + var:sector:cses = 0")
    print("\nLog-variance slope of cses in Catholic schools "
          "(var:cses + var:sector:cses):")
    print(slope.summary_frame().to_string(float_format="{:.3f}".format))
    lr(m4, m2, "(4) vs (2)")

    print(f"\n{'=' * 78}\nModel comparison\n{'=' * 78}")
    table = pd.DataFrame(
        {"llf": [m.llf for m in (m1, m2, m3, m4)],
         "parameters": [m.df_modl for m in (m1, m2, m3, m4)],
         "AIC": [m.aic for m in (m1, m2, m3, m4)],
         "BIC": [m.bic for m in (m1, m2, m3, m4)],
         "seconds": [times[k][0] for k in (1, 2, 3, 4)],
         "CPU s": [times[k][1] for k in (1, 2, 3, 4)]},
        index=["(1)", "(2)", "(3)", "(4)"])
    print(table.to_string(float_format="{:.2f}".format))

    # (5) model (1) with level-2 variance functions: the log variances of
    # the school's mean and scale effects and the atanh of their
    # correlation depend on sector.
    m5, times[5] = fit_on_boundary("5", "mathach ~ sector", data,
                                   var_formula="~ sector", var_re_formula="~ 1",
                                   re_var_formula="~ sector")
    print(m5.summary())
    print("\nSDs and correlations by sector (re_table):")
    print(m5.re_table().to_string(float_format="{:.4f}".format))
    eb = pd.DataFrame(m5.random_effects).T
    ratio = (eb["var:school"] / eb["school"])[sector.reindex(eb.index) == 0]
    print(f"\nPublic schools, predicted var:school / school effect: "
          f"{ratio.min():.5f} to {ratio.max():.5f}")
    print_icc(m5, sector)
    wald = m5.wald_test("logvar(var:school):sector = 0", scalar=True)
    print(f"\nWald test, SD(var:school) equal in both sectors: "
          f"chi2(1) = {wald.statistic:.2f}, p = {wald.pvalue:.3f}")
    lr(m5, m1, "(5) vs (1)")
    print(f"AIC (1) {m1.aic:.2f}, (5) {m5.aic:.2f}; "
          f"BIC (1) {m1.bic:.2f}, (5) {m5.bic:.2f}")
    # The same model with Catholic schools as the reference level: the
    # public-school atanh coefficient, not the intercept, then carries the
    # boundary; the fit and every standard error in re_table are the same.
    m5c, _ = fit_on_boundary("5, Catholic schools as reference",
                             "mathach ~ sector", data.assign(public=1 - data.sector),
                             var_formula="~ sector", var_re_formula="~ 1",
                             re_var_formula="~ public")
    print(f"llf change {m5c.llf - m5.llf:.1e}")
    print(m5c.re_table().to_string(float_format="{:.4f}".format))
    se5, se5c = m5.re_table()["Std.Err."], m5c.re_table()["Std.Err."]
    print(f"Largest relative difference of the re_table standard errors: "
          f"{np.nanmax(np.abs(se5c.to_numpy() / se5.to_numpy() - 1)):.1e}")
    # Level-2 functions one by one: the SD of the schools' mean effects
    # (logvar(school):sector near 0) the same in both sectors.
    m5b, _ = fit_on_boundary("5b, SD(school) common to both sectors",
                             "mathach ~ sector", data, var_formula="~ sector",
                             var_re_formula="~ 1",
                             re_var_formula={"var:school": "~ sector",
                                             "corr(school, var:school)": "~ sector"})
    print(m5b.re_table().to_string(float_format="{:.4f}".format))
    lr(m5, m5b, "(5) vs (5b)")
    lr(m5b, m1, "(5b) vs (1)")
    print(f"AIC (1) {m1.aic:.2f}, (5) {m5.aic:.2f}, (5b) {m5b.aic:.2f}; "
          f"BIC (1) {m1.bic:.2f}, (5) {m5.bic:.2f}, (5b) {m5b.bic:.2f}")
    # Profile-likelihood intervals, which do not depend on the reference
    # level: all rows of the Catholic-reference fit, and the Catholic
    # schools' correlation from the sector-coded fit.
    print("\nProfile-likelihood intervals (profile_ci):")
    print(m5c.profile_ci().to_string(float_format="{:.4f}".format))
    print("\nThe same for the Catholic schools' correlation, sector-coded fit:")
    print(m5.profile_ci("sector=1 | corr(school, var:school)")
          .to_string(float_format="{:.4f}".format))
    # The simpler structure the warning suggests: no mean-scale correlations.
    m5i, _ = fit_on_boundary("5, correlations held at 0", "mathach ~ sector",
                             data, var_formula="~ sector", var_re_formula="~ 1",
                             re_var_formula="~ sector", re_cov="independent")
    c = m5i.params[["logvar(var:school):Intercept", "logvar(var:school):sector"]]
    print(f"SD(var:school): public {np.exp(c.iloc[0] / 2):.2g}, "
          f"Catholic {np.exp(c.sum() / 2):.3f}")
    lr(m5, m5i, "(5) vs (5) with correlations held at 0")

    if args.check_nodes:
        m4b, _ = fit_on_boundary("4, 8 nodes per dimension", mean2, data,
                                 re_formula="~ cses",
                                 var_formula="~ sector + cses + sector:cses",
                                 var_re_formula="~ cses", n_quad=8)
        diff = (m4b.params - m4.params) / m4.bse
        print(f"llf change {m4b.llf - m4.llf:.2e}; largest parameter change "
              f"{diff.abs().max():.2g} standard errors ({diff.abs().idxmax()})")

    if args.figures:
        save_figures(m4, args.figures)
    return times


def save_figures(result, directory):
    """Q-Q plots of the predicted random effects and the schools' variance
    functions of a fitted model with a cses term in the variance."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    from statsmodels_hetmixed.graphics import (plot_group_variance,
                                               plot_random_effects_qq)

    os.makedirs(directory, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        fig = plot_random_effects_qq(result)
        fig.savefig(os.path.join(directory, "hsb_ls_qq.png"), dpi=90)
        fig = plot_group_variance(result, "cses", by="sector", log_scale=True)
        fig.axes[0].get_legend().set_title("sector (1 = Catholic)")
        fig.savefig(os.path.join(directory, "hsb_ls_group_variance.png"), dpi=90)
    print(f"\nFigures saved in {directory}")


if __name__ == "__main__":
    main()
