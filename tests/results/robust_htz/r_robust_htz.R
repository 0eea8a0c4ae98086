# r_robust_htz.R -- reference numbers for Wald tests of several fixed-effect
# contrasts under the CR2 sandwich: clubSandwich::Wald_test(fit, constraints,
# vcov = "CR2", test = c("chi-sq", "Naive-F", "HTA", "HTZ")) -- Pustejovsky and
# Tipton's (2018) Hotelling T2 approximation with estimated df ("HTZ").
#
# Run from any directory:  Rscript tests/results/robust_htz/r_robust_htz.R
# Writes r_robust_htz.json next to itself (about 5 s).
#
# The fits are those of ../robust/r_robust.R (hsb_ident, orthodont_ident, REML)
# and ../robust_correlation/r_robust_correlation.R (bodyweight_car1_ident, REML:
# corCAR1 and varIdent), with the same data, formulas and control settings;
# their fixed effects are stored here so that the tests can check that the
# estimates are those of the other scripts' JSON (the tests evaluate the
# package at those estimates).  Constraints are matrices with one column per
# coefficient in R's order ("names") and test C beta = 0.

suppressPackageStartupMessages({
  library(nlme)
  library(clubSandwich)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
root <- normalizePath(file.path(here, "..", "..", ".."))

hsb <- read.csv(file.path(root, "statsmodels_hetmixed", "datasets", "hsb", "hsb.csv"))
hsb$school <- factor(hsb$school)
orth <- read.csv(file.path(here, "..", "robust", "orthodont.csv"))
orth$Subject <- factor(orth$Subject)
orth$pair <- (as.integer(orth$Subject) + 1L) %/% 2L
bw <- read.csv(file.path(here, "..", "correlation", "bodyweight.csv"), stringsAsFactors = TRUE)

lctrl <- lmeControl(msTol = 1e-13, tolerance = 1e-10, opt = "nlminb", maxIter = 500,
                    msMaxIter = 500)
cctrl <- lmeControl(maxIter = 500, msMaxIter = 500, msMaxEval = 2000, niterEM = 50,
                    tolerance = 1e-10, msTol = 1e-12, opt = "nlminb")

rows <- function(p, ...) {
  # one row per argument: a named vector of coefficients (by position)
  specs <- list(...)
  C <- matrix(0, length(specs), p)
  for (i in seq_along(specs)) C[i, as.integer(names(specs[[i]]))] <- specs[[i]]
  C
}

cases <- list(
  hsb_ident_REML = list(
    fit = quote(lme(mathach ~ ses + female + sector, random = ~ 1 | school, data = hsb,
                    weights = varIdent(form = ~ 1 | female), method = "REML",
                    control = lctrl)),
    source = "robust/r_robust.json", data = "hsb", cluster = c("school"),
    # (Intercept), ses, female, sector
    constraints = list(slopes = rows(4, c("2" = 1), c("3" = 1), c("4" = 1)),
                       two = rows(4, c("2" = 1, "3" = -1), c("4" = 1)),
                       one = rows(4, c("2" = 1, "3" = -1)))),
  orthodont_ident_REML = list(
    fit = quote(lme(distance ~ age + female, random = ~ age | Subject, data = orth,
                    weights = varIdent(form = ~ 1 | female), method = "REML",
                    control = lctrl)),
    source = "robust/r_robust.json", data = "orth", cluster = c("Subject", "pair"),
    # (Intercept), age, female
    constraints = list(slopes = rows(3, c("2" = 1), c("3" = 1)),
                       all = rows(3, c("1" = 1), c("2" = 1), c("3" = 1)),
                       one = rows(3, c("2" = 1)))),
  bodyweight_car1_ident_REML = list(
    fit = quote(lme(weight ~ Time * Diet, random = ~ Time | Rat, data = bw,
                    correlation = corCAR1(form = ~ Time | Rat),
                    weights = varIdent(form = ~ 1 | Diet), method = "REML",
                    control = cctrl)),
    source = "robust_correlation/r_robust_correlation.json", data = "bw",
    cluster = c("Rat"),
    # (Intercept), Time, Diet2, Diet3, Time:Diet2, Time:Diet3
    constraints = list(diet = rows(6, c("3" = 1), c("4" = 1), c("5" = 1), c("6" = 1)),
                       interaction = rows(6, c("5" = 1), c("6" = 1)),
                       one = rows(6, c("5" = 1, "6" = -1))))
)

tests <- c("chi-sq", "Naive-F", "HTA", "HTZ")
out <- list()
for (cn in names(cases)) {
  spec <- cases[[cn]]
  fit <- eval(spec$fit)
  fe <- fixef(fit)
  res <- list(source = spec$source, fe_params = as.list(fe), names = names(fe))
  by_cluster <- list()
  for (cl in spec$cluster) {
    clus <- get(spec$data)[[cl]]
    V2 <- vcovCR(fit, cluster = clus, type = "CR2")
    r <- list()
    for (hn in names(spec$constraints)) {
      C <- spec$constraints[[hn]]
      w <- Wald_test(fit, constraints = C, vcov = V2, test = tests)
      r[[hn]] <- list(constraint = C,
                      tests = setNames(lapply(seq_len(nrow(w)), function(i)
                        list(Fstat = w$Fstat[i], delta = w$delta[i],
                             df_num = w$df_num[i], df_denom = w$df_denom[i],
                             p_val = w$p_val[i])), w$test))
      cat(cn, cl, hn, "HTZ F", w$Fstat[w$test == "HTZ"], "df",
          w$df_denom[w$test == "HTZ"], "\n")
    }
    by_cluster[[cl]] <- r
  }
  res$cluster <- by_cluster
  out[[cn]] <- res
}

meta <- list(
  R_version = R.version.string,
  packages = lapply(c(nlme = "nlme", clubSandwich = "clubSandwich", jsonlite = "jsonlite"),
                    function(p) as.character(packageVersion(p))),
  date = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"),
  pair = "(as.integer(factor(Subject)) + 1) %/% 2: 14 clusters of sorted subject ids")
json <- toJSON(list(meta = meta, cases = out), digits = NA, auto_unbox = TRUE,
               null = "null", na = "null", pretty = TRUE, matrix = "rowmajor")
writeLines(json, file.path(here, "r_robust_htz.json"))
cat("wrote", file.path(here, "r_robust_htz.json"), "\n")
