"""
Command-line interface: ``hetmixedlm`` / ``python -m statsmodels_hetmixed``.

With no arguments, fits the bundled High School and Beyond example and
prints its summary.  With ``--data FILE.csv --formula ... --groups ...`` it
fits a model to a CSV file.  Run ``hetmixedlm --help`` for the options.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings

import numpy as np

__all__ = ["main"]

PROG = "hetmixedlm"

# The bundled example (no arguments).
_HSB_FORMULA = "mathach ~ female"
_HSB_GROUPS = "school"
_HSB_VAR_FORMULA = "~ female"

_EPILOG = """\
examples:
  hetmixedlm
      Fit the bundled High School and Beyond example by ML:
      mathach ~ female, random intercept by school, log residual
      variance ~ female.

  hetmixedlm --data hsb.csv --formula "mathach ~ female + ses" \\
             --groups school --re-formula "~ ses" --var-formula "~ female" \\
             --ml --missing drop

formulas use patsy syntax; C(x) makes x categorical and numpy is available
as np, e.g. --formula "np.log(y) ~ C(treatment)".  Without --var-formula the
residual variance is constant (the model is statsmodels' MixedLM).

exit status: 0 on success, 2 on bad options, unreadable data or a model that
cannot be built or fitted.  Convergence warnings are printed on stderr.
"""


class _UsageError(Exception):
    """A problem with the user's input: reported in one line, exit status 2."""


def _build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Fit a linear mixed model with a log-linear residual variance\n"
            "function, log sigma2_ij = w_ij' a (statsmodels-hetmixed), and print\n"
            "its summary. Without arguments, fits the bundled High School and\n"
            "Beyond example."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data", metavar="FILE.csv",
        help="CSV file with a header row (required with --formula).")
    parser.add_argument(
        "--formula", metavar="FORMULA",
        help='mean model, e.g. "y ~ x1 + x2" (required with --data).')
    parser.add_argument(
        "--groups", metavar="COL",
        help="column with the group labels (required with --data).")
    parser.add_argument(
        "--re-formula", metavar="FORMULA", dest="re_formula",
        help='random effects, e.g. "~ x1" for a random intercept and slope '
             "(default: random intercept only).")
    parser.add_argument(
        "--var-formula", metavar="FORMULA", dest="var_formula",
        help='log residual variance, e.g. "~ x2" (default: constant '
             "variance).")
    parser.add_argument(
        "--var-link", choices=["log", "identity"], default=None,
        dest="var_link",
        help="link of the variance function: 'log' (default; with --var-by: "
             "'identity') or 'identity' (additive variances, as Stata's "
             "dummy-variance-level models).")
    parser.add_argument(
        "--var-by", metavar="COL", dest="var_by",
        help="one residual variance per level of COL (instead of "
             "--var-formula; Stata's residuals(independent, by(COL))).")
    parser.add_argument(
        "--var-re-formula", metavar="FORMULA", dest="var_re_formula",
        help='random effects in the log residual variance, e.g. "~ 1" '
             "(a location-scale model; fitted by ML).")
    parser.add_argument(
        "--re-var-formula", metavar="FORMULA", dest="re_var_formula",
        help='level-2 variance functions of a location-scale model, e.g. '
             '"~ sector": random-effect log variances and atanh correlations '
             "linear in group-level variables (needs --var-re-formula).")
    parser.add_argument(
        "--n-quad", metavar="N", type=int, default=None, dest="n_quad",
        help="location-scale models: quadrature nodes per dimension of the "
             "random scale effects (default 15 for one, 5 for two; 1 is the "
             "Laplace approximation).")
    parser.add_argument(
        "--re-cov", choices=["joint", "independent"], default=None,
        dest="re_cov",
        help="location-scale models: mean and scale random effects correlated "
             "('joint', the default) or in separate blocks ('independent').")
    method = parser.add_mutually_exclusive_group()
    method.add_argument(
        "--reml", dest="reml", action="store_const", const=True, default=None,
        help="fit by restricted maximum likelihood (default with --data, as "
             "in statsmodels).")
    method.add_argument(
        "--ml", dest="reml", action="store_const", const=False,
        help="fit by maximum likelihood (default for the bundled example; "
             "needed to compare mean models by likelihood ratio).")
    parser.add_argument(
        "--missing", choices=["none", "drop"], default="none",
        help="rows with missing values in a used column: 'none' (default) "
             "stops with an error naming the columns, 'drop' removes them.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {_version()}")
    return parser


def _version():
    from . import __version__

    return __version__


def _one_line(text):
    """Collapse a message to one line."""
    return " ".join(str(text).split())


def _columns_text(columns, limit=20):
    """The first ``limit`` column names, for error messages."""
    columns = [str(c) for c in columns]
    more = ", ..." if len(columns) > limit else ""
    return ", ".join(columns[:limit]) + more


