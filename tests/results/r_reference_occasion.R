# r_reference_occasion.R -- reference fits from R (nlme, glmmTMB, lme4) for a residual
# variance per occasion (sim_occasion.csv) and per sex (HSB, cell-means / additive
# parameterisation).  Writes tests/results/r_reference_occasion.json.
#
# Usage (from anywhere; R packages from Debian bookworm):
#     python tests/results/make_occasion_data.py     # (re)creates data/sim_occasion.csv
#     Rscript tests/results/r_reference_occasion.R
#
# Produced with R 4.2.2, nlme 3.1.162, lme4 1.1.31, glmmTMB 1.1.5, jsonlite 1.8.4
# (exact versions are also stored in the JSON "meta" block).  Conventions (JSON
# encoding, optimiser settings, nlme apVar step, glmmTMB Newton polish) are those of
# r_reference.R; its header documents the parameter maps of each package.
# Helpers shared with the other reference script are in r_common.R (same folder).
#
# ---------------------------------------------------------------------------------
# Models
#   sim_occasion: y ~ time + x, random intercept by id, Var(e_ij) = sigma2_{occ(ij)},
#                 occ = 1..5 (5 residual variances).  ML and REML.
#   hsb_female_cell: mathach ~ female, random intercept by school,
#                 Var(e_ij) = sigma2_male (female == 0) or sigma2_female (female == 1).
#
# ---------------------------------------------------------------------------------
# JSON layout
#   meta: R version, package versions, date, platform, glmmTMB_disp_scale, data files
#         and md5, notes, agreement (llf differences, checks), runtime_seconds
#   cases:
#     sim_occasion: {description, data, nobs, n_groups, mean_formula, random,
#                    occ_levels, simulation_truth {beta, tau2, sigma2},
#                    ML:   {nlme, glmmTMB_cell, glmmTMB_ref, hom, lr_test},
#                    REML: {...}}
#       nlme          lme(..., weights = varIdent(form = ~ 1 | occ))
#       glmmTMB_cell  glmmTMB(..., dispformula = ~ 0 + factor(occ)):  d_k = log sigma2_k
#       glmmTMB_ref   glmmTMB(..., dispformula = ~ factor(occ)):      a = (log sigma2_1,
#                     log(sigma2_k / sigma2_1), k = 2..5)
#       hom           {nlme, lme4, glmmTMB}: homoskedastic fits; the single residual
#                     variance is keyed "all" (sigma2 = {"all": ...})
#       lr_test       LR statistic 2 (llf_het - llf_hom), df 4, chi-square p-value
#                     (from nlme; the REML test is valid: same mean model)
#     hsb_female_cell: {description, data, nobs, n_groups, mean_formula, random,
#                    ML: {glmmTMB_cell, nlme}, REML: {...}}
#       glmmTMB_cell  glmmTMB(..., dispformula = ~ 0 + factor(female)), plus the block
#                     "additive" (identity-link parameterisation, see below)
#       nlme          lme(..., weights = varIdent(form = ~ 1 | female)) as a check
#
#   Every fit block has (where the package allows):
#     llf, df, nobs, converged, optimizer, fixef,
#     vcov_fixef        (X' V^-1 X)^-1 at the fit's estimates.  nlme: vcov(fit).
#                       glmmTMB / lme4: computed here from the estimates (the same
#                       formula reproduces nlme's vcov, checked); glmmTMB's own
#                       vcov(fit)$cond is kept as "vcov_fixef_tmb".
#     tau2, tau2_se     random-intercept variance, delta-method SE
#     sigma2, sigma2_se, sigma2_vcov   residual variances keyed occ1..occ5 (HSB: male,
#                       female), delta-method SEs
#     logsigma2, logsigma2_se, logsigma2_vcov   their logs (glmmTMB_cell: d_k)
#     a, a_se, a_vcov   log-linear coefficients with intercept, keyed
#                       "(Intercept)", "occ2", ..., "occ5" (a_(Intercept) = log
#                       sigma2_1, a_occk = log sigma2_k - log sigma2_1)
#     disp_names        glmmTMB's own names of the dispersion coefficients
#     var_params_vcov   joint delta-method vcov of (tau2, sigma2_*) (natural scale)
#   Named vectors are JSON objects {name: value}; matrices are
#   {"rownames": [...], "colnames": [...], "values": [[row1], [row2], ...]}.
#   Numbers carry 15 significant digits (jsonlite digits = NA).
#
# ---------------------------------------------------------------------------------
# Parameter maps / SEs
#   glmmTMB (1.1.5): fixef(fit)$disp are coefficients of log sigma2 (checked in the
#     homoskedastic sim_occasion ML fit against sigma(fit); stored in
#     meta$glmmTMB_disp_scale).  theta = log SD of the random intercept.
#     SEs: delta method on the (theta, disp) block of vcov(fit, full = TRUE) (the
#     inverse joint observed information; under REML the fixed effects are
#     integrated out, so the block is that of the REML information):
#       tau2 = exp(2 theta), se = 2 tau2 se(theta);
#       sigma2_k = exp(d_k), se = exp(d_k) se(d_k)   (from the ~ 0 + factor() fit).
#     Every glmmTMB fit is polished by Newton steps on TMB's gradient and refitted
#     from the polished values (as in r_reference.R); the script stops unless
#     max |gradient| < 1e-8.
#   nlme (lme): varIdent(form = ~ 1 | occ) has as reference the level of occ met
#     FIRST in the data as lme orders it (rows sorted by the grouping factor id,
#     whose levels are in order of appearance); here that is occ 1 (the first row of
#     id 1), recorded in "varIdent_reference_level" and verified from the names of
#     coef(varStruct).  coef(varStruct, unconstrained = FALSE) = SD ratios r_k =
#     sd(k) / sd(reference), unconstrained = log r_k.
#     log sigma2_k = 2 lSigma + 2 log r_k (log r_ref = 0), linear in
#     p = (varStruct.*, lSigma): logsigma2 = L p, stored as "logsigma2_map".
#     SEs from apVar (inverse numerical Hessian of the profiled log-likelihood in
#     (reStruct.id = log SD of the random intercept, varStruct.*, lSigma)), computed
#     with .relStep = 1e-4 as in r_reference.R ("apVar_control").
#       tau2 = exp(2 reStruct.id), sigma2_k = exp(L p), delta method.
#     For HSB the reference level is female == 1 (the first student is female).
#   lme4 (lmer, homoskedastic only): no SEs for variance parameters (lme4 gives
#     none); tau2 and sigma2 from VarCorr / sigma.
#
# HSB additive (identity-link) parameterisation
#   var(Residual) = sigma2_female,  var(male) = sigma2_male - sigma2_female, i.e.
#   Var(e_ij) = var(Residual) + male_ij var(male).  From the ~ 0 + factor(female) fit
#   (d_male = log sigma2_male, d_female = log sigma2_female, joint vcov V_d):
#     gradient of var(male) w.r.t. (d_male, d_female) = (sigma2_male, -sigma2_female),
#     se(var(male)) = sqrt(g' V_d g).
#   "additive$vcov" is the joint delta-method vcov of (tau2, var(Residual), var(male))
#   from the (theta, d_male, d_female) block of vcov(fit, full = TRUE).
# ---------------------------------------------------------------------------------

