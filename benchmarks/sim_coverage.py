"""
Simulation study with known truth: bias, standard errors and Wald coverage
of the location-scale model (random scale intercept) against the model
without the random scale effect.

Design (one replication):

* 50 groups ``g`` of 25 rows (1,250 rows);
* ``x`` row-level N(0, 1), ``z`` group-level N(0, 1) (constant in a group);
* ``(u_g, omega_g)`` bivariate normal, var(u) = 0.5, var(omega) = 0.2,
  corr(u, omega) = -0.3;
* ``y = b0 + b1 x + b2 z + u_g + e``, ``e ~ N(0, sigma2)``,
  ``log sigma2 = a0 + a1 x + a2 z + omega_g``;
* true values: b = (1, 0.5, 0.3), a = (0.2, 0.4, -0.5).

Fits (both by ML):

* (A) ``hetmixedlm("y ~ x + z", data, groups="g", var_formula="~ x + z",
  var_re_formula="~ 1").fit(reml=False)`` -- the true model;
* (B) the same without ``var_re_formula`` (no random scale effect).

For every parameter and model: bias, empirical SD of the estimates, mean
SE, mean SE / empirical SD, coverage of the nominal 95% Wald interval
(estimate +- 1.96 SE, on the parameter's own scale) with its binomial Monte
Carlo SE; also the intervals of ``re_table()`` (log scale for SDs, Fisher's
z for the correlation), non-converged fits, exceptions and warnings (counted
by message, digits replaced by ``#``), time per fit.  With ``--profile``,
also the profile-likelihood intervals of ``profile_ci()`` for SD(u),
SD(omega) and corr(u, omega) in model A (their coverage, how often a limit
is at the boundary, warnings and time).

Each replication draws its data from ``SeedSequence([seed, rep])``, so a
replication's data do not depend on the number of workers.

Usage::

    PYTHONPATH=. python benchmarks/sim_coverage.py [--reps 500] [--seed 20240]
        [--start 0] [--workers 2] [--n-groups 50] [--group-size 25]
        [--profile] [--json FILE] [--markdown FILE] [--raw-json FILE]

``--start`` shifts the replication indices (``--start 500 --reps 500``
gives 500 new replications); ``--n-groups`` / ``--group-size`` change the
design's size (to see how coverage depends on the number of groups).
"""

from __future__ import annotations

import os

# One BLAS thread per worker process (set before numpy is imported).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_GROUPS = 50
GROUP_SIZE = 25
VAR_U = 0.5
VAR_OMEGA = 0.2
CORR = -0.3
COV_U_OMEGA = CORR * np.sqrt(VAR_U * VAR_OMEGA)
BETA = {"Intercept": 1.0, "x": 0.5, "z": 0.3}
ALPHA = {"Intercept": 0.2, "x": 0.4, "z": -0.5}
Z95 = 1.959963984540054

# Parameter names in the results, with true values and a label for the table.
TRUTH = {
    "Intercept": ("b0", BETA["Intercept"]),
    "x": ("b1 (x)", BETA["x"]),
    "z": ("b2 (z)", BETA["z"]),
    "g Var": ("var(u)", VAR_U),
    "g x var:g Cov": ("cov(u, omega)", COV_U_OMEGA),
    "var:g Var": ("var(omega)", VAR_OMEGA),
    "var:Intercept": ("a0", ALPHA["Intercept"]),
    "var:x": ("a1 (x)", ALPHA["x"]),
    "var:z": ("a2 (z)", ALPHA["z"]),
}
# re_table() rows of the full model (intervals on the log / Fisher-z scale).
RE_TRUTH = {
    "SD(g)": ("SD(u), log-scale CI", np.sqrt(VAR_U)),
    "SD(var:g)": ("SD(omega), log-scale CI", np.sqrt(VAR_OMEGA)),
    "corr(g, var:g)": ("corr(u, omega), Fisher-z CI", CORR),
}
# profile_ci() rows of the full model (--profile).
PROFILE_TRUTH = {
    "SD(g)": ("SD(u), profile CI", np.sqrt(VAR_U)),
    "SD(var:g)": ("SD(omega), profile CI", np.sqrt(VAR_OMEGA)),
    "corr(g, var:g)": ("corr(u, omega), profile CI", CORR),
}
MODELS = {
    "A": "full: var_formula='~ x + z', var_re_formula='~ 1'",
    "B": "no random scale effect: var_formula='~ x + z'",
}


