# Predicted random effects, fitted values and residuals from nlme, for
# tests/test_predictions.py.  Run from anywhere:  Rscript tests/results/r_ranef.R
# Writes tests/results/r_ranef.json.  Model: HSB, mathach ~ female, random
# intercept by school, varIdent(form = ~1 | female), ML -- the hsb_female case
# of r_reference.R, fitted the same way (the better of nlminb and optim).
here <- local({       # directory of this script (Rscript --file=...), else getwd()
  f <- sub("^--file=", "", grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE))
  if (length(f) == 1) dirname(normalizePath(f)) else getwd()
})
source(file.path(here, "r_common.R"))
d <- read_hsb()
nb <- nlme_best_fit(function(ctl)
  lme(mathach ~ female, random = ~ 1 | school, data = d, method = "ML",
      weights = varIdent(form = ~ 1 | female), control = ctl))
fit <- nb$fit
re <- ranef(fit)
rows <- c(1:5, 100, 2000, 7185)
out <- list(
  meta = list(R = R.version.string, nlme = as.character(packageVersion("nlme")),
              optimizer = nb$best, date = format(Sys.time(), tz = "UTC")),
  llf = as.numeric(logLik(fit)),
  ranef_school = as.numeric(as.character(rownames(re))),
  ranef = re[, 1],
  rows = rows,
  fitted = unname(fitted(fit)[rows]),
  resid_response = unname(residuals(fit, type = "response")[rows]),
  resid_pearson = unname(residuals(fit, type = "pearson")[rows]),
  resid_normalized = unname(residuals(fit, type = "normalized")[rows])
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(here, "r_ranef.json"))
cat("llf", format(out$llf, digits = 15), "optimizer", nb$best, "\n")
