# nlme's normalized residuals and conditional residual covariance of two stored
# correlation fits (r_correlation.R), refitted here with the calls stored in
# r_correlation.json, so that the residuals of the correlation structures can be
# checked without rerunning r_correlation.R (which rewrites its JSON).
#
#   residuals(fit, type = "normalized")   L_i^-1 (Pearson residuals of group i),
#                                         C_i = L_i L_i' (lower Cholesky), rows of
#                                         each group in the data's order (sorted
#                                         by time in these CSVs)
#   residuals(fit, type = "pearson")      (y - fitted) / sigma_ij
#   getVarCov(fit, individual = g, type = "conditional")   R_i = S_i C_i S_i
#
# Output: r_normalized.json.  Run: Rscript r_normalized.R (a few seconds).
suppressPackageStartupMessages({library(nlme); library(jsonlite)})
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
refs <- fromJSON(file.path(here, "r_correlation.json"), simplifyVector = FALSE)$fits

cases <- list(
  list(key = "orthodont/lme_ri/ar1/ident_occ/REML", group = "M01"),
  list(key = "sleepgaps/lme_ri/ar1/power_day1/ML", group = "S308"))

out <- list(meta = list(R = R.version.string,
                        nlme = as.character(packageVersion("nlme")),
                        source = "r_normalized.R"),
            fits = list())
for (cs in cases) {
  ref <- refs[[cs$key]]
  d <- read.csv(file.path(here, ref$spec$file), stringsAsFactors = TRUE)
  if ("occ" %in% names(d)) d$occf <- factor(d$occ)
  fit <- eval(parse(text = ref$call))
  stopifnot(abs(as.numeric(logLik(fit)) - ref$logLik) < 1e-6 * abs(ref$logLik))
  R <- getVarCov(fit, individual = cs$group, type = "conditional")[[1]]
  out$fits[[cs$key]] <- list(
    call = ref$call, logLik = as.numeric(logLik(fit)), group = cs$group,
    normalized = as.numeric(residuals(fit, type = "normalized")),
    pearson = as.numeric(residuals(fit, type = "pearson")),
    group_rows = which(as.character(d[[ref$spec$group]]) == cs$group),
    resid_cov = unname(lapply(seq_len(nrow(R)), function(i) as.numeric(R[i, ]))))
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(here, "r_normalized.json"))
