"""
Time of one evaluation of the log-likelihood on the AR(1) benchmark of
``bench_correlation.py`` (2,000 groups x 50 occasions, random intercept,
4-term log-linear variance function) and of the same model without
correlation: the value, the value and gradient, and both with the expected
information, at the objective's start point (the shortest of ``--rounds``
calls and their median, ms), and the parts of one whole fit (the
uncorrelated pre-fit for the start, all evaluations of the log-likelihood
-- the pre-fit's among them -- and, within them, the expected
information; the observed information; the shortest of ``--fits``
fits), with the number of evaluations of the fit (the pre-fit's not
counted) and how many computed the expected information.  The last
line compares the fits less the time of their expected information:
what the AR(1) fit would cost against the uncorrelated one were that
information free.

Usage::

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_ar1_evaluation.py [--reml]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from statsmodels_hetmixed import _correlated, _engine
from statsmodels_hetmixed import model as model_module
from statsmodels_hetmixed import objective as objective_module
from statsmodels_hetmixed.structures.correlation import BidiagonalFactor
from statsmodels_hetmixed.model import HetMixedLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_data import make_ar1_data  # noqa: E402


def timings(call, rounds):
    """(shortest, median) of ``rounds`` calls, ms."""
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return 1e3 * min(out), 1e3 * statistics.median(out)


def evaluations(model, reml, rounds):
    objective = model._objective(reml)
    natural = objective.layout.to_natural(objective.start())

    def with_gradient(info):
        objective.release_evaluation()
        objective.evaluate_natural(natural, info=info)

    return {"value": timings(lambda: objective.evaluate(natural), rounds),
            "value and gradient": timings(lambda: with_gradient(False), rounds),
            "with the information": timings(lambda: with_gradient(True), rounds)}


def fit_parts(build, reml, fits):
    """The shortest of ``fits`` fits: total and its parts (ms), and its
    evaluations (the pre-fit's not counted): all, and with the expected
    information."""
    parts = {}
    counts = {"evaluations": 0, "with the information": 0}
    in_prefit = [False]
    wrapped = [(model_module.HetMixedLM, "_correlation_start", "pre-fit"),
               (objective_module.HeteroskedasticObjective, "evaluate", "evaluations"),
               (objective_module.HeteroskedasticObjective, "observed_information",
                "observed information"),
               # the expected information: the engine's (uncorrelated rows),
               # the AR(1) blocks' and G's block on the whitened rows
               (_engine, "_expected_information", "expected information"),
               (BidiagonalFactor, "information", "expected information"),
               (_correlated, "_cov_information", "expected information")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in wrapped]

    def timed(fun, key):
        @functools.wraps(fun)
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            if key == "pre-fit":
                in_prefit[0] = True
            try:
                return fun(*args, **kwargs)
            finally:
                if key == "pre-fit":
                    in_prefit[0] = False
                parts[key] = parts.get(key, 0.0) + time.perf_counter() - t0
        return call

    evaluate_natural = objective_module.HeteroskedasticObjective.evaluate_natural

    def counted(self, natural, info=True, **kwargs):
        if not in_prefit[0]:
            counts["evaluations"] += 1
            counts["with the information"] += bool(info)
        return evaluate_natural(self, natural, info=info, **kwargs)

    best = best_counts = None
    try:
        for owner, name, key in wrapped:
            setattr(owner, name, timed(getattr(owner, name), key))
        objective_module.HeteroskedasticObjective.evaluate_natural = counted
        for _ in range(fits):
            parts.clear()
            counts.update({k: 0 for k in counts})
            model = build()
            t0 = time.perf_counter()
            model.fit(reml=reml)
            parts["fit"] = time.perf_counter() - t0
            if best is None or parts["fit"] < best["fit"]:
                best, best_counts = dict(parts), dict(counts)
    finally:
        for owner, name, fun in originals:
            setattr(owner, name, fun)
        objective_module.HeteroskedasticObjective.evaluate_natural = evaluate_natural
    return {k: 1e3 * v for k, v in best.items()}, best_counts


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--fits", type=int, default=5)
    ap.add_argument("--reml", action="store_true")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    df = make_ar1_data(2000, 50)
    kw = dict(groups="grp", var_formula="~ x + g + xg")
    builds = {
        "uncorrelated": lambda: HetMixedLM.from_formula("y ~ x + g", df, **kw),
        "AR(1)": lambda: HetMixedLM.from_formula("y ~ x + g", df, correlation="ar1",
                                                 time="t", **kw),
    }
    print(f"{'REML' if args.reml else 'ML'}; one evaluation at the start point, "
          f"shortest / median of {args.rounds} calls (ms)")
    for name, build in builds.items():
        cells = ", ".join(f"{k} {a:.2f} / {b:.2f}"
                          for k, (a, b) in evaluations(build(), args.reml,
                                                       args.rounds).items())
        print(f"  {name}: {cells}")
    print(f"the shortest of {args.fits} fits and its parts (ms)")
    fits = {}
    for name, build in builds.items():
        parts, counts = fit_parts(build, args.reml, args.fits)
        fits[name] = parts
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
              + f"; {counts['evaluations']} evaluations, "
              f"{counts['with the information']} with the information")
    ratio = fits["AR(1)"]["fit"] / fits["uncorrelated"]["fit"]
    less = {name: p["fit"] - p.get("expected information", 0.0) for name, p in fits.items()}
    print(f"AR(1) / uncorrelated: fit {ratio:.2f}; less their expected information "
          f"({less['AR(1)']:.1f} / {less['uncorrelated']:.1f} ms) "
          f"{less['AR(1)'] / less['uncorrelated']:.2f}")


if __name__ == "__main__":
    main()
