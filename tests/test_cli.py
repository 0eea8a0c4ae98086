"""The command-line interface: ``hetmixedlm`` / ``python -m statsmodels_hetmixed``."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from statsmodels_hetmixed.__main__ import main
from statsmodels_hetmixed._formula import formula_engine

REPO = Path(__file__).resolve().parents[1]


def run_module(*args):
    """Run ``python -m statsmodels_hetmixed`` with the package from this tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run(
        [sys.executable, "-m", "statsmodels_hetmixed", *args],
        capture_output=True, text=True, env=env, timeout=300)


def summary_line(out, label):
    """The summary line that holds ``label``."""
    lines = [line for line in out.splitlines() if label in line]
    assert lines, f"{label!r} not in output:\n{out}"
    return lines[0]


def assert_usage_error(rc, err, *fragments):
    """Exit status 2 and one line on stderr, with the fragments in it."""
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hetmixedlm: error: ")
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in lines[0]


@pytest.fixture(scope="module")
def sim_data():
    """30 groups of 10; residual SD 1 in level a, 2 in level b."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(30), 10)
    x = rng.normal(size=300)
    grp = np.where(rng.random(300) < 0.5, "a", "b")
    y = (1 + x + rng.normal(size=30)[g]
         + rng.normal(size=300) * np.where(grp == "a", 1.0, 2.0))
    return pd.DataFrame({"y": y, "x": x, "g": g, "grp": grp})


@pytest.fixture
def csv_file(tmp_path, sim_data):
    path = tmp_path / "sim.csv"
    sim_data.to_csv(path, index=False)
    return str(path)


# ----------------------------------------------------------------------
# The bundled HSB example
def test_hsb_example_module():
    proc = run_module()
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    first = out.splitlines()[0]
    assert first.startswith("Fitting HetMixedLM by ML: mathach ~ female")
    assert "7185 observations in 160 groups" in first
    assert "Yes" in summary_line(out, "Converged:")
    assert "-23522.93" in summary_line(out, "Log-Likelihood:")
    assert "Log variance" in out
    assert "Traceback" not in proc.stderr


def test_hsb_example_reml_flag(capsys):
    assert main(["--reml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Fitting HetMixedLM by REML")
    assert "REML" in summary_line(out, "Method:")
    assert "REML criterion:" in out


def test_help(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ["--data", "--formula", "--groups", "--re-formula",
                   "--var-formula", "--reml", "--ml", "--missing", "examples:"]:
        assert option in out


def test_version(capsys):
    from statsmodels_hetmixed import __version__

    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


# ----------------------------------------------------------------------
# CSV input
def test_csv_fit_reml_default(csv_file, capsys):
    rc = main(["--data", csv_file, "--formula", "y ~ x", "--groups", "g",
               "--var-formula", "~ grp"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith("Fitting HetMixedLM by REML: y ~ x")
    assert "300 observations in 30 groups" in out.splitlines()[0]
    assert "REML" in summary_line(out, "Method:")
    assert "Yes" in summary_line(out, "Converged:")
    # log(4) = 1.386: group b has four times the residual variance.
    coef = float(summary_line(out, "grp[T.b]").split()[1])
    assert 0.9 < coef < 1.9


def test_csv_fit_ml_and_random_slope(csv_file, capsys):
    rc = main(["--data", csv_file, "--formula", "y ~ x", "--groups", "g",
               "--re-formula", "~ x", "--ml"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "ML" in summary_line(out, "Method:")
    assert "Log-Likelihood:" in out
    assert "x Var" in out


def test_numpy_in_formulas(csv_file, capsys):
    rc = main(["--data", csv_file, "--formula", "np.exp(y / 10) ~ x",
               "--groups", "g", "--var-formula", "~ np.abs(x)", "--ml"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "np.abs(x)" in out


def test_missing_values(tmp_path, sim_data, capsys):
    data = sim_data.copy()
    data.loc[[3, 7], "x"] = np.nan
    path = tmp_path / "na.csv"
    data.to_csv(path, index=False)
    args = ["--data", str(path), "--formula", "y ~ x", "--groups", "g"]

    rc = main(args)
    out, err = capsys.readouterr()
    assert_usage_error(rc, err, "Missing values", "'x'", "--missing drop")

    rc = main(args + ["--missing", "drop"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "298 observations" in out.splitlines()[0]


def test_convergence_warning_is_shown(tmp_path, capsys):
    # Group means are exactly equal: the group variance estimate is zero.
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(20), 8)
    e = rng.normal(size=160)
    e = e - pd.Series(e).groupby(g).transform("mean").to_numpy()
    path = tmp_path / "bound.csv"
    pd.DataFrame({"y": e, "g": g}).to_csv(path, index=False)
    rc = main(["--data", str(path), "--formula", "y ~ 1", "--groups", "g"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "ConvergenceWarning" in err
    assert "boundary" in err
    assert "Mixed Linear Model" in out


# ----------------------------------------------------------------------
# Bad input: exit status 2, one line on stderr
def test_file_not_found(tmp_path, capsys):
    path = str(tmp_path / "nope.csv")
    rc = main(["--data", path, "--formula", "y ~ x", "--groups", "g"])
    assert_usage_error(rc, capsys.readouterr().err, "not found", path)


@pytest.mark.parametrize("content, fragment", [
    (b"a,b\n1,2\n3,4,5\n", "Expected 2 fields"),
    (b"\x00\x01\xff\xfe\x89PNG", "cannot read"),
    (b"", "empty"),
    (b"y\n1\n2\n", "header row"),
], ids=["ragged", "binary", "empty", "one-column"])
def test_unreadable_csv(tmp_path, capsys, content, fragment):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    rc = main(["--data", str(path), "--formula", "y ~ x", "--groups", "g"])
    assert_usage_error(rc, capsys.readouterr().err, "as CSV", fragment)


def test_directory_as_data(tmp_path, capsys):
    rc = main(["--data", str(tmp_path), "--formula", "y ~ x", "--groups", "g"])
    assert_usage_error(rc, capsys.readouterr().err, "directory")


@pytest.mark.parametrize("extra", [
    ["--formula", "y ~ z", "--groups", "g"],
    ["--formula", "z ~ x", "--groups", "g"],
    ["--formula", "y ~ x", "--groups", "g", "--re-formula", "~ z"],
    ["--formula", "y ~ x", "--groups", "g", "--var-formula", "~ z"],
], ids=["mean", "response", "re_formula", "var_formula"])
def test_column_not_in_file(csv_file, capsys, extra):
    rc = main(["--data", csv_file] + extra)
    assert_usage_error(rc, capsys.readouterr().err, "column 'z' is not in",
                       "columns: y, x, g, grp")


def test_groups_not_in_file(csv_file, capsys):
    rc = main(["--data", csv_file, "--formula", "y ~ x", "--groups", "school"])
    assert_usage_error(rc, capsys.readouterr().err, "--groups", "'school'",
                       "is not in")


def test_formula_does_not_see_local_names(csv_file, capsys):
    # "args" and "data" are local variables of the CLI code: a formula must
    # only see the columns of the file (and np).
    for name in ["args", "data"]:
        rc = main(["--data", csv_file, "--formula", f"y ~ {name}",
                   "--groups", "g"])
        assert_usage_error(rc, capsys.readouterr().err,
                           f"column {name!r} is not in")


@pytest.mark.parametrize("extra", [
    ["--formula", "y ~ x"],
    ["--formula", "y ~ x", "--groups", "g"],
    ["--groups", "g"],
    ["--re-formula", "~ x"],
    ["--var-formula", "~ x"],
])
def test_formula_without_data(capsys, extra):
    rc = main(extra)
    assert_usage_error(rc, capsys.readouterr().err, "--data")


@pytest.mark.parametrize("extra, fragment", [
    (["--groups", "g"], "--formula is required"),
    (["--formula", "y ~ x"], "--groups COL is required"),
])
def test_data_without_formula_or_groups(csv_file, capsys, extra, fragment):
    rc = main(["--data", csv_file] + extra)
    assert_usage_error(rc, capsys.readouterr().err, fragment)


def test_formula_syntax_error(csv_file, capsys):
    rc = main(["--data", csv_file, "--formula", "y ~ x +", "--groups", "g"])
    assert_usage_error(rc, capsys.readouterr().err, "invalid formula",
                       "'y ~ x +'")


@pytest.mark.parametrize("extra, fragment", [
    (["--formula", "y ~ x + x2"], "singular"),
    (["--formula", "y ~ x", "--var-formula", "~ x + x2"], "singular"),
    (["--formula", "grp ~ x"], "non-numeric"),
], ids=["exog", "exog_var", "endog"])
def test_model_value_error(tmp_path, sim_data, capsys, extra, fragment):
    data = sim_data.assign(x2=2 * sim_data["x"])
    path = tmp_path / "sing.csv"
    data.to_csv(path, index=False)
    rc = main(["--data", str(path), "--groups", "g"] + extra)
    assert_usage_error(rc, capsys.readouterr().err, fragment)


def test_single_group(tmp_path, sim_data, capsys):
    path = tmp_path / "one.csv"
    sim_data.assign(g=0).to_csv(path, index=False)
    rc = main(["--data", str(path), "--formula", "y ~ x", "--groups", "g"])
    assert_usage_error(rc, capsys.readouterr().err, "single value")


def test_bad_options(capsys):
    assert main(["--reml", "--ml"]) == 2
    assert "not allowed" in capsys.readouterr().err
    assert main(["--missing", "maybe"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["--bogus"]) == 2
    assert "unrecognized" in capsys.readouterr().err


def test_error_from_module_has_no_traceback(tmp_path):
    proc = run_module("--data", str(tmp_path / "nope.csv"),
                      "--formula", "y ~ x", "--groups", "g")
    assert_usage_error(proc.returncode, proc.stderr, "not found")
    assert proc.stdout == ""


def test_variance_options(tmp_path, capsys):
    from statsmodels_hetmixed.__main__ import main
    from statsmodels_hetmixed.datasets import hsb

    path = tmp_path / "hsb.csv"
    hsb.load_pandas().data.to_csv(path, index=False)
    assert main(["--data", str(path), "--formula", "mathach ~ female",
                 "--groups", "school", "--var-by", "female", "--ml"]) == 0
    out = capsys.readouterr().out
    assert "var(Residual: female=0)" in out and "-23522.9325" in out
    assert main(["--data", str(path), "--formula", "mathach ~ sector",
                 "--groups", "school", "--var-formula", "~ sector",
                 "--var-re-formula", "~ 1"]) == 0
    out = capsys.readouterr().out
    assert "Method:" in out and "ML" in out and "SD(var:school)" in out
    assert main(["--data", str(path), "--formula", "mathach ~ female",
                 "--groups", "school", "--var-re-formula", "~ 1", "--reml"]) == 2
    # advice in command-line terms, not the Python call fit(reml=False)
    err = capsys.readouterr().err
    assert "--ml" in err and "reml=False" not in err


def test_level2_option(tmp_path, capsys):
    from statsmodels_hetmixed.__main__ import main
    from statsmodels_hetmixed.datasets import hsb

    path = tmp_path / "hsb.csv"
    hsb.load_pandas().data.to_csv(path, index=False)
    assert main(["--data", str(path), "--formula", "mathach ~ sector",
                 "--groups", "school", "--var-formula", "~ sector",
                 "--var-re-formula", "~ 1", "--re-var-formula", "~ sector"]) == 0
    out = capsys.readouterr().out
    assert "logvar(var:school):sector" in out
    assert main(["--data", str(path), "--formula", "mathach ~ sector",
                 "--groups", "school", "--re-var-formula", "~ sector"]) == 2
    assert "--var-re-formula" in capsys.readouterr().err


def test_quadrature_and_covariance_options(tmp_path, capsys):
    """--n-quad 1 (Laplace) and --re-cov independent reach the fit; they
    need --var-re-formula, and a bad node count is a clear error."""
    from statsmodels_hetmixed.datasets import hsb

    path = tmp_path / "hsb.csv"
    hsb.load_pandas().data.to_csv(path, index=False)
    base = ["--data", str(path), "--formula", "mathach ~ sector", "--groups",
            "school", "--var-formula", "~ sector"]
    assert main(base + ["--var-re-formula", "~ 1", "--n-quad", "1",
                        "--re-cov", "independent"]) == 0
    out = capsys.readouterr().out
    assert "Laplace approximation" in " ".join(out.split())
    assert "cov(school, var:school)" in out  # natural-scale name (issue 9)
    assert_usage_error(main(base + ["--n-quad", "5"]), capsys.readouterr().err,
                       "--var-re-formula")
    assert_usage_error(main(base + ["--var-re-formula", "~ 1", "--n-quad", "0"]),
                       capsys.readouterr().err, "quadrature nodes")


# ----------------------------------------------------------------------
# Every input error: one line on stderr naming the cause, exit status 2
@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, sim_data):
    """Files with the defects of the bad command lines below."""
    root = tmp_path_factory.mktemp("bad")
    files = {"good": sim_data.assign(x=sim_data["x"].abs() + 0.1)}
    comma = files["good"].astype({"x": object})
    comma.loc[5, "x"] = "1,5"  # a decimal comma: pandas reads the column as text
    files["comma"] = comma
    files["constant"] = files["good"].assign(y=3.0)
    files["one_group"] = files["good"].assign(g=0)
    paths = {}
    for name, frame in files.items():
        paths[name] = str(root / f"{name}.csv")
        frame.to_csv(paths[name], index=False)
    paths["empty"] = str(root / "empty.csv")
    Path(paths["empty"]).write_bytes(b"")
    paths["missing"] = str(root / "no_such_file.csv")
    return paths


BAD_COMMAND_LINES = {
    # name: (file, extra arguments, fragments of the message)
    "missing_file": ("missing", [], ["data file not found", "no_such_file.csv"]),
    "empty_file": ("empty", [], ["the file is empty"]),
    "no_tilde": ("good", ["--formula", "y x"], ["has no response"]),
    "unknown_column": ("good", ["--re-formula", "~ z"], ["column 'z' is not in"]),
    "decimal_comma": ("comma", [], ["column 'x'", "non-numeric values", "'1,5'",
                                    "line 7"]),
    "constant_response": ("constant", [], ["response", "is constant"]),
    "text_response": ("good", ["--formula", "grp ~ x"], ["response", "non-numeric"]),
    "one_group": ("one_group", [], ["--groups column 'g' has a single value"]),
    "bad_var_link": ("good", ["--var-link", "exp"], ["--var-link", "invalid choice"]),
    "reml_location_scale": ("good", ["--var-re-formula", "~ 1", "--reml"],
                            ["--reml cannot be used", "--ml"]),
    "re_formula_syntax": ("good", ["--re-formula", "y x"],
                          ["invalid formula 'y x'"]),
    "bad_n_quad": ("good", ["--n-quad", "many"], ["--n-quad", "invalid int"]),
    "profile_without_scale_effects": ("good", ["--profile"], ["--var-re-formula"]),
    "reml_and_ml": ("good", ["--reml", "--ml"], ["not allowed"]),
}


@pytest.mark.parametrize("case", list(BAD_COMMAND_LINES), ids=list(BAD_COMMAND_LINES))
def test_bad_command_line(bad_files, capsys, case):
    file, extra, fragments = BAD_COMMAND_LINES[case]
    args = ["--data", bad_files[file], "--formula", "y ~ x", "--groups", "g"]
    # a later --formula replaces the default one
    rc = main(args + extra)
    out, err = capsys.readouterr()
    assert_usage_error(rc, err, *fragments)
    # advice in command-line terms, not Python calls
    assert "fit(" not in err and "reml=False" not in err


def test_log_without_np(bad_files, capsys):
    """
    ``log(x)``: patsy sees numpy only as ``np`` and reads ``log`` as a
    missing column, so the message says to write ``np.log``; formulaic
    (statsmodels' other engine) evaluates numpy's log.
    """
    args = ["--data", bad_files["good"], "--formula", "y ~ x", "--groups", "g",
            "--var-formula", "~ log(x)"]
    rc = main(args)
    out, err = capsys.readouterr()
    if formula_engine() == "patsy":
        assert_usage_error(rc, err, "column 'log' is not in", "np.log(")
    else:
        assert rc == 0, err
        assert "var:log(x)" in out


def test_bad_command_line_module_exit_status(bad_files):
    """The same from a process: status 2, one line, nothing on stdout."""
    proc = run_module("--data", bad_files["comma"], "--formula", "y ~ x",
                      "--groups", "g", "--var-link", "exp")
    assert_usage_error(proc.returncode, proc.stderr, "invalid choice")
    assert proc.stdout == ""


def test_decimal_comma_column_as_categorical(bad_files, capsys):
    """C(x) says the text column is meant as categorical: no check then."""
    from statsmodels_hetmixed._formula import numeric_text_columns

    data = pd.read_csv(bad_files["comma"])
    assert [c[:2] for c in numeric_text_columns(data, ["y ~ x"])] == [("x", "1,5")]
    assert numeric_text_columns(data, ["y ~ C(x)"]) == []
    assert numeric_text_columns(data, ["y ~ xx + np.x1"]) == []
    # an all-text column is categorical, not a broken numeric one
    assert numeric_text_columns(data, ["y ~ grp"]) == []


def test_help_links_and_python_warning(capsys):
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "identity link" in out and "log link" in out
    assert "evaluated as Python expressions" in out
    assert "np.log(y)" in out and "--profile" in out and "--progress" in out


def test_progress_location_scale_and_profile(tmp_path, capsys):
    """--progress shows the fit's iterations and the profile's refits on
    stderr; --profile prints the intervals."""
    rng = np.random.default_rng(3)
    m, n = 30, 8
    g = np.repeat(np.arange(m), n)
    x = rng.normal(size=m * n)
    y = (1 + x + rng.normal(size=m)[g]
         + np.exp(0.25 * rng.normal(size=m))[g] * rng.normal(size=m * n))
    path = tmp_path / "ls.csv"
    pd.DataFrame({"y": y, "x": x, "g": g}).to_csv(path, index=False)
    args = ["--data", str(path), "--formula", "y ~ x", "--groups", "g",
            "--var-re-formula", "~ 1", "--n-quad", "5", "--profile"]
    assert main(args + ["--progress"]) == 0
    out, err = capsys.readouterr()
    assert "hetmixedlm: fitting: iteration 1 " in err
    assert "hetmixedlm: profile interval 1 of " in err
    assert "Profile-likelihood 95% intervals" in out
    assert "SD(g)" in out.split("Profile-likelihood")[1]
    # not a terminal and no --progress: stderr stays clean
    assert main(args) == 0
    assert capsys.readouterr().err == ""


def test_power_variance_options(tmp_path, capsys):
    """--var-power COL|fitted and --var-const-power: the fits of the
    from_formula keywords, shown in the summary; bad columns are usage
    errors."""
    import statsmodels_hetmixed.formula.api as hmf

    data = pd.read_csv(Path(__file__).parent / "results" / "correlation"
                       / "orthodont.csv")
    path = tmp_path / "orth.csv"
    data.to_csv(path, index=False)
    base = ["--data", str(path), "--formula", "distance ~ age + Sex",
            "--groups", "Subject", "--ml"]
    assert main(base + ["--var-power", "age"]) == 0
    out = capsys.readouterr().out
    ref = hmf.hetmixedlm("distance ~ age + Sex", data, groups="Subject",
                         var_power="age").fit(reml=False)
    assert "Variance power" in out and "power(age)" in out
    assert f"{ref.llf:.4f}" in out
    assert main(base + ["--var-power", "fitted"]) == 0
    out = capsys.readouterr().out
    assert "times variance power in ['power(fitted)']" in out
    assert "fitted-value gap" in " ".join(out.split())
    assert main(base + ["--var-const-power", "age", "--var-power", "fitted"]) == 0
    out = capsys.readouterr().out
    assert "const(age)" in out and "power(fitted)" in out
    assert main(base + ["--var-power", "nope"]) == 2
    assert "--var-power column 'nope' is not in" in capsys.readouterr().err
    data["bad"] = data["age"].astype(str)
    data.loc[3, "bad"] = "8,5"
    data.to_csv(path, index=False)
    assert main(base + ["--var-const-power", "bad"]) == 2
    assert "column 'bad'" in capsys.readouterr().err


def test_correlation_options(tmp_path, capsys):
    """--correlation SPEC, --time COL, --correlation-by COL: the fit of the
    from_formula keywords, its summary block; bad specs and columns are
    one-line usage errors (exit 2)."""
    import statsmodels_hetmixed.formula.api as hmf

    data = pd.read_csv(Path(__file__).parent / "results" / "correlation"
                       / "orthodont.csv")
    path = tmp_path / "orth.csv"
    data.to_csv(path, index=False)
    base = ["--data", str(path), "--formula", "distance ~ age + Sex",
            "--groups", "Subject"]
    assert main(base + ["--correlation", "ar1", "--time", "occ",
                        "--correlation-by", "Sex"]) == 0
    out = capsys.readouterr().out
    ref = hmf.hetmixedlm("distance ~ age + Sex", data, groups="Subject",
                         correlation="ar1", time="occ",
                         correlation_by="Sex").fit()
    assert f"{ref.llf:.4f}" in out
    assert "residual correlation: AR(1) in occ by Sex; " in out
    assert "Residual correlation: AR(1) in occ by Sex" in out
    assert summary_line(out, "ar1:Male").split()[1] == f"{ref.params['ar1:Male']:.3f}"
    assert main(base + ["--correlation", "ma(1)"]) == 0   # row order
    assert "MA(1) in row order" in capsys.readouterr().out
    for args, fragment in [
            (["--correlation", "ar2"], "--correlation: correlation='ar2' is not a known"),
            (["--correlation", "ar1", "--time", "when"], "--time column 'when' is not in"),
            (["--correlation", "ar1", "--correlation-by", "sex"],
             "--correlation-by column 'sex' is not in"),
            (["--time", "occ"], "give --correlation too"),
            (["--correlation", "banded(9)", "--time", "occ"], "q is larger than"),
            (["--correlation", "ar1", "--time", "occ", "--correlation-by", "age"],
             "varies within a group"),
            (["--correlation", "ar1", "--time", "occ", "--ml",
              "--var-re-formula", "~ 1"], "not available for location-scale")]:
        assert main(base + args) == 2
        assert_usage_error(2, capsys.readouterr().err, fragment)
