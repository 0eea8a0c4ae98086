"""
Type-I error of t-tests on a group-level fixed effect with few groups and
heteroskedastic residuals: z (no df), Kenward-Roger, Satterthwaite and
between-within df.

Truth: y_ij = 1 + 0.5 x_ij + 0 * treat_i + u_i + e_ij, u_i ~ N(0, 0.5),
var(e_ij) = exp(0 + log(4) b_ij) (1 or 4), group sizes 4..12, treat = 1 in
half of the groups; the fitted model is the true one (REML,
``var_formula="~ b"``).  Each replication fits once with
``ddf="kenward-roger"``; the z and Satterthwaite p-values use the same fit
(unadjusted covariance; Satterthwaite from its derivatives and the fit's
covariance of the variance parameters), between-within uses m - 2 df with
the unadjusted covariance.

Usage::

    PYTHONPATH=. python benchmarks/ddf_type1.py --reps 1000 --groups 10 20
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
from statsmodels_hetmixed import ddf


def simulate(rng, m):
    sizes = rng.integers(4, 13, m)
    g = np.repeat(np.arange(m), sizes)
    treat = (rng.permutation(m) < m // 2).astype(float)[g]
    n = g.size
    x = rng.normal(size=n)
    b = rng.integers(0, 2, n).astype(float)
    u = rng.normal(scale=np.sqrt(0.5), size=m)[g]
    e = rng.normal(size=n) * np.where(b == 1, 2.0, 1.0)
    y = 1 + 0.5 * x + u + e
    return pd.DataFrame({"y": y, "x": x, "b": b, "treat": treat, "g": g})


def one(rng, m):
    data = simulate(rng, m)
    model = hmf.hetmixedlm("y ~ x + treat", data, groups="g", var_formula="~ b")
    return p_values(model, m)[1]


def p_values(model, m, term="treat", held_allowed=False):
    """
    Fit ``model`` with Kenward-Roger df and test ``term`` = 0 by each
    method: ``(results, row)`` with the p-values of "z", "kenward-roger",
    "satterthwaite" (from the same fit's Phi and dPhi) and
    "between-within" (m - 2 df), the df of the first two and whether the
    fit warned.  ``held_allowed``: covariance parameters held at a bound
    (SE 0) are left out of Satterthwaite's covariance matrix.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(ddf="kenward-roger")
    kr = res._ddf
    j = list(res.fe_params.index).index(term)
    beta = res.fe_params.iloc[j]
    se_z = np.sqrt(kr.phi[j, j])
    se_kr = np.sqrt(kr.cov_fe[j, j])
    k = res.k_fe
    cov = np.asarray(res.cov_params())
    if held_allowed:
        est = k + np.flatnonzero(np.asarray(res.bse)[k:] > 0)
        cov = cov[np.ix_(est, est)]
    else:
        cov = cov[k:, k:]
    sat = ddf.Satterthwaite(list(res.fe_params.index), kr.phi, kr.dphi, cov)
    e = np.eye(k)[j]
    return res, {
        "z": 2 * stats.norm.sf(abs(beta / se_z)),
        "kenward-roger": 2 * stats.t.sf(abs(beta / se_kr), kr.df_fe.iloc[j]),
        "satterthwaite": 2 * stats.t.sf(abs(beta / se_z), sat.contrast_df(e)),
        "between-within": 2 * stats.t.sf(abs(beta / se_z), m - 2),
        "df_kr": kr.df_fe.iloc[j],
        "df_sat": sat.contrast_df(e),
        "warned": bool(caught),
    }


def run_study(one, description, reps, groups, extra=None):
    """
    The command line of a type-I error study: ``one(rng, m)`` fits one
    simulated data set of m groups and gives the p-values of each method
    ("z", "kenward-roger", "satterthwaite", "between-within"), the median
    df ("df_kr", "df_sat") and whether a fit warned ("warned");
    ``extra(frame)`` adds summaries of its own columns.  Prints each
    group count's rejection rates at 5% (and writes them with --out).
    """
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=reps)
    parser.add_argument("--groups", type=int, nargs="+", default=list(groups))
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args()
    summary = {}
    for m in args.groups:
        rng = np.random.default_rng([args.seed, m])
        start = time.perf_counter()
        rows = [one(rng, m) for _ in range(args.reps)]
        frame = pd.DataFrame(rows)
        rates = {meth: float((frame[meth] < 0.05).mean())
                 for meth in ("z", "kenward-roger", "satterthwaite", "between-within")}
        summary[m] = {
            "reps": args.reps,
            "rejection_5pct": rates,
            "mc_se": float(np.sqrt(0.05 * 0.95 / args.reps)),
            "median_df_kr": float(frame["df_kr"].median()),
            "median_df_sat": float(frame["df_sat"].median()),
            **(extra(frame) if extra is not None else {}),
            "fits_with_warnings": int(frame["warned"].sum()),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(m, json.dumps(summary[m]), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(summary, fh, indent=2)


def main():
    run_study(one, __doc__, reps=1000, groups=(10, 20))


if __name__ == "__main__":
    main()