# ----------------------------------------------------------------------
# Data and one replication
# ----------------------------------------------------------------------
def simulate(rng, n_groups=N_GROUPS, group_size=GROUP_SIZE):
    """One data set of the design (DataFrame with y, x, z, g)."""
    g = np.repeat(np.arange(n_groups), group_size)
    x = rng.standard_normal(g.size)
    z_g = rng.standard_normal(n_groups)
    cov = np.array([[VAR_U, COV_U_OMEGA], [COV_U_OMEGA, VAR_OMEGA]])
    u, omega = rng.multivariate_normal([0.0, 0.0], cov, n_groups).T
    z = z_g[g]
    log_var = ALPHA["Intercept"] + ALPHA["x"] * x + ALPHA["z"] * z + omega[g]
    mean = BETA["Intercept"] + BETA["x"] * x + BETA["z"] * z + u[g]
    y = mean + np.exp(0.5 * log_var) * rng.standard_normal(g.size)
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g})


def _warning_key(w):
    msg = re.sub(r"[-+]?\d[\d.eE+-]*", "#", str(w.message))
    return f"{w.category.__name__}: {msg}"


def _fit_one(data, full, profile=False):
    import statsmodels_hetmixed.formula.api as hmf

    kw = {"var_re_formula": "~ 1"} if full else {}
    out = {"error": None, "warnings": [], "converged": None}
    t0, c0 = time.perf_counter(), time.process_time()
    res = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = hmf.hetmixedlm("y ~ x + z", data, groups="g",
                                 var_formula="~ x + z", **kw).fit(reml=False)
            out["params"] = {k: float(v) for k, v in res.params.items()}
            out["bse"] = {k: float(v) for k, v in res.bse.items()}
            out["converged"] = bool(res.converged)
            out["max_grad"] = float(res.max_grad)
            out["llf"] = float(res.llf)
            if full:
                tab = res.re_table()
                out["re_table"] = {
                    k: [float(v) for v in tab.loc[k].to_numpy()]
                    for k in tab.index}
        except Exception as exc:  # record, do not stop the study
            out["error"] = f"{type(exc).__name__}: {exc}"
            res = None
    out["wall"] = time.perf_counter() - t0
    out["cpu"] = time.process_time() - c0
    out["warnings"] = [_warning_key(w) for w in caught]
    if profile and res is not None:
        out["profile"] = _profile_one(res)
    return out


def _profile_one(res):
    """profile_ci() of a fit: rows [estimate, lower, upper], methods,
    warnings, exception and time."""
    out = {"error": None}
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            tab = res.profile_ci()
            out["rows"] = {k: [float(v) for v in tab.loc[k].iloc[:3]] for k in tab.index}
            out["method"] = {k: str(tab.loc[k, "Method"]) for k in tab.index}
        except Exception as exc:  # record, do not stop the study
            out["error"] = f"{type(exc).__name__}: {exc}"
    out["wall"] = time.perf_counter() - t0
    out["cpu"] = time.process_time() - c0
    out["warnings"] = [_warning_key(w) for w in caught]
    return out


def replicate(task):
    rep, seed, n_groups, group_size, profile = task
    rng = np.random.default_rng(np.random.SeedSequence([seed, rep]))
    data = simulate(rng, n_groups, group_size)
    return {"rep": rep, "A": _fit_one(data, True, profile),
            "B": _fit_one(data, False)}


