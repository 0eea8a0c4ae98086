# r_common.R -- helpers shared by r_reference.R and r_reference_occasion.R (JSON
# encoding, nlme / glmmTMB / lme4 fitting conventions, delta-method helpers).
# Not a script of its own: each reference script finds its own directory `here` and
# sources this file from there, so both run from any working directory:
#     here <- ...; source(file.path(here, "r_common.R"))
# Defines `root`, `datadir` and `hsbfile` from `here`; everything else is functions
# and constants.  The conventions are documented in the header of r_reference.R.

suppressPackageStartupMessages({
  library(nlme)
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

root <- normalizePath(file.path(here, "..", ".."))
datadir <- file.path(here, "data")
hsbfile <- file.path(root, "statsmodels_hetmixed", "datasets", "hsb", "hsb.csv")

read_hsb <- function() {
  hsb <- read.csv(hsbfile)
  hsb$school <- factor(hsb$school, levels = unique(hsb$school))
  stopifnot(nrow(hsb) == 7185)
  hsb
}

# ------------------------------------------------------------------- JSON helpers
# named vector -> JSON object {name: value}; unnamed -> JSON array
vec <- function(x) {
  if (is.null(x)) return(NULL)
  x <- unlist(x)
  nm <- names(x)
  if (is.null(nm)) return(as.numeric(x))
  out <- as.list(as.numeric(x))
  names(out) <- make.unique(nm)
  out
}
# matrix -> {"rownames": [...], "colnames": [...], "values": [[row1], ...]}
mat <- function(m) {
  m <- as.matrix(m)
  list(rownames = if (is.null(rownames(m))) NULL else I(rownames(m)),
       colnames = if (is.null(colnames(m))) NULL else I(colnames(m)),
       values = unname(matrix(as.numeric(m), nrow(m), ncol(m))))
}
# fields <prefix>, <prefix>_se, <prefix>_vcov of an estimate with covariance V
# (append to a result list with c(out, est_fields(...)))
est_fields <- function(prefix, est, V) {
  setNames(list(vec(est), vec(setNames(sqrt(diag(V)), names(est))), mat(V)),
           paste0(prefix, c("", "_se", "_vcov")))
}

# meta fields common to both JSON files (R and package versions, date, platform)
meta_header <- function() {
  list(
    R_version = R.version.string,
    packages = lapply(c(nlme = "nlme", lme4 = "lme4", glmmTMB = "glmmTMB",
                        TMB = "TMB", jsonlite = "jsonlite", Matrix = "Matrix"),
                      function(p) as.character(packageVersion(p))),
    date = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"),
    platform = R.version$platform)
}

write_reference_json <- function(meta, cases, outfile) {
  json <- toJSON(list(meta = meta, cases = cases), digits = NA, auto_unbox = TRUE,
                 null = "null", na = "null", pretty = TRUE)
  writeLines(json, outfile)
  cat("wrote", outfile, "\n\n")
}

elapsed <- function(t0) as.numeric(difftime(Sys.time(), t0, units = "secs"))

# ------------------------------------------------------------------- delta method
# numerical Jacobian (central differences)
jac <- function(fun, p, h = 1e-6) {
  f0 <- fun(p)
  J <- matrix(NA_real_, length(f0), length(p))
  for (k in seq_along(p)) {
    pp <- p; pm <- p
    pp[k] <- pp[k] + h; pm[k] <- pm[k] - h
    J[, k] <- (fun(pp) - fun(pm)) / (2 * h)
  }
  rownames(J) <- names(f0); colnames(J) <- names(p)
  J
}
# vcov of s = exp(x) from vcov(x) = Vx: diag(s) Vx diag(s)
exp_vcov <- function(s, Vx) {
  Vs <- diag(s, length(s)) %*% Vx %*% diag(s, length(s))
  dimnames(Vs) <- list(names(s), names(s))
  Vs
}

# ------------------------------------------------------------------- nlme
nlme_controls <- list(
  nlminb = lmeControl(maxIter = 500, msMaxIter = 500, msMaxEval = 2000,
                      tolerance = 1e-10, msTol = 1e-13, niterEM = 50),
  optim = lmeControl(maxIter = 500, msMaxIter = 500, msMaxEval = 2000,
                     tolerance = 1e-10, msTol = 1e-13, niterEM = 50,
                     opt = "optim", optimMethod = "BFGS")
)

# fit_once(ctl) with each of nlme_controls; the fit with the highest llf is "best"
# (best = NULL when every optimiser failed; errs has their messages)
nlme_best_fit <- function(fit_once) {
  fits <- list(); llfs <- c(); errs <- list()
  for (cn in names(nlme_controls)) {
    r <- tryCatch(fit_once(nlme_controls[[cn]]), error = function(e) e)
    if (inherits(r, "error")) { errs[[cn]] <- conditionMessage(r); next }
    fits[[cn]] <- r; llfs[cn] <- as.numeric(logLik(r))
  }
  best <- if (length(fits)) names(which.max(llfs)) else NULL
  list(fit = if (length(fits)) fits[[best]], best = best, llfs = llfs, errs = errs)
}

# apVar.  nlme's default finite-difference Hessian (fdHess on function values,
# .relStep = eps^(1/3)) is inaccurate for large log-likelihoods (HSB: |llf| ~ 2e4):
# SEs off by 1-2 %, and for hsb_slope by up to 50 % or not positive definite.
# We therefore refit (identical estimates: .relStep only affects apVar) with
# .relStep = 1e-4 (then 1e-3, 1e-5), which agrees with glmmTMB's AD-based Hessian to
# ~1e-4 relative, and use that for all standard errors ("apVar"); the default one is
# returned as apVar_default for the record.  control = "nlme default" when no refit
# gave an apVar; NA when the default apVar is not available either.
nlme_refit_apvar <- function(nb, fit_once) {
  fit <- nb$fit
  apVar_default <- fit$apVar
  apctl <- NA_character_
  for (rs in c(1e-4, 1e-3, 1e-5)) {
    ctl <- nlme_controls[[nb$best]]
    ctl$.relStep <- rs; ctl$minAbsParApVar <- 0.05
    r <- tryCatch(fit_once(ctl), error = function(e) e)
    if (!inherits(r, "error") && !is.character(r$apVar) &&
        abs(as.numeric(logLik(r)) - nb$llfs[[nb$best]]) < 1e-9 &&
        max(abs(fixef(r) - fixef(fit))) < 1e-9) {
      fit$apVar <- r$apVar
      apctl <- sprintf(".relStep=%g, minAbsParApVar=%g", rs, 0.05)
      break
    }
  }
  if (is.na(apctl) && !is.character(apVar_default)) apctl <- "nlme default"
  list(fit = fit, control = apctl, apVar_default = apVar_default)
}

# apVar as a plain matrix (without the "Pars" / "natural" attributes)
apvar_matrix <- function(V) unclass(V)[seq_len(nrow(V)), seq_len(ncol(V)), drop = FALSE]

# ------------------------------------------------------------------- glmmTMB
# mean formula with the random-effect terms, e.g. y ~ x + (1 | g)
re_formula <- function(spec) as.formula(paste(deparse(spec$fixed), "+", spec$tmb_re))

tmb_controls <- list(
  nlminb = glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4)),
  optim_BFGS = glmmTMBControl(optimizer = optim,
                              optArgs = list(method = "BFGS"),
                              optCtrl = list(maxit = 1e4, reltol = 1e-12)))

