"""
Simulated data for the benchmarks: a random-intercept model with a
log-linear residual variance.

    y_ij        = 1 + 0.5 x_ij + 0.3 g_i + u_i + e_ij
    u_i         ~ N(0, 0.5)
    e_ij        ~ N(0, sigma2_ij)
    log sigma2  = 0.2 + 0.4 x_ij - 0.5 g_i + 0.3 x_ij g_i

With ``scale_sd`` > 0 each group also has a random scale effect, ``log
sigma2`` plus ``omega_i ~ N(0, scale_sd^2)`` (drawn from a separate random
stream, so that the other columns are those of ``scale_sd=0``).

``grp`` is the group label, ``g`` a group-level binary predictor (Bernoulli
0.5 per group), ``x`` a row-level standard normal predictor.  The column
``xg = x * g`` is included for R's nlme, whose ``varExp`` needs the
interaction as a variable.

Usage as a script::

    python benchmarks/make_data.py N_GROUPS GROUP_SIZE [SEED] [OUT.csv]

writes the CSV (default ``benchmarks/data_<rows>.csv``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

TRUE_FE = {"Intercept": 1.0, "x": 0.5, "g": 0.3}
TRUE_RE_VAR = 0.5
TRUE_VAR = {"Intercept": 0.2, "x": 0.4, "g": -0.5, "x:g": 0.3}


def make_data(n_groups: int, group_size: int, seed: int = 0,
              scale_sd: float = 0.0) -> pd.DataFrame:
    """Balanced data: ``n_groups`` groups of ``group_size`` rows each;
    ``scale_sd``: SD of a random scale effect (none by default)."""
    rng = np.random.default_rng(seed)
    n = n_groups * group_size
    grp = np.repeat(np.arange(n_groups, dtype=np.int64), group_size)
    g_group = rng.integers(0, 2, n_groups).astype(np.float64)
    u_group = rng.normal(0.0, np.sqrt(TRUE_RE_VAR), n_groups)
    g = g_group[grp]
    x = rng.standard_normal(n)
    xg = x * g
    log_s2 = (TRUE_VAR["Intercept"] + TRUE_VAR["x"] * x + TRUE_VAR["g"] * g
              + TRUE_VAR["x:g"] * xg)
    if scale_sd > 0:
        omega = np.random.default_rng([seed, 1]).normal(0.0, scale_sd, n_groups)
        log_s2 = log_s2 + omega[grp]
    e = rng.standard_normal(n) * np.exp(0.5 * log_s2)
    y = TRUE_FE["Intercept"] + TRUE_FE["x"] * x + TRUE_FE["g"] * g + u_group[grp] + e
    return pd.DataFrame({"grp": grp, "g": g, "x": x, "xg": xg, "y": y})


def make_ar1_data(n_groups: int, n_occasions: int, phi: float = 0.6,
                  seed: int = 0) -> pd.DataFrame:
    """
    Longitudinal data: ``make_data``'s model with residuals correlated
    within a group as a stationary AR(1) in the occasion ``t`` (1 ..
    ``n_occasions``): ``e_ij = sigma_ij a_ij``, ``a_ij = phi a_i,j-1 +
    sqrt(1 - phi^2) v_ij``, ``a_i1`` and ``v_ij`` standard normal, so that
    ``corr(e_ij, e_ik) = phi^|t_j - t_k|`` and ``var(e_ij) = sigma2_ij``.
    Columns ``grp, t, g, x, xg, y``.
    """
    df = make_data(n_groups, n_occasions, seed)
    rng = np.random.default_rng(seed + 7919)
    v = rng.standard_normal((n_groups, n_occasions))
    a = np.empty_like(v)
    a[:, 0] = v[:, 0]
    innovation_sd = np.sqrt(1.0 - phi * phi)
    for j in range(1, n_occasions):
        a[:, j] = phi * a[:, j - 1] + innovation_sd * v[:, j]
    x, g, xg = df["x"].to_numpy(), df["g"].to_numpy(), df["xg"].to_numpy()
    log_s2 = (TRUE_VAR["Intercept"] + TRUE_VAR["x"] * x + TRUE_VAR["g"] * g
              + TRUE_VAR["x:g"] * xg)
    re = rng.normal(0.0, np.sqrt(TRUE_RE_VAR), n_groups)
    e = a.ravel() * np.exp(0.5 * log_s2)
    y = _mean_part(df) + np.repeat(re, n_occasions) + e
    t = np.tile(np.arange(1, n_occasions + 1), n_groups)
    return pd.DataFrame({"grp": df["grp"], "t": t, "g": g, "x": x, "xg": xg,
                         "y": y})


def _mean_part(df):
    return (TRUE_FE["Intercept"] + TRUE_FE["x"] * df["x"].to_numpy()
            + TRUE_FE["g"] * df["g"].to_numpy())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print(__doc__)
        return 2
    n_groups, group_size = int(argv[0]), int(argv[1])
    seed = int(argv[2]) if len(argv) > 2 else 0
    out = (Path(argv[3]) if len(argv) > 3 else
           Path(__file__).resolve().parent / f"data_{n_groups * group_size}.csv")
    df = make_data(n_groups, group_size, seed)
    df.to_csv(out, index=False, float_format="%.17g")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
