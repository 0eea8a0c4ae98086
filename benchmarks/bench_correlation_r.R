# Peer timings for the correlation benchmark (bench_correlation.py): nlme
# fits of the same models as ours, by ML, on the same data files.
#
# Usage:
#   Rscript benchmarks/bench_correlation_r.R AR1.csv [UN.csv] [WHICH]
#
# AR1.csv comes from make_data.make_ar1_data (columns grp, t, g, x, xg, y);
# UN.csv (columns grp, t, g, x, xg, y; t in 1..5) from the same function with
# 5 occasions.  WHICH is a comma-separated subset of
# nlme_ar1, nlme_indep, nlme_un (default all).
#
# Output: "INFO <R version> <nlme version> <BLAS>", then one tab-separated
# line per fit,
#   RESULT <peer> <model> <seconds> <llf> <converged> <note>
# with <seconds> the wall time from formula to fitted object (one run).

suppressPackageStartupMessages(library(nlme))

args <- commandArgs(trailingOnly = TRUE)
ar1_path <- args[1]
un_path <- if (length(args) >= 2 && nzchar(args[2])) args[2] else NA
which <- if (length(args) >= 3) strsplit(args[3], ",")[[1]] else
  c("nlme_ar1", "nlme_indep", "nlme_un")

si <- sessionInfo()
cat(sprintf("INFO\t%s\tnlme %s\tBLAS %s\n", R.version.string,
            as.character(packageVersion("nlme")), basename(si$BLAS)))

emit <- function(model, secs, llf, conv, note = "") {
  cat(sprintf("RESULT\tnlme\t%s\t%.4f\t%.8f\t%s\t%s\n", model, secs, llf,
              conv, gsub("[\t\n]", " ", note)))
  flush(stdout())
}

run <- function(model, fit_fun) {
  gc(verbose = FALSE)
  t0 <- proc.time()[["elapsed"]]
  fit <- tryCatch(fit_fun(), error = function(e) e)
  secs <- proc.time()[["elapsed"]] - t0
  if (inherits(fit, "error")) {
    emit(model, secs, NA, FALSE, conditionMessage(fit))
  } else {
    emit(model, secs, as.numeric(logLik(fit)), TRUE)
  }
}

# The log-linear variance function exp(a0 + a1 x + a2 g + a3 x g) of our
# fits is nlme's varComb(varExp(~x), varIdent(~1|g), varExp(~xg)).
het <- function() varComb(varExp(form = ~ x), varIdent(form = ~ 1 | g),
                          varExp(form = ~ xg))
ctrl <- lmeControl(maxIter = 200, msMaxIter = 200, returnObject = TRUE)

d <- read.csv(ar1_path)
d$grp <- factor(d$grp)
if ("nlme_ar1" %in% which) {
  run("ar1", function() lme(y ~ x + g, random = ~ 1 | grp, data = d,
                            method = "ML", weights = het(),
                            correlation = corAR1(form = ~ t | grp),
                            control = ctrl))
}
if ("nlme_indep" %in% which) {
  run("indep", function() lme(y ~ x + g, random = ~ 1 | grp, data = d,
                              method = "ML", weights = het(), control = ctrl))
}
if (!is.na(un_path) && "nlme_un" %in% which) {
  u <- read.csv(un_path)
  u$grp <- factor(u$grp)
  u$tf <- factor(u$t)
  # Stata's residuals(unstructured, t(t)): free correlations and one
  # variance per occasion, no random effect.
  run("unstructured", function() gls(
    y ~ x + g, data = u, method = "ML",
    correlation = corSymm(form = ~ t | grp),
    weights = varIdent(form = ~ 1 | tf),
    control = glsControl(maxIter = 200, msMaxIter = 200, returnObject = TRUE)))
}