# Fit with nlminb (and with optim BFGS unless the nlminb fit converged with max
# |gradient| < accept_grad); each fit is polished: nlminb stops on relative function
# change, leaving parameter errors ~1e-6, so up to 3 rounds of Newton steps on TMB's
# gradient (while max |gradient| >= polish_grad), each followed by a refit from the
# polished values so that every glmmTMB accessor reports them.  Returns the fit with
# the highest llf (fit = NULL when all failed), llf by optimiser, the unpolished
# first pass of the best and the error messages.
tmb_fit_polished <- function(form, disp, dat, method, accept_grad,
                             polish_grad = 1e-8) {
  fits <- list(); llfs <- c(); errs <- list(); first <- list()
  for (cn in names(tmb_controls)) {
    r <- tryCatch(glmmTMB(form, dispformula = disp, data = dat,
                          REML = (method == "REML"), control = tmb_controls[[cn]]),
                  error = function(e) e)
    if (inherits(r, "error")) { errs[[cn]] <- conditionMessage(r); next }
    first[[cn]] <- list(llf = as.numeric(logLik(r)), code = r$fit$convergence,
                        message = r$fit$message,
                        max_abs_gradient = max(abs(r$sdr$gradient.fixed)))
    for (round in 1:3) {
      if (max(abs(r$sdr$gradient.fixed)) < polish_grad) break
      p <- r$fit$par
      for (i in 1:5) {
        g <- r$obj$gr(p)
        if (max(abs(g)) < 1e-10) break
        H <- optimHess(p, r$obj$fn, r$obj$gr)
        pn <- p - solve(H, drop(g))
        if (!all(is.finite(pn)) || r$obj$fn(pn) > r$obj$fn(p) + 1e-9) break
        p <- pn
      }
      r2 <- tryCatch(glmmTMB(form, dispformula = disp, data = dat,
                             REML = (method == "REML"), control = tmb_controls[[cn]],
                             start = split(unname(p), names(p))),
                     error = function(e) e)
      if (inherits(r2, "error") ||
          as.numeric(logLik(r2)) < as.numeric(logLik(r)) - 1e-9) break
      r <- r2
    }
    fits[[cn]] <- r; llfs[cn] <- as.numeric(logLik(r))
    # stop after nlminb if it converged cleanly
    if (cn == "nlminb" && r$fit$convergence == 0 && isTRUE(r$sdr$pdHess) &&
        max(abs(r$sdr$gradient.fixed)) < accept_grad) break
  }
  best <- if (length(fits)) names(which.max(llfs)) else NULL
  list(fit = if (length(fits)) fits[[best]], best = best, llfs = llfs,
       first = if (length(fits)) first[[best]], errs = errs)
}