t_start <- Sys.time()
here <- local({       # directory of this script (Rscript --file=...), else getwd()
  f <- sub("^--file=", "", grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE))
  if (length(f) == 1) dirname(normalizePath(f)) else getwd()
})
source(file.path(here, "r_common.R"))   # packages, root/datadir/hsbfile, shared helpers
occfile <- file.path(datadir, "sim_occasion.csv")
outfile <- file.path(here, "r_reference_occasion.json")
LLF_TOL <- 1e-6       # nlme vs glmmTMB llf agreement required
GRAD_TOL <- 1e-8      # glmmTMB max |gradient| required after polishing

# ------------------------------------------------------------------- helpers
# (X' V^-1 X)^-1 for a random-intercept model, V_i = tau2 J + diag(s2_i)
gls_vcov <- function(X, grp, tau2, s2) {
  A <- matrix(0, ncol(X), ncol(X))
  for (idx in split(seq_len(nrow(X)), grp)) {
    Xi <- X[idx, , drop = FALSE]
    Vi <- tau2 + diag(s2[idx], length(idx))
    A <- A + crossprod(Xi, solve(Vi, Xi))
  }
  S <- solve(A); dimnames(S) <- list(colnames(X), colnames(X))
  S
}

# joint delta-method vcov of (tau2, sigma2_*) from the block (re, p) of V, where
# tau2 = exp(2 re) and log sigma2 = L p (sigma2 = s2)
tau2_sigma2_vcov <- function(tau2, s2, L, V, re, p) {
  J <- matrix(0, 1 + length(s2), 1 + length(p),
              dimnames = list(c("tau2", names(s2)), c(re, p)))
  J[1, 1] <- 2 * tau2
  J[-1, -1] <- diag(s2, length(s2)) %*% L
  J %*% V[c(re, p), c(re, p)] %*% t(J)
}

# log-linear coefficients with intercept from log sigma2 per level (ls2, vcov Vl):
# a = (logsigma2_1, logsigma2_k - logsigma2_1); fields a, a_se, a_vcov
cells_to_a <- function(ls2, Vl, keys) {
  A <- cbind(1, diag(length(keys))[, -1, drop = FALSE])   # logsigma2 = A a
  Ainv <- solve(A)
  an <- c("(Intercept)", unname(keys)[-1])
  a <- drop(Ainv %*% ls2); names(a) <- an
  Va <- Ainv %*% Vl %*% t(Ainv); dimnames(Va) <- list(an, an)
  est_fields("a", a, Va)
}