def _read_csv(path):
    import pandas as pd

    try:
        data = pd.read_csv(path)
    except FileNotFoundError:
        raise _UsageError(f"data file not found: {path}") from None
    except IsADirectoryError:
        raise _UsageError(f"data file is a directory: {path}") from None
    except PermissionError:
        raise _UsageError(f"data file is not readable: {path}") from None
    except pd.errors.EmptyDataError:
        raise _UsageError(f"cannot read {path} as CSV: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise _UsageError(
            f"cannot read {path} as CSV: {_one_line(exc)}") from None
    except OSError as exc:
        raise _UsageError(
            f"cannot read {path}: {_one_line(exc.strerror or exc)}") from None
    if data.shape[1] < 2 or len(data) == 0:
        raise _UsageError(
            f"cannot read {path} as CSV: found {len(data)} rows and "
            f"{data.shape[1]} column(s); expected comma-separated values "
            "with a header row naming the columns and one row per "
            "observation")
    return data


def _formula_error(exc, source, columns):
    """One-line message for an error raised while evaluating a formula."""
    text = str(exc)
    missing = re.search(r"NameError: name '([^']+)' is not defined", text)
    if missing:
        return (f"column {missing.group(1)!r} is not in {source} "
                f"(columns: {_columns_text(columns)})")
    message = getattr(exc, "message", None) or text.splitlines()[0]
    origin = getattr(exc, "origin", None)
    code = getattr(origin, "code", None)
    if code:
        return f"invalid formula {code!r}: {_one_line(message)}"
    return f"invalid formula: {_one_line(message)}"


def _describe(model, method, source, formula, groups, re_formula, var_formula):
    re_text = f"random effects {re_formula}" if re_formula else "random intercept"
    var_text = var_formula if var_formula else "constant"
    return (f"Fitting HetMixedLM by {method}: {formula}, {re_text} by "
            f"{groups!r}, log residual variance {var_text}; {source}, "
            f"{model.nobs} observations in {model.n_groups} groups.")


def _run(args):
    import patsy

    import statsmodels_hetmixed.formula.api as hmf

    model_options = [args.formula, args.groups, args.re_formula,
                     args.var_formula, args.var_by, args.var_re_formula,
                     args.re_var_formula]
    if args.data is None:
        if any(opt is not None for opt in model_options):
            raise _UsageError(
                "--data FILE.csv is required when a formula or --groups is "
                "given (run without arguments for the bundled HSB example)")
        from .datasets import hsb

        data = hsb.load_pandas().data
        source = "bundled High School and Beyond data"
        formula, groups = _HSB_FORMULA, _HSB_GROUPS
        re_formula, var_formula = None, _HSB_VAR_FORMULA
        reml = False if args.reml is None else args.reml
    else:
        if args.formula is None:
            raise _UsageError("--formula is required with --data")
        if args.groups is None:
            raise _UsageError("--groups COL is required with --data")
        data = _read_csv(args.data)
        source = args.data
        formula, groups = args.formula, args.groups
        re_formula, var_formula = args.re_formula, args.var_formula
        # REML is not defined for location-scale models: ML by default there.
        default_reml = args.var_re_formula is None
        reml = default_reml if args.reml is None else args.reml
        if groups not in data.columns:
            raise _UsageError(
                f"--groups column {groups!r} is not in {source} "
                f"(columns: {_columns_text(data.columns)})")

    try:
        # A clean namespace for the formulas: only the data columns and
        # numpy, never this function's local variables.
        extra = {}
        if args.var_by is not None:
            extra["var_by"] = args.var_by
        if args.var_re_formula is not None:
            extra["var_re_formula"] = args.var_re_formula
        if args.re_var_formula is not None:
            extra["re_var_formula"] = args.re_var_formula
        if args.var_link is not None:
            extra["var_link"] = args.var_link
        model = hmf.hetmixedlm(formula, data, groups=groups,
                               re_formula=re_formula, var_formula=var_formula,
                               missing=args.missing, eval_env={"np": np},
                               **extra)
    except patsy.PatsyError as exc:
        raise _UsageError(_formula_error(exc, source, data.columns)) from None
    except ValueError as exc:
        message = _one_line(exc)
        if "missing='drop'" in message:
            message += " (command line: --missing drop)"
        raise _UsageError(message) from None

    fit_options = {key: getattr(args, key) for key in ("n_quad", "re_cov")
                   if getattr(args, key) is not None}
    if fit_options and args.var_re_formula is None:
        raise _UsageError(
            "--n-quad and --re-cov apply to location-scale models: give "
            "--var-re-formula too")
    method = "REML" if reml else "ML"
    print(_describe(model, method, source, formula, groups, re_formula,
                    var_formula))
    sys.stdout.flush()
    try:
        result = model.fit(reml=reml, **fit_options)
    except ValueError as exc:
        raise _UsageError(f"the fit failed: {_one_line(exc)}") from None
    print(result.summary())
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Print warnings as one line each on stderr, without source lines."""
    stream = sys.stderr if file is None else file
    try:
        stream.write(f"{PROG}: warning: {category.__name__}: "
                     f"{_one_line(message)}\n")
    except (OSError, AttributeError):  # stderr closed or missing
        pass


def main(argv=None):
    """
    Run the command-line interface.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments without the program name (default:
        ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 on bad input (message on stderr).
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error
        return exc.code if isinstance(exc.code, int) else 2

    with warnings.catch_warnings():
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.showwarning = _show_warning
        try:
            return _run(args)
        except _UsageError as exc:
            sys.stdout.flush()
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            # Output piped into a program that stopped reading (e.g. head):
            # not an error worth a traceback.
            _silence_stdout()
            return 1


def _silence_stdout():
    """Point stdout at devnull so that Python's exit flush does not fail."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
