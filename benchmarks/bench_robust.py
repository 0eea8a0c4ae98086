"""
Time of the cluster-robust covariances (robust.py) after one fit.

    PYTHONPATH=. python benchmarks/bench_robust.py [--groups 2000] [--size 50]

Simulated data: ``groups`` groups of ``size`` rows, a random intercept and
slope, log residual variance linear in a binary covariate.  Times the fit and
``get_robustcov_results`` for CR1 and CR2 by group and for CR1 and CR2 by
clusters of 10 groups (the best of 3 runs each), and prints the BLAS thread
setting, which matters for CR2's many small matrix operations.
"""

import argparse
import os
import time

import numpy as np
import pandas as pd

import statsmodels_hetmixed.formula.api as hmf


def simulate(n_groups, size, seed=1):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.standard_normal(g.size)
    f = rng.integers(0, 2, g.size)
    u0 = rng.normal(0, 1.0, n_groups)[g]
    u1 = rng.normal(0, 0.3, n_groups)[g]
    y = 1 + 0.5 * x + u0 + u1 * x + np.exp(0.5 * (0.2 + 0.4 * f)) * \
        rng.standard_normal(g.size)
    return pd.DataFrame({"y": y, "x": x, "f": f, "g": g, "c": g // 10})


def best_of(fun, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fun()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=2000)
    parser.add_argument("--size", type=int, default=50)
    args = parser.parse_args()
    data = simulate(args.groups, args.size)
    model = hmf.hetmixedlm("y ~ x + f", data, groups="g", re_formula="1 + x",
                           var_formula="~ f")
    t0 = time.perf_counter()
    res = model.fit()
    print(f"rows {len(data)}, groups {args.groups}, OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}")
    print(f"fit                      {time.perf_counter() - t0:8.3f} s")
    for correction, groups in (("CR1", None), ("CR2", None), ("CR1", "c"),
                               ("CR2", "c")):
        secs = best_of(lambda: res.get_robustcov_results(correction=correction,
                                                         groups=groups))
        by = "groups" if groups is None else "10-group clusters"
        print(f"{correction} by {by:18s} {secs:8.3f} s")


if __name__ == "__main__":
    main()