# ------------------------------------------------------------------- data
occ <- read.csv(occfile)
stopifnot(nrow(occ) == 600, identical(sort(unique(occ$occ)), 1:5),
          all(table(occ$id) == 5), all(occ$time == occ$occ - 1))
occ$id <- factor(occ$id, levels = unique(occ$id))
occ_levels <- as.character(1:5)
hsb <- read_hsb()

# ------------------------------------------------------------------- nlme
# spec: list(fixed, random, grp, weights_var (NULL = homoskedastic), keys (named
#       chr: level -> output key, in output order))
fit_nlme_once <- function(spec, dat, method, ctl) {
  a <- list(fixed = spec$fixed, random = spec$random, data = dat,
            method = method, control = ctl)
  if (!is.null(spec$wvar))
    a$weights <- varIdent(form = as.formula(paste("~ 1 |", spec$wvar)))
  do.call(lme, a)
}

fit_nlme <- function(spec, dat, method) {
  fit_once <- function(ctl) fit_nlme_once(spec, dat, method, ctl)
  nb <- nlme_best_fit(fit_once)
  if (is.null(nb$fit)) stop("nlme failed: ", paste(unlist(nb$errs), collapse = "; "))
  # apVar with .relStep = 1e-4 (see nlme_refit_apvar in r_common.R: nlme's default
  # step is inaccurate for large |llf|); estimates must be unchanged
  ap <- nlme_refit_apvar(nb, fit_once)
  fit <- ap$fit; apctl <- ap$control; apVar_default <- ap$apVar_default
  if (is.na(apctl)) stop("nlme apVar not available: ", apVar_default)
  ll <- logLik(fit)
  keys <- spec$keys                                    # level -> key
  lev <- names(keys)
  out <- list(converged = TRUE, optimizer = nb$best, llf = as.numeric(ll),
              llf_by_optimizer = vec(nb$llfs),
              optimizer_errors = if (length(nb$errs)) nb$errs else NULL,
              df = as.integer(attr(ll, "df")), nobs = as.integer(attr(ll, "nobs")),
              fixef = vec(fixef(fit)), vcov_fixef = mat(vcov(fit)),
              sigma = fit$sigma)
  # check the (X'V^-1X)^-1 helper against nlme's vcov
  vs <- fit$modelStruct$varStruct
  X <- model.matrix(spec$fixed, dat)
  tau2 <- as.numeric(getVarCov(fit))
  if (!is.null(vs)) {
    cc <- coef(vs, unconstrained = FALSE)               # SD ratios, non-reference levels
    ref <- setdiff(lev, names(cc))
    stopifnot(length(ref) == 1, all(names(cc) %in% lev))
    ratio <- setNames(rep(1, length(lev)), lev); ratio[names(cc)] <- cc
    s2_row <- unname((fit$sigma^2 * ratio^2)[as.character(dat[[spec$wvar]])])
    # verify against the per-row SDs implied by the fit (pearson residuals)
    rr <- residuals(fit, type = "response", level = 1)
    rp <- residuals(fit, type = "pearson", level = 1)
    ok <- abs(rr) > 1e-6
    err <- max(abs(log((rr[ok] / rp[ok])^2) - log(s2_row[ok])))
    stopifnot(err < 1e-6)
    out$sigma2_check_max_abs_log_err <- err
    out$varIdent_reference_level <- ref
    out$varIdent_first_level_in_data <- as.character(dat[[spec$wvar]][1])
    out$varIdent_coef <- vec(cc)
    out$varIdent_coef_unconstrained <- vec(coef(vs, unconstrained = TRUE))
  } else {
    s2_row <- rep(fit$sigma^2, nrow(dat))
  }
  Vg <- gls_vcov(X, dat[[spec$grp]], tau2, s2_row)
  dv <- max(abs(Vg - vcov(fit)) / abs(vcov(fit)))
  stopifnot(dv < 1e-8)
  out$vcov_fixef_formula_check_max_rel_err <- dv
  # apVar and delta method
  V <- fit$apVar
  P <- attr(V, "Pars")
  V <- apvar_matrix(V)
  out$apVar <- mat(V); out$apVar_Pars <- vec(P); out$apVar_control <- apctl
  out$apVar_default <- if (is.character(apVar_default)) apVar_default else
    mat(apvar_matrix(apVar_default))
  re_name <- grep("^reStruct", names(P), value = TRUE)
  stopifnot(length(re_name) == 1, abs(exp(2 * P[[re_name]]) - tau2) < 1e-8 * tau2)
  # apVar names of the unconstrained varIdent coefficients: "varStruct" (one),
  # "varStruct1", "varStruct2", ... (several; coef(vs) is unnamed), in the order of
  # coef(vs, unconstrained = FALSE), whose names are the levels
  vs_lev <- if (is.null(vs)) character(0) else names(coef(vs, unconstrained = FALSE))
  vsn <- if (is.null(vs)) character(0) else
    if (length(coef(vs)) == 1) "varStruct" else
      if (!is.null(names(coef(vs)))) paste0("varStruct.", names(coef(vs))) else
        paste0("varStruct", seq_along(coef(vs)))
  pn <- c(vsn, "lSigma")
  stopifnot(all(pn %in% names(P)))
  if (!is.null(vs)) stopifnot(max(abs(P[vsn] - coef(vs))) < 1e-8,
                              max(abs(log(coef(vs, unconstrained = FALSE)) - coef(vs))) < 1e-12)
  # logsigma2 = L p, p = (varStruct.*, lSigma)
  L <- matrix(0, length(lev), length(pn), dimnames = list(unname(keys), pn))
  L[, "lSigma"] <- 2
  if (!is.null(vs)) for (j in seq_along(vsn)) {
    L[keys[[vs_lev[j]]], vsn[j]] <- 2
  }
  ls2 <- drop(L %*% P[pn])
  stopifnot(max(abs(exp(ls2) - s2_lev_or(fit, vs, lev, keys))) < 1e-8 * max(exp(ls2)))
  Vl <- L %*% V[pn, pn, drop = FALSE] %*% t(L)
  out <- c(out, est_fields("logsigma2", ls2, Vl))
  out$logsigma2_map <- mat(L)
  s2 <- exp(ls2)
  out <- c(out, est_fields("sigma2", s2, exp_vcov(s2, Vl)))
  # joint natural-scale vcov of (tau2, sigma2_*): Jacobian wrt (reStruct, p)
  Vn <- tau2_sigma2_vcov(tau2, s2, L, V, re_name, pn)
  out$tau2 <- tau2; out$tau2_se <- sqrt(Vn[1, 1])
  out$var_params_vcov <- mat(Vn)
  if (length(lev) > 1) out <- c(out, cells_to_a(ls2, Vl, keys))
  out
}
# residual variances by level from the nlme fit (for a consistency check)
s2_lev_or <- function(fit, vs, lev, keys) {
  ratio <- setNames(rep(1, length(lev)), lev)
  if (!is.null(vs)) { cc <- coef(vs, unconstrained = FALSE); ratio[names(cc)] <- cc }
  unname(fit$sigma^2 * ratio^2)
}

