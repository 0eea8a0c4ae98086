"""
Timing and memory benchmark of HetMixedLM against its peers, in one run.

Fits (all by ML, wall time from formula to results):

* simulated data (``make_data.py``), 2,000 groups x 50 rows (100,000 rows)
  and 20,000 x 50 (1,000,000 rows):
  - ours, heteroskedastic: ``hetmixedlm("y ~ x + g", groups="grp",
    var_formula="~ x + g + x:g")``, median of a few repeats;
  - ours, homoskedastic (no ``var_formula``), median of a few repeats;
  - statsmodels' homoskedastic ``mixedlm("y ~ x + g", groups="grp")``, once,
    at 100,000 rows (at 1,000,000 rows only with ``--statsmodels-1m``);
* the HSB data: ``mathach ~ female``, groups ``school``, ``var_formula="~
  female"`` (and the homoskedastic fits for reference);
* peak memory of a whole process that generates the 1,000,000-row data and
  fits the heteroskedastic model (separate subprocess, peak RSS from
  /proc/self/status VmHWM, ru_maxrss alongside);
* when ``Rscript`` is on the PATH, nlme and glmmTMB on the same 100,000-row
  data (written to a temporary CSV) and on HSB, via ``bench_r.R``.

Usage::

    PYTHONPATH=. python benchmarks/bench_fit.py [--repeats N] [--no-r]
        [--no-1m] [--no-statsmodels] [--statsmodels-1m]
        [--markdown FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from make_data import make_data  # noqa: E402

HET_FORMULA = "y ~ x + g"
HET_VAR = "~ x + g + x:g"
TARGETS = {
    "sim100000_speedup_vs_statsmodels": 30.0,
    "sim100000_seconds": 0.4,
    "sim1000000_seconds": 4.0,
    "sim1000000_peak_mb": 1024.0,
    "hsb_seconds": 0.09,
}


# ----------------------------------------------------------------------
# Machine details
def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gb():
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def _git_revision():
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain",
                                "--", "statsmodels_hetmixed"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (+ uncommitted changes in statsmodels_hetmixed/)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_info():
    import numpy
    import pandas
    import patsy
    import scipy
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS for threadpoolctl)
    import statsmodels

    info = {
        "date": _dt.date.today().isoformat(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gb": round(_mem_total_gb(), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "statsmodels": statsmodels.__version__,
        "pandas": pandas.__version__,
        "patsy": patsy.__version__,
        "package_revision": _git_revision(),
        "loadavg_start": os.getloadavg(),
    }
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            f"{d.get('internal_api')} {d.get('version')} ({d.get('architecture')}, "
            f"{d.get('num_threads')} threads, {os.path.basename(d.get('filepath', ''))})"
            for d in threadpool_info()
        ]
    except ImportError:
        info["blas"] = ["threadpoolctl not installed"]
    return info


# ----------------------------------------------------------------------
# Timed fits
def _quiet_fit(fun):
    """Run fun() with warnings recorded; return (result, seconds, warnings)."""
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        res = fun()
        secs = time.perf_counter() - t0
    msgs = sorted({f"{w.category.__name__}: {str(w.message)[:120]}" for w in caught})
    return res, secs, msgs


def time_fit(fun, repeats):
    times, res, msgs = [], None, []
    for _ in range(repeats):
        res, secs, m = _quiet_fit(fun)
        times.append(secs)
        msgs = sorted(set(msgs) | set(m))
    return {
        "seconds": statistics.median(times),
        "all_seconds": [round(t, 4) for t in times],
        "llf": float(res.llf),
        "converged": bool(res.converged),
        "warnings": msgs,
        "params": {str(k): float(v) for k, v in res.params.items()},
    }


def fit_ours_het(data, formula, groups, var_formula):
    import statsmodels_hetmixed.formula.api as hmf

    return lambda: hmf.hetmixedlm(formula, data, groups=groups,
                                  var_formula=var_formula).fit(reml=False)


def fit_ours_hom(data, formula, groups):
    import statsmodels_hetmixed.formula.api as hmf

    return lambda: hmf.hetmixedlm(formula, data, groups=groups).fit(reml=False)


def fit_statsmodels(data, formula, groups):
    import statsmodels.formula.api as smf

    return lambda: smf.mixedlm(formula, data, groups=groups).fit(reml=False)


# ----------------------------------------------------------------------
# Peak memory of a whole process (run in a fresh subprocess)
def _status_kb(field):
    """A field of /proc/self/status in KiB (VmRSS: now, VmHWM: peak)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def _rss_kb():
    return _status_kb("VmRSS")


