"""
Profile one heteroskedastic fit (cProfile) and break its time down.

    PYTHONPATH=. python benchmarks/profile_fit.py [N_GROUPS] [GROUP_SIZE] [TOP]

Defaults: 20,000 groups x 50 rows (1,000,000 rows), top 25 by cumulative
time.  Besides the cProfile table it prints wall time per phase (formula
processing, model construction, optimisation, Newton polish, Hessian/SE
step) and the number of likelihood evaluations, by timing the package's
methods with thin wrappers (no package code is changed).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from make_data import make_data  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    n_groups = int(argv[0]) if len(argv) > 0 else 20000
    size = int(argv[1]) if len(argv) > 1 else 50
    top = int(argv[2]) if len(argv) > 2 else 25

    import statsmodels_hetmixed.formula.api as hmf
    from statsmodels_hetmixed import _engine, inference, optim
    from statsmodels_hetmixed.objective import HeteroskedasticObjective
    from statsmodels_hetmixed.model import HetMixedLM

    data = make_data(n_groups, size, 0)

    # Thin timing wrappers: phase name -> [calls, seconds].
    phases = defaultdict(lambda: [0, 0.0])

    def wrap(owner, name, label):
        orig = getattr(owner, name)

        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                phases[label][0] += 1
                phases[label][1] += time.perf_counter() - t0

        setattr(owner, name, wrapper)

    wrap(HetMixedLM, "__init__", "model construction: HetMixedLM.__init__")
    wrap(HeteroskedasticObjective, "start", "fit: starting values")
    wrap(optim, "run_method", "fit: optimisers (scoring, quasi-Newton)")
    wrap(optim, "newton_polish", "fit: Newton polish")
    wrap(HeteroskedasticObjective, "observed_information",
         "fit: observed information (convergence test, SEs)")
    wrap(inference, "covariance_of_estimates", "fit: cov_params")
    wrap(_engine, "evaluate", "likelihood evaluations (all)")

    gradient_calls = {"yes": 0, "no": 0}
    orig_eval = _engine.evaluate

    def count_eval(*a, **k):
        gradient_calls["yes" if k.get("gradient") else "no"] += 1
        return orig_eval(*a, **k)

    _engine.evaluate = count_eval

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof.enable()
        model = hmf.hetmixedlm("y ~ x + g", data, groups="grp",
                               var_formula="~ x + g + x:g")
        t1 = time.perf_counter()
        res = model.fit(reml=False)
        prof.disable()
    t2 = time.perf_counter()

    print(f"rows {len(data):,}, groups {n_groups:,}")
    print(f"total {t2 - t0:.3f} s (under cProfile): from_formula {t1 - t0:.3f} s, "
          f"fit {t2 - t1:.3f} s")
    print(f"llf {res.llf:.6f}, converged {res.converged}, "
          f"optimiser iterations {getattr(res._results, 'n_iter', 'n/a')}")
    print(f"likelihood evaluations: {sum(gradient_calls.values())} "
          f"({gradient_calls['yes']} with gradient, {gradient_calls['no']} without)")
    init_s = phases["model construction: HetMixedLM.__init__"][1]
    phases["formula processing: from_formula minus __init__"] = [1, t1 - t0 - init_s]
    print("\nphases (wall time; likelihood evaluations overlap the fit phases):")
    for label, (calls, secs) in sorted(phases.items(), key=lambda kv: -kv[1][1]):
        print(f"  {label:45s} {calls:4d} calls {secs:8.3f} s")

    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    print("\n" + buf.getvalue())
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
    print(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
