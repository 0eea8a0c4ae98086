# r_reference.R -- reference fits from R (nlme, glmmTMB, lme4) for the test suite of
# statsmodels_hetmixed.  Writes tests/results/r_reference.json.
#
# Usage (from anywhere; R packages from Debian bookworm):
#     python tests/results/make_sim_data.py          # (re)creates tests/results/data/*.csv
#     Rscript tests/results/r_reference.R
#
# Produced with R 4.2.2, nlme 3.1.162, lme4 1.1.31, glmmTMB 1.1.5, jsonlite 1.8.4
# (exact versions are also stored in the JSON "meta" block).
# Helpers shared with the other reference script are in r_common.R (same folder).
#
# Model: y_ij = x_ij' beta + z_ij' u_i + e_ij,  e_ij ~ N(0, sigma2_ij),
#        log sigma2_ij = w_ij' a,  W = model.matrix(var formula) WITH intercept.
#
# ---------------------------------------------------------------------------------
# JSON layout
#   meta: R version, package versions, date, notes
#   cases: <case>: {description, data, nobs, mean_formula, random,
#                   var_formula, W_names,
#                   ML:   {nlme: {...}, glmmTMB: {...}, lme4: {...}},
#                   REML: {...}}
#   Named vectors are JSON objects {name: value}; unnamed vectors and name lists
#   are JSON arrays (also when of length one).  Matrices are
#   {"rownames": [...], "colnames": [...], "values": [[row1], [row2], ...]}.
#   Numbers carry 15 significant digits (jsonlite digits = NA).
#
# ---------------------------------------------------------------------------------
# Parameter maps (all verified numerically inside this script; the script stops if a
# verification fails)
#
# nlme (lme):
#   * fitted with opt = "nlminb" and opt = "optim" (BFGS), msTol = 1e-13,
#     tolerance = 1e-10; the fit with the higher llf is kept ("optimizer",
#     "llf_by_optimizer").  lme() errors when it does not converge, so a stored
#     fit is a converged one.
#   * varIdent(form = ~1|v): coef(unconstrained=FALSE) are SD ratios r_L =
#     sd(level L)/sd(reference level) for the non-reference levels; the reference
#     level is the level of v met FIRST in the data (NOT necessarily 0): in HSB the
#     first student is female, so varIdent(~1|female) has reference female == 1 and
#     reports the ratio for level "0".  Unconstrained coefficient = log(r_L).
#   * varExp(form = ~v): Var = sigma^2 exp(2 theta v); unconstrained = theta.
#   * varComb(A, B, C): product of the variance functions; component coefficient
#     names are prefixed "A.", "B.", ... (e.g. "A.0", "B.expon", "C.1").
#   * "varstruct_coef" = coef(varStruct, unconstrained = FALSE) with nlme's names;
#     "varstruct_coef_unconstrained" = coef(varStruct) keyed by the apVar names.
#   * hence log sigma2_ij = 2 log(sigma) + sum_varIdent 2 log r_{L(ij)}
#                                          + sum_varExp 2 theta v_ij,
#     which is linear in p = (unconstrained varStruct coefficients, lSigma).  We build
#     D (n x (k+1)), log sigma2 = D p, and solve W a = D p exactly (residual checked
#     to be < 1e-10): a = M p with M = (W'W)^-1 W'D.  M is stored ("a_map").
#     E.g. hsb_female: a0 = 2 lSigma + 2 log r_0, a_female = -2 log r_0.
#   * apVar (when not a character string) is the inverse of the numerical Hessian of
#     the (ML or REML) log-likelihood in nlme's "natural" parameterisation, rows/cols
#     named as follows, values in attr(apVar, "Pars") (stored as "apVar_Pars"):
#       "reStruct.<grp>"            (1x1 pdMat) log of the random-effect SD
#                                   (absolute, i.e. log sqrt(tau2), not relative)
#       "reStruct.<grp>1", "...2"   (2x2 pdMat) log SD of 1st / 2nd random effect
#       "reStruct.<grp>3"           (2x2 pdMat) generalised logit of the correlation,
#                                   log((1 + rho) / (1 - rho))
#       "varStruct", "varStruct.A", "varStruct.A1", "varStruct.B.expon", ...
#                                   unconstrained varStruct coefficients in the order
#                                   of coef(varStruct) (log ratios / thetas)
#       "lSigma"                    log(sigma), sigma = residual SD at weight 1
#     Fixed effects are not in apVar.  Standard errors of a = M p use the apVar block
#     of (varStruct*, lSigma): a_vcov = M V M'.  Standard errors of the
#     random-effect variances/covariances ("re_cov_elements") use the delta method
#     on the reStruct* and lSigma entries (numerical Jacobian of the natural map).
#   * vcov(fit) (fixed effects) = (X' V^-1 X)^-1 at the estimates (beta treated as
#     orthogonal to the variance parameters).
#   * re_cov = pdMatrix(reStruct) * sigma^2 (equals getVarCov for one level).
#   * apVar accuracy: nlme's default step (.relStep = eps^(1/3)) gives a poor
#     finite-difference Hessian when |llf| is large (HSB: SEs off by 1-2 %, hsb_slope
#     ML by up to 50 %).  The stored "apVar" (and every nlme SE derived from it) is
#     computed with .relStep = 1e-4 (estimates unchanged; "apVar_control" says which
#     step was used); it agrees with glmmTMB's AD-based Hessian to ~1e-4 relative.
#     The apVar nlme returns with its defaults is kept as "apVar_default" (or
#     "apVar_default_message" when it is a character string).
#
# glmmTMB (1.1.5):
#   * dispersion model (family gaussian): fixef(fit)$disp are coefficients of
#     log(sigma2) in 1.1.5 (log(sigma) from 1.1.9 on) -- checked in hsb_null by
#     comparing with sigma(fit); the result is stored in meta$glmmTMB_disp_scale and
#     a = disp (or 2 * disp if the scale is log sigma).  a_se from the disp block
#     ("d~...") of vcov(fit, full = TRUE).
#   * theta (fit$fit$par[names == "theta"]), per random-effect term, in formula order:
#       1x1 term: theta = log(SD);  Var = exp(2 theta)
#       2x2 "us" term: theta = (log SD1, log SD2, t);  rho = t / sqrt(1 + t^2)
#         (correlation from L = [[1,0],[t,1]], Corr = D^-1/2 L L' D^-1/2),
#         Var1 = exp(2 th1), Var2 = exp(2 th2), Cov = rho exp(th1 + th2).
#     Delta-method SEs of the natural-scale (co)variances use the theta block of
#     vcov(fit, full = TRUE) and the analytic Jacobian of this map.
#   * vcov(fit)$cond: fixed-effect block of the inverse joint observed information
#     (from TMB::sdreport), which is not exactly (X'V^-1X)^-1 (ML); under REML the
#     fixed effects are integrated out (treated as random) and vcov comes from the
#     joint precision.
#   * convergence: fit$fit$convergence == 0, fit$sdr$pdHess, max |gradient| stored.
#     nlminb stops on relative function change (|gradient| ~1e-3, parameter errors
#     ~1e-6), so each fit is polished by Newton steps on TMB's gradient and refitted
#     from the polished values (start = ...); max |gradient| < 1e-9 afterwards.
#     "first_pass" keeps the unpolished llf/message.  glmmTMB estimates are thus
#     the most precise reference; nlme's agree with them to ~5e-7.
#
# lme4 (lmer), homoskedastic cases only: a = (Intercept) = 2 log(sigma) (no SE).
#   theta = getME(fit, "theta") = elements of the relative Cholesky factor
#   (Lambda, column-wise lower triangle) = sd / sigma for 1x1 terms.
# ---------------------------------------------------------------------------------

