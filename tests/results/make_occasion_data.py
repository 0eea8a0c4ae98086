"""Generate ``data/sim_occasion.csv``: longitudinal data with one residual variance
per occasion (reference data for ``r_reference_occasion.R``).

Deterministic (fixed seed, numpy ``default_rng``), numpy only.  Conventions follow
``make_sim_data.py``: the stored covariate ``x`` is rounded to 10 significant digits
*before* the response is computed from it, and ``y`` itself is rounded to 10
significant digits, so the CSV file *is* the data (R and Python read the same values).

Design
------
* 120 subjects ``id`` (1..120), 5 occasions ``occ`` (1..5) each, rows ordered by
  id then occ (600 rows); ``time = occ - 1`` (integer 0..4).
* ``x`` ~ N(0, 1), row level.
* ``y = 10 + 0.8 time + 0.5 x + u_id + e``, ``u_id ~ N(0, 2.0)``,
  ``e ~ N(0, s2[occ])`` with ``s2 = [4.0, 1.0, 2.5, 6.0, 1.5]`` for occ = 1..5
  (so the reference level 1 is NOT the occasion with the smallest variance).

Draw order (fixed): u (120), x (600), standard normals for e (600).

Run from anywhere::

    python tests/results/make_occasion_data.py
"""

from __future__ import annotations

import os

import numpy as np

# shared with the other data sets: 10-significant-digit rounding and the CSV writer
from make_sim_data import r10, write_csv

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

SEED = 20240505
N_SUBJECTS = 120
N_OCC = 5
BETA = (10.0, 0.8, 0.5)          # intercept, time, x
TAU2 = 2.0                       # random-intercept variance
S2 = np.array([4.0, 1.0, 2.5, 6.0, 1.5])   # residual variance of occ 1..5


def make_sim_occasion(seed=SEED):
    rng = np.random.default_rng(seed)
    m, k = N_SUBJECTS, N_OCC
    idx = np.repeat(np.arange(m), k)                 # 0-based subject index
    ids = idx + 1                                     # stored id 1..120
    occ = np.tile(np.arange(1, k + 1), m)             # 1..5
    time = occ - 1                                    # 0..4 (integer)
    n = idx.size
    u = rng.normal(0.0, np.sqrt(TAU2), size=m)
    x = r10(rng.standard_normal(n))
    e = rng.standard_normal(n) * np.sqrt(S2[occ - 1])
    y = r10(BETA[0] + BETA[1] * time + BETA[2] * x + u[idx] + e)
    return [("id", ids.astype(np.int64)), ("occ", occ.astype(np.int64)),
            ("time", time.astype(np.int64)), ("x", x), ("y", y)]


def main():
    os.makedirs(DATA, exist_ok=True)
    cols = make_sim_occasion()
    path = os.path.join(DATA, "sim_occasion.csv")
    write_csv(path, cols)
    print("wrote %s (%d rows)" % (path, len(cols[0][1])))


if __name__ == "__main__":
    main()
