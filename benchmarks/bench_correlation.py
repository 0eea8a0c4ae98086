"""
Time of fits with residual correlation structures against the same model
without correlation, in one run (wall time of ``fit``, median of rounds;
model construction timed separately).

* AR(1): 2,000 groups x 50 occasions (100,000 rows), random intercept, a
  4-term log-linear variance function (intercept and three covariates),
  ML: ``correlation="ar1", time="occ"`` against the same model without
  ``correlation``.  The issue's target: at most 2x.
* Unstructured: 20,000 groups x 5 occasions (100,000 rows), one variance
  per occasion (``var_by="occ"``), the default random intercept held at
  zero in both fits (with unstructured residuals it is not identified), ML,
  against the same model without ``correlation``.

Usage::

    PYTHONPATH=. python benchmarks/bench_correlation.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import pandas as pd

from statsmodels_hetmixed.model import HetMixedLM


def ar1_data(m=2000, n=50, phi=0.5, seed=0):
    rng = np.random.default_rng(seed)
    N = m * n
    g = np.repeat(np.arange(m), n)
    occ = np.tile(np.arange(n), m)
    x1, x2, x3 = rng.normal(size=(3, N))
    sd = np.exp(0.5 * (0.2 * x1 - 0.3 * x2 + 0.1 * x3))
    e = np.empty((m, n))
    e[:, 0] = rng.normal(size=m)
    for j in range(1, n):
        e[:, j] = phi * e[:, j - 1] + np.sqrt(1 - phi ** 2) * rng.normal(size=m)
    y = 1 + 0.5 * x1 + np.repeat(rng.normal(size=m), n) + sd * e.ravel()
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "x3": x3, "g": g, "occ": occ})


def unstructured_data(m=20000, K=5, seed=1):
    rng = np.random.default_rng(seed)
    R = 0.6 ** np.abs(np.subtract.outer(np.arange(K), np.arange(K))) + 0.1
    np.fill_diagonal(R, 1.0)
    sd = np.linspace(1, 2, K)
    L = np.linalg.cholesky(R * np.outer(sd, sd))
    e = rng.normal(size=(m, K)) @ L.T
    x = rng.normal(size=(m, K))
    y = 1 + 0.5 * x + e
    return pd.DataFrame({"y": y.ravel(), "x": x.ravel(),
                         "g": np.repeat(np.arange(m), K),
                         "occ": np.tile(np.arange(1, K + 1), m)})


def timed(build, reml=False, hold_re=False):
    """(construction time, fit time, results); with ``hold_re`` the random
    intercept's variance is held at zero (start 0, ``free`` mask)."""
    t0 = time.perf_counter()
    model = build()
    t1 = time.perf_counter()
    if hold_re:
        lay = model.layout
        nat = lay.to_natural(model._objective(reml).start())
        nat[lay.cov_natural] = 0.0
        free = np.ones(nat.size)
        free[lay.cov_natural] = 0
        res = model.fit(reml=reml, start_params=nat, free=free)
    else:
        res = model.fit(reml=reml)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, res


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    df = ar1_data()
    kw = dict(groups="g", var_formula="~ x1 + x2 + x3")
    builds = {
        "independent": lambda: HetMixedLM.from_formula("y ~ x1", df, **kw),
        "ar1": lambda: HetMixedLM.from_formula("y ~ x1", df, correlation="ar1",
                                               time="occ", **kw),
    }
    times = {k: [] for k in builds}
    for _ in range(args.rounds):
        for name, build in builds.items():   # interleaved: same load
            _, t_fit, res = timed(build)
            times[name].append(t_fit)
            last = res
    med = {k: statistics.median(v) for k, v in times.items()}
    print("AR(1), 2,000 groups x 50 occasions, 4-term log-linear variance, ML")
    for k, v in times.items():
        print(f"  {k:12s} fit median {med[k]:.3f} s  rounds {[round(x, 3) for x in v]}")
    print(f"  ratio ar1 / independent: {med['ar1'] / med['independent']:.2f}")
    print(f"  phi = {last.correlation_params.iloc[0]:.4f}, converged {last.converged}")

    du = unstructured_data()
    ub = {
        "independent": lambda: HetMixedLM.from_formula(
            "y ~ x", du, groups="g", var_by="occ"),
        "unstructured": lambda: HetMixedLM.from_formula(
            "y ~ x", du, groups="g", var_by="occ", correlation="unstructured",
            time="occ"),
    }
    times = {k: [] for k in ub}
    for _ in range(args.rounds):
        for name, build in ub.items():
            # unstructured residuals with free variances leave no room for
            # a random intercept (not identified): held at zero in both
            _, t_fit, res = timed(build, hold_re=True)
            times[name].append(t_fit)
            last = res
    med = {k: statistics.median(v) for k, v in times.items()}
    print("Unstructured, 20,000 groups x 5 occasions, var_by=occ, ML")
    for k, v in times.items():
        print(f"  {k:12s} fit median {med[k]:.3f} s  rounds {[round(x, 3) for x in v]}")
    print(f"  ratio unstructured / independent: "
          f"{med['unstructured'] / med['independent']:.2f}")
    print(f"  converged {last.converged}; correlations "
          f"{np.round(last.correlation_params.to_numpy(), 3).tolist()}")


if __name__ == "__main__":
    main()
