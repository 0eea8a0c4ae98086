"""
What REML adds to ML's cost, per engine call and per fit, on
``bench_scale.py``'s data (20,000 groups x 50 rows by default).

On a shared machine the fresh-process timings of ``bench_scale.py`` spread
by 20-60% between rounds, more than REML's extra cost over ML (a tenth of
the fit); here each call is repeated in one process, ML and REML
interleaved, and the minimum CPU time of each is reported:

* ``evaluate``: one likelihood evaluation with the gradient and the
  expected information (what each scoring step takes), at the REML
  estimate;
* ``observed information``: ``_engine.observed_information`` from that
  evaluation (the standard errors);
* ``fit``: ``model.fit(reml=...)`` and ``.bse`` on one constructed model.

Usage::

    PYTHONPATH=. python benchmarks/bench_reml_extra.py [--groups 20000]
        [--repeats 15] [--base DIR]

With ``--base DIR`` the same measurements run in a second process with the
package of the source tree DIR, the two processes one after the other.
One BLAS thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent


def measure(n_groups, repeats):
    """Minimum CPU seconds of each call, ML and REML interleaved."""
    import numpy as np

    # the package of the tree on PYTHONPATH first: bench_scale's imports put
    # this script's own tree on sys.path
    import statsmodels_hetmixed.formula.api as hmf
    from statsmodels_hetmixed import _engine

    sys.path.insert(0, str(HERE))
    from bench_scale import FORMULA, VAR_FORMULA, scale_data

    warnings.simplefilter("ignore")
    model = hmf.hetmixedlm(FORMULA, scale_data(n_groups), groups="grp",
                           var_formula=VAR_FORMULA)
    natural = np.asarray(model.fit(reml=True)._natural)
    objectives = {reml: model._objective(reml) for reml in (False, True)}
    lay, data = objectives[True].layout, objectives[True].grouped
    cov_dirs, var_dirs = lay.info_directions(natural)
    factor, resid_var = lay.factor(objectives[True].centred(natural)), lay.resid_var(natural)
    evaluations = {reml: objectives[reml].evaluate(natural, gradient=True)
                   for reml in (False, True)}

    def observed(reml):
        return _engine.observed_information(
            data, factor, resid_var, reml, _engine.centred_directions(data, cov_dirs),
            var_dirs, evaluation=replace(evaluations[reml], grad_eta=None))

    def fit(reml):
        model.fit(reml=reml).bse  # noqa: B018

    calls = {
        "evaluate": lambda reml: objectives[reml].evaluate(natural, gradient=True,
                                                          info=True),
        "observed information": observed,
        "fit": fit,
    }
    out = {"module": _engine.__file__}
    for name, call in calls.items():
        times = {False: [], True: []}
        for rep in range(repeats if name != "fit" else max(3, repeats // 3)):
            for reml in ((False, True) if rep % 2 else (True, False)):
                t0 = time.process_time()
                call(reml)
                times[reml].append(time.process_time() - t0)
        out[name] = {"ml": min(times[False]), "reml": min(times[True])}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--base", type=Path, help="source tree of the version before")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.groups, args.repeats)))
        return
    trees = {"head": HERE.parent}
    if args.base is not None:
        trees["base"] = args.base
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    results = {}
    for label, tree in trees.items():
        env["PYTHONPATH"] = str(Path(tree).resolve())
        out = subprocess.run([sys.executable, __file__, "--child", "--groups",
                              str(args.groups), "--repeats", str(args.repeats)],
                             capture_output=True, text=True, env=env, check=True,
                             cwd=env["PYTHONPATH"])
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
        if not results[label].pop("module").startswith(env["PYTHONPATH"]):
            raise RuntimeError(f"{label} did not run the package of {tree}")
    print(f"{args.groups * 50:,} rows; minimum CPU ms of {args.repeats} "
          f"interleaved calls (fit: of {max(3, args.repeats // 3)}); load average "
          f"{os.getloadavg()[0]:.2f}")
    print("| call | tree | ML | REML | REML - ML | REML / ML |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name in results["head"]:
        for label in trees:
            ml, reml = results[label][name]["ml"], results[label][name]["reml"]
            print(f"| {name} | {label} | {1e3 * ml:.1f} | {1e3 * reml:.1f} | "
                  f"{1e3 * (reml - ml):.1f} | {reml / ml:.2f} |")


if __name__ == "__main__":
    main()
