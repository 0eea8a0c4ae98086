"""
Direct-likelihood targets for nlme's varConstPower, independent of nlme and of
the package: a dense multivariate-normal (restricted) log-likelihood
maximised by scipy.  Writes ``direct_constpower.json`` next to this file.

Usage (from the repository root, about 20 s)::

    python tests/results/varpower/direct_constpower.py

Model (random intercept, as nlme's ``lme(~ 1 | group)``)::

    V_i = tau2 11' + sigma2 diag(g_ij^2),   g_ij = c + |v_ij|^delta

parameters (log tau2, log sigma2, log c, delta); the fixed effects are
profiled out by GLS.  ML and REML as in ../correlation/README.md.

Fits:

* ``sleepgaps/lme_ri/constpower_day1``: an interior maximum (nlme converges):
  the direct maximum checks the package and nlme alike.
* ``orthodont/lme_ri/constpower_age``: degenerate (nlme: const -> 0, power ->
  -inf, "singular convergence" for REML).  The likelihood has no maximum: its
  supremum is approached as delta -> -inf with c / 8^delta fixed, where
  g = c (1 + r [age = 8]): a separate variance for age 8.  Stored: the
  maximum of that limit model (``step``: parameters log tau2, log sigma2, r)
  and the best value of the varConstPower likelihood found with delta
  bounded in [-100, 100] (``bounded``), which approaches it from below.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import patsy
from scipy import optimize

HERE = Path(__file__).parent
DATA = HERE.parent / "correlation"
FITS = {
    "sleepgaps/lme_ri/constpower_day1": ("sleepstudy_gaps.csv", "Reaction ~ Days",
                                         "Subject", "day1"),
    "orthodont/lme_ri/constpower_age": ("orthodont.csv", "distance ~ age + Sex",
                                        "Subject", "age"),
}


def loglik(y, X, groups, tau2, sd, reml):
    """Dense (restricted) log-likelihood, random intercept, residual sd per row."""
    N, p = X.shape
    xtvx, xtvy, logdet, blocks = np.zeros((p, p)), np.zeros(p), 0.0, []
    for idx in groups:
        V = tau2 + np.diag(sd[idx] ** 2)
        c = np.linalg.cholesky(V)
        logdet += 2 * np.log(np.diag(c)).sum()
        xi, yi = np.linalg.solve(c, X[idx]), np.linalg.solve(c, y[idx])
        xtvx += xi.T @ xi
        xtvy += xi.T @ yi
        blocks.append((xi, yi))
    beta = np.linalg.solve(xtvx, xtvy)
    quad = sum(float(np.sum((yi - xi @ beta) ** 2)) for xi, yi in blocks)
    if reml:
        return -0.5 * ((N - p) * math.log(2 * math.pi) + logdet + quad
                       + np.linalg.slogdet(xtvx)[1])
    return -0.5 * (N * math.log(2 * math.pi) + logdet + quad)


def maximise(f, starts, bounds=None):
    best = None
    for x0 in starts:
        res = optimize.minimize(lambda x: -f(x), x0, method="Nelder-Mead",
                                options={"maxiter": 20000, "maxfev": 20000,
                                         "xatol": 1e-10, "fatol": 1e-12})
        res = optimize.minimize(lambda x: -f(x), res.x, method="L-BFGS-B",
                                bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-10})
        if best is None or res.fun < best.fun:
            best = res
    return best


def main():
    out = {"model": "V_i = tau2 11' + sigma2 diag((c + |v|^delta)^2), dense, "
                    "scipy Nelder-Mead then L-BFGS-B from several starts",
           "fits": {}}
    for key, (file, formula, group, cov) in FITS.items():
        df = pd.read_csv(DATA / file)
        y, X = patsy.dmatrices(formula, df, return_type="matrix")
        y, X = np.asarray(y)[:, 0], np.asarray(X)
        groups = list(df.groupby(group, sort=False).indices.values())
        v = np.abs(df[cov].to_numpy(float))
        for method in ("ML", "REML"):
            reml = method == "REML"

            def f(x, bound=None):
                lt, ls, lc, delta = x
                if bound is not None and abs(delta) > bound:
                    return -np.inf
                sd = math.exp(ls / 2) * (math.exp(lc) + v ** delta)
                try:
                    return loglik(y, X, groups, math.exp(lt), sd, reml)
                except np.linalg.LinAlgError:
                    return -np.inf

            lv = math.log(np.var(y))
            starts = [np.array([lv - 1, lv - 2, 0.0, d]) for d in (-1.0, 0.5, 1.5, 2.5)]
            entry = {}
            if key.startswith("sleepgaps"):
                best = maximise(f, starts)
                lt, ls, lc, delta = best.x
                entry = {"llf": -best.fun, "tau2": math.exp(lt), "sigma2": math.exp(ls),
                         "const": math.exp(lc), "power": delta}
            else:
                best = maximise(lambda x: f(x, 100.0), starts,
                                bounds=[(None, None)] * 3 + [(-100.0, 100.0)])
                lt, ls, lc, delta = best.x
                entry["bounded"] = {"llf": -best.fun, "power": delta,
                                    "const": math.exp(lc), "sigma2": math.exp(ls)}
                step = (v == 8).astype(float)

                def g(x):
                    lt, ls, r = x
                    if r <= -1:
                        return -np.inf
                    sd = math.exp(ls / 2) * (1 + r * step)
                    return loglik(y, X, groups, math.exp(lt), sd, reml)

                st = maximise(g, [np.array([lv - 1, lv - 2, 0.0]),
                                  np.array([lv - 1, lv - 2, 0.5])])
                lt, ls, r = st.x
                entry["step"] = {"llf": -st.fun, "tau2": math.exp(lt),
                                 "sigma2": math.exp(ls), "ratio_sd_age8": 1 + r}
            out["fits"][f"{key}/{method}"] = entry
            print(key, method, json.dumps(entry))
    (HERE / "direct_constpower.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
