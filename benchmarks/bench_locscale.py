"""
Timing benchmark of the location-scale fits (random scale effects) on HSB,
with a naive peer measured in the same run.

Fits (all by ML, CPU and wall time from formula to results, median of a
few repeats):

* HSB models (1)-(4) of ``examples/hsb_location_scale.py`` with the
  default adaptive Gauss-Hermite quadrature (15 nodes for one scale
  effect, 5 x 5 for two) and with the Laplace rule (``n_quad=1``);
* the peer, for model (1) only: a plain numpy/scipy implementation of the
  same likelihood -- the random intercept u integrated analytically given
  omega, omega by fixed (non-adaptive) 40-node Gauss-Hermite quadrature,
  vectorised over schools and nodes, maximised by scipy's BFGS with
  finite-difference gradients.  Its log-likelihood at its optimum is an
  independent check of ours.

CPU time is reported with the wall time because the machine may be
shared; BLAS runs with one thread (set before numpy is imported).

Usage::

    PYTHONPATH=. python benchmarks/bench_locscale.py [--repeats 3]
        [--markdown FILE] [--json FILE]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from numpy.polynomial.hermite_e import hermegauss  # noqa: E402
from scipy import optimize  # noqa: E402
from scipy.special import logsumexp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import statsmodels_hetmixed  # noqa: E402
import statsmodels_hetmixed.formula.api as hmf  # noqa: E402
from statsmodels_hetmixed.datasets import hsb  # noqa: E402

MEAN2 = "mathach ~ sector + meanses + cses + sector:cses + meanses:cses"
MODELS = {
    "1": ("mathach ~ sector", dict(var_formula="~ sector", var_re_formula="~ 1")),
    "2": (MEAN2, dict(re_formula="~ cses", var_formula="~ sector",
                      var_re_formula="~ 1")),
    "3": (MEAN2, dict(re_formula="~ cses",
                      var_formula="~ sector + meanses + sdses",
                      var_re_formula="~ 1")),
    "4": (MEAN2, dict(re_formula="~ cses",
                      var_formula="~ sector + cses + sector:cses",
                      var_re_formula="~ cses")),
}


def load_data():
    data = hsb.load_pandas().data
    data["sdses"] = data.groupby("school")["ses"].transform("std")
    return data


def time_fit(formula, data, kwargs, n_quad, repeats):
    """Median CPU and wall seconds of formula-to-results fits."""
    cpu, wall = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = hmf.hetmixedlm(formula, data, groups="school", **kwargs).fit(
                reml=False, n_quad=n_quad)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"cpu": statistics.median(cpu), "wall": statistics.median(wall),
            "llf": float(res.llf), "converged": bool(res.converged),
            "warnings": sorted({str(w.message)[:80] for w in caught}),
            "params": [float(x) for x in np.asarray(res.params)]}


def naive_model1(data, n_nodes=40):
    """
    The peer: model (1) by fixed 40-node Gauss-Hermite quadrature over the
    scale intercept and BFGS with numerical gradients, written as plain
    numpy for a row-level variance design (nothing assumes that sector is
    constant within a school):

    mathach_ij = x_ij' b + u_i + e_ij,  log var(e_ij) = w_ij' a + omega_i,
    (u_i, omega_i) normal with SDs su, sw and correlation rho.

    Given omega_i = sw x_k the random intercept has mean rho su x_k and
    variance tau2 = su2 (1 - rho^2), and the school's rows are normal with
    covariance diag(r) + tau2 11': log-likelihood in closed form from the
    row sums of 1/r, d/r, d^2/r and log r (d = y - x'b - rho su x_k), one
    (rows x nodes) array per sum.
    """
    codes, index = np.unique(data["school"].to_numpy(), return_inverse=True)
    order = np.argsort(index, kind="stable")
    y = data["mathach"].to_numpy(float)[order]
    X = np.column_stack([np.ones(len(y)), data["sector"].to_numpy(float)[order]])
    W = X.copy()
    g = index[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    n_i = np.diff(np.r_[starts, len(y)])
    x, w = hermegauss(n_nodes)
    log_w = np.log(w / np.sqrt(2 * np.pi))

    def negloglike(theta):
        b, a = theta[:2], theta[2:4]
        log_su, log_sw, z = theta[4:]
        su, sw, rho = np.exp(log_su), np.exp(log_sw), np.tanh(z)
        tau2 = su * su * (1 - rho * rho)
        log_r = (W @ a)[:, None] + sw * x[None, :]                    # (n, K)
        inv_r = np.exp(-log_r)
        d = (y - X @ b)[:, None] - rho * su * x[None, :]              # (n, K)
        s_inv = np.add.reduceat(inv_r, starts, axis=0)                # (m, K)
        s_d = np.add.reduceat(d * inv_r, starts, axis=0)
        s_dd = np.add.reduceat(d * d * inv_r, starts, axis=0)
        s_log = np.add.reduceat(log_r, starts, axis=0)
        one_plus = 1.0 + tau2 * s_inv
        logdet = s_log + np.log(one_plus)
        quad = s_dd - tau2 * s_d * s_d / one_plus
        f = -0.5 * (n_i[:, None] * np.log(2 * np.pi) + logdet + quad)
        return -logsumexp(f + log_w[None, :], axis=1).sum()

    theta0 = np.array([y.mean(), 0.0, np.log(y.var()), 0.0,
                       0.5 * np.log(0.3 * y.var()), np.log(0.3), 0.0])
    start, start_cpu = time.perf_counter(), time.process_time()
    res = optimize.minimize(negloglike, theta0, method="BFGS",
                            options={"gtol": 1e-3, "maxiter": 2000})
    wall = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    return {"cpu": cpu, "wall": wall, "llf": float(-res.fun),
            "converged": bool(res.success), "nfev": int(res.nfev),
            "theta": [float(t) for t in res.x]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown")
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    data = load_data()
    out = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "load_start": os.getloadavg(), "fits": {}}
    for label, (formula, kwargs) in MODELS.items():
        for rule, n_quad in (("AGHQ (default nodes)", None), ("Laplace", 1)):
            key = f"{label} / {rule}"
            out["fits"][key] = time_fit(formula, data, kwargs, n_quad, args.repeats)
            fit = out["fits"][key]
            print(f"model {key}: CPU {fit['cpu']:.2f} s, wall {fit['wall']:.2f} s, "
                  f"llf {fit['llf']:.4f}, converged {fit['converged']}, "
                  f"warnings {len(fit['warnings'])}", flush=True)
    naive = [naive_model1(data) for _ in range(args.repeats)]
    out["naive"] = dict(naive[-1], cpu=statistics.median(n["cpu"] for n in naive),
                        wall=statistics.median(n["wall"] for n in naive))
    print(f"naive model (1): CPU {out['naive']['cpu']:.2f} s, llf "
          f"{out['naive']['llf']:.4f}, converged {out['naive']['converged']}")
    out["load_end"] = os.getloadavg()
    out["versions"] = {"python": platform.python_version(), "numpy": np.__version__,
                       "statsmodels_hetmixed": statsmodels_hetmixed.__version__}
    text = markdown(out, args)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


def markdown(out, args):
    naive = out["naive"]
    lines = [
        "## Location-scale fits on HSB (`bench_locscale.py`)",
        "",
        f"Run {out['date']} by `benchmarks/bench_locscale.py --repeats "
        f"{args.repeats}`; one BLAS thread; medians of {args.repeats} repeats. "
        f"Load average {out['load_start'][0]:.2f} at start, "
        f"{out['load_end'][0]:.2f} at end.",
        "",
        "| model / rule | CPU s | wall s | peer CPU / ours | llf | converged | warnings |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for key, fit in out["fits"].items():
        # The peer fits model (1) only.
        ratio = f"{naive['cpu'] / fit['cpu']:.1f}x" if key.startswith("1 ") else ""
        lines.append(f"| {key} | {fit['cpu']:.2f} | {fit['wall']:.2f} | {ratio} | "
                     f"{fit['llf']:.4f} | {fit['converged']} | {len(fit['warnings'])} |")
    lines.append(f"| 1 / peer: plain numpy, fixed 40-node GH, BFGS with numerical "
                 f"gradients ({naive['nfev']} evaluations) | {naive['cpu']:.2f} | "
                 f"{naive['wall']:.2f} | 1.0x | {naive['llf']:.4f} | "
                 f"{naive['converged']} | - |")
    agq = out["fits"]["1 / AGHQ (default nodes)"]["llf"]
    lines += ["", f"Model (1) log-likelihood: ours (adaptive, 15 nodes) {agq:.4f}, "
              f"naive peer (fixed 40 nodes) {naive['llf']:.4f} "
              f"(difference {agq - naive['llf']:+.2e}).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
