"""Dense brute-force check of the stored nlme / glmmTMB correlation references.

For every fit in ``r_correlation.json`` the marginal covariance of each group,

    V_i = Z_i G Z_i' + sigma^2 S_i C_i S_i,    S_i = diag(g_ij),

is rebuilt with numpy from the stored parameters alone (nlme's definitions of the
correlation structures and variance functions, see README.md), and the Gaussian
log-likelihood (ML) or restricted log-likelihood (REML) is compared with the
logLik R reported.  The script also checks that

* the unconstrained (internal) coefficients nlme optimises map to the stored
  natural ones through the transforms written here (``natural_from_unconstrained``),
* the variance-function multipliers reproduce nlme's ``varWeights`` (= 1/g),
* the correlation matrix of the first group equals nlme's ``corMatrix``,
* the GLS estimate at the stored parameters equals the stored fixed effects and
  (X' V^-1 X)^-1 reproduces the stored covariance of the fixed effects up to the
  convention factor (1 for lme and REML gls, N/(N-p) for ML gls).

It is not a test of the package (which has no correlation structures yet); it
verifies the reference numbers and the definitions an implementation must use.

Usage (from the repository root)::

    python tests/results/correlation/check_dense.py          # table of all fits
    python tests/results/correlation/check_dense.py --markdown
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import patsy
from statsmodels.tsa.arima_process import arma_acf

HERE = Path(__file__).resolve().parent
JSON_FILE = HERE / "r_correlation.json"

# columns read as text (factors in R); everything else is numeric
TEXT_COLUMNS = {"Subject", "Sex", "Rat", "Diet", "Mare", "half"}


# Fits whose stored log-likelihood is a valid reference at the stored parameters
# (the dense check passes) but whose estimates are not a usable target: nlme
# stopped at a degenerate limit, or its iteration had not converged.
LLF_ONLY = {
    "orthodont/lme_ri/indep/constpower_age/ML":
        "degenerate: power -> -inf, const -> 0, sigma -> inf (no interior optimum)",
    "orthodont/lme_ri/indep/constpower_age/REML":
        "degenerate as the ML fit; nlminb singular convergence",
    "bodyweight/lme_rs/indep/constpower_fitted/ML":
        "degenerate: const 3.7e6, sigma 8.5e-7 (only const*sigma identified); "
        "default control after the tight one failed",
    "sleepgaps/lme_rs/indep/power_fitted/ML":
        "nlme's fitted-value fixed point not reached (fitted values moved by 1.6% "
        "after the last step while the variance parameters did not)",
    "sleepgaps/lme_rs/indep/power_fitted/REML": "as the ML fit",
    "sleepgaps/lme_rs/ar1/none/ML": "nlminb singular convergence",
    "sleepgaps/lme_rs/ar1/none/REML": "nlminb singular convergence",
}


def load_references(path: Path = JSON_FILE) -> dict:
    """The JSON written by r_correlation.R."""
    with open(path) as fh:
        return json.load(fh)


_DATA_CACHE: dict[str, pd.DataFrame] = {}


def load_data(fname: str) -> pd.DataFrame:
    """A data CSV of this folder with its text columns kept as text."""
    if fname not in _DATA_CACHE:
        df = pd.read_csv(HERE / fname, dtype={c: str for c in TEXT_COLUMNS})
        # R's factor(occ) used for varIdent / glmmTMB: the occasion as a label
        if "occ" in df:
            df["occf"] = df["occ"].astype(int).astype(str)
        _DATA_CACHE[fname] = df
    return _DATA_CACHE[fname]


# ----------------------------------------------------------- parametrisations
def arma_untrans(u: np.ndarray, sgn: float) -> np.ndarray:
    """nlme's ARMA_untransPar: unconstrained -> AR (sgn=-1) or MA (sgn=+1) coefficients.

    Each u_k maps to a partial autocorrelation r_k = tanh(u_k / 2) and the
    coefficients are built by the Durbin-Levinson recursion
    a_j <- a_j + sgn * r_i * a_{i-j-1}.
    """
    pars = np.array(u, dtype=float)
    n = len(pars)
    aux = np.zeros(n)
    for i in range(n):
        e = math.exp(-pars[i])
        pars[i] = (1 - e) / (1 + e)
        aux[i] = pars[i]
        if i:
            for j in range(i):
                pars[j] = aux[j] + sgn * pars[i] * aux[i - j - 1]
            aux[:i] = pars[:i]
    return pars


def symm_full_corr(u: np.ndarray, maxcov: int) -> np.ndarray:
    """nlme's symm_fullCorr: spherical parametrisation of an unstructured correlation.

    Angle a = pi * exp(u) / (1 + exp(u)); row i of the upper-triangular factor L is
    (cos a_i1, sin a_i1 cos a_i2, ..., prod sin) and R = L L'.  Returns the
    correlations in nlme's order (1,2), (1,3), ..., (1,n), (2,3), ...
    """
    n = maxcov
    L = np.zeros((n, n))
    k = 0
    for i in range(n):
        aux = 1.0
        for j in range(i):
            a = math.pi * math.exp(u[k]) / (1 + math.exp(u[k]))
            L[i, j] = aux * math.cos(a)
            aux *= math.sin(a)
            k += 1
        L[i, i] = aux
    R = L @ L.T
    return np.array([R[i, j] for i in range(n) for j in range(i + 1, n)])


def cor_natural(fit: dict) -> dict:
    """Natural-scale correlation parameters of a fit as a name -> value dict."""
    nat = fit["cor"]["natural"]
    if isinstance(nat, list):
        return {f"r{k}": v for k, v in enumerate(nat)}
    if not isinstance(nat, dict):
        nat = {"Rho": nat}
    return nat


def natural_from_unconstrained(fit: dict, max_len: int) -> np.ndarray:
    """Map nlme's unconstrained correlation coefficients to the natural ones."""
    cor = fit["cor"]
    u = np.atleast_1d(np.asarray(cor["unconstrained"], dtype=float))
    cls = cor["class"]
    if cls == "corAR1":
        return np.tanh(u / 2)              # (e^u - 1) / (e^u + 1)
    if cls == "corCAR1":
        return 1 / (1 + np.exp(-u))        # e^u / (1 + e^u)
    if cls == "corCompSymm":
        inf = -1.0 / (max_len - 1)         # lower bound -1/(n_max - 1)
        e = np.exp(u)
        return (e + inf) / (e + 1)
    if cls == "corARMA":
        p, q = cor["p_q"]
        return np.concatenate([arma_untrans(u[:p], -1.0), arma_untrans(u[p:], 1.0)])
    if cls == "corSymm":
        return symm_full_corr(u, cor["maxCov"])
    raise ValueError(cls)