# ----------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------
def _coverage_stats(est, se, truth, lo=None, hi=None):
    est, se = np.asarray(est, float), np.asarray(se, float)
    n = est.size
    if lo is None:
        lo, hi = est - Z95 * se, est + Z95 * se
    ok = np.isfinite(lo) & np.isfinite(hi)
    cover = (lo <= truth) & (truth <= hi)
    p = float(np.mean(cover[ok])) if ok.any() else float("nan")
    emp_sd = float(np.std(est, ddof=1)) if n > 1 else float("nan")
    has_se = bool(np.isfinite(se).any())  # profile intervals have none
    mean_se = float(np.nanmean(se)) if has_se else float("nan")
    return {
        "n": int(n),
        "n_finite_ci": int(ok.sum()),
        "truth": float(truth),
        "mean": float(np.mean(est)),
        "bias": float(np.mean(est) - truth),
        "bias_mcse": emp_sd / np.sqrt(n) if n > 1 else float("nan"),
        "rel_bias": float((np.mean(est) - truth) / truth) if truth else float("nan"),
        "emp_sd": emp_sd,
        "mean_se": mean_se,
        "median_se": float(np.nanmedian(se)) if has_se else float("nan"),
        "se_sd_ratio": mean_se / emp_sd if emp_sd > 0 else float("nan"),
        "rmse_se_sd_ratio": float(np.sqrt(np.nanmean(se ** 2))) / emp_sd
        if emp_sd > 0 and has_se else float("nan"),
        "coverage": p,
        "coverage_mcse": float(np.sqrt(p * (1 - p) / ok.sum())) if ok.any() else float("nan"),
        "truth_below_ci": float(np.mean(truth < lo[ok])) if ok.any() else float("nan"),
        "truth_above_ci": float(np.mean(truth > hi[ok])) if ok.any() else float("nan"),
    }


def summarise(results, converged_only=False):
    out = {}
    for m in MODELS:
        fits = [r[m] for r in results if r[m]["error"] is None
                and (r[m]["converged"] or not converged_only)]
        rows = {}
        for name, (label, truth) in TRUTH.items():
            if not fits or name not in fits[0]["params"]:
                continue
            est = [f["params"][name] for f in fits]
            se = [f["bse"][name] for f in fits]
            rows[name] = {"label": label, **_coverage_stats(est, se, truth)}
        if m == "A" and fits:
            for name, (label, truth) in RE_TRUTH.items():
                tab = np.array([f["re_table"][name] for f in fits])
                rows["re_table " + name] = {
                    "label": label,
                    **_coverage_stats(tab[:, 0], tab[:, 1], truth,
                                      lo=tab[:, 2], hi=tab[:, 3])}
            profiled = [f["profile"] for f in fits
                        if "profile" in f and f["profile"]["error"] is None]
            for name, (label, truth) in (PROFILE_TRUTH.items() if profiled else ()):
                tab = np.array([f["rows"][name] for f in profiled])
                rows["profile " + name] = {
                    "label": label,
                    **_coverage_stats(tab[:, 0], np.full(len(tab), np.nan), truth,
                                      lo=tab[:, 1], hi=tab[:, 2]),
                    "at_boundary": int(sum("boundary" in f["method"][name]
                                           for f in profiled))}
        out[m] = rows
    return out