t_start <- Sys.time()
here <- local({       # directory of this script (Rscript --file=...), else getwd()
  f <- sub("^--file=", "", grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE))
  if (length(f) == 1) dirname(normalizePath(f)) else getwd()
})
source(file.path(here, "r_common.R"))   # packages, root/datadir/hsbfile, shared helpers
outfile <- file.path(here, "r_reference.json")

# (co)variance elements of a q x q covariance matrix, named
cov_elements <- function(S) {
  nm <- colnames(S); q <- nrow(S)
  out <- c(); lab <- c()
  for (j in seq_len(q)) for (i in j:q) {
    out <- c(out, S[i, j])
    lab <- c(lab, if (i == j) sprintf("var(%s)", nm[i]) else sprintf("cov(%s,%s)", nm[j], nm[i]))
  }
  names(out) <- lab
  out
}

# ------------------------------------------------------------------- data
read_sim <- function(name) read.csv(file.path(datadir, paste0(name, ".csv")),
                                    stringsAsFactors = FALSE)
hsb <- read_hsb()
sim_cont <- read_sim("sim_cont");   sim_cont$g <- factor(sim_cont$g)
sim_slope <- read_sim("sim_slope"); sim_slope$g <- factor(sim_slope$g)
sim_slope$f <- factor(sim_slope$f, levels = c("a", "b", "c"))
sim_vc <- read_sim("sim_vc");       sim_vc$g <- factor(sim_vc$g)
sim_vc$c <- factor(sim_vc$c)
stopifnot(nrow(sim_cont) > 0, nrow(sim_slope) == 1200,
          nrow(sim_vc) == 1440)

