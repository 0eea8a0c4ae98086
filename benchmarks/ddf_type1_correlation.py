"""
Type-I error of t-tests on a group-level fixed effect in a repeated-measures
model with AR(1) residuals and a heteroskedastic variance: z (no df),
Satterthwaite, Kenward-Roger and between-within df.

Truth: y_ij = 1 + 0.2 occ_j + 0 * treat_i + e_ij for m subjects measured at
occasions 0..5 (each occasion missing with probability 0.1), e_i with an
AR(1) correlation (phi = 0.5, in occasions) and var(e_ij) = exp(log(4) b_ij)
(1 or 4; b_ij a row-level binary), treat = 1 in half the subjects.  The
fitted model is the true one (REML, no random effects -- SAS's
``repeated / type=ar(1)`` with a variance function): ``correlation="ar1",
time="occ", var_formula="~ b", re_formula="0"``.  Each replication fits
once with ``ddf="kenward-roger"``; z and Satterthwaite use the same fit's
unadjusted covariance (Satterthwaite from its derivatives and the fit's
covariance of the covariance parameters), between-within m - 2 df.

Usage::

    PYTHONPATH=. python benchmarks/ddf_type1_correlation.py --reps 400 --groups 20
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

import statsmodels_hetmixed.formula.api as hmf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ddf_type1 import p_values, run_study  # noqa: E402

OCCASIONS = 6
PHI = 0.5


def simulate(rng, m):
    g = np.repeat(np.arange(m), OCCASIONS)
    occ = np.tile(np.arange(OCCASIONS), m)
    e = np.empty((m, OCCASIONS))
    z = rng.normal(size=(m, OCCASIONS))
    e[:, 0] = z[:, 0]
    for j in range(1, OCCASIONS):
        e[:, j] = PHI * e[:, j - 1] + np.sqrt(1 - PHI**2) * z[:, j]
    b = rng.integers(0, 2, g.size).astype(float)
    y = 1 + 0.2 * occ + e.ravel() * np.where(b == 1, 2.0, 1.0)
    treat = (rng.permutation(m) < m // 2).astype(float)[g]
    data = pd.DataFrame({"y": y, "occ": occ, "b": b, "treat": treat, "g": g})
    return data[rng.uniform(size=g.size) >= 0.1]


def one(rng, m):
    data = simulate(rng, m)
    model = hmf.hetmixedlm("y ~ occ + treat", data, groups="g", re_formula="0",
                           var_formula="~ b", correlation="ar1", time="occ")
    # var(Group) is held at 0 (re_formula="0")
    res, row = p_values(model, m, held_allowed=True)
    row["phi"] = float(res.params["ar1"])
    return row


def main():
    run_study(one, __doc__, reps=400, groups=(20,),
              extra=lambda frame: {"mean_phi": float(frame["phi"].mean())})


if __name__ == "__main__":
    main()
