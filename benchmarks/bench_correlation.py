"""
Time of fits with residual correlation structures against the same model
without correlation, in one run (wall and CPU time of ``fit``, median of rounds;
model construction timed separately), and nlme's fits of the same models
on the same data (``--nlme``: ``bench_correlation_r.R``, one run each).

Data: ``make_data.make_ar1_data`` (columns grp, t, g, x, xg, y; written to
CSV for R).

* AR(1): 2,000 groups x 50 occasions (100,000 rows), random intercept, a
  4-term log-linear variance function (intercept, x, g, x:g; nlme's
  ``varComb(varExp(~x), varIdent(~1|g), varExp(~xg))``), ML:
  ``correlation="ar1", time="t"`` against the same model without
  ``correlation``.  The issue's target: at most 2x.
* Unstructured: 20,000 groups x 5 occasions (100,000 rows), one variance
  per occasion (``var_by="t"``), the default random intercept held at
  zero in both fits (with unstructured residuals it is not identified;
  nlme's ``gls`` with ``corSymm`` and ``varIdent``), ML, against the
  same model without ``correlation``.

Usage::

    PYTHONPATH=. python benchmarks/bench_correlation.py [--rounds N] [--nlme] [--ar1-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from statsmodels_hetmixed.model import HetMixedLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_data import make_ar1_data  # noqa: E402

R_SCRIPT = Path(__file__).resolve().parent / "bench_correlation_r.R"


def ar1_data():
    return make_ar1_data(2000, 50)


def unstructured_data():
    return make_ar1_data(20000, 5, seed=1)


def timed(build, reml=False):
    """(construction time, fit time, fit CPU time of this process, results)."""
    t0 = time.perf_counter()
    model = build()
    t1 = time.perf_counter()
    c1 = time.process_time()
    res = model.fit(reml=reml)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, time.process_time() - c1, res


def run_nlme(ar1_df, un_df, which):
    """nlme's fits (bench_correlation_r.R; ``which``: its comma-separated
    subset of nlme_ar1, nlme_indep, nlme_un) on CSV copies of the data:
    {model: (seconds, llf, converged, note)} and R's INFO line."""
    out, info = {}, ""
    with tempfile.TemporaryDirectory() as tmp:
        a, u = Path(tmp) / "ar1.csv", Path(tmp) / "un.csv"
        ar1_df.to_csv(a, index=False, float_format="%.17g")
        un_df.to_csv(u, index=False, float_format="%.17g")
        proc = subprocess.run(["Rscript", str(R_SCRIPT), str(a), str(u), which],
                              capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == "INFO":
            info = " ".join(parts[1:])
        elif parts[0] == "RESULT":
            llf = float(parts[4]) if parts[4] != "NA" else float("nan")
            out[parts[2]] = (float(parts[3]), llf, parts[5] == "TRUE",
                             parts[6] if len(parts) > 6 else "")
    if proc.returncode != 0:
        print("Rscript failed:", proc.stderr[-2000:])
    return out, info


def report(title, times, results, ratio_name, nlme, nlme_keys, cpu=None):
    med = {k: statistics.median(v) for k, v in times.items()}
    print(title)
    for k, v in times.items():
        print(f"  ours {k:12s} fit median {med[k]:.3f} s  rounds "
              f"{[round(x, 3) for x in v]}")
    print(f"  ratio {ratio_name} / independent: "
          f"{med[ratio_name] / med['independent']:.2f}")
    if cpu is not None:
        cmed = {k: statistics.median(v) for k, v in cpu.items()}
        for k, v in cpu.items():
            print(f"  ours {k:12s} fit CPU median {cmed[k]:.3f} s  rounds "
                  f"{[round(x, 3) for x in v]}")
        print(f"  CPU ratio {ratio_name} / independent: "
              f"{cmed[ratio_name] / cmed['independent']:.2f}")
    for ours, theirs in nlme_keys.items():
        if theirs not in nlme:
            continue
        secs, llf, conv, note = nlme[theirs]
        mine = results[ours].llf
        rel = abs(mine - llf) / abs(llf)
        print(f"  nlme {ours:12s} {secs:.1f} s (one run), llf {llf:.6f}, ours "
              f"{mine:.6f}, relative difference {rel:.1e}"
              f"{'' if rel <= 1e-6 else ' (ABOVE 1e-6)'} {note}")
    return med


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nlme", action="store_true",
                    help="also time nlme on the same data (Rscript; the AR(1) "
                         "fit takes about 10 minutes)")
    ap.add_argument("--nlme-models", default="nlme_ar1,nlme_indep,nlme_un",
                    help="the nlme fits to run (bench_correlation_r.R's WHICH)")
    ap.add_argument("--ar1-only", action="store_true",
                    help="only the AR(1) model and its uncorrelated counterpart")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"BLAS threads (OPENBLAS_NUM_THREADS): "
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; "
          f"load average at start {os.getloadavg()}")

    df = ar1_data()
    kw = dict(groups="grp", var_formula="~ x + g + xg")
    builds = {
        "independent": lambda: HetMixedLM.from_formula("y ~ x + g", df, **kw),
        "ar1": lambda: HetMixedLM.from_formula("y ~ x + g", df, correlation="ar1",
                                               time="t", **kw),
    }
    times = {k: [] for k in builds}
    cpu = {k: [] for k in builds}
    results = {}
    for _ in range(args.rounds):
        for name, build in builds.items():   # interleaved: same load
            _, t_fit, c_fit, res = timed(build)
            times[name].append(t_fit)
            cpu[name].append(c_fit)
            results[name] = res
    print(f"load average after the AR(1) fits {os.getloadavg()}")
    if args.ar1_only:
        report("AR(1), 2,000 groups x 50 occasions, 4-term log-linear variance, ML",
               times, results, "ar1", {}, {}, cpu)
        return

    du = unstructured_data()
    # unstructured residuals with free variances leave no room for a random
    # intercept (not identified): no random effects in both (re_formula="0",
    # the random intercept's variance held at exactly 0)
    ub = {
        "independent": lambda: HetMixedLM.from_formula(
            "y ~ x + g", du, groups="grp", re_formula="0", var_by="t"),
        "unstructured": lambda: HetMixedLM.from_formula(
            "y ~ x + g", du, groups="grp", re_formula="0", var_by="t",
            correlation="unstructured", time="t"),
    }
    utimes = {k: [] for k in ub}
    ucpu = {k: [] for k in ub}
    uresults = {}
    for _ in range(args.rounds):
        for name, build in ub.items():
            _, t_fit, c_fit, res = timed(build)
            utimes[name].append(t_fit)
            ucpu[name].append(c_fit)
            uresults[name] = res
    print(f"load average after our fits {os.getloadavg()}")

    nlme, info = ({}, "")
    if args.nlme:
        nlme, info = run_nlme(df, du, args.nlme_models)
        print(f"nlme: {info}; load average after {os.getloadavg()}")
    report("AR(1), 2,000 groups x 50 occasions, 4-term log-linear variance, ML",
           times, results, "ar1", nlme, {"ar1": "ar1", "independent": "indep"}, cpu)
    res = results["ar1"]
    print(f"  phi = {res.correlation_params.iloc[0]:.4f}, converged {res.converged}")
    report("Unstructured, 20,000 groups x 5 occasions, var_by=t, ML",
           utimes, uresults, "unstructured", nlme, {"unstructured": "unstructured"},
           ucpu)
    res = uresults["unstructured"]
    print(f"  converged {res.converged}; correlations "
          f"{np.round(res.correlation_params.to_numpy(), 3).tolist()}")


if __name__ == "__main__":
    main()