# ------------------------------------------------------------------- glmmTMB
glmmTMB_disp_scale <- NA_character_

# the shared optimiser/polish loop, with the acceptance checks of this script
fit_tmb_checked <- function(form, disp, dat, method) {
  pr <- tmb_fit_polished(form, disp, dat, method, accept_grad = GRAD_TOL,
                         polish_grad = GRAD_TOL)
  if (is.null(pr$fit)) stop("glmmTMB failed: ", paste(unlist(pr$errs), collapse = "; "))
  fit <- pr$fit
  mg <- max(abs(fit$sdr$gradient.fixed))
  if (!(mg < GRAD_TOL)) stop(sprintf("glmmTMB max |gradient| %.3e >= %g", mg, GRAD_TOL))
  stopifnot(fit$fit$convergence == 0, isTRUE(fit$sdr$pdHess))
  pr
}

# spec: fixed, tmb_re, grp, disp (formula), disp_kind ("cell", "ref", "hom"),
#       wvar, keys (level -> key)
fit_tmb <- function(spec, dat, method) {
  pr <- fit_tmb_checked(re_formula(spec), spec$disp, dat, method)
  fit <- pr$fit
  out <- c(tmb_fit_info(pr),
           list(dispformula = deparse(spec$disp), fixef = vec(fixef(fit)$cond)))
  Vf <- vcov(fit, full = TRUE)
  dn <- grep("^(d~|disp$)", colnames(Vf), value = TRUE)
  thn <- grep("^theta", colnames(Vf), value = TRUE)
  d <- fixef(fit)$disp
  stopifnot(length(dn) == length(d), length(thn) == 1)
  th <- unname(fit$fit$par[names(fit$fit$par) == "theta"])
  tau2 <- exp(2 * th)
  vc <- unclass(VarCorr(fit)$cond[[1]])
  stopifnot(abs(vc[1, 1] - tau2) < 1e-10 * tau2)
  fac <- if (identical(glmmTMB_disp_scale, "log_sigma")) 2 else 1   # -> log sigma2
  keys <- spec$keys; lev <- names(keys)
  out$disp_names <- I(names(d))
  out$disp <- vec(d)
  out$disp_se <- vec(setNames(sqrt(diag(Vf[dn, dn, drop = FALSE])), names(d)))
  out$vcov_full <- mat(Vf)
  out$theta <- unname(th)
  out$theta_se <- sqrt(Vf[thn, thn])
  # log sigma2 per level = Lmap %*% d (design rows of the dispersion model)
  lev_df <- dat[match(lev, as.character(dat[[spec$wvar]])), , drop = FALSE]
  Xd <- model.matrix(spec$disp, lev_df)
  stopifnot(ncol(Xd) == length(d))
  Lmap <- fac * Xd; dimnames(Lmap) <- list(unname(keys), names(d))
  ls2 <- drop(Lmap %*% d); names(ls2) <- unname(keys)
  Vd <- Vf[dn, dn, drop = FALSE]; dimnames(Vd) <- list(names(d), names(d))
  Vl <- Lmap %*% Vd %*% t(Lmap)
  # check against the per-row dispersion reported by glmmTMB
  s2_row <- if (spec$disp_kind == "hom") rep(exp(ls2[[1]]), nrow(dat)) else
    unname(exp(ls2)[keys[as.character(dat[[spec$wvar]])]])
  stopifnot(all(is.finite(s2_row)))
  if (spec$disp_kind == "hom" && !is.na(glmmTMB_disp_scale))
    stopifnot(abs(sigma(fit)^2 - exp(ls2[1])) < 1e-10 * exp(ls2[1]))
  X <- model.matrix(spec$fixed, dat)
  out$vcov_fixef <- mat(gls_vcov(X, dat[[spec$grp]], tau2, s2_row))
  out$vcov_fixef_tmb <- mat(vcov(fit)$cond)
  out$tau2 <- tau2; out$tau2_se <- 2 * tau2 * out$theta_se
  s2 <- exp(ls2)
  out <- c(out, est_fields("logsigma2", ls2, Vl),
           est_fields("sigma2", s2, exp_vcov(s2, Vl)))
  # joint natural-scale vcov of (tau2, sigma2_*)
  out$var_params_vcov <- mat(tau2_sigma2_vcov(tau2, s2, Lmap, Vf, thn, dn))
  if (spec$disp_kind == "ref") {
    an <- c("(Intercept)", unname(keys)[-1])
    stopifnot(length(d) == length(an))
    a <- fac * d; names(a) <- an
    Va <- fac^2 * Vd; dimnames(Va) <- list(an, an)
    out <- c(out, est_fields("a", a, Va))
  }
  if (spec$disp_kind == "cell") {
    out$d <- vec(setNames(fac * d, unname(keys)))
    out$d_se <- vec(setNames(fac * sqrt(diag(Vd)), unname(keys)))
    # a from the cell fit (same model): a = (d_1, d_k - d_1)
    out <- c(out, cells_to_a(ls2, Vl, keys))
  }
  out$fit_object <- fit      # removed before writing
  out
}

