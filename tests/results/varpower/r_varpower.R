# r_varpower.R -- reference fits for nlme's varPower on a covariate (and on
# fitted values inside varComb) and varConstPower, with independent residuals.
# Reads the CSVs of ../correlation/ (written by r_correlation.R) and writes
# r_varpower.json next to this script.  Usage:
#     Rscript tests/results/varpower/r_varpower.R
# Keys "<data>/lme/<weights>/<method>"; each entry stores the exact call, a
# machine-readable spec (as r_correlation.json's; var$type "comb" lists its
# parts in order) and the estimates.  Definitions: ../correlation/README.md.
suppressPackageStartupMessages({ library(nlme); library(jsonlite) })
args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
cdir <- file.path(here, "..", "correlation")
files <- list(orthodont = "orthodont.csv", bodyweight = "bodyweight.csv",
              sleepgaps = "sleepstudy_gaps.csv")
DATA <- lapply(files, function(f) read.csv(file.path(cdir, f), stringsAsFactors = TRUE))
GROUP <- list(orthodont = "Subject", bodyweight = "Rat", sleepgaps = "Subject")
FIXED <- list(orthodont = "distance ~ age + Sex", bodyweight = "weight ~ Time * Diet",
              sleepgaps = "Reaction ~ Days")
RE <- list(orthodont = list(lme_ri = NULL), bodyweight = list(lme_rs = "Time"),
           sleepgaps = list(lme_rs = "Days", lme_ri = NULL))
CTRL <- "lmeControl(maxIter = 500, msMaxIter = 500, msMaxEval = 2000, niterEM = 50, tolerance = 1e-10, msTol = 1e-12, returnObject = TRUE)"

vec <- function(x) { out <- as.list(as.numeric(x)); names(out) <- make.unique(names(x)); out }
mat <- function(m) { m <- as.matrix(m)
  list(rownames = I(rownames(m)), values = unname(lapply(seq_len(nrow(m)), function(i) as.numeric(m[i, ])))) }
one_call <- function(v) switch(v$type,
  ident = sprintf("varIdent(form = ~ 1 | %s)", v$strata),
  exp = sprintf("varExp(form = ~ %s)", v$covariate),
  power = sprintf("varPower(form = ~ %s)", if (v$covariate == "fitted") "fitted(.)" else v$covariate),
  constpower = sprintf("varConstPower(form = ~ %s)", if (v$covariate == "fitted") "fitted(.)" else v$covariate))
var_call <- function(v) if (v$type == "comb")
  sprintf("varComb(%s)", paste(sapply(v$parts, one_call), collapse = ", ")) else one_call(v)

fit <- function(data, re_label, v, label, method) {
  d <- DATA[[data]]
  re <- RE[[data]][[re_label]]
  random <- sprintf("~ %s | %s", if (is.null(re)) "1" else re, GROUP[[data]])
  cl <- sprintf("lme(fixed = %s, random = %s, data = d, method = \"%s\", weights = %s, control = %s)",
                FIXED[[data]], random, method, var_call(v), CTRL)
  warn <- character(0)
  m <- tryCatch(withCallingHandlers(eval(parse(text = cl)), warning = function(w) {
    warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning") }), error = function(e) e)
  spec <- list(data = data, file = files[[data]], engine = "lme", fixed = FIXED[[data]],
               group = GROUP[[data]], cor = NULL, var = v, weights = label,
               re_terms = re, random_call = random, structure = "indep")
  if (inherits(m, "error")) return(list(spec = spec, call = cl, method = method, fitted = FALSE,
                                        error = conditionMessage(m)))
  vs <- m$modelStruct$varStruct
  out <- list(spec = spec, call = cl, method = method, fitted = TRUE, warnings = I(unique(warn)),
              converged = !any(grepl("convergence|[Ss]ingular", warn)),
              logLik = as.numeric(logLik(m)), nobs = nrow(d), fixef = vec(fixef(m)),
              fixef_se = vec(sqrt(diag(vcov(m)))), sigma = m$sigma,
              re_cov = mat(unclass(getVarCov(m))),
              var = list(class = class(vs)[1],
                         natural_all = vec(unlist(coef(vs, unconstrained = FALSE, allCoef = TRUE))),
                         weights = as.numeric(varWeights(vs))))
  if (!is.null(m$numIter)) out$numIter <- m$numIter
  if (grepl("fitted", var_call(v))) out$var$fitted_final <- as.numeric(fitted(m))
  out
}

P <- function(cov) list(type = "power", covariate = cov)
CP <- function(cov) list(type = "constpower", covariate = cov)
CASES <- list(
  list("orthodont", "lme_ri", P("age"), "power_age"),
  list("sleepgaps", "lme_rs", P("day1"), "power_day1"),
  list("bodyweight", "lme_rs", P("Time"), "power_Time"),
  list("orthodont", "lme_ri", list(type = "comb", parts = list(list(type = "ident", strata = "Sex"), P("age"))),
       "ident_sex*power_age"),
  list("sleepgaps", "lme_rs", list(type = "comb", parts = list(list(type = "exp", covariate = "Days"), P("day1"))),
       "exp_days*power_day1"),
  list("bodyweight", "lme_rs", list(type = "comb", parts = list(list(type = "ident", strata = "Diet"), P("fitted"))),
       "ident_diet*power_fitted"),
  list("sleepgaps", "lme_ri", CP("day1"), "constpower_day1"),
  list("bodyweight", "lme_rs", CP("Time"), "constpower_Time"),
  list("orthodont", "lme_ri", CP("age"), "constpower_age"))
fits <- list()
for (cs in CASES) for (method in c("ML", "REML")) {
  key <- sprintf("%s/%s/%s/%s", cs[[1]], cs[[2]], cs[[4]], method)
  fits[[key]] <- fit(cs[[1]], cs[[2]], cs[[3]], cs[[4]], method)
  f <- fits[[key]]
  cat(key, if (isTRUE(f$fitted)) sprintf("%.6f %s", f$logLik, paste(unlist(f$var$natural_all), collapse = " ")) else f$error,
      if (length(f$warnings)) paste("WARN:", paste(f$warnings, collapse = "; ")) else "", "\n")
}
meta <- list(R_version = R.version.string, nlme = as.character(packageVersion("nlme")),
             date = format(Sys.time(), tz = "UTC", usetz = TRUE), control = CTRL,
             conventions = I(c("var natural_all: coef(varStruct, unconstrained = FALSE, allCoef = TRUE) (varComb: A.* first part, B.* second)",
                               "sigma: residual sd of a row whose variance-function multiplier is 1",
                               "re_cov: getVarCov (absolute scale)",
                               "fixef_se: sqrt(diag(vcov)): (X'V^-1 X)^-1 at the estimates")))
writeLines(toJSON(list(meta = meta, fits = fits), auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           file.path(here, "r_varpower.json"))
