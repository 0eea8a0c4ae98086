"""
Compare the speed of two versions of the package in one run.

Each version is a source tree (a checkout of the repository); nothing is
installed.  Every measurement runs in a fresh Python process whose
``PYTHONPATH`` is that tree, so the two versions never share a process.
The same workloads run for both versions, interleaved round by round, and
the order inside a round alternates (base, head / head, base / ...) so that
drift of the machine's speed and any first-or-second effect hit both
versions alike.

Workloads (all formula to results; definitions taken from ``bench_fit.py``
and ``bench_locscale.py`` of the tree that holds this script, so both
versions fit exactly the same models on exactly the same data):

* ``hsb_het_ml`` / ``hsb_hom_ml``: HSB, ``mathach ~ female``, groups
  ``school``, ``var_formula="~ female"`` (het) or none (hom), ML;
* ``sim100k_het_ml`` / ``sim100k_hom_ml`` / ``sim100k_het_reml``: the
  ``bench_fit.py`` model (``y ~ x + g``, ``var_formula="~ x + g + x:g"``)
  on ``make_data(2000, 50, 0)``, ML, and the het model by REML;
* ``sim1m_het_ml`` / ``sim1m_hom_ml``: the same on ``make_data(20000, 50, 0)``;
* ``ls1_aghq`` ... ``ls4_laplace``: the location-scale HSB models (1)-(4) of
  ``bench_locscale.py``, default adaptive quadrature and Laplace, ML.

What is timed, as in the benchmark each workload comes from: the
``bench_fit.py`` workloads by wall time with the BLAS threads the
environment gives; the location-scale workloads by CPU time with one BLAS
thread (``bench_locscale.py``).  Both CPU and wall seconds are recorded for
every fit, and ``--metric`` / ``--blas-threads`` override the choice.
Each process first fits its workload once untimed (the sim workloads on
5,000 rows of the same design), then times ``inner`` fits and reports their
median; that median is one sample.  One round gives one sample per version
and workload.

The verdict per workload uses the paired ratios head/base of the rounds
(the two processes of a round run one after the other): their median, and
a distribution-free confidence interval for that median from order
statistics (binomial; the narrowest interval with at least 95% coverage,
or the min-max interval and its actual coverage when there are too few
rounds; at least 6 rounds are needed for 95%, with fewer the verdict is
UNDECIDED).  PASS when the interval's upper end is at most ``1 + tolerance``
(head is not more than 5% slower, beyond the noise); FAIL when its lower
end exceeds ``1 + tolerance`` (slower beyond the noise); otherwise
UNDECIDED: the noise is too large to tell, run more rounds.  A workload
also FAILs when the two versions' llf differ by more than ``--llf-tol``
(absolute), or when one version converges and the other does not.

Usage::

    git worktree add /tmp/base cc04fc1        # or: mkdir /tmp/base &&
                                              # git archive cc04fc1 | tar -x -C /tmp/base
    python benchmarks/compare_versions.py --base /tmp/base [--head DIR]
        [--repeats 7] [--no-1m] [--only PATTERN ...] [--markdown FILE]
        [--json FILE]
    git worktree remove /tmp/base
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fnmatch
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PACKAGE = "statsmodels_hetmixed"
BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# name: (data set, kind, metric, BLAS threads (None: as the environment
# gives), timed fits per process).  Metric and threads follow the benchmark
# the workload comes from (bench_fit.py: wall; bench_locscale.py: CPU, one
# thread).  Several timed fits per process only where one fit is short
# enough for the process start (~1.5 s of imports) to dominate.
WORKLOADS = {
    "hsb_het_ml": ("hsb", "het_ml", "wall", None, 11),
    "hsb_hom_ml": ("hsb", "hom_ml", "wall", None, 11),
    "sim100k_het_ml": ("sim100k", "het_ml", "wall", None, 3),
    "sim100k_hom_ml": ("sim100k", "hom_ml", "wall", None, 3),
    "sim100k_het_reml": ("sim100k", "het_reml", "wall", None, 1),
    "sim1m_het_ml": ("sim1m", "het_ml", "wall", None, 1),
    "sim1m_hom_ml": ("sim1m", "hom_ml", "wall", None, 1),
}
for _m in "1234":
    WORKLOADS[f"ls{_m}_aghq"] = ("hsb_ls", f"{_m}/aghq", "cpu", 1, 1)
    WORKLOADS[f"ls{_m}_laplace"] = ("hsb_ls", f"{_m}/laplace", "cpu", 1, 1)

SIM_SIZES = {"sim100k": (2000, 50), "sim1m": (20000, 50)}


# ----------------------------------------------------------------------
# Child: one process, one version, one workload
def _child(workload: str, tree: str, inner: int, warm_allocator_mb: float = 0.0) -> dict:
    """Fit ``workload`` with the package of ``tree``; return timings and llf."""
    import gc
    import warnings

    tree_path = Path(tree).resolve()
    # No other tree on the path may supply the package (this script's own
    # directory is on it, and its parent may be the other version).
    sys.path[:] = [p for p in sys.path
                   if not (Path(p or ".") / PACKAGE).is_dir()
                   or Path(p or ".").resolve() == tree_path]
    import statsmodels_hetmixed  # noqa: F401  (from PYTHONPATH = tree)
    import statsmodels_hetmixed.formula.api as hmf

    # The workload definitions (and make_data) of this script's directory,
    # imported after the package so that their own sys.path edits cannot
    # change which package is used.
    sys.path.insert(0, str(HERE))
    import bench_fit
    import bench_locscale
    from make_data import make_data

    data_set, kind, _, _, _ = WORKLOADS[workload]
    if data_set == "hsb":
        from statsmodels_hetmixed.datasets import hsb

        data = warm = hsb.load_pandas().data
        formula, groups, var = "mathach ~ female", "school", "~ female"
    elif data_set in SIM_SIZES:
        data = make_data(*SIM_SIZES[data_set], 0)
        warm = make_data(100, 50, 1)  # same design, small: the warm-up
        formula, groups, var = bench_fit.HET_FORMULA, "grp", bench_fit.HET_VAR
    else:
        data = warm = bench_locscale.load_data()
        model, rule = kind.split("/")
        formula, kwargs = bench_locscale.MODELS[model]
        n_quad = 1 if rule == "laplace" else None

    def fit(df):
        if data_set == "hsb_ls":
            return hmf.hetmixedlm(formula, df, groups="school", **kwargs).fit(
                reml=False, n_quad=n_quad)
        vf = None if kind == "hom_ml" else var
        return hmf.hetmixedlm(formula, df, groups=groups, var_formula=vf).fit(
            reml=kind == "het_reml")

    if warm_allocator_mb:
        # glibc's malloc raises its mmap threshold when a large mmapped
        # chunk is freed; until then every temporary above 128 KiB is
        # mmapped and page-faulted afresh.  Which version's allocation
        # history raises it first is luck (measured: 220k against 348k
        # minor faults for the same fit, 25-40% of its time): one freed
        # chunk of this size puts both versions in the same state.
        import numpy as _np

        _np.ones(int(warm_allocator_mb * 2**20) // 8).sum()
    cpu, wall, llfs, conv, msgs = [], [], [], [], set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(warm)  # untimed: first-call costs (lazy imports, caches)
        caught.clear()
        for _ in range(inner):
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            res = fit(data)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            llfs.append(float(res.llf))
            conv.append(bool(res.converged))
        msgs = sorted({f"{w.category.__name__}: {str(w.message)[:100]}" for w in caught})

    # Every module of the package must come from the tree under test.
    stray = sorted(
        name for name, mod in list(sys.modules.items())
        if (name == PACKAGE or name.startswith(PACKAGE + "."))
        and getattr(mod, "__file__", None)
        and tree_path not in Path(mod.__file__).resolve().parents)
    if stray:
        raise RuntimeError(f"modules not from {tree_path}: {stray[:5]}")
    return {"cpu": statistics.median(cpu), "wall": statistics.median(wall),
            "all_cpu": cpu, "all_wall": wall, "llf": llfs[-1],
            "llf_spread": max(llfs) - min(llfs), "converged": all(conv),
            "warnings": msgs, "package_file": statsmodels_hetmixed.__file__,
            "rows": int(len(data))}


# ----------------------------------------------------------------------
# Parent
def _tree_revision(tree: Path) -> str:
    """Commit of a checkout (and whether the package has local changes)."""
    try:
        rev = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        top = subprocess.run(["git", "-C", str(tree), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    if Path(top).resolve() != tree:
        return "not a git checkout (inside another repository)"
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--", PACKAGE],
                           capture_output=True, text=True).stdout.strip()
    return rev + (f" (+ uncommitted changes in {PACKAGE}/)" if dirty else "")


def _check_tree(tree: Path, which: str) -> Path:
    tree = tree.resolve()
    if not (tree / PACKAGE / "__init__.py").is_file():
        raise SystemExit(f"--{which} {tree}: no {PACKAGE}/__init__.py there; give the "
                         "root of a checkout of the repository (see --help).")
    return tree


def run_child(tree: Path, workload: str, inner: int, blas_threads,
              warm_allocator_mb: float = 0.0) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)  # only the tree: no other copy of the package
    if blas_threads is not None:
        env.update({v: str(blas_threads) for v in BLAS_VARS})
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", workload,
         "--child-tree", str(tree), "--child-inner", str(inner),
         "--child-warm-allocator", str(warm_allocator_mb)],
        capture_output=True, text=True, env=env, cwd=str(tree))
    if proc.returncode != 0:
        raise RuntimeError(f"{workload} with {tree} failed:\n{proc.stderr[-2000:]}")
    sample = json.loads(proc.stdout.strip().splitlines()[-1])
    sample["process_s"] = time.perf_counter() - t0  # the whole process, wall
    return sample


def median_ci(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """
    Distribution-free confidence interval for the median of ``values``.

    The interval (x_(k), x_(n+1-k)) of the order statistics covers the
    median with probability 1 - 2 P(Binomial(n, 1/2) < k), whatever the
    distribution.  Returns (low, high, coverage) for the largest k whose
    coverage is at least ``level``; with too few values, the min-max
    interval and its coverage (below ``level``).
    """
    x = sorted(values)
    n = len(x)

    def coverage(k):
        return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(k)) / 2.0**n

    k = 1
    while k + 1 <= n // 2 and coverage(k + 1) >= level:
        k += 1
    return x[k - 1], x[n - k], coverage(k)


def verdict(ratios, tolerance, llf_ok, conv_ok, level=0.95):
    low, high, cov = median_ci(ratios, level)
    limit = 1.0 + tolerance
    if not llf_ok:
        speed = "FAIL (llf differs)"
    elif not conv_ok:
        speed = "FAIL (convergence differs)"
    elif cov < level:
        speed = f"UNDECIDED (too few rounds for {100 * level:.0f}%)"
    elif high <= limit:
        speed = "PASS"
    elif low > limit:
        speed = "FAIL"
    else:
        speed = "UNDECIDED (noise)"
    return low, high, cov, speed


def _spread(xs):
    """(max - min) / median, in percent."""
    m = statistics.median(xs)
    return 100.0 * (max(xs) - min(xs)) / m if m > 0 else float("nan")


def summarise(name, samples, metric, tolerance, llf_tol):
    base = [s[metric] for s in samples["base"]]
    head = [s[metric] for s in samples["head"]]
    other = "wall" if metric == "cpu" else "cpu"
    ratios = [h / b for h, b in zip(head, base)]
    llf_b, llf_h = samples["base"][-1]["llf"], samples["head"][-1]["llf"]
    # Every sample of a version must give one llf, and the versions the same.
    all_llf = [s["llf"] for v in ("base", "head") for s in samples[v]]
    llf_diff = llf_h - llf_b
    llf_ok = max(all_llf) - min(all_llf) <= llf_tol
    conv_b = all(s["converged"] for s in samples["base"])
    conv_h = all(s["converged"] for s in samples["head"])
    low, high, cov, speed = verdict(ratios, tolerance, llf_ok, conv_b == conv_h)
    med_b, med_h = statistics.median(base), statistics.median(head)
    other_ratio = (statistics.median([s[other] for s in samples["head"]])
                   / statistics.median([s[other] for s in samples["base"]]))
    return {
        "workload": name, "metric": metric, "rounds": len(ratios),
        "inner": samples["base"][0]["inner"],
        "base_median": med_b, "head_median": med_h, "ratio": med_h / med_b,
        "paired_ratio_median": statistics.median(ratios),
        "paired_ratio_ci": [low, high], "ci_coverage": cov,
        "spread_base_pct": _spread(base), "spread_head_pct": _spread(head),
        f"ratio_{other}": other_ratio,
        "llf_base": llf_b, "llf_head": llf_h, "llf_diff": llf_diff,
        "llf_max_minus_min": max(all_llf) - min(all_llf), "llf_ok": llf_ok,
        "converged_base": conv_b, "converged_head": conv_h,
        "warnings_base": samples["base"][-1]["warnings"],
        "warnings_head": samples["head"][-1]["warnings"],
        "verdict": speed,
        "process_s_total": sum(s["process_s"] for v in ("base", "head") for s in samples[v]),
        "base_samples": base, "head_samples": head, "paired_ratios": ratios,
    }


def markdown(info, rows, args):
    lines = [
        "## Speed of this version against the previous one (`compare_versions.py`)",
        "",
        f"Run {info['date']} by `benchmarks/compare_versions.py "
        f"{' '.join(info['argv'])}`, {info['elapsed_s'] / 60:.1f} min.",
        "",
        f"- base: `{info['base']}` ({info['base_revision']})",
        f"- head: `{info['head']}` ({info['head_revision']})",
        f"- {info['cpu']}, {info['logical_cpus']} logical CPUs; Python {info['python']}, "
        f"numpy {info['numpy']}",
        f"- load average (1 min) at start {info['loadavg_start'][0]:.2f}, at end "
        f"{info['loadavg_end'][0]:.2f}; during the run min {info['loadavg_min']:.2f}, "
        f"max {info['loadavg_max']:.2f}",
        "",
        "One sample = the median of `inner` timed fits in a fresh process (after one "
        "untimed warm-up fit); rounds interleave the versions with alternating order. "
        "Ratio = head median / base median. The verdict uses the paired ratios of the "
        "rounds: a distribution-free confidence interval for their median (coverage "
        f"shown); PASS if its upper end <= {1 + args.tolerance:.2f}, FAIL if its lower "
        f"end > {1 + args.tolerance:.2f}, else UNDECIDED (more rounds needed). llf: both "
        f"versions must agree within {args.llf_tol:g} (absolute).",
        "",
        "| workload | metric | rounds x inner | base s | head s | ratio | paired ratio "
        "[CI] (coverage) | spread base / head | other metric ratio | llf head | "
        "llf head - base | verdict |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        other = "wall" if r["metric"] == "cpu" else "cpu"
        lo, hi = r["paired_ratio_ci"]
        lines.append(
            f"| {r['workload']} | {r['metric']} | {r['rounds']} x {r['inner']} | "
            f"{r['base_median']:.3f} | {r['head_median']:.3f} | {r['ratio']:.3f} | "
            f"{r['paired_ratio_median']:.3f} [{lo:.3f}, {hi:.3f}] ({100 * r['ci_coverage']:.0f}%) | "
            f"{r['spread_base_pct']:.0f}% / {r['spread_head_pct']:.0f}% | "
            f"{other} {r[f'ratio_{other}']:.3f} | {r['llf_head']:.4f} | "
            f"{r['llf_diff']:+.1e} | {r['verdict']} |")
    counts = {}
    for r in rows:
        key = r["verdict"].split(" ")[0]
        counts[key] = counts.get(key, 0) + 1
    lines += ["", "Verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
              + ". Spread = (max - min) / median of a version's samples.", ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Compare the speed (and llf) of two source trees of the package.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Make the base tree with `git worktree add /tmp/base <commit>` (remove "
               "it afterwards with `git worktree remove /tmp/base`) or `mkdir /tmp/base "
               "&& git archive <commit> | tar -x -C /tmp/base`.")
    ap.add_argument("--base", type=Path, help="root of the previous version's tree")
    ap.add_argument("--head", type=Path, default=ROOT,
                    help="root of the new version's tree (default: the repository "
                         "holding this script)")
    ap.add_argument("--repeats", type=int, default=7,
                    help="rounds: samples per version and workload (default 7; at "
                         "least 6 for a verdict: fewer cannot give a 95%% interval)")
    ap.add_argument("--repeats-1m", type=int, default=None,
                    help="rounds for the 1,000,000-row workloads (default: --repeats)")
    ap.add_argument("--no-1m", action="store_true", help="skip the 1,000,000-row workloads")
    ap.add_argument("--only", nargs="+", metavar="PATTERN",
                    help="only workloads matching these shell patterns, e.g. 'ls*' "
                         f"(names: {', '.join(WORKLOADS)})")
    ap.add_argument("--metric", choices=("bench", "cpu", "wall"), default="bench",
                    help="what to compare: 'bench' (default) = as the benchmark the "
                         "workload comes from (bench_fit: wall, bench_locscale: CPU)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="BLAS threads for all workloads (default: as the benchmarks: "
                         "the environment's for bench_fit's, 1 for bench_locscale's)")
    ap.add_argument("--tolerance", type=float, default=0.05,
                    help="allowed slow-down as a fraction (default 0.05)")
    ap.add_argument("--llf-tol", type=float, default=1e-6,
                    help="allowed absolute llf difference (default 1e-6)")
    ap.add_argument("--markdown", type=Path, help="write the Markdown report here")
    ap.add_argument("--json", type=Path, help="write all samples and summaries here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-tree", help=argparse.SUPPRESS)
    ap.add_argument("--child-inner", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--child-warm-allocator", type=float, default=0.0,
                    help=argparse.SUPPRESS)
    ap.add_argument("--warm-allocator", type=float, default=0.0, metavar="MB",
                    help="before its warm-up fit, each sample process allocates and "
                         "frees MB MiB (at most 32), which raises glibc's malloc mmap "
                         "threshold to that size in both versions alike (default 0: "
                         "off); see the README")
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(_child(args.child, args.child_tree, args.child_inner,
                                args.child_warm_allocator)))
        return 0
    if args.base is None:
        ap.error("--base DIR is required (the previous version's tree; see the epilog)")
    if args.repeats < 2:
        ap.error("--repeats must be at least 2 (the verdict needs a spread)")
    trees = {"base": _check_tree(args.base, "base"), "head": _check_tree(args.head, "head")}
    names = [w for w in WORKLOADS
             if not (args.no_1m and w.startswith("sim1m"))
             and (not args.only or any(fnmatch.fnmatch(w, p) for p in args.only))]
    if not names:
        ap.error(f"no workload matches --only {args.only}; names: {', '.join(WORKLOADS)}")

    import numpy

    sys.path.insert(0, str(HERE))
    import bench_fit  # for the machine details only; the parent never imports the package

    info = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv[1:] if argv is None else list(argv),
            "base": str(trees["base"]), "head": str(trees["head"]),
            "base_revision": _tree_revision(trees["base"]),
            "head_revision": _tree_revision(trees["head"]),
            "cpu": bench_fit._cpu_model(), "logical_cpus": os.cpu_count(),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "loadavg_start": os.getloadavg(),
            "blas_env": {v: os.environ.get(v) for v in BLAS_VARS}}
    print(f"base {info['base']} ({info['base_revision']})\n"
          f"head {info['head']} ({info['head_revision']})\n"
          f"workloads: {', '.join(names)}", flush=True)

    samples = {w: {"base": [], "head": []} for w in names}
    loads = [os.getloadavg()[0]]
    start = time.perf_counter()
    max_rounds = max(args.repeats, args.repeats_1m or 0)
    for rnd in range(max_rounds):
        order = ("base", "head") if rnd % 2 == 0 else ("head", "base")
        for w in names:
            rounds = (args.repeats_1m or args.repeats) if w.startswith("sim1m") else args.repeats
            if rnd >= rounds:
                continue
            _, _, metric, threads, inner = WORKLOADS[w]
            threads = args.blas_threads if args.blas_threads is not None else threads
            line = []
            for version in order:
                s = run_child(trees[version], w, inner, threads, args.warm_allocator)
                s["inner"], s["round"], s["blas_threads"] = inner, rnd, threads
                samples[w][version].append(s)
                m = metric if args.metric == "bench" else args.metric
                line.append(f"{version} {s[m]:.3f}")
            loads.append(os.getloadavg()[0])
            print(f"round {rnd + 1}/{rounds} {w:18s} " + "  ".join(line)
                  + f"  (load {loads[-1]:.2f})", flush=True)

    rows = []
    for w in names:
        metric = WORKLOADS[w][2] if args.metric == "bench" else args.metric
        rows.append(summarise(w, samples[w], metric, args.tolerance, args.llf_tol))
    info["loadavg_end"] = os.getloadavg()
    info["loadavg_min"], info["loadavg_max"] = min(loads), max(loads)
    info["elapsed_s"] = time.perf_counter() - start
    text = markdown(info, rows, args)
    print("\n" + text)
    for r in rows:
        for v in ("base", "head"):
            for msg in r[f"warnings_{v}"]:
                print(f"{r['workload']} ({v}) warning: {msg}")
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"info": info, "summary": rows,
                                         "samples": samples}, indent=1) + "\n")
    return 1 if any(r["verdict"].startswith("FAIL") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