# ------------------------------------------------------------------- lme4
fit_lme4 <- function(spec, dat, method) {
  fit <- fit_lmer(spec, dat, method)
  ll <- logLik(fit)
  msgs <- fit@optinfo$conv$lme4$messages
  tau2 <- as.numeric(VarCorr(fit)[[1]][1, 1])
  s2 <- sigma(fit)^2
  X <- model.matrix(spec$fixed, dat)
  list(converged = is.null(msgs), messages = msgs, optimizer = "bobyqa",
       llf = as.numeric(ll), df = as.integer(attr(ll, "df")),
       nobs = as.integer(nobs(fit)), fixef = vec(fixef(fit)),
       vcov_fixef = mat(gls_vcov(X, dat[[spec$grp]], tau2, rep(s2, nrow(dat)))),
       vcov_fixef_lme4 = mat(as.matrix(vcov(fit))),
       tau2 = tau2, tau2_se = NULL, sigma2 = list(all = s2), sigma2_se = NULL,
       theta = vec(getME(fit, "theta")))
}

# ------------------------------------------------------------------- specs
occ_keys <- setNames(paste0("occ", occ_levels), occ_levels)
base_occ <- list(fixed = y ~ time + x, random = ~ 1 | id, tmb_re = "(1 | id)",
                 grp = "id", wvar = "occ")
spec_occ_nlme <- c(base_occ, list(keys = occ_keys))
spec_occ_nlme_hom <- c(base_occ[names(base_occ) != "wvar"],
                       list(wvar = NULL, keys = c("1" = "all")))
spec_occ_cell <- c(base_occ, list(disp = ~ 0 + factor(occ), disp_kind = "cell", keys = occ_keys))
spec_occ_ref <- c(base_occ, list(disp = ~ factor(occ), disp_kind = "ref", keys = occ_keys))
spec_occ_hom <- c(base_occ, list(disp = ~ 1, disp_kind = "hom", keys = c("1" = "all")))