# ------------------------------------------------------------------- cases
# nlme_var: list of components (type "ident"/"exp", variable); NULL = homoskedastic
cases <- list(
  hsb_null = list(
    description = "HSB, mathach ~ female, random intercept by school, homoskedastic",
    data = "hsb", fixed = mathach ~ female, grp = "school",
    nlme_random = ~ 1 | school, tmb_re = "(1 | school)",
    var_formula = ~ 1, nlme_var = NULL, lme4 = TRUE),
  hsb_female = list(
    description = "HSB, mathach ~ female, random intercept, log sigma2 ~ female",
    data = "hsb", fixed = mathach ~ female,
    nlme_random = ~ 1 | school, tmb_re = "(1 | school)",
    var_formula = ~ female, tmb_disp = ~ female,
    nlme_var = list(list("ident", "female")), lme4 = FALSE),
  hsb_multi = list(
    description = "HSB, mathach ~ female + ses + sector, random intercept, log sigma2 ~ female + ses + sector",
    data = "hsb", fixed = mathach ~ female + ses + sector,
    nlme_random = ~ 1 | school, tmb_re = "(1 | school)",
    var_formula = ~ female + ses + sector, tmb_disp = ~ female + ses + sector,
    nlme_var = list(list("ident", "female"), list("exp", "ses"), list("ident", "sector")),
    lme4 = FALSE),
  hsb_slope = list(
    description = "HSB, mathach ~ cses + meanses + sector, (1 + cses | school) unstructured, log sigma2 ~ sector + cses",
    data = "hsb", fixed = mathach ~ cses + meanses + sector,
    nlme_random = ~ 1 + cses | school, tmb_re = "(1 + cses | school)",
    var_formula = ~ sector + cses, tmb_disp = ~ sector + cses,
    nlme_var = list(list("ident", "sector"), list("exp", "cses")), lme4 = FALSE),
  sim_cont = list(
    description = "sim_cont.csv, y ~ x, (1 | g), log sigma2 ~ z + h + zh",
    data = "sim_cont", fixed = y ~ x,
    nlme_random = ~ 1 | g, tmb_re = "(1 | g)",
    var_formula = ~ z + h + zh, tmb_disp = ~ z + h + zh,
    nlme_var = list(list("exp", "z"), list("ident", "h"), list("exp", "zh")),
    lme4 = FALSE),
  sim_slope = list(
    description = "sim_slope.csv, y ~ x + t, (1 + t | g) unstructured, log sigma2 ~ fb + fc + x (glmmTMB: ~ f + x, reference 'a')",
    data = "sim_slope", fixed = y ~ x + t,
    nlme_random = ~ 1 + t | g, tmb_re = "(1 + t | g)",
    var_formula = ~ fb + fc + x, tmb_disp = ~ f + x,
    nlme_var = list(list("ident", "f"), list("exp", "x")), lme4 = FALSE),
  sim_vc = list(
    description = "sim_vc.csv, y ~ x, random intercepts g and class-within-g, log sigma2 ~ z",
    data = "sim_vc", fixed = y ~ x,
    nlme_random = ~ 1 | g / c, tmb_re = "(1 | g) + (1 | g:c)",
    var_formula = ~ z, tmb_disp = ~ z,
    nlme_var = list(list("exp", "z")), lme4 = FALSE),
  sim_vc_hom = list(
    description = "sim_vc.csv, y ~ x, random intercepts g and class-within-g, homoskedastic (lme4 comparison for the nested structure)",
    data = "sim_vc", fixed = y ~ x,
    nlme_random = ~ 1 | g / c, tmb_re = "(1 | g) + (1 | g:c)",
    var_formula = ~ 1, nlme_var = NULL, lme4 = TRUE)
)

