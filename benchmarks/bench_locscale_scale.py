"""
Location-scale fits at scale: time and memory against the heteroskedastic
fit of the same data, in the same run.

Data: ``make_data.py`` (groups of 50 rows) with a random scale effect of SD
0.3 (``scale_sd``), its group-level binary ``g`` named ``z``.  Fits, by ML,
formula to results with standard errors:

* heteroskedastic: ``hetmixedlm("y ~ z*x", groups="grp", var_formula="~ z*x")``;
* location-scale: the same plus ``var_re_formula="~ 1"`` (a random scale
  intercept correlated with the random intercept), default adaptive
  quadrature (``--laplace``: also the Laplace rule, ``n_quad=1``;
  ``--scale-slope``: also a random scale slope on ``x``, ``var_re_formula=
  "~ x"``, whose design varies within groups).

Each fit runs in a fresh subprocess: imports, a warm-up fit of the same
model on 2,000 rows, the data, then the timed fit.  Its own peak memory is
the peak RSS during the fit minus the RSS with the data loaded; its CPU
time is reported beside the wall time, which a loaded machine inflates (the peak is
reset through /proc/self/clear_refs once the data are loaded, so data
generation does not count; ``bench_fit.py``'s helpers read it).  Targets of
the issue: location-scale time at most 10x, own peak memory at most 2x the
heteroskedastic fit's.

Usage::

    PYTHONPATH=. python benchmarks/bench_locscale_scale.py [--rows N ...]
        [--laplace] [--scale-slope] [--json FILE] [--markdown FILE] [--reference FILE]
        [--package DIR]

``--reference FILE``: the ``--json`` output of another run (e.g. of the
previous version of the package): reports the largest differences of the
llf and the estimates between the two runs' fits of the same data.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
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

GROUP_SIZE = 50
SCALE_SD = 0.3
FORMULA = "y ~ z*x"
VAR_FORMULA = "~ z*x"
TIME_RATIO = 10.0
MEMORY_RATIO = 2.0
FITS = {
    "het": {},
    "ls": {"var_re_formula": "~ 1"},
    "ls_laplace": {"var_re_formula": "~ 1", "n_quad": 1},
    # a random scale slope on a row-level covariate (V varies within
    # groups): two scale effects, 5 x 5 nodes
    "ls_scale_slope": {"var_re_formula": "~ x"},
}


def _data(rows):
    n_groups = max(1, rows // GROUP_SIZE)
    return make_data(n_groups, GROUP_SIZE, 0, scale_sd=SCALE_SD).rename(
        columns={"g": "z"})


def _fit(data, kind):
    import statsmodels_hetmixed.formula.api as hmf

    opts = dict(FITS[kind])
    n_quad = opts.pop("n_quad", None)
    model = hmf.hetmixedlm(FORMULA, data, groups="grp", var_formula=VAR_FORMULA,
                           **opts)
    kw = {} if n_quad is None else {"n_quad": n_quad}
    res = model.fit(reml=False, **kw)
    res.bse  # standard errors are part of the fit
    return res


def _reset_peak():
    """Reset the peak RSS (VmHWM) to the current RSS; False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def child(rows, kind, package):
    """One fit in this (fresh) process, of the package in the source tree
    ``package``; prints its figures as JSON."""
    sys.path.insert(0, str(package))  # before bench_fit's ROOT
    import statsmodels_hetmixed

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _fit(_data(2000), kind)  # warm-up: imports, first-call overheads
    data = _data(rows)
    gc.collect()
    after_data = _rss_kb()
    reset = _reset_peak()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0, c0 = time.perf_counter(), time.process_time()
        res = _fit(data, kind)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _peak_kb()
    print(json.dumps({
        "rows": len(data), "kind": kind, "seconds": secs, "cpu_seconds": cpu,
        "package": str(Path(statsmodels_hetmixed.__file__).parent.parent),
        "rss_after_data_mb": after_data / 1024, "peak_mb": peak / 1024,
        "own_peak_mb": (peak - after_data) / 1024, "peak_reset": reset,
        "llf": float(res.llf), "converged": bool(res.converged),
        "params": {str(k): float(v) for k, v in res.params.items()},
        "bse": {str(k): float(v) for k, v in res.bse.items()},
        "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:100]}"
                            for w in caught}),
    }))


