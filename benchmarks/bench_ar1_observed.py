"""
Time the analytic observed information of AR(1) / CAR(1) residuals
(``_correlated.observed_information``, called once per fit at the estimate
for the standard errors) on the inputs of its last call in a fit, and
keep the fits' ``cov_params()`` for a comparison between two trees.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=<tree> python benchmarks/bench_ar1_observed.py \
        [--rounds 15] [--save out.npz] [--compare other.npz]

Run it with PYTHONPATH at each tree (the script itself can come from
either): ``--save`` keeps every case's ``cov_params()`` and ``bse``,
``--compare`` prints the largest relative differences against another
run's file.  Cases: issue 10's benchmark (2,000 groups x 50 occasions,
random intercept, 4-term log-linear variance) ML and REML; a random
slope (500 x 20) ML and REML; CAR(1) on non-integer times with about 15%
of the rows dropped (600 x <= 15) ML and REML; AR(1) with gaps and
``correlation_by`` REML, and with a random slope ML.  Times are the median
and the minimum over ``--rounds`` calls on the same inputs, in ms.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_data import make_ar1_data  # noqa: E402

from statsmodels_hetmixed import _correlated  # noqa: E402
from statsmodels_hetmixed.model import HetMixedLM  # noqa: E402


def _with_slope(df, n_groups, seed):
    """A random slope of x (sd 0.7) added to y."""
    slopes = np.random.default_rng(seed).normal(0.0, 0.7, n_groups)
    df = df.copy()
    df["y"] = df["y"] + slopes[df["grp"].to_numpy()] * df["x"].to_numpy()
    return df


def cases():
    big = make_ar1_data(2000, 50)
    yield "AR(1) 2000x50 ML", big, {}, {"reml": False}
    yield "AR(1) 2000x50 REML", big, {}, {}
    slope = _with_slope(make_ar1_data(500, 20, seed=3), 500, 11)
    yield "slope 500x20 ML", slope, {"re_formula": "~x"}, {"reml": False}
    yield "slope 500x20 REML", slope, {"re_formula": "~x"}, {}
    rng = np.random.default_rng(5)
    car = make_ar1_data(600, 15, seed=4)
    car["t"] = car["t"] * 0.7 + rng.uniform(0, 0.3, len(car))
    car = car.iloc[rng.uniform(size=len(car)) > 0.15].reset_index(drop=True)
    yield "CAR(1) gaps ML", car, {"correlation": "car1"}, {"reml": False}
    yield "CAR(1) gaps REML", car, {"correlation": "car1"}, {}
    by = _with_slope(make_ar1_data(600, 15, seed=6), 600, 12)
    by = by.iloc[np.random.default_rng(7).uniform(size=len(by)) > 0.1].reset_index(drop=True)
    yield "by gaps REML", by, {"correlation_by": "g"}, {}
    yield "by gaps slope ML", by, {"correlation_by": "g", "re_formula": "~x"}, {"reml": False}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--save")
    parser.add_argument("--compare")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    calls = []
    observed = _correlated.observed_information

    def keep(*a):
        calls.append((a, a[2].whitened))   # the fit drops the whitened rows after
        return observed(*a)

    _correlated.observed_information = keep
    saved = {}
    other = np.load(args.compare) if args.compare else None
    for name, df, model_kw, fit_kw in cases():
        kw = {"correlation": "ar1", "time": "t", **model_kw}
        model = HetMixedLM.from_formula("y ~ x + g", df, groups="grp",
                                        var_formula="~ x + g + xg", **kw)
        calls.clear()
        res = model.fit(**fit_kw)
        inputs, whitened = calls[-1]
        times = []
        for _ in range(args.rounds):
            inputs[2].whitened = whitened
            t0 = time.perf_counter()
            observed(*inputs)
            times.append(time.perf_counter() - t0)
        inputs[2].whitened = None
        cov, bse = np.asarray(res.cov_params()), np.asarray(res.bse)
        saved[name + " cov"], saved[name + " bse"] = cov, bse
        line = (f"{name:20s} observed information median {1e3 * np.median(times):6.2f} ms"
                f"  min {1e3 * min(times):6.2f} ms")
        if other is not None:
            c0, b0 = other[name + " cov"], other[name + " bse"]
            nz = c0 != 0
            line += (f"  cov rel diff {np.max(np.abs(cov - c0)[nz] / np.abs(c0[nz])):.1e}"
                     f"  bse rel diff {np.max(np.abs(bse / b0 - 1)):.1e}")
        print(line, flush=True)
    if args.save:
        np.savez(args.save, **saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