# ------------------------------------------------------------------- nlme
nlme_weights <- function(spec) {
  if (is.null(spec)) return(NULL)
  comps <- lapply(spec, function(s) {
    if (s[[1]] == "ident") varIdent(form = as.formula(paste("~ 1 |", s[[2]])))
    else varExp(form = as.formula(paste("~", s[[2]])))
  })
  if (length(comps) == 1) comps[[1]] else do.call(varComb, comps)
}

fit_nlme_once <- function(cs, dat, method, ctl) {
  w <- nlme_weights(cs$nlme_var)
  args <- list(fixed = cs$fixed, random = cs$nlme_random, data = dat,
               method = method, control = ctl)
  if (!is.null(w)) args$weights <- w
  do.call(lme, args)
}

# names of the unconstrained varStruct coefficients as they appear in apVar
vs_apvar_names <- function(vs) {
  if (is.null(vs)) return(character(0))
  u <- names(coef(vs, unconstrained = TRUE))
  if (is.null(u)) u <- rep("", length(coef(vs, unconstrained = TRUE)))
  stopifnot(length(u) <= 1 || all(u != ""))
  ifelse(u == "", "varStruct", paste0("varStruct.", u))
}

# log sigma2 per row (original data order) = D p, p = (unconstrained varStruct, lSigma)
nlme_D <- function(fit, cs, dat) {
  vs <- fit$modelStruct$varStruct
  n <- nrow(dat)
  if (is.null(cs$nlme_var)) {
    D <- matrix(2, n, 1, dimnames = list(NULL, "lSigma"))
    return(D)
  }
  comps <- if (inherits(vs, "varComb")) unclass(vs) else list(vs)
  D <- NULL; nms <- c()
  for (k in seq_along(comps)) {
    comp <- comps[[k]]; s <- cs$nlme_var[[k]]
    cu <- coef(comp, unconstrained = TRUE)
    cc <- coef(comp, unconstrained = FALSE)
    stopifnot(length(cu) == length(cc))
    if (s[[1]] == "ident") {
      stopifnot(inherits(comp, "varIdent"))
      v <- as.character(dat[[s[[2]]]])
      for (j in seq_along(cc)) {
        D <- cbind(D, 2 * as.numeric(v == names(cc)[j]))
        stopifnot(abs(log(cc[j]) - cu[j]) < 1e-12)
      }
    } else {
      stopifnot(inherits(comp, "varExp"))
      D <- cbind(D, 2 * dat[[s[[2]]]])
      stopifnot(abs(cc - cu) < 1e-12)
    }
    nms <- c(nms, names(coef(comp, unconstrained = FALSE)))
  }
  D <- cbind(D, 2)
  colnames(D) <- c(vs_apvar_names(vs), "lSigma")
  D
}

# natural map: apVar Pars (reStruct*, lSigma) -> random-effect (co)variances
nlme_re_natural <- function(fit) {
  reSt <- fit$modelStruct$reStruct
  levs <- names(reSt)
  pm <- pdMatrix(reSt)
  function(P) {
    sig2 <- exp(2 * P[["lSigma"]])
    out <- c()
    for (L in levs) {
      q <- nrow(pm[[L]]); nm <- colnames(pm[[L]])
      if (q == 1) {
        S <- matrix(exp(2 * P[[paste0("reStruct.", L)]]), 1, 1, dimnames = list(nm, nm))
      } else {
        pr <- P[paste0("reStruct.", L, seq_len(q * (q + 1) / 2))]
        sds <- exp(pr[1:q])
        C <- diag(q); k <- q
        for (j in 1:(q - 1)) for (i in (j + 1):q) {   # pdNatural order
          k <- k + 1
          C[i, j] <- C[j, i] <- (exp(pr[k]) - 1) / (exp(pr[k]) + 1)
        }
        S <- diag(sds, q) %*% C %*% diag(sds, q); dimnames(S) <- list(nm, nm)
      }
      e <- cov_elements(S); names(e) <- paste0(L, ": ", names(e))
      out <- c(out, e)
    }
    out
  }
}