def run_child(rows, kind, package=ROOT):
    out = subprocess.run([sys.executable, __file__, "--child", str(rows), kind,
                          str(package)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} fit at {rows} rows failed:\n{out.stderr[-2000:]}")
    fit = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(fit["package"]).resolve() != Path(package).resolve():
        raise RuntimeError(f"the child imported the package from {fit['package']}, "
                           f"not {package}")
    return fit


def _differences(fit, ref):
    """Largest absolute differences of llf, params and bse between two fits."""
    keys = sorted(set(fit["params"]) & set(ref["params"]))
    return {
        "llf": abs(fit["llf"] - ref["llf"]),
        "params": max(abs(fit["params"][k] - ref["params"][k]) for k in keys),
        "bse_rel": max(abs(fit["bse"][k] / ref["bse"][k] - 1) for k in keys
                       if ref["bse"][k] == ref["bse"][k] and ref["bse"][k] != 0),
    }


def report(info, results, reference):
    out = [f"Run on {info['date']} (package revision {info['package_revision']}, tree measured "
           f"{info.get('package_measured')}); "
           f"{info['cpu']}, {info['logical_cpus']} logical CPUs, "
           f"{info['mem_total_gb']} GB RAM; Python {info['python']}, numpy "
           f"{info['numpy']}, scipy {info['scipy']}; load average at start "
           + ", ".join(f"{x:.2f}" for x in info["loadavg_start"]) + ".", ""]
    out.append("| rows | fit | seconds | CPU s | own peak MB | time / het | CPU / het "
               "| memory / het | llf | converged |")
    out.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    checks = []
    for rows, fits in results.items():
        het = fits["het"]
        for kind, fit in fits.items():
            t_ratio = fit["seconds"] / het["seconds"]
            m_ratio = fit["own_peak_mb"] / het["own_peak_mb"]
            cpu = fit.get("cpu_seconds", float("nan"))
            c_ratio = cpu / het.get("cpu_seconds", float("nan"))
            out.append(f"| {rows:,} | {kind} | {fit['seconds']:.2f} | {cpu:.2f} | "
                       f"{fit['own_peak_mb']:.0f} | {t_ratio:.1f}x | {c_ratio:.1f}x | "
                       f"{m_ratio:.1f}x | "
                       f"{fit['llf']:.4f} | {fit['converged']} |")
            if kind == "ls":
                checks.append(
                    f"{rows:,} rows: location-scale time {t_ratio:.1f}x het (CPU "
                    f"{c_ratio:.1f}x) "
                    f"(target <= {TIME_RATIO:g}x) "
                    f"{'PASS' if t_ratio <= TIME_RATIO else 'FAIL'}; own peak memory "
                    f"{m_ratio:.1f}x het (target <= {MEMORY_RATIO:g}x) "
                    f"{'PASS' if m_ratio <= MEMORY_RATIO else 'FAIL'}")
    out.append("")
    out.extend(f"- {c}" for c in checks)
    if reference is not None:
        for rows, fits in results.items():
            for kind, fit in fits.items():
                ref = reference.get(str(rows), {}).get(kind)
                if ref is None:
                    continue
                d = _differences(fit, ref)
                out.append(f"- against the reference run, {rows:,} rows, {kind}: "
                           f"|d llf| {d['llf']:.1e}, max |d param| "
                           f"{d['params']:.1e}, max relative d bse {d['bse_rel']:.1e}")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--laplace", action="store_true",
                    help="also the location-scale fit with the Laplace rule")
    ap.add_argument("--scale-slope", action="store_true",
                    help="also a location-scale fit with a random scale slope "
                    "on x (var_re_formula='~ x')")
    ap.add_argument("--json", type=Path, help="write all figures here")
    ap.add_argument("--markdown", type=Path, help="also write the report here")
    ap.add_argument("--reference", type=Path,
                    help="--json output of another run to compare estimates with")
    ap.add_argument("--package", type=Path, default=ROOT,
                    help="source tree of the package to measure (default: "
                    "this repository; e.g. a worktree of an earlier commit)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(int(args.child[0]), args.child[1], args.child[2])
        return 0
    info = machine_info()
    info["package_measured"] = str(args.package)
    kinds = (["het", "ls"] + (["ls_laplace"] if args.laplace else [])
             + (["ls_scale_slope"] if args.scale_slope else []))
    results = {}
    for rows in args.rows:
        results[rows] = {}
        for kind in kinds:
            fit = run_child(rows, kind, args.package)
            results[rows][kind] = fit
            print(f"{rows:>9,} {kind:11s} {fit['seconds']:8.2f} s "
                  f"{fit['own_peak_mb']:8.0f} MB  llf {fit['llf']:.6f}  "
                  f"converged {fit['converged']}", flush=True)
    info["loadavg_end"] = os.getloadavg()
    reference = (None if args.reference is None
                 else json.loads(args.reference.read_text())["results"])
    md = report(info, results, reference)
    print("\n" + md)
    if args.markdown:
        args.markdown.write_text(md + "\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": results},
                                        indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