hsb_keys <- c("0" = "male", "1" = "female")
base_hsb <- list(fixed = mathach ~ female, random = ~ 1 | school,
                 tmb_re = "(1 | school)", grp = "school", wvar = "female")
spec_hsb_nlme <- c(base_hsb, list(keys = hsb_keys))
spec_hsb_cell <- c(base_hsb, list(disp = ~ 0 + factor(female), disp_kind = "cell",
                                  keys = hsb_keys))

# ------------------------------------------------------------------- run: sim_occasion
res <- list()
agree <- list()
res$sim_occasion <- list(
  description = paste("sim_occasion.csv: y ~ time + x, random intercept by id,",
                      "one residual variance per occasion occ = 1..5"),
  data = "sim_occasion", nobs = nrow(occ), n_groups = nlevels(occ$id),
  mean_formula = "y ~ time + x", random = "(1 | id)",
  occ_levels = I(occ_levels),
  simulation_truth = list(beta = list("(Intercept)" = 10, time = 0.8, x = 0.5),
                          tau2 = 2.0,
                          sigma2 = list(occ1 = 4.0, occ2 = 1.0, occ3 = 2.5,
                                        occ4 = 6.0, occ5 = 1.5)))
for (method in c("ML", "REML")) {
  t0 <- Sys.time()
  r <- list()
  # homoskedastic glmmTMB first (sets the dispersion scale)
  hom_tmb <- fit_tmb(spec_occ_hom, occ, method)
  if (method == "ML") {
    glmmTMB_disp_scale <- tmb_disp_scale(hom_tmb$fit_object)
    if (glmmTMB_disp_scale == "log_sigma") hom_tmb <- fit_tmb(spec_occ_hom, occ, method)
  }
  hom_tmb$fit_object <- NULL
  r$nlme <- fit_nlme(spec_occ_nlme, occ, method)
  r$glmmTMB_cell <- fit_tmb(spec_occ_cell, occ, method)
  r$glmmTMB_ref <- fit_tmb(spec_occ_ref, occ, method)
  r$glmmTMB_cell$fit_object <- NULL; r$glmmTMB_ref$fit_object <- NULL
  hom_nlme <- fit_nlme(spec_occ_nlme_hom, occ, method)
  hom_lme4 <- fit_lme4(spec_occ_hom, occ, method)
  r$hom <- list(nlme = hom_nlme, lme4 = hom_lme4, glmmTMB = hom_tmb)
  lr <- 2 * (r$nlme$llf - hom_nlme$llf)
  r$lr_test <- list(statistic = lr, df = 4L,
                    pvalue = pchisq(lr, df = 4, lower.tail = FALSE),
                    llf_het = r$nlme$llf, llf_hom = hom_nlme$llf,
                    statistic_glmmTMB = 2 * (r$glmmTMB_cell$llf - hom_tmb$llf),
                    source = "nlme (varIdent vs homoskedastic)")
  # agreement
  s2n <- unlist(r$nlme$sigma2); s2c <- unlist(r$glmmTMB_cell$sigma2)
  s2r <- unlist(r$glmmTMB_ref$sigma2)
  ag <- list(
    llf_nlme_minus_glmmTMB_cell = r$nlme$llf - r$glmmTMB_cell$llf,
    llf_nlme_minus_glmmTMB_ref = r$nlme$llf - r$glmmTMB_ref$llf,
    llf_glmmTMB_cell_minus_ref = r$glmmTMB_cell$llf - r$glmmTMB_ref$llf,
    llf_hom_nlme_minus_lme4 = hom_nlme$llf - hom_lme4$llf,
    llf_hom_nlme_minus_glmmTMB = hom_nlme$llf - hom_tmb$llf,
    fixef_max_abs_diff_nlme_glmmTMB_cell =
      max(abs(unlist(r$nlme$fixef) - unlist(r$glmmTMB_cell$fixef))),
    sigma2_max_rel_diff_nlme_glmmTMB_cell = max(abs(s2n / s2c - 1)),
    sigma2_max_rel_diff_glmmTMB_ref_cell = max(abs(s2r / s2c - 1)),
    tau2_rel_diff_nlme_glmmTMB_cell = r$nlme$tau2 / r$glmmTMB_cell$tau2 - 1,
    sigma2_se_max_rel_diff_nlme_glmmTMB_cell =
      max(abs(unlist(r$nlme$sigma2_se) / unlist(r$glmmTMB_cell$sigma2_se) - 1)),
    sigma2_se_max_rel_diff_glmmTMB_ref_cell =
      max(abs(unlist(r$glmmTMB_ref$sigma2_se) / unlist(r$glmmTMB_cell$sigma2_se) - 1)),
    tau2_se_rel_diff_nlme_glmmTMB_cell = r$nlme$tau2_se / r$glmmTMB_cell$tau2_se - 1,
    a_max_abs_diff_glmmTMB_ref_cell =
      max(abs(unlist(r$glmmTMB_ref$a) - unlist(r$glmmTMB_cell$a))),
    a_se_max_rel_diff_glmmTMB_ref_cell =
      max(abs(unlist(r$glmmTMB_ref$a_se) / unlist(r$glmmTMB_cell$a_se) - 1)),
    a_se_max_rel_diff_nlme_glmmTMB_ref =
      max(abs(unlist(r$nlme$a_se) / unlist(r$glmmTMB_ref$a_se) - 1)),
    vcov_fixef_max_rel_diff_nlme_glmmTMB_cell =
      max(abs(r$nlme$vcov_fixef$values / r$glmmTMB_cell$vcov_fixef$values - 1)))
  stopifnot(abs(ag$llf_nlme_minus_glmmTMB_cell) < LLF_TOL,
            abs(ag$llf_nlme_minus_glmmTMB_ref) < LLF_TOL,
            abs(ag$llf_glmmTMB_cell_minus_ref) < LLF_TOL,
            abs(ag$llf_hom_nlme_minus_lme4) < LLF_TOL,
            abs(ag$llf_hom_nlme_minus_glmmTMB) < LLF_TOL,
            r$nlme$varIdent_reference_level == "1")
  agree$sim_occasion[[method]] <- ag
  res$sim_occasion[[method]] <- r
  cat(sprintf("sim_occasion    %-4s done in %.1f s\n", method, elapsed(t0)))
}