fit_nlme <- function(cs, dat, method) {
  fit_once <- function(ctl) fit_nlme_once(cs, dat, method, ctl)
  nb <- nlme_best_fit(fit_once)
  if (is.null(nb$fit)) return(list(error = nb$errs))
  # apVar with .relStep = 1e-4 (see nlme_refit_apvar in r_common.R)
  ap <- nlme_refit_apvar(nb, fit_once)
  fit <- ap$fit; apctl <- ap$control; apVar_default <- ap$apVar_default

  ll <- logLik(fit)
  out <- list(
    converged = TRUE, optimizer = nb$best, llf = as.numeric(ll),
    llf_by_optimizer = vec(nb$llfs),
    optimizer_errors = if (length(nb$errs)) nb$errs else NULL,
    df = as.integer(attr(ll, "df")), nobs = as.integer(attr(ll, "nobs")),
    fixef = vec(fixef(fit)), vcov_fixef = mat(vcov(fit)),
    sigma = fit$sigma)
  # random-effects covariance on the natural scale
  pm <- pdMatrix(fit$modelStruct$reStruct)
  recov <- lapply(pm, function(m) m * fit$sigma^2)
  if (length(recov) == 1) {
    gv <- getVarCov(fit)
    stopifnot(max(abs(unclass(gv) - recov[[1]])) < 1e-10 * max(1, abs(gv)))
  }
  out$re_cov <- lapply(recov, mat)
  # variance function
  vs <- fit$modelStruct$varStruct
  if (!is.null(vs)) {
    out$varstruct_coef <- vec(coef(vs, unconstrained = FALSE))
    out$varstruct_coef_unconstrained <- vec(setNames(coef(vs, unconstrained = TRUE),
                                                     vs_apvar_names(vs)))
  }
  # log-linear parameterisation a
  W <- model.matrix(cs$var_formula, dat)
  D <- nlme_D(fit, cs, dat)
  p <- c(if (!is.null(vs)) coef(vs, unconstrained = TRUE), log(fit$sigma))
  names(p) <- c(vs_apvar_names(vs), "lSigma")
  M <- qr.solve(W, D)                       # a = M p
  Mr <- round(M)
  M[abs(M - Mr) < 1e-9] <- Mr[abs(M - Mr) < 1e-9]   # clean rounding noise (entries are 0, +-2)
  stopifnot(max(abs(W %*% M - D)) < 1e-10)
  rownames(M) <- colnames(W); colnames(M) <- colnames(D)
  a <- drop(M %*% p); names(a) <- colnames(W)
  # verify against the per-row SDs implied by the fit (pearson residuals)
  rr <- residuals(fit, type = "response", level = 0:ncol(fit$groups))
  rr <- rr[, ncol(rr)]
  rp <- residuals(fit, type = "pearson")
  ok <- abs(rr) > 1e-6
  logs2_fit <- 2 * log(rr[ok] / rp[ok])
  err_logs2 <- max(abs(logs2_fit - drop(W[ok, , drop = FALSE] %*% a)))
  stopifnot(err_logs2 < 1e-6)
  out$a <- vec(a)
  out$a_map <- mat(M)
  out$a_check_max_abs_err <- err_logs2
  # apVar
  if (is.character(fit$apVar)) {
    out$apVar_message <- fit$apVar
    out$a_se <- NULL
  } else {
    V <- fit$apVar
    P <- attr(V, "Pars")
    out$apVar <- mat(apvar_matrix(V))
    out$apVar_Pars <- vec(P)
    out$apVar_natural <- attr(V, "natural")
    out$apVar_control <- apctl
    if (is.character(apVar_default)) {
      out$apVar_default_message <- apVar_default
    } else {
      out$apVar_default <- mat(apvar_matrix(apVar_default))
    }
    # varStruct parameters in apVar carry the prefix "varStruct"
    vsn <- names(p)
    stopifnot(all(vsn %in% names(P)), max(abs(P[vsn] - p)) < 1e-8)
    Va <- M %*% V[vsn, vsn, drop = FALSE] %*% t(M)
    dimnames(Va) <- list(colnames(W), colnames(W))
    out$a_se <- vec(sqrt(diag(Va)))
    out$a_vcov <- mat(Va)
    # random-effect (co)variances: delta method on (reStruct*, lSigma)
    nat <- nlme_re_natural(fit)
    est <- nat(P)
    ref <- unlist(lapply(names(recov), function(L) {
      e <- cov_elements(recov[[L]]); names(e) <- paste0(L, ": ", names(e)); e }))
    stopifnot(max(abs(est - ref[names(est)])) < 1e-6 * max(1, abs(ref)))
    J <- jac(nat, P)
    Vre <- J %*% V %*% t(J)
    out$re_cov_elements <- list(names = I(names(est)), est = I(unname(est)),
                                se = I(unname(sqrt(diag(Vre)))))
  }
  out
}

