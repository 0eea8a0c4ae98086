"""
From the machine-readable ``spec`` of a stored nlme fit (the JSON of
``results/correlation/r_correlation.R`` and ``results/varpower/r_varpower.R``)
to this package's arguments, and from nlme's estimates to ours by name.

``model_arguments(spec)`` gives the keyword arguments of
``hmf.hetmixedlm(spec["fixed"], data, **kwargs)``; ``expected(fit)`` maps the
stored estimates to ``params`` names.  nlme's parametrisations
(results/correlation/README.md): sd_ij = sigma * g_ij with

* ``varPower(~v)``: g = |v|^power -> ``var_power=v``, ``power(v)`` = power;
* ``varConstPower(~v)``: g = const + |v|^power -> ``var_const_power=v``,
  ``const(v)``, ``power(v)``;
* ``varExp(~v)``: g = exp(expon v) -> ``var:v`` = 2 expon in the log-linear
  variance function, whose ``var:Intercept`` = log sigma^2;
* ``varIdent(~1|s)``: g = delta_s -> ``var_formula="~ C(s)"`` (log link):
  ``var:C(s)[T.level]`` = 2 log delta_level, ``var:Intercept`` = log sigma^2
  (nlme's reference stratum, the first in its row order, must be patsy's
  first level: true of the stored data);
* ``varComb(A, B)``: the product of the parts (nlme names their
  coefficients ``A.*``, ``B.*``).

Correlation structures (``spec["cor"]``) map to ``correlation=`` / ``time=``
(an ARMA(K-1) spec marked ``structure: toeplitz`` to ``"toeplitz"``); their
parameters are left to the tests of that interface (``expected`` does not
list them).  This module is the one mapping of the specs: the tests of
correlation structures, of their results and of power variance functions
all read it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["model_arguments", "expected", "fixef_name", "CORRELATION"]

#: nlme corStruct type of the specs -> this package's ``correlation=``.
CORRELATION = {"compsymm": "exchangeable", "ar1": "ar1", "car1": "car1",
               "symm": "unstructured"}


def fixef_name(r_name: str) -> str:
    """R's model.matrix column name -> patsy's (treatment contrasts of the
    CSVs' text columns: SexMale -> Sex[T.Male], Time:DietD2 ->
    Time:Diet[T.D2])."""
    if r_name == "(Intercept)":
        return "Intercept"
    factors = {"Sex": ("Male",), "Diet": ("D2", "D3"), "half": ("late",)}
    parts = []
    for part in r_name.split(":"):
        for var, levels in factors.items():
            for level in levels:
                if part == var + level:
                    part = f"{var}[T.{level}]"
        parts.append(part)
    return ":".join(parts)


def _var_parts(var):
    if var is None:
        return []
    return list(var["parts"]) if var["type"] == "comb" else [var]


def model_arguments(spec: dict, ident: str = "var_formula") -> dict:
    """
    Keyword arguments of ``hmf.hetmixedlm(spec["fixed"], data, ...)``.

    ``ident``: how ``varIdent(~1|s)`` is written -- ``"var_formula"``
    (``~ C(s)``, log link) or ``"var_by"`` (``var_by=s, var_link="log"``):
    the same model, with the variances named by stratum.  gls fits have no
    random effect (``re_formula="0"``); glmmTMB's specs are the gls model of
    their ``same_as`` key.
    """
    kwargs = {"groups": spec["group"]}
    engine = spec.get("engine")
    if engine == "lme":
        re = spec.get("re_terms")
        terms = [re] if isinstance(re, str) else re
        kwargs["re_formula"] = (None if terms is None else
                                "~ " + " + ".join(terms))
    elif engine == "gls":
        kwargs["re_formula"] = "0"
    elif engine is not None:
        raise NotImplementedError(f"engine {engine!r}: lme and gls fits only")
    if ident not in ("var_formula", "var_by"):
        raise ValueError(f"ident={ident!r}")
    terms = []
    for part in _var_parts(spec.get("var")):
        kind = part["type"]
        if kind == "power":
            kwargs["var_power"] = part["covariate"]
        elif kind == "constpower":
            kwargs["var_const_power"] = part["covariate"]
        elif kind == "exp":
            terms.append(part["covariate"])
        elif kind == "ident" and ident == "var_by":
            kwargs.update(var_by=part["strata"], var_link="log")
        elif kind == "ident":
            terms.append(f"C({part['strata']})")
        else:
            raise NotImplementedError(f"variance function {kind!r}")
    if terms:
        kwargs["var_formula"] = "~ " + " + ".join(terms)
    cor = spec.get("cor")
    if cor is not None:
        kind = cor["type"]
        if spec.get("structure") == "toeplitz":   # nlme's AR(K-1)
            name = "toeplitz"
        elif kind == "arma":
            name = (f"ma({cor['q']})" if cor["p"] == 0 else
                    f"arma({cor['p']},{cor['q']})")
        else:
            name = CORRELATION[kind]
        kwargs["correlation"] = name
        if spec.get("cor", {}).get("time") not in (None, "(row order)"):
            kwargs["time"] = cor["time"]
    return kwargs


def expected(fit: dict, re_names: list[str]) -> dict:
    """nlme's estimates of ``fit`` under this package's ``params`` names
    (fixed effects, random-effects covariance, variance functions).
    ``re_names``: the model's names of the random effects, in the order of
    nlme's ``re_cov`` rows."""
    out = {fixef_name(k): v for k, v in fit["fixef"].items()}
    G = np.asarray(fit["re_cov"]["values"], dtype=float)
    G = G.reshape(len(re_names), len(re_names))
    for i, a in enumerate(re_names):
        for j in range(i + 1):
            b = re_names[j]
            out[f"var({a})" if i == j else f"cov({b}, {a})"] = G[i, j]
    sigma2 = fit["sigma"] ** 2
    spec = fit["spec"]
    parts = _var_parts(spec.get("var"))
    natural = fit["var"]["natural_all"]
    prefixes = ["A.", "B.", "C."] if len(parts) > 1 else [""]
    for prefix, part in zip(prefixes, parts):
        kind, cov = part["type"], part.get("covariate")
        if kind == "power":
            out[f"power({cov})"] = natural[prefix + "power"]
        elif kind == "constpower":
            out[f"const({cov})"] = natural[prefix + "const"]
            out[f"power({cov})"] = natural[prefix + "power"]
        elif kind == "exp":
            out[f"var:{cov}"] = 2.0 * natural[prefix + "expon"]
        elif kind == "ident":
            first = True
            for key, delta in natural.items():
                if key.startswith(prefix):
                    if first:  # the reference stratum (delta = 1)
                        first = False
                        continue
                    level = key[len(prefix):]
                    out[f"var:C({part['strata']})[T.{level}]"] = 2 * np.log(delta)
    out["var:Intercept"] = np.log(sigma2)
    return out