# ------------------------------------------------------------------- run: HSB
ref_json <- file.path(here, "r_reference.json")
ref_prev <- if (file.exists(ref_json)) fromJSON(ref_json, simplifyVector = FALSE) else NULL
res$hsb_female_cell <- list(
  description = paste("HSB: mathach ~ female, random intercept by school, residual",
                      "variance per sex (cell means: log sigma2 ~ 0 + factor(female));",
                      "reference for the additive parameterisation",
                      "var(Residual) = sigma2_female, var(male) = sigma2_male - sigma2_female"),
  data = "hsb", nobs = nrow(hsb), n_groups = nlevels(hsb$school),
  mean_formula = "mathach ~ female", random = "(1 | school)",
  levels = list(male = "female == 0", female = "female == 1"))
for (method in c("ML", "REML")) {
  t0 <- Sys.time()
  r <- list()
  tm <- fit_tmb(spec_hsb_cell, hsb, method)
  tm$fit_object <- NULL
  # additive (identity-link) parameterisation
  dd <- unlist(tm$d); Vd <- matrix(tm$vcov_full$values, nrow(tm$vcov_full$values))
  dimnames(Vd) <- list(tm$vcov_full$rownames, tm$vcov_full$colnames)
  dn <- grep("^(d~|disp$)", colnames(Vd), value = TRUE)
  thn <- grep("^theta", colnames(Vd), value = TRUE)
  stopifnot(length(dn) == 2, identical(as.character(tm$disp_names),
                                       c("factor(female)0", "factor(female)1")))
  s2m <- exp(dd[["male"]]); s2f <- exp(dd[["female"]])
  g <- c(s2m, -s2f)
  Vdd <- Vd[dn, dn]
  se_vm <- sqrt(drop(t(g) %*% Vdd %*% g))
  J <- rbind(tau2 = c(2 * tm$tau2, 0, 0),
             "var(Residual)" = c(0, 0, s2f),
             "var(male)" = c(0, s2m, -s2f))
  colnames(J) <- c(thn, dn)
  Vadd <- J %*% Vd[c(thn, dn), c(thn, dn)] %*% t(J)
  stopifnot(abs(sqrt(Vadd[3, 3]) - se_vm) < 1e-12 * se_vm,
            abs(sqrt(Vadd[2, 2]) - tm$sigma2_se$female) < 1e-12 * s2f)
  tm$additive <- list(
    description = "Var(e) = var(Residual) + male * var(male); identity link",
    names = I(c("var(Residual)", "var(male)")),
    est = list("var(Residual)" = s2f, "var(male)" = s2m - s2f),
    se = list("var(Residual)" = tm$sigma2_se$female, "var(male)" = se_vm),
    vcov = mat(Vadd),
    vcov_names = I(rownames(Vadd)))
  r$glmmTMB_cell <- tm
  r$nlme <- fit_nlme(spec_hsb_nlme, hsb, method)
  ag <- list(
    llf_nlme_minus_glmmTMB_cell = r$nlme$llf - tm$llf,
    nlme_varIdent_reference_level = r$nlme$varIdent_reference_level,
    sigma2_max_rel_diff_nlme_glmmTMB_cell =
      max(abs(unlist(r$nlme$sigma2) / unlist(tm$sigma2) - 1)),
    sigma2_se_max_rel_diff_nlme_glmmTMB_cell =
      max(abs(unlist(r$nlme$sigma2_se) / unlist(tm$sigma2_se) - 1)),
    tau2_se_rel_diff_nlme_glmmTMB_cell = r$nlme$tau2_se / tm$tau2_se - 1)
  if (!is.null(ref_prev)) {
    prev <- ref_prev$cases$hsb_female[[method]]$glmmTMB$llf
    ag$llf_glmmTMB_cell_minus_r_reference_hsb_female <- tm$llf - prev
    stopifnot(abs(tm$llf - prev) < LLF_TOL)
  }
  stopifnot(abs(ag$llf_nlme_minus_glmmTMB_cell) < LLF_TOL,
            r$nlme$varIdent_reference_level == "1")
  agree$hsb_female_cell[[method]] <- ag
  res$hsb_female_cell[[method]] <- r
  cat(sprintf("hsb_female_cell %-4s done in %.1f s\n", method, elapsed(t0)))
}