def fit_counts(results):
    out = {}
    for m in MODELS:
        fits = [r[m] for r in results]
        errors = Counter(f["error"] for f in fits if f["error"] is not None)
        warn = Counter(w for f in fits for w in f["warnings"])
        wall = np.array([f["wall"] for f in fits])
        cpu = np.array([f["cpu"] for f in fits])
        grads = np.array([f.get("max_grad", np.nan) for f in fits], float)
        out[m] = {
            "fits": len(fits),
            "errors": dict(errors),
            "not_converged": int(sum(1 for f in fits if f["error"] is None
                                     and not f["converged"])),
            "not_converged_reps": [r["rep"] for r in results
                                   if r[m]["error"] is None and not r[m]["converged"]],
            "fits_with_warnings": int(sum(1 for f in fits if f["warnings"])),
            "warnings": dict(warn),
            "max_grad_max": float(np.nanmax(grads)) if np.isfinite(grads).any() else None,
            "wall_mean": float(wall.mean()),
            "wall_median": float(np.median(wall)),
            "wall_max": float(wall.max()),
            "cpu_mean": float(cpu.mean()),
        }
        prof = [f["profile"] for f in fits if "profile" in f]
        if prof:
            pwall = np.array([p["wall"] for p in prof])
            out[m]["profile"] = {
                "fits": len(prof),
                "errors": dict(Counter(p["error"] for p in prof if p["error"])),
                "with_warnings": int(sum(1 for p in prof if p["warnings"])),
                "warnings": dict(Counter(w for p in prof for w in p["warnings"])),
                "wall_mean": float(pwall.mean()),
                "wall_median": float(np.median(pwall)),
                "wall_max": float(pwall.max()),
                "cpu_mean": float(np.mean([p["cpu"] for p in prof])),
            }
    return out


# ----------------------------------------------------------------------
# Machine and report
# ----------------------------------------------------------------------
def machine_info():
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import scipy
    import statsmodels

    import statsmodels_hetmixed

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "statsmodels": statsmodels.__version__,
        "statsmodels_hetmixed": statsmodels_hetmixed.__version__,
        "loadavg_start": list(os.getloadavg()),
    }


def _f(x, fmt="{:.3f}"):
    return "n/a" if x is None or not np.isfinite(x) else fmt.format(x)


