"""Generate the simulated reference data sets used by the test suite.

Deterministic (fixed seeds, numpy ``default_rng``), numpy only.  Writes

* ``data/sim_cont.csv``  - random intercept, continuous + group-level variance design
* ``data/sim_slope.csv`` - random intercept + slope (2x2 unstructured), categorical
  and continuous variance design
* ``data/sim_vc.csv``    - nested random intercepts (group / class within group)

All stored numbers are rounded to 10 significant digits *before* the response is
computed from them, and the response itself is rounded to 10 significant digits, so
the CSV files *are* the data: R (``r_reference.R``) and Python read the same values.

Run from anywhere::

    python tests/results/make_sim_data.py
"""

from __future__ import annotations

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


def r10(x):
    """Round to 10 significant digits (the values stored in the CSV)."""
    x = np.asarray(x, dtype=float)
    return np.array([float("%.10g" % v) for v in x.ravel()]).reshape(x.shape)


def write_csv(path, columns):
    """Write an ordered list of (name, array) pairs; ints as ints, floats %.10g."""
    names = [c[0] for c in columns]
    n = len(columns[0][1])
    cols = []
    for _, v in columns:
        v = np.asarray(v)
        if v.dtype.kind in "iu":
            cols.append([str(int(a)) for a in v])
        elif v.dtype.kind in "OUS":
            cols.append([str(a) for a in v])
        else:
            cols.append(["%.10g" % a for a in v])
        assert len(v) == n
    with open(path, "w", newline="\n") as f:
        f.write(",".join(names) + "\n")
        for i in range(n):
            f.write(",".join(c[i] for c in cols) + "\n")


def make_sim_cont(seed=20240101):
    """100 groups of size U{5..30}; random intercept; log sigma2 = .2+.8z-.5h+.4zh."""
    rng = np.random.default_rng(seed)
    m = 100
    sizes = rng.integers(5, 31, size=m)  # 5..30 inclusive
    g = np.repeat(np.arange(m), sizes)
    n = g.size
    # group-level 0/1: exactly half of the groups, chosen at random
    hg = np.zeros(m, dtype=np.int64)
    hg[rng.permutation(m)[: m // 2]] = 1
    h = hg[g]
    x = r10(rng.standard_normal(n))
    z = r10(rng.uniform(-1.5, 1.5, size=n))
    zh = z * h + 0.0  # exact (h is 0/1); "+ 0.0" turns -0.0 into 0.0
    u = rng.normal(0.0, np.sqrt(0.6), size=m)
    logs2 = 0.2 + 0.8 * z - 0.5 * h + 0.4 * zh
    e = rng.standard_normal(n) * np.exp(0.5 * logs2)
    y = r10(1.0 + 0.5 * x + u[g] + e)
    return [("g", g), ("x", x), ("z", z), ("h", h), ("zh", zh), ("y", y)]


def make_sim_slope(seed=20240202):
    """80 groups x 15 occasions; (1 + t | g) with cov [[1, .3], [.3, .5]];
    log sigma2 = -.3 + .7 fb - .4 fc + .5 x."""
    rng = np.random.default_rng(seed)
    m, k = 80, 15
    g = np.repeat(np.arange(m), k)
    n = g.size
    t = r10(np.tile(np.arange(k) / 7.0 - 1.0, m))
    x = r10(rng.standard_normal(n))
    f = np.array(["a", "b", "c"])[rng.integers(0, 3, size=n)]
    fb = (f == "b").astype(np.int64)
    fc = (f == "c").astype(np.int64)
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    u = rng.multivariate_normal(np.zeros(2), cov, size=m, method="cholesky")
    logs2 = -0.3 + 0.7 * fb - 0.4 * fc + 0.5 * x
    e = rng.standard_normal(n) * np.exp(0.5 * logs2)
    y = r10(2.0 + 0.3 * x + 1.0 * t + u[g, 0] + u[g, 1] * t + e)
    return [("g", g), ("t", t), ("x", x), ("f", f), ("fb", fb), ("fc", fc), ("y", y)]


def make_sim_vc(seed=20240303):
    """60 groups x 4 classes x 6 rows; u_g ~ N(0,.8), v_gc ~ N(0,.3);
    log sigma2 = .1 + 1.2 z."""
    rng = np.random.default_rng(seed)
    m, nc, nr = 60, 4, 6
    g = np.repeat(np.arange(m), nc * nr)
    c = np.tile(np.repeat(np.arange(nc), nr), m)
    n = g.size
    x = r10(rng.standard_normal(n))
    z = r10(rng.uniform(-1.0, 1.0, size=n))
    u = rng.normal(0.0, np.sqrt(0.8), size=m)
    v = rng.normal(0.0, np.sqrt(0.3), size=(m, nc))
    logs2 = 0.1 + 1.2 * z
    e = rng.standard_normal(n) * np.exp(0.5 * logs2)
    y = r10(0.5 + 1.0 * x + u[g] + v[g, c] + e)
    return [("g", g), ("c", c), ("x", x), ("z", z), ("y", y)]


def main():
    os.makedirs(DATA, exist_ok=True)
    for name, fun in [("sim_cont", make_sim_cont), ("sim_slope", make_sim_slope),
                      ("sim_vc", make_sim_vc)]:
        cols = fun()
        path = os.path.join(DATA, name + ".csv")
        write_csv(path, cols)
        print("wrote %s (%d rows)" % (path, len(cols[0][1])))


if __name__ == "__main__":
    main()