# ------------------------------------------------------------ building blocks
def corr_matrix(fit: dict, t: np.ndarray) -> np.ndarray:
    """C_i of one group from the natural parameters and the group's times ``t``."""
    spec = fit["spec"]["cor"]
    nat = cor_natural(fit)
    vals = list(nat.values())
    n = len(t)
    lag = np.abs(np.subtract.outer(t, t))
    typ = spec["type"]
    if typ == "compsymm":
        rho = vals[0]
        return (1 - rho) * np.eye(n) + rho * np.ones((n, n))
    if typ in ("ar1", "car1"):
        # ar1: integer times (with gaps nlme switches to ARMA(1,0), the same phi^lag)
        return vals[0] ** lag
    if typ == "arma":
        p, q = spec["p"], spec["q"]
        phi = np.array([nat[f"Phi{k}"] for k in range(1, p + 1)])
        theta = np.array([nat[f"Theta{k}"] for k in range(1, q + 1)])
        # x_t = sum phi_k x_{t-k} + e_t + sum theta_k e_{t-k}: statsmodels' polynomials
        lagi = lag.astype(int)
        acf = arma_acf(np.r_[1, -phi], np.r_[1, theta], lags=int(lagi.max()) + 1)
        return acf[lagi]
    if typ == "symm":
        K = fit["cor"]["maxCov"]
        full = np.eye(K)
        k = 0
        for i in range(K):
            for j in range(i + 1, K):
                full[i, j] = full[j, i] = vals[k]
                k += 1
        idx = t.astype(int) - 1           # times 1..K index the full matrix
        return full[np.ix_(idx, idx)]
    raise ValueError(typ)


def var_multiplier(fit: dict, df: pd.DataFrame) -> np.ndarray:
    """g_ij (sd_ij = sigma * g_ij) for every row, from the natural parameters."""
    spec = fit["spec"].get("var")
    if spec is None:
        return np.ones(len(df))
    nat = fit["var"]["natural_all"]
    typ = spec["type"]
    if typ == "ident":
        return df[spec["strata"]].astype(str).map(nat).to_numpy(float)
    cov = spec["covariate"]
    if cov == "fitted":
        v = fitted_covariate_of_loglik(fit)
    else:
        v = df[cov].to_numpy(float)
    if typ == "exp":
        return np.exp(nat["expon"] * v)
    if typ == "power":
        return np.abs(v) ** nat["power"]
    if typ == "constpower":
        return nat["const"] + np.abs(v) ** nat["power"]
    raise ValueError(typ)