# ------------------------------------------------------------------- glmmTMB
tmb_theta_to_cov <- function(th, q) {
  if (q == 1) return(matrix(exp(2 * th), 1, 1))
  stopifnot(q == 2)
  sds <- exp(th[1:2]); t <- th[3]
  rho <- t / sqrt(1 + t^2)
  matrix(c(sds[1]^2, rho * sds[1] * sds[2], rho * sds[1] * sds[2], sds[2]^2), 2, 2)
}
tmb_theta_jac <- function(th, q) {             # d(cov_elements)/d(theta), analytic
  if (q == 1) return(matrix(2 * exp(2 * th), 1, 1))
  s1 <- exp(th[1]); s2 <- exp(th[2]); t <- th[3]
  rho <- t / sqrt(1 + t^2); drho <- (1 + t^2)^(-1.5)
  # elements: var1, cov12, var2
  rbind(c(2 * s1^2, 0, 0),
        c(rho * s1 * s2, rho * s1 * s2, drho * s1 * s2),
        c(0, 2 * s2^2, 0))
}

glmmTMB_disp_scale <- NA_character_   # set from hsb_null ML

fit_tmb <- function(cs, dat, method) {
  disp <- if (is.null(cs$tmb_disp)) ~ 1 else cs$tmb_disp
  # optim BFGS only when nlminb did not converge cleanly (max |gradient| < 1e-6)
  pr <- tmb_fit_polished(re_formula(cs), disp, dat, method, accept_grad = 1e-6)
  if (is.null(pr$fit)) return(list(error = pr$errs))
  fit <- pr$fit
  out <- c(tmb_fit_info(pr),
           list(fixef = vec(fixef(fit)$cond), vcov_fixef = mat(vcov(fit)$cond)))
  Vf <- vcov(fit, full = TRUE)
  dn <- grep("^(d~|disp$)", colnames(Vf), value = TRUE)
  stopifnot(length(dn) == length(fixef(fit)$disp))
  Vd <- Vf[dn, dn, drop = FALSE]
  out$disp <- vec(fixef(fit)$disp)
  out$disp_se <- vec(setNames(sqrt(diag(Vd)), names(fixef(fit)$disp)))
  out$vcov_full <- mat(Vf)
  par <- fit$fit$par
  out$par <- list(names = I(names(par)), values = I(unname(par)))
  th <- par[names(par) == "theta"]
  out$theta <- I(unname(th))
  thn <- grep("^theta", colnames(Vf), value = TRUE)
  out$theta_names <- I(thn)
  stopifnot(length(thn) == length(th))
  # random-effects covariances per term, verified against VarCorr
  vc <- VarCorr(fit)$cond
  out$re_cov <- lapply(vc, function(m) mat(unclass(m)[, , drop = FALSE]))
  k0 <- 0; est <- c(); se <- c(); lab <- c()
  for (term in names(vc)) {
    S <- unclass(vc[[term]]); q <- nrow(S)
    nth <- q * (q + 1) / 2
    idx <- k0 + seq_len(nth); k0 <- k0 + nth
    S2 <- tmb_theta_to_cov(th[idx], q)
    stopifnot(max(abs(S2 - S[seq_len(q), seq_len(q)])) < 1e-8 * max(1, abs(S)))
    Jn <- jac(function(x) { e <- cov_elements(`dimnames<-`(tmb_theta_to_cov(x, q),
                                   list(colnames(S), colnames(S)))); e }, th[idx])
    Ja <- tmb_theta_jac(th[idx], q)
    stopifnot(max(abs(Jn - Ja)) < 1e-5 * max(1, abs(Ja)))
    Vth <- Vf[thn[idx], thn[idx], drop = FALSE]
    e <- cov_elements(`dimnames<-`(S2, list(colnames(S), colnames(S))))
    est <- c(est, e); se <- c(se, sqrt(diag(Ja %*% Vth %*% t(Ja))))
    lab <- c(lab, paste0(term, ": ", names(e)))
  }
  stopifnot(k0 == length(th))
  out$re_cov_elements <- list(names = I(lab), est = I(unname(est)), se = I(unname(se)))
  # log-linear parameterisation
  W <- model.matrix(cs$var_formula, dat)
  Xd <- model.matrix(disp, dat)
  stopifnot(ncol(W) == ncol(Xd), max(abs(W - Xd)) == 0)   # same columns, same order
  fac <- if (identical(glmmTMB_disp_scale, "log_sigma")) 2 else 1
  a <- fac * fixef(fit)$disp; names(a) <- colnames(W)
  Va <- fac^2 * Vd; dimnames(Va) <- list(colnames(W), colnames(W))
  out <- c(out, est_fields("a", a, Va))
  out$fit_object <- fit     # removed before writing
  out
}

