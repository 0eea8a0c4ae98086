# Peer timings for the benchmarks: nlme and glmmTMB fits of the same
# heteroskedastic random-intercept models, by ML, on the same data files.
#
# Usage:
#   Rscript benchmarks/bench_r.R SIM.csv HSB.csv [REPEATS_HSB] [WHICH]
#
# SIM.csv comes from benchmarks/make_data.py (columns grp, g, x, xg, y);
# HSB.csv is statsmodels_hetmixed/datasets/hsb/hsb.csv.  WHICH is a
# comma-separated subset of nlme_sim,tmb_sim,nlme_hsb,tmb_hsb (default all).
#
# Output: a line "INFO <R version> <package versions> <BLAS> <LAPACK>", then
# one tab-separated line per fit,
#   RESULT <peer> <dataset> <seconds> <llf> <converged> <note>
# where <seconds> is wall time from formula to fitted object (median over
# REPEATS_HSB repeats for HSB; one run for the simulated data).

suppressPackageStartupMessages({
  library(nlme)
  have_tmb <- requireNamespace("glmmTMB", quietly = TRUE)
  if (have_tmb) library(glmmTMB)
})

args <- commandArgs(trailingOnly = TRUE)
sim_path <- if (length(args) >= 1) args[1] else "benchmarks/data_100000.csv"
hsb_path <- if (length(args) >= 2) args[2] else
  "statsmodels_hetmixed/datasets/hsb/hsb.csv"
reps_hsb <- if (length(args) >= 3) as.integer(args[3]) else 5L
which <- if (length(args) >= 4) strsplit(args[4], ",")[[1]] else
  c("nlme_sim", "tmb_sim", "nlme_hsb", "tmb_hsb")

si <- sessionInfo()
cat(sprintf("INFO\t%s\tnlme %s\tglmmTMB %s\tBLAS %s\tLAPACK %s\n", R.version.string,
            as.character(packageVersion("nlme")),
            if (have_tmb) as.character(packageVersion("glmmTMB")) else "absent",
            basename(si$BLAS), basename(si$LAPACK)))

emit <- function(peer, dataset, secs, llf, conv, note = "") {
  cat(sprintf("RESULT\t%s\t%s\t%.4f\t%.6f\t%s\t%s\n", peer, dataset, secs,
              llf, conv, note))
  flush(stdout())
}

# Run fit_fun() `reps` times; return the median wall time and the last fit.
timed <- function(fit_fun, reps = 1L) {
  secs <- numeric(reps)
  fit <- NULL
  for (k in seq_len(reps)) {
    gc(verbose = FALSE)
    t0 <- proc.time()[["elapsed"]]
    fit <- fit_fun()
    secs[k] <- proc.time()[["elapsed"]] - t0
  }
  list(secs = median(secs), fit = fit)
}

run_nlme <- function(label, fit_fun, reps) {
  r <- tryCatch(timed(fit_fun, reps), error = function(e) e)
  if (inherits(r, "error")) {
    emit("nlme", label, NA, NA, FALSE, gsub("[\t\n]", " ", conditionMessage(r)))
  } else {
    # lme stops with an error when it does not converge.
    emit("nlme", label, r$secs, as.numeric(logLik(r$fit)), TRUE)
  }
}

run_tmb <- function(label, fit_fun, reps) {
  if (!have_tmb) {
    emit("glmmTMB", label, NA, NA, FALSE, "glmmTMB not installed")
    return(invisible())
  }
  r <- tryCatch(timed(fit_fun, reps), error = function(e) e)
  if (inherits(r, "error")) {
    emit("glmmTMB", label, NA, NA, FALSE,
         gsub("[\t\n]", " ", conditionMessage(r)))
  } else {
    conv <- r$fit$fit$convergence == 0 && isTRUE(r$fit$sdr$pdHess)
    emit("glmmTMB", label, r$secs, as.numeric(logLik(r$fit)), conv,
         gsub("[\t\n]", " ", r$fit$fit$message))
  }
}

if (any(c("nlme_sim", "tmb_sim") %in% which)) {
  sim <- read.csv(sim_path)
  sim$grp <- factor(sim$grp)
  label <- sprintf("sim%d", nrow(sim))
  if ("nlme_sim" %in% which) {
    run_nlme(label, function() lme(
      y ~ x + g, random = ~ 1 | grp, data = sim, method = "ML",
      weights = varComb(varExp(form = ~ x), varIdent(form = ~ 1 | g),
                        varExp(form = ~ xg))), 1L)
  }
  if ("tmb_sim" %in% which) {
    run_tmb(label, function() glmmTMB(
      y ~ x + g + (1 | grp), dispformula = ~ x + g + x:g, data = sim,
      REML = FALSE), 1L)
  }
}

if (any(c("nlme_hsb", "tmb_hsb") %in% which)) {
  hsb <- read.csv(hsb_path)
  hsb$school <- factor(hsb$school)
  if ("nlme_hsb" %in% which) {
    run_nlme("hsb", function() lme(
      mathach ~ female, random = ~ 1 | school, data = hsb, method = "ML",
      weights = varIdent(form = ~ 1 | female)), reps_hsb)
  }
  if ("tmb_hsb" %in% which) {
    run_tmb("hsb", function() glmmTMB(
      mathach ~ female + (1 | school), dispformula = ~ female, data = hsb,
      REML = FALSE), reps_hsb)
  }
}