def fitted_covariate_of_loglik(fit: dict) -> np.ndarray:
    """|fitted values| behind nlme's logLik for a variance function of fitted(.).

    nlme iterates: optimise the variance parameters with the covariate held at
    the fitted values of the previous iterate, re-estimate, set the covariate to
    the new fitted values (without recomputing the weights), stop when the
    variance parameters stop moving.  The stored logLik, fixed effects and
    varWeights therefore belong to the covariate of the previous iterate, which
    is recovered from the weights: w = 1/|v|^delta (varPower) or
    1/(c + |v|^delta) (varConstPower).  ``covariate_used`` / ``fitted_final`` in
    the JSON are the fitted values after the last step; their distance from this
    one measures how far nlme's fixed point is from converged.
    """
    nat = fit["var"]["natural_all"]
    w = np.asarray(fit["var"]["weights"], float)
    const = nat.get("const", 0.0) if fit["spec"]["var"]["type"] == "constpower" else 0.0
    return (1 / w - const) ** (1 / nat["power"])


def _r_name(patsy_name: str) -> str:
    """patsy column name -> R's model.matrix name (treatment contrasts)."""
    if patsy_name == "Intercept":
        return "(Intercept)"
    return patsy_name.replace("[T.", "").replace("]", "")


def design(fit: dict, df: pd.DataFrame):
    """y, X (columns in R's order) for a fit."""
    y, X = patsy.dmatrices(fit["spec"]["fixed"], df, return_type="dataframe")
    X.columns = [_r_name(c) for c in X.columns]
    names = list(fit["fixef"].keys())
    return y.to_numpy()[:, 0], X[names].to_numpy(), names


def group_covariances(fit: dict, df: pd.DataFrame, g: np.ndarray | None = None):
    """List of (row index, V_i) over groups, V_i built from the stored parameters."""
    spec = fit["spec"]
    engine = spec["engine"]
    sigma2 = fit["sigma"] ** 2
    out = []
    if g is None and engine != "glmmTMB":
        g = var_multiplier(fit, df)
    G = np.atleast_2d(np.asarray(fit["re_cov"]["values"], float)) if "re_cov" in fit else None
    for _, idx in df.groupby(spec["group"], sort=False).indices.items():
        n = len(idx)
        sub = df.iloc[idx]
        if engine == "glmmTMB":
            # structure on a random effect of the occasion; residual sigma fixed tiny
            levels = fit["re_cov"]["rownames"]
            lab = "occf" + sub["occf"]
            Z = np.array([[1.0 if l == c else 0.0 for c in levels] for l in lab])
            V = Z @ G @ Z.T + sigma2 * np.eye(n)
            out.append((idx, V))
            continue
        if spec.get("cor") is not None:
            tcol = spec["cor"]["time"]
            t = (np.arange(1, n + 1, dtype=float) if tcol == "(row order)"
                 else sub[tcol].to_numpy(float))
            Cm = corr_matrix(fit, t)
        else:
            Cm = np.eye(n)
        S = np.diag(g[idx])
        V = sigma2 * S @ Cm @ S
        if engine == "lme":
            terms = spec["re_terms"]
            terms = [terms] if isinstance(terms, str) else terms  # JSON unboxes length 1
            cols = [np.ones(n)] + [sub[c].to_numpy(float) for c in terms if c != "1"]
            Z = np.column_stack(cols)
            V = V + Z @ G @ Z.T
        out.append((idx, V))
    return out


def dense_loglik(fit: dict, df: pd.DataFrame | None = None,
                 g: np.ndarray | None = None) -> dict:
    """Dense ML / REML log-likelihood at the stored parameters, with diagnostics."""
    if df is None:
        df = load_data(fit["spec"]["file"])
    y, X, names = design(fit, df)
    N, p = X.shape
    blocks = group_covariances(fit, df, g)
    XtVX = np.zeros((p, p))
    XtVy = np.zeros(p)
    logdet = 0.0
    for idx, V in blocks:
        c = np.linalg.cholesky(V)
        logdet += 2 * np.log(np.diag(c)).sum()
        Xi = np.linalg.solve(c, X[idx])
        yi = np.linalg.solve(c, y[idx])
        XtVX += Xi.T @ Xi
        XtVy += Xi.T @ yi
    beta_gls = np.linalg.solve(XtVX, XtVy)
    beta = np.array([fit["fixef"][k] for k in names])
    quad = 0.0
    for idx, V in blocks:
        r = y[idx] - X[idx] @ beta_gls
        quad += r @ np.linalg.solve(V, r)
    if fit["method"] == "ML":
        llf = -0.5 * (N * math.log(2 * math.pi) + logdet + quad)
    else:
        llf = -0.5 * ((N - p) * math.log(2 * math.pi) + logdet + quad
                      + np.linalg.slogdet(XtVX)[1])
    vcov = np.linalg.inv(XtVX)
    stored = np.asarray(fit["vcov_fixef"]["values"], float)
    ratio = np.diag(stored) / np.diag(vcov)
    return {"llf": llf, "rel_err": abs(llf - fit["logLik"]) / abs(fit["logLik"]),
            "beta_err": float(np.max(np.abs(beta_gls - beta) / (np.abs(beta) + 1e-8))),
            "vcov_ratio_min": float(ratio.min()), "vcov_ratio_max": float(ratio.max()),
            "N": N, "p": p}