# the fit block fields common to every glmmTMB result (pr from tmb_fit_polished)
tmb_fit_info <- function(pr) {
  fit <- pr$fit
  ll <- logLik(fit)
  list(
    converged = (fit$fit$convergence == 0) && isTRUE(fit$sdr$pdHess),
    convergence_code = fit$fit$convergence, convergence_message = fit$fit$message,
    pdHess = fit$sdr$pdHess, max_abs_gradient = max(abs(fit$sdr$gradient.fixed)),
    optimizer = pr$best, llf = as.numeric(ll), llf_by_optimizer = vec(pr$llfs),
    first_pass = pr$first,
    optimizer_errors = if (length(pr$errs)) pr$errs else NULL,
    df = as.integer(attr(ll, "df")), nobs = as.integer(nobs(fit)))
}

# scale of fixef(fit)$disp (log sigma2 in glmmTMB 1.1.5, log sigma from 1.1.9 on),
# from a homoskedastic fit
tmb_disp_scale <- function(fobj) {
  d0 <- fixef(fobj)$disp[[1]]; s <- sigma(fobj)
  if (abs(d0 - log(s^2)) < 1e-6) "log_sigma2" else
    if (abs(d0 - log(s)) < 1e-6) "log_sigma" else stop("unknown disp scale")
}

# ------------------------------------------------------------------- lme4
fit_lmer <- function(spec, dat, method) {
  lmer(re_formula(spec), data = dat, REML = (method == "REML"),
       control = lmerControl(optimizer = "bobyqa",
                             optCtrl = list(maxfun = 1e5, rhoend = 1e-12)))
}