def _peak_kb():
    """
    Peak RSS of this process.  VmHWM belongs to the process image, so unlike
    getrusage's ru_maxrss it does not carry over the RSS of the parent that
    forked this process (Linux keeps ru_maxrss across fork + exec).
    """
    hwm = _status_kb("VmHWM")
    return hwm if hwm > 0 else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_child(n_groups, group_size):
    """Generate data and fit in this process; print memory figures as JSON."""
    import statsmodels_hetmixed.formula.api as hmf

    after_import = _rss_kb()
    data = make_data(n_groups, group_size, 0)
    gc.collect()
    after_data = _rss_kb()
    peak_before_fit = _peak_kb()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hmf.hetmixedlm(HET_FORMULA, data, groups="grp",
                             var_formula=HET_VAR).fit(reml=False)
    secs = time.perf_counter() - t0
    peak = _peak_kb()  # KiB
    ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "rows": n_groups * group_size,
        "rss_after_import_mb": after_import / 1024,
        "rss_after_data_mb": after_data / 1024,
        "peak_before_fit_mb": peak_before_fit / 1024,
        "peak_mb": peak / 1024,
        "peak_minus_after_data_mb": (peak - after_data) / 1024,
        "ru_maxrss_mb": ru_maxrss / 1024,
        "fit_seconds": secs,
        "llf": float(res.llf),
        "converged": bool(res.converged),
    }))


def measure_memory(n_groups, group_size):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(n_groups), str(group_size)],
        capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------
# R peers
def run_r(sim_data, hsb_path, repeats_hsb):
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None, "Rscript not found: R peers not measured"
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "sim.csv"
        sim_data.to_csv(csv, index=False, float_format="%.17g")
        proc = subprocess.run(
            [rscript, str(HERE / "bench_r.R"), str(csv), str(hsb_path),
             str(repeats_hsb)], capture_output=True, text=True)
    results, info = {}, None
    for line in proc.stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == "INFO":
            info = ", ".join(parts[1:])
        elif parts[0] == "RESULT":
            peer, dataset, secs, llf, conv = parts[1:6]
            note = parts[6] if len(parts) > 6 else ""
            results[(peer, dataset)] = {
                "seconds": float(secs) if secs not in ("NA", "") else None,
                "llf": float(llf) if llf not in ("NA", "") else None,
                "converged": conv == "TRUE",
                "note": note,
            }
    if proc.returncode != 0:
        info = (info or "") + f" (Rscript exit {proc.returncode}: {proc.stderr[-300:]})"
    return results, info


# ----------------------------------------------------------------------
def _fmt_s(x):
    if x is None:
        return "n/a"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _ratio(peer, ours):
    if peer is None or ours is None or ours <= 0:
        return "n/a"
    return f"{peer / ours:.1f}x"