def side_checks(fit: dict, df: pd.DataFrame) -> dict:
    """Parametrisation, varWeights and corMatrix diagnostics (max abs differences)."""
    out = {}
    spec = fit["spec"]
    if fit.get("cor") is not None:
        max_len = int(df.groupby(spec["group"]).size().max())
        nat = np.array(list(cor_natural(fit).values()), float)
        out["unconstrained_to_natural"] = float(np.max(np.abs(
            natural_from_unconstrained(fit, max_len) - nat)))
        g1 = fit["cor"]["first_group"]
        sub = df[df[spec["group"]] == g1]
        tcol = spec["cor"]["time"]
        t = (np.arange(1, len(sub) + 1, dtype=float) if tcol == "(row order)"
             else sub[tcol].to_numpy(float))
        Cr = np.atleast_2d(np.asarray(fit["cor"]["first_group_matrix"]["values"], float))
        out["corMatrix"] = float(np.max(np.abs(corr_matrix(fit, t) - Cr)))
    if fit.get("var") is not None:
        g = var_multiplier(fit, df)
        out["varWeights"] = float(np.max(np.abs(1 / g - np.asarray(fit["var"]["weights"]))
                                         * g))
    return out


def vcov_factor(fit: dict, N: int, p: int) -> float:
    """nlme's / glmmTMB's scale of vcov relative to (X'V^-1X)^-1 (see README)."""
    if fit["spec"]["engine"] == "gls" and fit["method"] == "ML":
        return N / (N - p)
    return 1.0


def glmmtmb_joint_se(fit: dict, df: pd.DataFrame | None = None) -> np.ndarray:
    """Fixed-effect SEs from the inverse observed Hessian of the ML log-likelihood
    in (beta, theta) jointly, for a glmmTMB ML fit of a structure on the occasion
    random effect (theta: log sd per occasion or one log sd, and atanh of the
    structure's correlations).  The beta block of the inverse does not depend on
    how theta is coordinatised, so this is glmmTMB's convention (sdreport).
    """
    from scipy.linalg import toeplitz
    from statsmodels.tools.numdiff import approx_hess

    if df is None:
        df = load_data(fit["spec"]["file"])
    y, X, names = design(fit, df)
    p = X.shape[1]
    G = np.asarray(fit["re_cov"]["values"], float)
    K = G.shape[0]
    sd = np.sqrt(np.diag(G))
    R = G / np.outer(sd, sd)
    s2 = fit["sigma"] ** 2
    occ = df["occ"].to_numpy(int) - 1
    groups = list(df.groupby(fit["spec"]["group"], sort=False).indices.values())
    iu = np.triu_indices(K, 1)
    kind = fit["spec"]["tmb_struct"].replace("_gaps", "")
    if kind == "ar1":
        th0 = np.r_[np.log(sd[0]), np.arctanh(R[0, 1])]
    elif kind == "toeplitz":
        th0 = np.r_[np.log(sd), np.arctanh(R[0, 1:])]
    elif kind == "compsymm":
        th0 = np.r_[np.log(sd), np.arctanh(R[0, 1])]
    else:
        th0 = np.r_[np.log(sd), np.arctanh(R[iu])]

    def cov_of(th):
        if kind == "ar1":
            lag = np.abs(np.subtract.outer(np.arange(K), np.arange(K)))
            return np.exp(2 * th[0]) * np.tanh(th[1]) ** lag
        sdv = np.exp(th[:K])
        if kind == "toeplitz":
            Rm = toeplitz(np.r_[1, np.tanh(th[K:])])
        elif kind == "compsymm":
            Rm = np.full((K, K), np.tanh(th[K])) + (1 - np.tanh(th[K])) * np.eye(K)
        else:
            Rm = np.eye(K)
            Rm[iu] = np.tanh(th[K:])
            Rm = Rm + np.triu(Rm, 1).T
        return np.outer(sdv, sdv) * Rm

    def llf(par):
        b, Gm = par[:p], cov_of(par[p:])
        tot = 0.0
        for idx in groups:
            o = occ[idx]
            V = Gm[np.ix_(o, o)] + s2 * np.eye(len(o))
            r = y[idx] - X[idx] @ b
            tot -= 0.5 * (len(o) * math.log(2 * math.pi) + np.linalg.slogdet(V)[1]
                          + r @ np.linalg.solve(V, r))
        return tot

    beta = np.array([fit["fixef"][k] for k in names])
    H = approx_hess(np.r_[beta, th0], llf)
    return np.sqrt(np.diag(np.linalg.inv(-H))[:p])