# ------------------------------------------------------------------- lme4
fit_lme4 <- function(cs, dat, method) {
  fit <- fit_lmer(cs, dat, method)
  ll <- logLik(fit)
  vc <- VarCorr(fit)
  msgs <- fit@optinfo$conv$lme4$messages
  list(
    converged = is.null(msgs), messages = msgs,
    llf = as.numeric(ll), df = as.integer(attr(ll, "df")),
    nobs = as.integer(nobs(fit)),
    fixef = vec(fixef(fit)), vcov_fixef = mat(as.matrix(vcov(fit))),
    sigma = sigma(fit),
    re_cov = lapply(vc, function(m) mat(unclass(m)[, , drop = FALSE])),
    theta = vec(getME(fit, "theta")),
    a = vec(c("(Intercept)" = 2 * log(sigma(fit)))))
}

# ------------------------------------------------------------------- run
datasets <- list(hsb = hsb, sim_cont = sim_cont, sim_slope = sim_slope, sim_vc = sim_vc)
res <- list()
table_rows <- list()
for (cn in names(cases)) {
  cs <- cases[[cn]]
  dat <- datasets[[cs$data]]
  W <- model.matrix(cs$var_formula, dat)
  res[[cn]] <- list(description = cs$description, data = cs$data,
                    nobs = nrow(dat),
                    mean_formula = deparse(cs$fixed),
                    random = cs$tmb_re,
                    var_formula = deparse(cs$var_formula),
                    W_names = I(colnames(W)))
  for (method in c("ML", "REML")) {
    t0 <- Sys.time()
    r <- list()
    r$nlme <- fit_nlme(cs, dat, method)
    r$glmmTMB <- fit_tmb(cs, dat, method)
    if (cn == "hsb_null" && method == "ML") {
      glmmTMB_disp_scale <- tmb_disp_scale(r$glmmTMB$fit_object)
      if (glmmTMB_disp_scale == "log_sigma") {   # redo a with the right factor
        r$glmmTMB <- fit_tmb(cs, dat, method)
      }
    }
    r$glmmTMB$fit_object <- NULL
    if (isTRUE(cs$lme4)) r$lme4 <- fit_lme4(cs, dat, method)
    res[[cn]][[method]] <- r
    for (pk in names(r)) {
      table_rows[[length(table_rows) + 1]] <- data.frame(
        case = cn, method = method, package = pk, llf = r[[pk]]$llf,
        df = r[[pk]]$df, converged = isTRUE(r[[pk]]$converged),
        optimizer = if (is.null(r[[pk]]$optimizer)) "bobyqa" else r[[pk]]$optimizer,
        stringsAsFactors = FALSE)
    }
    cat(sprintf("%-11s %-4s done in %.1f s\n", cn, method, elapsed(t0)))
  }
}