# ------------------------------------------------------------------- write
meta <- c(meta_header(), list(
  glmmTMB_disp_scale = glmmTMB_disp_scale,
  data_files = list(sim_occasion = "tests/results/data/sim_occasion.csv",
                    hsb = "statsmodels_hetmixed/datasets/hsb/hsb.csv"),
  data_md5 = list(sim_occasion = unname(tools::md5sum(occfile)),
                  hsb = unname(tools::md5sum(hsbfile))),
  notes = c(
    "llf for REML fits is the REML log-likelihood as each package reports it.",
    "vcov_fixef = (X'V^-1X)^-1 at each fit's estimates (nlme: vcov(fit); others computed with the same formula, checked against nlme); glmmTMB's own vcov(fit)$cond is vcov_fixef_tmb.",
    "sigma2 keys occ1..occ5 (sim_occasion) or male/female (HSB); glmmTMB SEs by the delta method from vcov(fit, full = TRUE); nlme SEs by the delta method from apVar (.relStep = 1e-4).",
    "a: log-linear coefficients with intercept: (Intercept) = log sigma2 of level 1 (occ1), occK = log(sigma2_K / sigma2_1).",
    "nlme varIdent reference level = first level met in lme's (grouped) data order: occ 1 for sim_occasion, female == 1 for HSB (see varIdent_reference_level).",
    "lme4 gives no SEs for variance parameters (tau2_se, sigma2_se absent)."),
  agreement = agree,
  runtime_seconds = elapsed(t_start)))

write_reference_json(meta, res, outfile)

# ------------------------------------------------------------------- summary
fmt <- function(x, se) sprintf("%.6f (%.6f)", x, se)
for (method in c("ML", "REML")) {
  r <- res$sim_occasion[[method]]
  cat(sprintf("sim_occasion %s\n", method))
  for (pk in c("nlme", "glmmTMB_cell", "glmmTMB_ref")) {
    x <- r[[pk]]
    cat(sprintf("  %-13s llf %.8f  tau2 %s\n", pk, x$llf, fmt(x$tau2, x$tau2_se)))
    cat("                sigma2:", paste(sprintf("%s %s", names(x$sigma2),
        fmt(unlist(x$sigma2), unlist(x$sigma2_se))), collapse = "  "), "\n")
    cat("                a:     ", paste(sprintf("%s %s", names(x$a),
        fmt(unlist(x$a), unlist(x$a_se))), collapse = "  "), "\n")
  }
  cat(sprintf("  hom: nlme llf %.8f  lme4 %.8f  glmmTMB %.8f;  LR = %.4f (df 4, p = %.3g)\n",
              r$hom$nlme$llf, r$hom$lme4$llf, r$hom$glmmTMB$llf,
              r$lr_test$statistic, r$lr_test$pvalue))
}
for (method in c("ML", "REML")) {
  x <- res$hsb_female_cell[[method]]$glmmTMB_cell
  cat(sprintf("hsb_female_cell %s  llf %.8f  tau2 %s\n", method, x$llf,
              fmt(x$tau2, x$tau2_se)))
  cat("   sigma2:", paste(sprintf("%s %s", names(x$sigma2),
      fmt(unlist(x$sigma2), unlist(x$sigma2_se))), collapse = "  "),
      "  var(male) =", fmt(x$additive$est[["var(male)"]], x$additive$se[["var(male)"]]), "\n")
}
cat("\nagreement:\n")
str(agree, digits.d = 3, give.head = FALSE)
cat(sprintf("\ntotal run time %.1f s\n", meta$runtime_seconds))
