"""
Simulation with known truth: coverage of ``get_prediction`` intervals.

Design (one replication):

* ``--n-groups`` groups (default 40) of ``--group-size`` rows (default 10);
* ``x`` row-level U(0, 10) (a "time"), ``f`` row-level Bernoulli(0.5);
* ``(u0_g, u1_g)`` random intercept and slope on ``x``: SDs 1.0 and 0.2,
  correlation -0.3;
* ``y = 2 + 0.5 x - 1 f + u0_g + u1_g x + e``, ``e ~ N(0, sigma2)``,
  ``log sigma2 = 0 + 0.8 f + 0.08 x`` (heteroskedastic);
* fit: ``hetmixedlm("y ~ x + f", groups="g", re_formula="~ x",
  var_formula="~ f + x").fit(reml=True)``.

New observations per replication (fresh residuals, x ~ U(0, 12) so some lie
beyond the data):

* ``known``: one new row in each fitted group, with that group's own
  ``u_g`` (conditional predictions);
* ``new``: one row in each of ``n_groups`` unseen groups with fresh ``u``
  (marginal predictions).

Reported: coverage of the 95% prediction interval of the new observation
(``obs_ci``), of the 95% interval of the mean (``mean_ci``: covers
``x'beta + z'u_g`` for known groups, ``x'beta`` for new ones), with binomial
Monte Carlo SEs (rows within a replication share estimates, so the SE is a
lower bound), failed fits, and time.

Each replication draws from ``SeedSequence([seed, rep])``.

Usage::

    PYTHONPATH=. python benchmarks/sim_predict.py [--reps 500] [--seed 11]
        [--n-groups 40] [--group-size 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd

import statsmodels_hetmixed.formula.api as hmf

BETA = np.array([2.0, 0.5, -1.0])
SD = np.array([1.0, 0.2])
CORR = -0.3
A = np.array([0.0, 0.8, 0.08])


def draw(rng, n_groups, size, u=None, x_max=10.0):
    g = np.repeat(np.arange(n_groups), size)
    n = g.size
    x = rng.uniform(0, x_max, n)
    f = rng.integers(0, 2, n).astype(float)
    if u is None:
        cov = np.diag(SD) @ np.array([[1, CORR], [CORR, 1]]) @ np.diag(SD)
        u = rng.multivariate_normal(np.zeros(2), cov, n_groups)
    mean = BETA[0] + BETA[1] * x + BETA[2] * f + u[g, 0] + u[g, 1] * x
    sigma2 = np.exp(A[0] + A[1] * f + A[2] * x)
    y = mean + np.sqrt(sigma2) * rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x": x, "f": f, "g": g, "mean": mean,
                         "fixed": BETA[0] + BETA[1] * x + BETA[2] * f}), u


def one(seed, rep, n_groups, size):
    rng = np.random.default_rng(np.random.SeedSequence([seed, rep]))
    data, u = draw(rng, n_groups, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hmf.hetmixedlm("y ~ x + f", data, groups="g", re_formula="~ x",
                             var_formula="~ f + x").fit(reml=True)
    known, _ = draw(rng, n_groups, 1, u=u, x_max=12.0)
    new, _ = draw(rng, n_groups, 1, x_max=12.0)
    new["g"] += 10_000  # labels the fit has not seen
    out = {"converged": bool(fit.converged)}
    for kind, frame, target in (("known", known, "mean"), ("new", new, "fixed")):
        sf = fit.get_prediction(frame).summary_frame(alpha=0.05)
        if sf["conditional"].any() != (kind == "known"):
            raise AssertionError(f"{kind} rows predicted with the wrong level")
        out[kind + "_obs"] = int(((sf["obs_ci_lower"] <= frame["y"])
                                  & (frame["y"] <= sf["obs_ci_upper"])).sum())
        out[kind + "_mean"] = int(((sf["mean_ci_lower"] <= frame[target])
                                   & (frame[target] <= sf["mean_ci_upper"])).sum())
        out[kind + "_n"] = len(frame)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--n-groups", type=int, default=40)
    ap.add_argument("--group-size", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows, failed = [], 0
    for rep in range(args.reps):
        try:
            rows.append(one(args.seed, rep, args.n_groups, args.group_size))
        except Exception as exc:  # noqa: BLE001 - counted and reported
            failed += 1
            print(f"rep {rep}: {type(exc).__name__}: {exc}")
    elapsed = time.perf_counter() - t0
    summary = {"reps": args.reps, "failed": failed, "seed": args.seed,
               "n_groups": args.n_groups, "group_size": args.group_size,
               "not_converged": sum(not r["converged"] for r in rows),
               "seconds": round(elapsed, 1)}
    for kind in ("known", "new"):
        n = sum(r[kind + "_n"] for r in rows)
        for what in ("obs", "mean"):
            hits = sum(r[f"{kind}_{what}"] for r in rows)
            p = hits / n
            summary[f"{kind}_{what}_coverage"] = round(p, 4)
            summary[f"{kind}_{what}_mcse"] = round(np.sqrt(p * (1 - p) / n), 4)
        summary[f"{kind}_rows"] = n
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
