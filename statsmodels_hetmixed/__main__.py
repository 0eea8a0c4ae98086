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
import time
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

  hetmixedlm --data orthodont.csv --formula "distance ~ age + Sex" \\
             --groups Subject --var-by occ --var-link log \\
             --correlation ar1 --time occ
      Residual variances by occasion and AR(1) correlations over occasions
      (nlme's corAR1(form = ~ occ | Subject) with varIdent(form = ~ 1 | occ)).

  hetmixedlm --data hsb.csv --formula "mathach ~ sector" --groups school \\
             --var-formula "~ sector" --var-re-formula "~ 1" --profile
      A location-scale model (random school effects in the log residual
      variance, fitted by ML) with profile-likelihood intervals for its
      random-effects SDs and correlation.

formulas use patsy syntax; C(x) makes x categorical and numpy is available
as np: functions need the prefix, e.g. --formula "np.log(y) ~ C(treatment)"
(log(y) is an error).  Without --var-formula or --var-by the residual
variance is constant (the model is statsmodels' MixedLM).

warning: formulas are evaluated as Python expressions (patsy), with the
file's columns and np in scope, so a formula can run any Python code, such
as I(__import__("os").system(...)).  Do not pass formulas from untrusted
sources.

progress: long computations (location-scale fits, --profile) show one
progress line on stderr, rewritten in place, when stderr is a terminal;
--progress shows it always (one line per update), --no-progress never.

exit status: 0 on success, 2 on bad options, unreadable data or a model that
cannot be built or fitted (one line on stderr saying why).  Convergence
warnings are printed on stderr.
"""


class _UsageError(Exception):
    """A problem with the user's input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser with its errors in one line (argparse prints the
    whole usage block first)."""

    def error(self, message):
        raise _UsageError(f"{_one_line(message)} (see {PROG} --help)")


def _build_parser():
    parser = _Parser(
        prog=PROG,
        description=(
            "Fit a linear mixed model with a residual variance function\n"
            "(statsmodels-hetmixed) and print its summary: log link (default),\n"
            "log sigma2_ij = w_ij' a, or identity link (--var-link identity),\n"
            "sigma2_ij = w_ij' a; optionally with random effects in the log\n"
            "variance (a location-scale model). Without arguments, fits the\n"
            "bundled High School and Beyond example."
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
        help='residual variance function, e.g. "~ x2": the log variance '
             "(default) or, with --var-link identity, the variance is linear "
             "in its columns (default: constant variance).")
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
        "--var-power", metavar="COL|fitted", dest="var_power",
        help="residual sd also proportional to |COL|^delta (nlme's varPower; "
             "COL numeric without zeros), or to |fitted value|^delta with "
             "'fitted' (nlme's fixed-point iteration); multiplies the "
             "variance function.")
    parser.add_argument(
        "--var-const-power", metavar="COL|fitted", dest="var_const_power",
        help="residual sd also proportional to c + |COL|^delta, c > 0 "
             "(nlme's varConstPower; zeros allowed), or of the fitted values "
             "with 'fitted'.")
    parser.add_argument(
        "--correlation", metavar="SPEC",
        help="residual correlation within groups: exchangeable, ar1, car1 "
             "(= exponential), 'ma(q)', 'ar(p)', 'arma(p,q)', toeplitz, "
             "'toeplitz(q)', 'banded(q)' or unstructured (Stata's "
             "residuals(), nlme's correlation=); R_i = S_i C_i S_i with the "
             "variance function's S_i.")
    parser.add_argument(
        "--time", metavar="COL",
        help="with --correlation: the column placing each row within its "
             "group (Stata's t(), nlme's form = ~ COL | group; integer "
             "occasions, gaps allowed, except car1: any real times; dates "
             "such as 2021-01-04 count in days). "
             "Default: the rows' order within each group.")
    parser.add_argument(
        "--correlation-by", metavar="COL", dest="correlation_by",
        help="with --correlation: separate correlation parameters per level "
             "of COL, constant within groups (Stata's by()).")
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
        "--profile", action="store_true",
        help="location-scale models: also print profile-likelihood "
             "intervals for the random-effects SDs and correlations "
             "(several refits each; can take minutes).")
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="show progress of the fit and of --profile on stderr (default: "
             "when stderr is a terminal).")
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
    # patsy's and formulaic's wording of an unknown name
    missing = (re.search(r"NameError: name '([^']+)' is not defined", text)
               or re.search(r"NameError: `([^`]+)` is not present", text))
    if missing:
        name = missing.group(1)
        message = (f"column {name!r} is not in {source} "
                   f"(columns: {_columns_text(columns)})")
        if callable(getattr(np, name, None)):
            # patsy sees numpy only as np: log(x) is not np.log(x)
            message += f"; for numpy's {name}() write np.{name}(...)"
        return message
    message = getattr(exc, "message", None) or text.splitlines()[0]
    origin = getattr(exc, "origin", None)
    code = getattr(origin, "code", None)
    if code:
        return f"invalid formula {code!r}: {_one_line(message)}"
    formula = getattr(exc, "formula", None) or _formulaic_quoted_formula(text)
    if formula:
        return f"invalid formula {formula!r}: {_one_line(message)}"
    return f"invalid formula: {_one_line(message)}"


def _formulaic_quoted_formula(text):
    """
    The formula that formulaic's syntax errors quote on a line below their
    message, the offending token wrapped in the markers U+29DB and U+29DA
    and a terminal colour; None when the text quotes none.  formulaic's exceptions carry no
    formula attribute, and without it the message would not say which of
    the command line's formulas is wrong.
    """
    lines = [line for line in text.splitlines()[1:] if line.strip()]
    if len(lines) != 1 or "\u29db" not in lines[0]:
        return None
    quoted = re.sub(r"\x1b\[[0-9;]*m", "", lines[0])
    return quoted.replace("\u29db", "").replace("\u29da", "").strip()


def _describe(model, method, source, formula, groups, re_formula, var_formula):
    re_text = f"random effects {re_formula}" if re_formula else "random intercept"
    var_text = var_formula if var_formula else "constant"
    scale = "residual variance" if model.var_link == "identity" else "log residual variance"
    for block in model.variance_blocks:  # var_power, var_const_power
        var_text += f" times {block.title.lower()} in {block.names}"
    corr_text = ""
    if model.correlation_structure is not None:
        from .summary import correlation_heading

        corr_text = ", residual " + correlation_heading(model)[len("Residual "):]
    return (f"Fitting HetMixedLM by {method}: {formula}, {re_text} by "
            f"{groups!r}, {scale} {var_text}{corr_text}; {source}, "
            f"{model.nobs} observations in {model.n_groups} groups.")


def _run(args):
    import statsmodels_hetmixed.formula.api as hmf
    from statsmodels_hetmixed import _formula

    model_options = [args.formula, args.groups, args.re_formula,
                     args.var_formula, args.var_by, args.var_re_formula,
                     args.re_var_formula, args.var_power, args.var_const_power,
                     args.correlation, args.time, args.correlation_by]
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
        levels = data[groups].dropna().unique()
        if len(levels) == 1:
            raise _UsageError(
                f"--groups column {groups!r} has a single value ({levels[0]!r}): "
                "a mixed model needs at least two groups")
        for name, value, row in _formula.numeric_text_columns(
                data, [formula, re_formula, var_formula, args.var_re_formula,
                       args.re_var_formula] + [
                           f"~ {c}" for c in (args.var_power, args.var_const_power)
                           if c is not None and c != "fitted"]):
            raise _UsageError(
                f"column {name!r} of {source} has non-numeric values, such as "
                f"{value!r} on line {int(row) + 2}: fix them in the file (a decimal "
                f"point, not a comma; empty cells for missing values), or "
                f"write C({name}) if the column is categorical")
    if args.var_re_formula is not None and args.reml:
        raise _UsageError(
            "--reml cannot be used with --var-re-formula: location-scale "
            "models are fitted by maximum likelihood (the default for them; "
            "or give --ml)")
    if args.re_var_formula is not None and args.var_re_formula is None:
        raise _UsageError(
            "--re-var-formula (level-2 variance functions) needs random "
            "scale effects: give --var-re-formula too, e.g. "
            "--var-re-formula \"~ 1\"")
    if args.profile and args.var_re_formula is None:
        raise _UsageError(
            "--profile applies to location-scale models: give "
            "--var-re-formula too")

    if args.correlation is None and (args.time is not None
                                     or args.correlation_by is not None):
        raise _UsageError(
            "--time and --correlation-by describe a residual correlation "
            "structure: give --correlation too, e.g. --correlation ar1")
    if args.correlation is not None:
        from .structures import make_correlation

        try:
            make_correlation(args.correlation)
        except ValueError as exc:
            raise _UsageError(f"--correlation: {_one_line(exc)}") from None
        for option, column in (("--time", args.time),
                               ("--correlation-by", args.correlation_by)):
            if column is not None and column not in data.columns:
                raise _UsageError(
                    f"{option} column {column!r} is not in {source} (columns: "
                    f"{_columns_text(data.columns)})")

    try:
        # A clean namespace for the formulas: only the data columns and
        # numpy, never this function's local variables.
        extra = {}
        for key in ("correlation", "time", "correlation_by"):
            if getattr(args, key) is not None:
                extra[key] = getattr(args, key)
        if args.var_by is not None:
            extra["var_by"] = args.var_by
        for key in ("var_power", "var_const_power"):
            column = getattr(args, key)
            if column is None:
                continue
            if column != "fitted" and column not in data.columns:
                option = "--" + key.replace("_", "-")
                raise _UsageError(
                    f"{option} column {column!r} is not in {source} (columns: "
                    f"{_columns_text(data.columns)}); or give 'fitted' for "
                    "the fitted values")
            extra[key] = column
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
    except _formula.FORMULA_ERRORS as exc:
        raise _UsageError(_formula_error(exc, source, data.columns)) from None
    except ValueError as exc:
        message = _one_line(exc)
        if "missing='drop'" in message:
            message += " (command line: --missing drop)"
        if "endog has evaluated to an array with multiple columns" in message:
            message = (f"the response of {formula!r} is non-numeric (text "
                       "values): give a numeric column left of '~'")
        raise _UsageError(message) from None
    except NotImplementedError as exc:  # a combination not available
        raise _UsageError(_one_line(exc)) from None
    except SyntaxError as exc:
        # patsy hands a formula that is not a Python expression (``y x``) to
        # Python's parser, whose error quotes the text but no formula name
        code = (exc.text or "").strip()
        where = f" {code!r}" if code else ""
        raise _UsageError(
            f"invalid formula{where}: SyntaxError: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001
        # Formulas are Python expressions: evaluating one can raise anything
        # (a TypeError in I(...), for instance).
        raise _UsageError(
            f"cannot build the model from the formulas: "
            f"{type(exc).__name__}: {_one_line(exc)}") from None
    endog = np.asarray(model.endog, dtype=float)
    if endog.size and np.all(endog == endog[0]):
        raise _UsageError(
            f"the response of {formula!r} is constant (every value is "
            f"{endog[0]:g}): there is no variation to model")

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
    show = sys.stderr.isatty() if args.progress is None else args.progress
    progress = _Progress(enabled=show, in_place=sys.stderr.isatty())
    try:
        result = model.fit(reml=reml, callback=progress.fit_step, **fit_options)
    except ValueError as exc:
        raise _UsageError(f"the fit failed: {_one_line(exc)}") from None
    finally:
        progress.done()
    print(result.summary())
    if args.profile:
        sys.stdout.flush()
        try:
            table = result.profile_ci(callback=progress.profile_step)
        except ValueError as exc:
            raise _UsageError(
                f"profile intervals are not available: {_one_line(exc)}") from None
        finally:
            progress.done()
        print()
        print("Profile-likelihood 95% intervals of the random-effects SDs "
              "and correlations:")
        print(table.to_string())
    return 0


class _Progress:
    """
    One progress line on stderr: rewritten in place on a terminal, else a
    line per update at most every second (so that a log stays short).
    """

    def __init__(self, enabled, in_place, interval=1.0, stream=None):
        self.enabled = enabled
        self.in_place = in_place
        self.interval = interval
        self.stream = stream
        self.start = time.monotonic()
        self.last = -float("inf")
        self.iteration = 0
        self.shown = False

    def _show(self, text):
        now = time.monotonic()
        if not self.enabled or now - self.last < self.interval:
            return
        self.last = now
        stream = self.stream or sys.stderr
        line = f"{PROG}: {text} ({now - self.start:.0f} s)"
        if self.in_place:
            stream.write("\r" + line[:79].ljust(79))
        else:
            stream.write(line + "\n")
        stream.flush()
        self.shown = True

    def fit_step(self, params):
        self.iteration += 1
        self._show(f"fitting: iteration {self.iteration}")

    def profile_step(self, info):
        self._show(f"profile interval {info.number} of {info.total} "
                   f"({info.row}): refit {info.refits}")

    def done(self):
        """End the in-place line, so that the next output starts afresh."""
        if self.shown and self.in_place:
            (self.stream or sys.stderr).write("\n")
        self.shown = False
        self.last = -float("inf")


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
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 2
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2

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