def check_all(refs: dict, tol: float = 1e-6):
    rows = []
    for key, fit in refs["fits"].items():
        if not fit["fitted"]:
            rows.append({"key": key, "status": "not fitted by R: " + "; ".join(
                np.atleast_1d(fit["error"]))})
            continue
        df = load_data(fit["spec"]["file"])
        res = dense_loglik(fit, df)
        res.update(side_checks(fit, df))
        fac = vcov_factor(fit, res["N"], res["p"])
        res["vcov_conv_err"] = max(abs(res["vcov_ratio_min"] / fac - 1),
                                   abs(res["vcov_ratio_max"] / fac - 1))
        if fit["spec"]["engine"] == "glmmTMB" and fit["method"] == "ML":
            se = np.array(list(fit["fixef_se"].values()))
            res["vcov_conv_err"] = float(np.max(np.abs(glmmtmb_joint_se(fit, df) / se - 1)))
        if fit["spec"].get("var", {}) and fit["spec"]["var"].get("covariate") == "fitted":
            # the same parameters with the fitted values of the final estimate
            gf = fit["var"]["natural_all"]
            v = np.abs(np.asarray(fit["var"]["fitted_final"], float))
            gfin = (v ** gf["power"] if fit["spec"]["var"]["type"] == "power"
                    else gf["const"] + v ** gf["power"])
            res["rel_err_final_fitted"] = dense_loglik(fit, df, gfin)["rel_err"]
            res["fixed_point_gap"] = float(np.max(np.abs(
                v - fitted_covariate_of_loglik(fit)) / np.abs(v)))
        res["key"] = key
        res["converged"] = fit.get("converged", True)
        res["status"] = "pass" if res["rel_err"] <= tol else "FAIL"
        rows.append(res)
    return rows


def main(argv: list[str]) -> int:
    refs = load_references()
    rows = check_all(refs)
    md = "--markdown" in argv
    if md:
        print("| fit | R logLik | dense rel. err | beta rel. err | vcov conv. err "
              "| unconstr.->natural | corMatrix | varWeights | converged |")
        print("|---|---|---|---|---|---|---|---|---|")
    nfail = 0
    for r in rows:
        key = r["key"]
        if "llf" not in r:
            print(f"| {key} | {r['status']} |" if md else f"{key:58s} {r['status']}")
            continue
        nfail += r["status"] != "pass"
        f = refs["fits"][key]
        extra = (f" (final fitted: {r['rel_err_final_fitted']:.1e}, "
                 f"fixed-point gap {r['fixed_point_gap']:.1e})"
                 if "rel_err_final_fitted" in r else "")
        fmt = lambda k: f"{r[k]:.1e}" if k in r else "-"
        if md:
            print(f"| {key} | {f['logLik']:.6f} | {r['rel_err']:.1e}{extra} | "
                  f"{r['beta_err']:.1e} | {r['vcov_conv_err']:.1e} | "
                  f"{fmt('unconstrained_to_natural')} | {fmt('corMatrix')} | "
                  f"{fmt('varWeights')} | {'yes' if r['converged'] else 'no'}"
                  f"{' (llf only)' if key in LLF_ONLY else ''} |")
        else:
            print(f"{key:58s} {r['status']:4s} llf {f['logLik']:.6f} rel {r['rel_err']:.1e}"
                  f"{extra} beta {r['beta_err']:.1e} vcov {r['vcov_conv_err']:.1e} "
                  f"u->n {fmt('unconstrained_to_natural')} C {fmt('corMatrix')} "
                  f"w {fmt('varWeights')}{'' if r['converged'] else ' (not converged)'}")
    print(f"\n{len(rows)} fits, {nfail} dense-check failures")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
