"""
Simulation under the null: are the score tests' p-values uniform?

Design (one replication), homoskedastic truth:

* 40 groups ``g`` of 15 rows (600 rows);
* ``x`` row-level N(0, 1), ``f`` row-level Bernoulli(0.5);
* ``y = 1 + 0.5 x + 0.3 f + u_g + e``, ``u_g ~ N(0, 0.5)``, ``e ~ N(0, 1)``.

Null fit: ``hetmixedlm("y ~ x + f", data, groups="g")`` by ML and by REML.
Tests per replication:

* ``lm_ml_obs``, ``lm_ml_exp``, ``lm_reml_obs``, ``lm_reml_exp``:
  ``score_test_variance("~ f + x")`` (log link, chi2(2)), observed and
  expected information, ML and REML null fits;
* ``lm_scale``: ``score_test_variance(var_re_formula="~ 1")`` (ML; one-sided,
  1/2 chi2(0) + 1/2 chi2(1); expected information), ``lm_scale_obs`` the
  same with ``observed=True``;
* ``lm_identity``: a null fit with ``var_formula="~ 1", var_link="identity"``
  (ML), ``score_test_variance("~ f")`` (one-sided additive variance).

Two-sided tests: Kolmogorov-Smirnov test of the p-values against U(0, 1).
One-sided (boundary) tests: under the null half the p-values are 1 (the
efficient score is negative) and the others are uniform on (0, 1/2); the
KS test is of ``2 p`` among ``p < 1``, with a binomial test of the share of
p = 1 against 1/2.  Rejection rates at 5% and 1% are reported with their
binomial Monte Carlo SE.

    PYTHONPATH=. python benchmarks/sim_score_test.py --reps 500 --seed 1

``--groups``, ``--size`` and ``--only`` change the design and the tests
run.  With ``--direct-scale`` it also recomputes the random-scale test's statistic
on HSB (40 schools) from the location-scale model's own quadrature
log-likelihood (see tests/test_scoretest.py for the variance terms).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

import statsmodels_hetmixed.formula.api as hmf

TESTS = ["lm_ml_obs", "lm_ml_exp", "lm_reml_obs", "lm_reml_exp", "lm_scale",
         "lm_scale_obs", "lm_identity"]
ONE_SIDED = {"lm_scale", "lm_scale_obs", "lm_identity"}


def simulate(rng, n_groups=40, size=15):
    g = np.repeat(np.arange(n_groups), size)
    x = rng.standard_normal(g.size)
    f = rng.integers(0, 2, g.size)
    y = 1 + 0.5 * x + 0.3 * f + rng.normal(0, np.sqrt(0.5), n_groups)[g] \
        + rng.standard_normal(g.size)
    return pd.DataFrame({"y": y, "x": x, "f": f, "g": g})


def one_replication(rng, n_groups=40, size=15, only=None):
    """p-values of every test (or those in ``only``) on one data set; NaN
    (with the error's name in ``errors``) for a test that raised."""
    data = simulate(rng, n_groups, size)
    model = hmf.hetmixedlm("y ~ x + f", data, groups="g")
    wanted = set(only or TESTS)
    # only the fits the chosen tests need
    ml = model.fit(reml=False)
    reml = model.fit(reml=True) if wanted & {"lm_reml_obs", "lm_reml_exp"} else None
    additive = hmf.hetmixedlm(
        "y ~ x + f", data, groups="g", var_formula="~ 1", var_link="identity"
    ).fit(reml=False) if "lm_identity" in wanted else None
    calls = {
        "lm_ml_obs": lambda: ml.score_test_variance("~ f + x"),
        "lm_ml_exp": lambda: ml.score_test_variance("~ f + x", observed=False),
        "lm_reml_obs": lambda: reml.score_test_variance("~ f + x"),
        "lm_reml_exp": lambda: reml.score_test_variance("~ f + x", observed=False),
        "lm_scale": lambda: ml.score_test_variance(var_re_formula="~ 1"),
        "lm_scale_obs": lambda: ml.score_test_variance(var_re_formula="~ 1",
                                                       observed=True),
        "lm_identity": lambda: additive.score_test_variance("~ f"),
    }
    out, errors = {}, {}
    for name, call in calls.items():
        if only and name not in only:
            continue
        try:
            out[name] = call().pvalue
        except Exception as exc:  # counted and reported, not hidden
            out[name] = np.nan
            errors[name] = type(exc).__name__
    return out, errors


def summarise(pvalues):
    rows = []
    for name in TESTS:
        p = np.array([r[name] for r in pvalues if np.isfinite(r.get(name, np.nan))])
        n = p.size
        if n == 0:
            continue
        row = {"test": name, "n": n}
        for level in (0.05, 0.01):
            rate = float(np.mean(p <= level))
            row[f"reject_{level}"] = rate
            row[f"mcse_{level}"] = float(np.sqrt(level * (1 - level) / n))
        if name in ONE_SIDED:
            at_one = p >= 1 - 1e-12
            row["share_p1"] = float(at_one.mean())
            row["binom_p"] = float(stats.binomtest(int(at_one.sum()), n, 0.5).pvalue)
            row["ks_p"] = float(stats.kstest(2 * p[~at_one], "uniform").pvalue)
        else:
            row["ks_p"] = float(stats.kstest(p, "uniform").pvalue)
        rows.append(row)
    return rows


def direct_scale_check():
    """The random-scale statistic (observed information) on 40 HSB schools
    against derivatives of the location-scale model's quadrature log-likelihood (s2 from a cubic
    through s2 = h, 2h, 3h; the rest central differences)."""
    from statsmodels_hetmixed import _hessian
    from statsmodels_hetmixed.datasets import hsb

    data = hsb.load_pandas().data
    data = data[data["school"].isin(data["school"].unique()[:40])]
    mean = "mathach ~ female + ses"
    res = hmf.hetmixedlm(mean, data, groups="school").fit(reml=False)
    test = res.score_test_variance(var_re_formula="~ 1", observed=True)
    ls = hmf.hetmixedlm(mean, data, groups="school", var_re_formula="~ 1")
    eta = np.asarray(res.params)
    k = eta.size
    s2 = 2e-4 * np.arange(1, 4)
    poly = np.c_[s2, s2**2 / 2, s2**3 / 6]

    def in_s2(x):
        base = ls.loglike(np.r_[x[:4], 0.0, 0.0, x[4]])
        values = [ls.loglike(np.r_[x[:4], 0.0, s, x[4]]) - base for s in s2]
        return np.linalg.solve(poly, np.array(values))[:2]

    u_s, h_ss = in_s2(eta)
    steps = 1e-4 * np.maximum(np.abs(eta), 0.1)
    h_se = np.array([(in_s2(eta + d * e)[0] - in_s2(eta - d * e)[0]) / (2 * d)
                     for d, e in zip(steps, np.eye(k))])
    model = res.model
    model.reml = False

    def score(x):
        return model.score(x, profile_fe=False)

    hess = _hessian.hessian(score, eta, None, np.diag(steps), step=1.0, central=True)
    info = np.empty((k + 1, k + 1))
    info[:k, :k], info[k, :k], info[:k, k], info[k, k] = -hess, -h_se, -h_se, -h_ss
    grad = np.r_[score(eta), u_s]
    n = np.arange(k)
    u = grad[k] - info[k, n] @ np.linalg.solve(info[np.ix_(n, n)], grad[n])
    i_eff = info[k, k] - info[k, n] @ np.linalg.solve(info[np.ix_(n, n)], info[n, k])
    direct = max(u, 0.0) ** 2 / i_eff
    return {"statistic": test.statistic, "direct": float(direct),
            "rel_diff": float(test.statistic / direct - 1),
            "score": float(test.score.iloc[0]), "direct_score": float(u)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/sim_score_test.json")
    parser.add_argument("--groups", type=int, default=40)
    parser.add_argument("--size", type=int, default=15, help="rows per group")
    parser.add_argument("--only", nargs="*", choices=TESTS,
                        help="run only these tests")
    parser.add_argument("--direct-scale", action="store_true")
    args = parser.parse_args()
    if args.direct_scale:
        print(json.dumps(direct_scale_check(), indent=2))
        return
    rng = np.random.default_rng(args.seed)
    pvalues, failures, errors = [], 0, {}
    start = time.perf_counter()
    for _ in range(args.reps):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out, errs = one_replication(rng, args.groups, args.size, args.only)
        except Exception as exc:  # a null fit failed: counted, not hidden
            failures += 1
            print("replication failed:", type(exc).__name__, exc)
            continue
        pvalues.append(out)
        for name, err in errs.items():
            errors.setdefault(name, {}).setdefault(err, 0)
            errors[name][err] += 1
    elapsed = time.perf_counter() - start
    rows = summarise(pvalues)
    print(f"{len(pvalues)} replications ({failures} failed), {elapsed:.0f} s; "
          f"tests that raised: {errors or 'none'}")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    with open(args.out, "w") as fh:
        json.dump({"reps": args.reps, "seed": args.seed, "groups": args.groups,
                   "size": args.size, "failures": failures,
                   "errors": errors, "seconds": elapsed, "summary": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