# ------------------------------------------------------------------- agreement
tab <- do.call(rbind, table_rows)
agree <- list()
for (cn in names(cases)) for (method in c("ML", "REML")) {
  r <- res[[cn]][[method]]
  d <- r$nlme$llf - r$glmmTMB$llf
  da <- max(abs(unlist(r$nlme$a) - unlist(r$glmmTMB$a)))
  agree[[cn]][[method]] <- list(
    llf_nlme_minus_glmmTMB = d,
    llf_nlme_minus_lme4 = if (!is.null(r$lme4)) r$nlme$llf - r$lme4$llf else NULL,
    a_max_abs_diff_nlme_glmmTMB = da,
    fixef_max_abs_diff_nlme_glmmTMB = max(abs(unlist(r$nlme$fixef) - unlist(r$glmmTMB$fixef))),
    a_se_max_rel_diff_nlme_glmmTMB = if (!is.null(r$nlme$a_se))
      max(abs(unlist(r$nlme$a_se) / unlist(r$glmmTMB$a_se) - 1)) else NULL,
    re_se_max_rel_diff_nlme_glmmTMB = if (!is.null(r$nlme$re_cov_elements)) {
      # match by estimate order (term labels differ: nlme "c" vs glmmTMB "g:c")
      a1 <- r$nlme$re_cov_elements; a2 <- r$glmmTMB$re_cov_elements
      i1 <- order(a1$est); i2 <- order(a2$est)
      max(abs(a1$se[i1] / a2$se[i2] - 1)) } else NULL)
}

meta <- c(meta_header(), list(
  glmmTMB_disp_scale = glmmTMB_disp_scale,
  data_files = list(hsb = "statsmodels_hetmixed/datasets/hsb/hsb.csv",
                    sim_cont = "tests/results/data/sim_cont.csv",
                    sim_slope = "tests/results/data/sim_slope.csv",
                    sim_vc = "tests/results/data/sim_vc.csv"),
  data_md5 = as.list(tools::md5sum(c(
    hsb = hsbfile,
    sim_cont = file.path(datadir, "sim_cont.csv"),
    sim_slope = file.path(datadir, "sim_slope.csv"),
    sim_vc = file.path(datadir, "sim_vc.csv")))),
  notes = c(
    "llf for REML fits is the REML log-likelihood as each package reports it.",
    "a: coefficients of log sigma2_ij on W = model.matrix(var_formula) (with intercept); see the header of r_reference.R for the maps.",
    "nlme vcov_fixef = (X'V^-1X)^-1; glmmTMB vcov_fixef = fixed-effect block of the inverse joint observed information.",
    "re_cov_elements: natural-scale random-effect variances/covariances with delta-method SEs (nlme from apVar, glmmTMB from the theta block of vcov(full=TRUE)).",
    "sim_vc_hom is an extra homoskedastic case so that lme4 can be compared on the nested structure."),
  agreement = agree,
  runtime_seconds = elapsed(t_start)))
names(meta$data_md5) <- c("hsb", "sim_cont", "sim_slope", "sim_vc")

write_reference_json(meta, res, outfile)

tab$llf <- sprintf("%.6f", tab$llf)
print(tab, row.names = FALSE)
cat("\nnlme vs glmmTMB: llf difference, max |a| and |beta| differences, max relative SE differences:\n")
for (cn in names(agree)) for (m in names(agree[[cn]])) {
  x <- agree[[cn]][[m]]
  cat(sprintf("  %-11s %-4s  dllf = % .3e   da = %.3e   dbeta = %.3e   rel.d se(a) = %.1e   rel.d se(re) = %.1e%s\n", cn, m,
              x$llf_nlme_minus_glmmTMB, x$a_max_abs_diff_nlme_glmmTMB,
              x$fixef_max_abs_diff_nlme_glmmTMB,
              if (is.null(x$a_se_max_rel_diff_nlme_glmmTMB)) NA else x$a_se_max_rel_diff_nlme_glmmTMB,
              if (is.null(x$re_se_max_rel_diff_nlme_glmmTMB)) NA else x$re_se_max_rel_diff_nlme_glmmTMB,
              if (!is.null(x$llf_nlme_minus_lme4))
                sprintf("   dllf(nlme-lme4) = % .3e", x$llf_nlme_minus_lme4) else ""))
}
cat(sprintf("\ntotal run time %.1f s\n", meta$runtime_seconds))
