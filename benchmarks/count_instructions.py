"""
Instructions one formula-to-results fit takes, in two source trees.

Timings on a shared or virtual machine spread by 10-60% between runs of the
same fit, too much to decide a 5% difference; the number of instructions
executed does not depend on the machine's load.  Each workload runs in a
fresh process under valgrind's callgrind with instrumentation off; after one
untimed warm-up fit, ``callgrind_control -i on`` switches it on for one fit
and off again.  One BLAS thread, so that both versions run the same code.

    python benchmarks/count_instructions.py --base /tmp/base [--head .] \\
        [--only hsb_het_ml sim100k_het_ml]

needs valgrind (Debian's package) and takes 1-3 minutes per workload and
version (the 100,000-row fits take longest).  Workloads: ``hsb_het_ml``,
``hsb_hom_ml`` (HSB, ``mathach ~ female``, ``var_formula="~ female"`` or
none, ML), ``ls1_laplace``, ``ls1_aghq`` (HSB location-scale model (1),
``bench_locscale.py``), ``sim100k_hom_ml``, ``sim100k_het_ml``,
``sim100k_het_reml`` (``bench_fit.py``'s model on 2,000 groups x 50 rows),
``ar1_100k_ml``, ``ar1data_indep_ml`` (``bench_correlation.py --ar1-only``'s
AR(1) model and the same model without correlation, ML).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = ("hsb_het_ml", "hsb_hom_ml", "ls1_laplace", "ls1_aghq",
             "sim100k_hom_ml", "sim100k_het_ml", "sim100k_het_reml",
             "ar1_100k_ml", "ar1data_indep_ml")


def _child(workload: str) -> None:
    """One warm-up fit, then one fit with callgrind's instrumentation on."""
    import statsmodels_hetmixed.formula.api as hmf

    if workload.startswith("ar1"):
        sys.path.insert(0, str(HERE))
        from make_data import make_ar1_data

        data, warm = make_ar1_data(2000, 50), make_ar1_data(100, 50, seed=1)
        kw = ({"correlation": "ar1", "time": "t"} if workload == "ar1_100k_ml"
              else {})

        def fit(df):
            return hmf.hetmixedlm("y ~ x + g", df, groups="grp",
                                  var_formula="~ x + g + xg", **kw).fit(reml=False)
    elif workload.startswith("sim100k"):
        sys.path.insert(0, str(HERE))
        import bench_fit
        from make_data import make_data

        data, warm = make_data(2000, 50, 0), make_data(100, 50, 1)
        kw = {"var_formula": bench_fit.HET_VAR} if "het" in workload else {}

        def fit(df):
            return hmf.hetmixedlm(bench_fit.HET_FORMULA, df, groups="grp",
                                  **kw).fit(reml=workload.endswith("reml"))
    else:
        from statsmodels_hetmixed.datasets import hsb

        data = warm = hsb.load_pandas().data
        if workload.startswith("ls1"):
            n_quad = 1 if workload.endswith("laplace") else None

            def fit(df):
                return hmf.hetmixedlm("mathach ~ sector", df, groups="school",
                                      var_formula="~ sector",
                                      var_re_formula="~ 1").fit(reml=False,
                                                                n_quad=n_quad)
        else:
            kw = {"var_formula": "~ female"} if "het" in workload else {}

            def fit(df):
                return hmf.hetmixedlm("mathach ~ female", df, groups="school",
                                      **kw).fit(reml=False)
    fit(warm)

    def control(switch):
        subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())],
                       check=True, capture_output=True)

    control("on")
    res = fit(data)
    control("off")
    print(f"llf {res.llf!r}")


def count(tree: Path, workload: str) -> tuple[int, str]:
    """(instructions, llf line) of one workload with the package of ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={tmp}/cg.out", sys.executable, __file__,
             "--child", workload],
            cwd=tmp, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", out.stderr)
    llf = [line for line in out.stdout.splitlines() if line.startswith("llf")]
    return int(found.group(1)), (llf[-1] if llf else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, help="root of the previous version's tree")
    ap.add_argument("--head", type=Path, default=HERE.parent)
    ap.add_argument("--only", nargs="+", choices=WORKLOADS, default=WORKLOADS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    if args.base is None:
        ap.error("--base is required")
    print("| workload | base | head | ratio | llf base / head |")
    print("| --- | ---: | ---: | ---: | --- |")
    for workload in args.only:
        base, llf_base = count(args.base, workload)
        head, llf_head = count(args.head, workload)
        print(f"| {workload} | {base:,} | {head:,} | {head / base:.3f} | "
              f"{llf_base[4:]} / {llf_head[4:]} |", flush=True)


if __name__ == "__main__":
    main()