def report(info, rows, mem, r_info, notes):
    """Markdown report of the run."""
    out = []
    out.append(f"Run on {info['date']} (package revision {info['package_revision']}).\n")
    out.append("### Machine\n")
    out.append(f"- CPU: {info['cpu']}, {info['logical_cpus']} logical CPUs "
               f"({info['cpus_available']} available), {info['mem_total_gb']} GB RAM")
    out.append(f"- OS: {info['os']}")
    out.append(f"- Python {info['python']}, numpy {info['numpy']}, scipy {info['scipy']}, "
               f"statsmodels {info['statsmodels']}, pandas {info['pandas']}, "
               f"patsy {info['patsy']}")
    for b in info["blas"]:
        out.append(f"- BLAS: {b}")
    if r_info:
        out.append(f"- R peers: {r_info}")
    la0 = ", ".join(f"{x:.2f}" for x in info["loadavg_start"])
    la1 = ", ".join(f"{x:.2f}" for x in info.get("loadavg_end", ()))
    out.append(f"- Load average (1, 5, 15 min) at start: {la0}; at end: {la1}")
    out.append("")
    out.append("### Timings (wall seconds, formula to results, ML)\n")
    out.append("Speed-up = peer's time / our heteroskedastic fit's time, both "
               "measured in this run.\n")
    out.append("| data | fit | seconds | speed-up of ours (het) | llf | converged |")
    out.append("| --- | --- | ---: | ---: | ---: | --- |")
    order = {}
    for r in rows:
        order.setdefault(r["data"], len(order))
    for r in sorted(rows, key=lambda r: order[r["data"]]):
        llf = "n/a" if r["llf"] is None else f"{r['llf']:.4f}"
        out.append(f"| {r['data']} | {r['fit']} | {_fmt_s(r['seconds'])} | "
                   f"{r.get('speedup', '')} | {llf} | {r['converged']} |")
    out.append("")
    if mem:
        out.append("### Memory, 1,000,000 rows (separate process: imports, data "
                   "generation and heteroskedastic fit)\n")
        out.append(f"- peak RSS of the whole process (VmHWM): {mem['peak_mb']:.0f} MB "
                   f"(ru_maxrss {mem['ru_maxrss_mb']:.0f} MB; it also counts the "
                   "parent's RSS at fork)")
        out.append(f"- RSS after imports: {mem['rss_after_import_mb']:.0f} MB; after data "
                   f"generation: {mem['rss_after_data_mb']:.0f} MB")
        out.append(f"- peak minus RSS after data generation: "
                   f"{mem['peak_minus_after_data_mb']:.0f} MB")
        out.append(f"- fit in that process: {mem['fit_seconds']:.2f} s, llf "
                   f"{mem['llf']:.4f}, converged {mem['converged']}")
        out.append("")
    if notes:
        out.append("### Notes from the run\n")
        out.extend(f"- {n}" for n in notes)
        out.append("")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5,
                    help="repeats of our fits (median reported; 1M rows: min(3, N))")
    ap.add_argument("--no-r", action="store_true", help="skip the R peers")
    ap.add_argument("--no-1m", action="store_true", help="skip the 1,000,000-row size")
    ap.add_argument("--no-statsmodels", action="store_true",
                    help="skip statsmodels' MixedLM at 100,000 rows (~10 s)")
    ap.add_argument("--statsmodels-1m", action="store_true",
                    help="also run statsmodels' MixedLM once at 1,000,000 rows")
    ap.add_argument("--markdown", type=Path, help="also write the report here")
    ap.add_argument("--json", type=Path, help="write all figures here as JSON")
    ap.add_argument("--memory-child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0

    from statsmodels_hetmixed.datasets import hsb

    info = machine_info()
    print("== machine ==")
    for k, v in info.items():
        print(f"{k}: {v}")
    sys.stdout.flush()

    rows, figures, notes = [], {"machine": info}, []
    # First, while this process is still small.
    mem = None
    if not args.no_1m:
        print("measuring peak memory of a 1,000,000-row fit in a subprocess ...",
              flush=True)
        mem = measure_memory(20000, 50)
        figures["memory_1m"] = mem
        figures["sim1000000_peak_mb"] = mem["peak_mb"]
        print(json.dumps(mem, indent=1))

    hsb_df = hsb.load_pandas().data
    # Warm-up (imports, first-call overheads), not timed.
    _quiet_fit(fit_ours_het(hsb_df, "mathach ~ female", "school", "~ female"))
    _quiet_fit(fit_statsmodels(hsb_df, "mathach ~ female", "school"))


    def add(data, fit, res, speedup=""):
        row = {"data": data, "fit": fit, "seconds": res.get("seconds"),
               "llf": res.get("llf"), "converged": res.get("converged"),
               "speedup": speedup}
        rows.append(row)
        figures.setdefault("fits", []).append({**row, **res})
        print(f"{data:12s} {fit:44s} {_fmt_s(res.get('seconds')):>8s} s  "
              f"llf {res.get('llf')}  converged {res.get('converged')}  {speedup}",
              flush=True)
        for w in res.get("warnings", []):
            print(f"    warning: {w}")

    sizes = [(2000, 50)] + ([] if args.no_1m else [(20000, 50)])
    sim100k = None
    ours = {}
    for n_groups, size in sizes:
        n = n_groups * size
        label = f"sim {n:,}"
        data = make_data(n_groups, size, 0)
        if n == 100_000:
            sim100k = data
        reps = args.repeats if n <= 100_000 else min(3, args.repeats)
        het = time_fit(fit_ours_het(data, HET_FORMULA, "grp", HET_VAR), reps)
        ours[n] = het
        add(label, f"ours het (median of {reps})", het)
        hom = time_fit(fit_ours_hom(data, HET_FORMULA, "grp"), reps)
        add(label, f"ours hom (median of {reps})", hom,
            _ratio(hom["seconds"], het["seconds"]))
        if (n <= 100_000 and not args.no_statsmodels) or (n > 100_000 and args.statsmodels_1m):
            sm = time_fit(fit_statsmodels(data, HET_FORMULA, "grp"), 1)
            add(label, "statsmodels MixedLM hom (once)", sm,
                _ratio(sm["seconds"], het["seconds"]))
            figures[f"sim{n}_speedup_vs_statsmodels"] = sm["seconds"] / het["seconds"]
            notes.append(
                f"{label} rows: llf(ours hom) - llf(statsmodels) = "
                f"{hom['llf'] - sm['llf']:+.2e}; ours hom is "
                f"{sm['seconds'] / hom['seconds']:.1f}x faster than statsmodels.")
        elif n > 100_000:
            notes.append(f"{label} rows: statsmodels MixedLM not run (skipped by "
                         "default as too slow; --statsmodels-1m runs it once).")
        figures[f"sim{n}_seconds"] = het["seconds"]
        del data
        gc.collect()

    reps_hsb = max(args.repeats, 11)
    hsb_het = time_fit(fit_ours_het(hsb_df, "mathach ~ female", "school", "~ female"),
                       reps_hsb)
    add("HSB", f"ours het (median of {reps_hsb})", hsb_het)
    hsb_hom = time_fit(fit_ours_hom(hsb_df, "mathach ~ female", "school"), reps_hsb)
    add("HSB", f"ours hom (median of {reps_hsb})", hsb_hom,
        _ratio(hsb_hom["seconds"], hsb_het["seconds"]))
    hsb_sm = time_fit(fit_statsmodels(hsb_df, "mathach ~ female", "school"), 3)
    add("HSB", "statsmodels MixedLM hom (median of 3)", hsb_sm,
        _ratio(hsb_sm["seconds"], hsb_het["seconds"]))
    figures["hsb_seconds"] = hsb_het["seconds"]
    notes.append(f"HSB: llf(ours hom) - llf(statsmodels) = "
                 f"{hsb_hom['llf'] - hsb_sm['llf']:+.2e}.")

    r_info = None
    if not args.no_r and sim100k is not None:
        hsb_path = Path(hsb.__file__).resolve().parent / "hsb.csv"
        print("running R peers (nlme takes about a minute at 100,000 rows) ...",
              flush=True)
        r_res, r_info = run_r(sim100k, hsb_path, max(3, args.repeats))
        if r_res is None:
            notes.append(r_info)
        else:
            for (peer, dataset), res in sorted(r_res.items()):
                our = ours.get(100_000) if dataset.startswith("sim") else hsb_het
                label = "sim 100,000" if dataset.startswith("sim") else "HSB"
                add(label, f"{peer} het", res, _ratio(res["seconds"], our["seconds"]))
                if res.get("note"):
                    notes.append(f"{peer} on {label}: {res['note']}")
                if res["llf"] is not None:
                    notes.append(f"{label}: llf(ours het) - llf({peer}) = "
                                 f"{our['llf'] - res['llf']:+.2e}.")
            figures["r"] = {f"{p}/{d}": v for (p, d), v in r_res.items()}
    elif args.no_r:
        notes.append("R peers skipped (--no-r).")

    info["loadavg_end"] = os.getloadavg()
    # Targets from the issue.
    checks = []
    for key, target in TARGETS.items():
        val = figures.get(key)
        if val is None:
            continue
        ok = val >= target if "speedup" in key else val <= target
        checks.append(f"{key}: {val:.3f} (target {'>=' if 'speedup' in key else '<='} "
                      f"{target}) {'PASS' if ok else 'FAIL'}")
    notes = checks + notes
    md = report(info, rows, mem, r_info, notes)
    print("\n" + md)
    if args.markdown:
        args.markdown.write_text(md + "\n")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
