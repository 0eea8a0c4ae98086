"""
Scale on one machine: the heteroskedastic fit against OLS of the same formula
on the same data, in the same run.

Data (``make_data.py``): ``n_groups`` groups of 50 rows (20,000 x 50 =
1,000,000 rows by default), ``z`` a group-level binary variable (make_data's
``g``), ``x`` a row-level standard normal, the response with a random
intercept and a log-linear residual variance in ``z``, ``x`` and ``z:x``.
The frame holds four columns (``grp, z, x, y``; 32 bytes a row).

Fits, each from formula to results with standard errors (``.bse`` touched):

* ``ols``: ``smf.ols("y ~ z*x", d).fit()``;
* ``het_ml`` / ``het_reml``: ``hmf.hetmixedlm("y ~ z*x", d, groups="grp",
  var_formula="~ z*x").fit(reml=False / True)``;
* ``mixedlm``: statsmodels' homoskedastic ``smf.mixedlm("y ~ z*x", d,
  groups="grp").fit(reml=False)``, one round only (it is slow);
* with ``--base DIR``: ``het_ml`` and ``het_reml`` of the package in the
  source tree DIR too (``base_het_ml``, ``base_het_reml``), for a
  before/after table in one run.

Each measurement is a fresh process: imports, an untimed warm-up fit on
5,000 rows, the data, then one timed fit.  Peak memory of the fit = peak RSS
during the fit (VmHWM, reset through /proc/self/clear_refs once the data are
loaded) minus RSS with the data loaded; the whole process's peak RSS
(imports, data generation and fit) is reported too.  Rounds interleave the
fits (the order alternates), and the report gives medians.

Usage::

    PYTHONPATH=. python benchmarks/bench_scale.py [--rows 1000000] [--rounds 5]
        [--base DIR] [--no-mixedlm] [--blas-threads N]
        [--formula-engine {patsy,formulaic}] [--markdown FILE]
        [--json FILE]

``--formula-engine formulaic`` (or ``patsy``) sets statsmodels' own
engine switch, the environment variable ``SM_FORMULA_ENGINE``, in every
fit's process: OLS and the heteroskedastic fits then build their designs
with that engine (default: statsmodels' default, patsy when installed).

Wall and CPU seconds are both reported.  On a shared machine run it with
``--blas-threads 1`` too: OpenBLAS splits a product of a tall design with a
small matrix over its threads, which then wait for each other when other
processes hold the CPUs (measured: 25x slower products at a load of 6 on
2 CPUs), so wall times there say more about the load than the code.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_fit import _peak_kb, _rss_kb, machine_info  # noqa: E402
from make_data import make_data  # noqa: E402

FORMULA = "y ~ z*x"
VAR_FORMULA = "~ z*x"
GROUP_SIZE = 50
TARGETS = {"time_ratio_ml": 2.0, "time_ratio_reml_ml": 1.2,
           "memory_ratio_ml": 1.0, "whole_peak_gb_10m": 2.5}


def scale_data(n_groups, seed=0):
    """make_data's design with the issue's names: z group-level, x row-level."""
    d = make_data(n_groups, GROUP_SIZE, seed)
    return d.drop(columns="xg").rename(columns={"g": "z"})


def _fit(kind, data):
    import statsmodels.formula.api as smf

    if kind == "ols":
        res = smf.ols(FORMULA, data).fit()
    elif kind == "mixedlm":
        res = smf.mixedlm(FORMULA, data, groups="grp").fit(reml=False)
    else:
        import statsmodels_hetmixed.formula.api as hmf

        res = hmf.hetmixedlm(FORMULA, data, groups="grp",
                             var_formula=VAR_FORMULA).fit(reml=kind.endswith("reml"))
    res.bse  # noqa: B018  (standard errors are part of the work)
    return res


def child(kind, n_groups):
    """One measurement in this (fresh) process; prints JSON."""
    # the package of the tree under test first (bench_fit puts this
    # script's own tree on sys.path)
    sys.path.insert(0, os.environ["BENCH_TREE"])
    warnings.simplefilter("ignore")
    import statsmodels.formula

    _fit(kind, scale_data(100, seed=1))  # warm-up: imports, first calls
    data = scale_data(n_groups)
    gc.collect()
    whole_peak_before = _peak_kb()
    after_data = _rss_kb()
    with open("/proc/self/clear_refs", "w") as fh:  # VmHWM := VmRSS
        fh.write("5")
    t0, c0 = time.perf_counter(), time.process_time()
    res = _fit(kind, data)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _peak_kb()
    params = {str(k): float(v) for k, v in res.params.items()}
    bse = {str(k): float(v) for k, v in res.bse.items()}
    print(json.dumps({
        "kind": kind, "rows": len(data), "seconds": secs, "cpu_seconds": cpu,
        "rss_after_data_mb": after_data / 1024,
        "fit_peak_mb": (peak - after_data) / 1024,
        "whole_peak_mb": max(peak, whole_peak_before) / 1024,
        "llf": float(res.llf), "converged": bool(getattr(res, "converged", True)),
        "params": params, "bse": bse,
        "module": sys.modules[type(res).__module__].__file__,
        "formula_engine": statsmodels.formula.options.formula_engine,
    }))


def run_child(kind, n_groups, tree, blas_threads=None, formula_engine=None):
    env = dict(os.environ)
    if formula_engine:
        env["SM_FORMULA_ENGINE"] = formula_engine
    if blas_threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(blas_threads)
    env["PYTHONPATH"] = env["BENCH_TREE"] = str(Path(tree).resolve())
    kind_arg = kind.replace("base_", "")
    out = subprocess.run([sys.executable, __file__, "--child", kind_arg, str(n_groups)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-2000:]}")
    sample = json.loads(out.stdout.strip().splitlines()[-1])
    if kind not in ("ols", "mixedlm") and not sample["module"].startswith(env["BENCH_TREE"]):
        raise RuntimeError(f"{kind} ran {sample['module']}, not the tree {tree}")
    return sample


def _median(samples, key):
    return statistics.median(s[key] for s in samples)


def _max_rel(a, b):
    return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-300) for k in b)


def report(info, args, samples):
    rows = args.rows
    med = {k: {"seconds": _median(v, "seconds"), "cpu": _median(v, "cpu_seconds"),
               "fit_peak_mb": _median(v, "fit_peak_mb"),
               "whole_peak_mb": _median(v, "whole_peak_mb"), "n": len(v),
               "all_seconds": [round(s["seconds"], 3) for s in v],
               "llf": v[0]["llf"]}
           for k, v in samples.items()}
    ols = med["ols"]
    out = [f"Run on {info['date']} (package revision {info['package_revision']}"
           + (f"; base tree {args.base}" if args.base else "") + ").\n",
           "### Machine\n",
           f"- CPU: {info['cpu']}, {info['logical_cpus']} logical CPUs, "
           f"{info['mem_total_gb']} GB RAM; {info['os']}",
           f"- Python {info['python']}, numpy {info['numpy']}, scipy {info['scipy']}, "
           f"statsmodels {info['statsmodels']}, pandas {info['pandas']}, "
           f"patsy {info['patsy']}"]
    out += [f"- BLAS: {b}" for b in info["blas"]]
    out.append(f"- Load average at start: {', '.join(f'{x:.2f}' for x in info['loadavg_start'])}"
               f"; at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    out.append("")
    out.append(f"### {rows:,} rows ({rows // GROUP_SIZE:,} groups x {GROUP_SIZE}), "
               f"`{FORMULA}`, var_formula `{VAR_FORMULA}`, random intercept\n")
    out.append("Formula to results with standard errors; each sample a fresh process; "
               "medians over rounds. Fit memory = peak RSS during the fit minus RSS "
               "with the data loaded; whole = the process's peak RSS.\n")
    out.append(f"BLAS threads: {args.blas_threads or 'the environment default'}; "
               "formula engine (statsmodels' formula_engine): "
               f"{samples['ols'][0].get('formula_engine')}.\n")
    out.append("| fit | rounds | seconds | / OLS | CPU seconds | / OLS | fit memory MB | "
               "/ OLS | whole peak MB | llf |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k, m in med.items():
        out.append(f"| {k} | {m['n']} | {m['seconds']:.3f} | "
                   f"{m['seconds'] / ols['seconds']:.2f} | {m['cpu']:.3f} | "
                   f"{m['cpu'] / ols['cpu']:.2f} | {m['fit_peak_mb']:.0f} | "
                   f"{m['fit_peak_mb'] / max(ols['fit_peak_mb'], 1e-9):.2f} | "
                   f"{m['whole_peak_mb']:.0f} | {m['llf']:.4f} |")
    out.append("")
    out.append("Times of every round: " + "; ".join(
        f"{k} {m['all_seconds']}" for k, m in med.items()))
    out.append("")
    checks = []
    # --only may leave out REML
    ml, reml = med["het_ml"], med.get("het_reml")
    checks.append(("het ML time / OLS time", ml["seconds"] / ols["seconds"],
                   TARGETS["time_ratio_ml"]))
    if reml:
        checks.append(("het REML time / het ML time", reml["seconds"] / ml["seconds"],
                       TARGETS["time_ratio_reml_ml"]))
    checks.append(("het ML CPU time / OLS CPU time", ml["cpu"] / ols["cpu"],
                   TARGETS["time_ratio_ml"]))
    if reml:
        checks.append(("het REML CPU time / het ML CPU time", reml["cpu"] / ml["cpu"],
                       TARGETS["time_ratio_reml_ml"]))
    checks.append(("het ML fit memory / OLS fit memory",
                   ml["fit_peak_mb"] / ols["fit_peak_mb"], TARGETS["memory_ratio_ml"]))
    if rows >= 10_000_000:
        checks.append(("het ML whole-process peak, GB", ml["whole_peak_mb"] / 1024,
                       TARGETS["whole_peak_gb_10m"]))
    out.append("### Targets (issue 12)\n")
    for label, val, target in checks:
        out.append(f"- {label}: {val:.2f} (target <= {target}) "
                   f"{'PASS' if val <= target else 'FAIL'}")
    for kind in ("het_ml", "het_reml"):
        base = samples.get("base_" + kind)
        if base and kind in samples:
            head = samples[kind][0]
            out.append(f"- {kind} against the base tree: llf difference "
                       f"{head['llf'] - base[0]['llf']:+.2e}, params largest relative "
                       f"difference {_max_rel(head['params'], base[0]['params']):.1e}, "
                       f"bse {_max_rel(head['bse'], base[0]['bse']):.1e}")
    out.append("")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--base", type=Path, help="source tree of the version before")
    ap.add_argument("--no-mixedlm", action="store_true",
                    help="skip statsmodels' MixedLM (default at 10,000,000 rows)")
    ap.add_argument("--only", nargs="*", help="fits to run (e.g. ols het_ml)")
    ap.add_argument("--blas-threads", type=int,
                    help="BLAS threads of the fits (OPENBLAS/OMP/MKL_NUM_THREADS)")
    ap.add_argument("--formula-engine", choices=("patsy", "formulaic"),
                    help="statsmodels' formula engine of every fit (SM_FORMULA_ENGINE)")
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0
    n_groups = args.rows // GROUP_SIZE
    args.rows = n_groups * GROUP_SIZE
    info = machine_info()
    kinds = ["ols", "het_ml", "het_reml"]
    if args.base:
        kinds += ["base_het_ml", "base_het_reml"]
    if args.only:
        kinds = [k for k in kinds if k in args.only or k == "ols"]
    samples = {k: [] for k in kinds}
    for r in range(args.rounds):
        order = kinds if r % 2 == 0 else kinds[::-1]
        for kind in order:
            tree = args.base if kind.startswith("base_") else ROOT
            s = run_child(kind, n_groups, tree, args.blas_threads, args.formula_engine)
            samples[kind].append(s)
            print(f"round {r + 1} {kind:14s} {s['seconds']:7.3f} s  fit memory "
                  f"{s['fit_peak_mb']:6.0f} MB  whole {s['whole_peak_mb']:6.0f} MB  "
                  f"llf {s['llf']:.6f}", flush=True)
    if not args.no_mixedlm and args.rows < 10_000_000:
        s = run_child("mixedlm", n_groups, ROOT, args.blas_threads, args.formula_engine)
        samples["mixedlm"] = [s]
        print(f"mixedlm {s['seconds']:.3f} s llf {s['llf']:.6f}", flush=True)
    md = report(info, args, samples)
    print("\n" + md)
    if args.markdown:
        args.markdown.write_text(md + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "samples": samples},
                                        indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