def table_markdown(summary, models=("A", "B")):
    lines = [
        "| parameter | true | model | mean est. | bias (MC SE) | emp. SD | mean SE "
        "| SE/SD | coverage % (MC SE) | truth < CI / > CI % |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    names = list(TRUTH) + ["re_table " + k for k in RE_TRUTH] + \
        ["profile " + k for k in PROFILE_TRUTH]
    for name in names:
        for m in models:
            row = summary[m].get(name)
            if row is None:
                continue
            cov = 100 * row["coverage"]
            flag = "" if 92 <= cov <= 98 else " **"
            lines.append(
                f"| {row['label']} | {_f(row['truth'])} | {m} | {_f(row['mean'])} "
                f"| {_f(row['bias'], '{:+.3f}')} ({_f(row['bias_mcse'])}) "
                f"| {_f(row['emp_sd'])} | {_f(row['mean_se'])} "
                f"| {_f(row['se_sd_ratio'], '{:.2f}')} "
                f"| {flag.strip()}{_f(cov, '{:.1f}')} ({_f(100 * row['coverage_mcse'], '{:.1f}')}){flag.strip()} "
                f"| {_f(100 * row['truth_below_ci'], '{:.1f}')} / {_f(100 * row['truth_above_ci'], '{:.1f}')} |")
    return "\n".join(lines)


def markdown_report(doc):
    s, c, info = doc["summary"], doc["fits"], doc["machine"]
    cfg = doc["config"]
    a2a, a2b = s["A"]["var:z"], s["B"]["var:z"]
    # The intervals the package reports for the full model: Wald on the
    # parameter scale for fixed effects and a, re_table() for the random
    # effects (log-scale SDs, Fisher-z correlation), and profile_ci() when
    # run; the variance-scale Wald intervals (params +- 1.96 bse for the
    # (co)variances) separately.
    covariance_rows = ("g Var", "g x var:g Cov", "var:g Var")

    def outside(keys):
        return [f"{s['A'][k]['label']} ({100 * s['A'][k]['coverage']:.1f}%)"
                for k in keys if not 92 <= 100 * s["A"][k]["coverage"] <= 98]

    reported = [k for k in s["A"] if k not in covariance_rows]
    variance_scale = [k for k in covariance_rows if k in s["A"]]
    lines = [
        "## Coverage simulation: location-scale model vs. no random scale effect",
        "",
        f"Run {doc['date']} by `benchmarks/sim_coverage.py --reps {cfg['reps']} "
        f"--seed {cfg['seed']} --workers {cfg['workers']}"
        + ("" if (cfg["n_groups"], cfg["group_size"]) == (N_GROUPS, GROUP_SIZE)
           else f" --n-groups {cfg['n_groups']} --group-size {cfg['group_size']}")
        + (" --profile" if cfg.get("profile") else "")
        + "`.",
        "",
        "### Design",
        "",
        f"* {cfg['n_groups']} groups x {cfg['group_size']} rows; `x` row-level N(0, 1); `z` "
        "group-level N(0, 1), drawn afresh in each replication.",
        f"* `y = {BETA['Intercept']} + {BETA['x']} x + {BETA['z']} z + u_g + e`, "
        f"`log var(e) = {ALPHA['Intercept']} + {ALPHA['x']} x "
        f"{'-' if ALPHA['z'] < 0 else '+'} {abs(ALPHA['z'])} z + omega_g`.",
        f"* `(u_g, omega_g)` normal, var(u) = {VAR_U}, var(omega) = {VAR_OMEGA}, "
        f"corr = {CORR} (cov = {COV_U_OMEGA:.4f}).",
        "* (A) `hmf.hetmixedlm(\"y ~ x + z\", data, groups=\"g\", var_formula=\"~ x + z\", "
        "var_re_formula=\"~ 1\").fit(reml=False)` (the true model); (B) the same "
        "without `var_re_formula`.",
        "* Wald intervals: estimate +- 1.96 SE on each parameter's own scale "
        "(variances and covariance too). The `re_table` rows use the intervals "
        "of `re_table()` (log scale for SDs, Fisher's z for the correlation). "
        "MC SE of a coverage: sqrt(p (1 - p) / n); of a bias: emp. SD / sqrt(n). "
        "Coverages outside 92-98% are in bold. Last column: how often the "
        "truth lies below the interval / above it (2.5 / 2.5 if symmetric).",
    ]
    if cfg.get("profile"):
        lines.append(
            "* The `profile` rows use the profile-likelihood intervals of "
            "`profile_ci()` (limits where the log-likelihood, maximised over "
            "the other parameters, is chi2_1(0.95) / 2 below its maximum); "
            "they have no SE.  Intervals for var(u) and var(omega) are the "
            "squared SD intervals and have the same coverage.")
    lines += [
        "* In (B), `a0` is not the same parameter: without omega the residual "
        "variance is `exp(a0 + var(omega)/2 + ...)` on average, so its "
        f"pseudo-true value is about {ALPHA['Intercept'] + VAR_OMEGA / 2:.2f}; "
        "`var(u)` of (B) has the same truth.",
        "",
        "### Results",
        "",
        f"{cfg['reps']} replications; fits used: A {s['A']['Intercept']['n']}, "
        f"B {s['B']['Intercept']['n']} (exceptions excluded).",
        "",
        table_markdown(s),
        "",
        f"**Key quantity, coverage of a2 (the variance coefficient of the "
        f"group-level z):** {100 * a2b['coverage']:.1f}% "
        f"(MC SE {100 * a2b['coverage_mcse']:.1f}) without the random scale "
        f"effect (SE/SD {a2b['se_sd_ratio']:.2f}), "
        f"{100 * a2a['coverage']:.1f}% (MC SE {100 * a2a['coverage_mcse']:.1f}) "
        f"with it (SE/SD {a2a['se_sd_ratio']:.2f}).",
        "",
        "Full model, the intervals the package reports (Wald for b and a, "
        "`re_table()` for SDs and the correlation"
        + (", `profile_ci()`" if cfg.get("profile") else "") + ") within 92-98%: "
        + ("yes." if not outside(reported) else
           "no: " + ", ".join(outside(reported)) + "."),
        "",
        "Variance-scale Wald intervals of the (co)variances (params +- 1.96 "
        "bse) within 92-98%: "
        + ("yes." if not outside(variance_scale) else
           "no: " + ", ".join(outside(variance_scale)) + "."),
        "",
        "### Fits",
        "",
        "| model | fits | exceptions | not converged | fits with warnings "
        "| wall s/fit (mean, median, max) | CPU s/fit |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for m in MODELS:
        f = c[m]
        lines.append(
            f"| {m} | {f['fits']} | {sum(f['errors'].values())} | {f['not_converged']} "
            f"| {f['fits_with_warnings']} | {f['wall_mean']:.3f}, {f['wall_median']:.3f}, "
            f"{f['wall_max']:.2f} | {f['cpu_mean']:.3f} |")
    lines.append("")
    for m in MODELS:
        pf = c[m].get("profile")
        if not pf:
            continue
        bounds = ", ".join(f"{r['label'].rsplit(', profile', 1)[0]} {r['at_boundary']}"
                           for k, r in s[m].items() if k.startswith("profile "))
        lines += [
            f"Profile intervals (model {m}, `profile_ci()`, three intervals per "
            f"fit): {pf['fits']} fits, {sum(pf['errors'].values())} exceptions, "
            f"{pf['with_warnings']} with warnings; wall s per fit (mean, median, "
            f"max) {pf['wall_mean']:.2f}, {pf['wall_median']:.2f}, "
            f"{pf['wall_max']:.2f}; CPU s per fit {pf['cpu_mean']:.2f}. "
            f"Intervals with a limit at the boundary (SD 0 or corr +-1): {bounds}.",
            ""]
        for k, v in sorted(pf["warnings"].items(), key=lambda kv: -kv[1]):
            lines.append(f"* {v} x `{k}`")
        for k, v in pf["errors"].items():
            lines.append(f"* {v} x exception `{k}`")
        if pf["warnings"] or pf["errors"]:
            lines.append("")
    for m in MODELS:
        f = c[m]
        if f["warnings"] or f["errors"]:
            lines.append(f"Model {m} warnings / exceptions (count by message):")
            lines.append("")
            for k, v in sorted(f["warnings"].items(), key=lambda kv: -kv[1]):
                lines.append(f"* {v} x `{k}`")
            for k, v in f["errors"].items():
                lines.append(f"* {v} x exception `{k}`")
            lines.append("")
    if not any(c[m]["warnings"] or c[m]["errors"] for m in MODELS):
        lines += ["No warnings and no exceptions.", ""]
    if doc.get("summary_converged_only"):
        lines += ["Coverage of the full model's converged fits only:", "",
                  table_markdown(doc["summary_converged_only"], models=("A",)), ""]
    la0 = ", ".join(f"{x:.2f}" for x in info["loadavg_start"])
    la1 = ", ".join(f"{x:.2f}" for x in info.get("loadavg_end", ()))
    lines += [
        "### Run",
        "",
        f"* Total wall time {doc['elapsed_s']:.0f} s ({doc['elapsed_s'] / 60:.1f} min) "
        f"with {cfg['workers']} "
        f"worker process(es), one BLAS thread each.",
        f"* Machine: {info['cpu']}, {info['cores']} cores, {info['os']}; Python "
        f"{info['python']}, numpy {info['numpy']}, scipy {info['scipy']}, pandas "
        f"{info['pandas']}, statsmodels {info['statsmodels']}, statsmodels_hetmixed "
        f"{info['statsmodels_hetmixed']}.",
        f"* Load average at start: {la0}; at end: {la1} (the machine was shared).",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=500, help="number of replications")
    ap.add_argument("--seed", type=int, default=20240, help="base seed")
    ap.add_argument("--start", type=int, default=0,
                    help="first replication index (to extend a study)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes")
    ap.add_argument("--n-groups", type=int, default=N_GROUPS,
                    help="groups per data set (design: %(default)s)")
    ap.add_argument("--group-size", type=int, default=GROUP_SIZE,
                    help="rows per group (design: %(default)s)")
    ap.add_argument("--profile", action="store_true",
                    help="also profile-likelihood intervals (profile_ci) in model A")
    ap.add_argument("--json", default=None, help="summary JSON output")
    ap.add_argument("--markdown", default=None, help="Markdown report output")
    ap.add_argument("--raw-json", default=None,
                    help="every replication's estimates, SEs, warnings (large)")
    args = ap.parse_args(argv)

    info = machine_info()
    date = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    tasks = [(rep, args.seed, args.n_groups, args.group_size, args.profile)
             for rep in range(args.start, args.start + args.reps)]
    print(f"{args.reps} replications, seed {args.seed}, {args.workers} worker(s); "
          f"{args.n_groups} groups x {args.group_size} rows", flush=True)
    t0 = time.perf_counter()
    results = []
    if args.workers > 1:
        ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
        pool = ctx.Pool(args.workers)
        iterator = pool.imap_unordered(replicate, tasks, chunksize=1)
    else:
        pool, iterator = None, map(replicate, tasks)
    try:
        for i, r in enumerate(iterator, 1):
            results.append(r)
            if i % 25 == 0 or i == len(tasks):
                el = time.perf_counter() - t0
                a = np.mean([x["A"]["wall"] for x in results])
                b = np.mean([x["B"]["wall"] for x in results])
                prof = [x["A"]["profile"]["wall"] for x in results
                        if "profile" in x["A"]]
                print(f"  {i}/{len(tasks)} done, {el:.0f} s elapsed, "
                      f"mean wall/fit A {a:.3f} s, B {b:.3f} s"
                      + (f", profile_ci {np.mean(prof):.2f} s" if prof else ""),
                      flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    elapsed = time.perf_counter() - t0
    results.sort(key=lambda r: r["rep"])
    info["loadavg_end"] = list(os.getloadavg())

    counts = fit_counts(results)
    doc = {
        "date": date,
        "config": {"reps": args.reps, "seed": args.seed, "start": args.start,
                   "workers": args.workers, "n_groups": args.n_groups,
                   "group_size": args.group_size, "var_u": VAR_U, "var_omega": VAR_OMEGA,
                   "corr": CORR, "beta": BETA, "alpha": ALPHA,
                   "profile": args.profile},
        "machine": info,
        "elapsed_s": elapsed,
        "fits": counts,
        "summary": summarise(results),
    }
    if counts["A"]["not_converged"]:
        doc["summary_converged_only"] = summarise(results, converged_only=True)

    print(f"\nTotal {elapsed:.1f} s; time per fit (wall, mean): "
          f"A {counts['A']['wall_mean']:.3f} s, B {counts['B']['wall_mean']:.3f} s; "
          f"CPU A {counts['A']['cpu_mean']:.3f} s, B {counts['B']['cpu_mean']:.3f} s")
    for m in MODELS:
        print(f"model {m}: not converged {counts[m]['not_converged']}, "
              f"exceptions {dict(counts[m]['errors'])}, warnings {counts[m]['warnings']}")
        if "profile" in counts[m]:
            print(f"model {m} profile_ci: {counts[m]['profile']}")
    print()
    print(table_markdown(doc["summary"]))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(markdown_report(doc))
        print(f"wrote {args.markdown}")
    if args.raw_json:
        Path(args.raw_json).write_text(json.dumps({"config": doc["config"],
                                                   "results": results}))
        print(f"wrote {args.raw_json}")
    return doc


if __name__ == "__main__":
    main()
