# r_robust_correlation.R -- reference numbers for cluster-robust (sandwich)
# covariances of the fixed effects under residual correlation structures:
# clubSandwich::vcovCR (CR0, CR1, CR1S, CR2) and the Satterthwaite degrees of
# freedom (coef_test, linear_contrast) on nlme::lme and nlme::gls fits with
# corAR1 (with gaps in the times), corCAR1 (unequally spaced times) and corSymm
# (incomplete groups), combined with varIdent and varExp weights.
#
# Run from any directory:  Rscript tests/results/robust_correlation/r_robust_correlation.R
# Reads the CSVs of tests/results/correlation/ (written by r_correlation.R; rows
# sorted by group, so nlme's internal order is the CSV's) and writes
# r_robust_correlation.json next to itself.
#
# Conventions: as tests/results/robust/r_robust.R (clubSandwich 0.5.8: the
# working model is the fitted V_i = Z_i G Z_i' + sigma^2 S_i C_i S_i,
# targetVariance.lme / .gls with the corStruct and varStruct; W_i = V_i^-1;
# marginal residuals; CR2 with inverse_var = TRUE).  Stored per fit:
#   * G = getVarCov (lme; absolute scale), "var_coef": coefficients a of
#     log sigma2_ij = W a (W the model matrix of "var_formula"), solved exactly
#     from nlme's sigma^2 g_ij^2 (residual of the solve checked < 1e-10);
#   * "cor_natural": coef(corStruct, unconstrained = FALSE) -- Phi of corAR1 /
#     corCAR1 (nlme turns corAR1 with gaps into corARMA(p = 1): Phi1), the
#     correlations (1,2), (1,3), ..., (K-1,K) of corSymm;
#   * fixed effects, (X'V^-1X)^-1 = vcov(fit) (lme ML and REML, gls REML), and
#     per clustering: vcovCR for each type, the CR2 and CR0 Satterthwaite df of
#     each coefficient and of one contrast (second minus last coefficient).

suppressPackageStartupMessages({
  library(nlme)
  library(clubSandwich)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
cdir <- normalizePath(file.path(here, "..", "correlation"))
read <- function(f) read.csv(file.path(cdir, f), stringsAsFactors = TRUE)

orth <- read("orthodont.csv")
# a coarser level: pairs of subjects (sorted ids; 14 clusters)
orth$pair <- (as.integer(orth$Subject) + 1L) %/% 2L
orthg <- read("orthodont_gaps.csv")
sleep <- read("sleepstudy_gaps.csv")
bw <- read("bodyweight.csv")
datasets <- list(orthodont = orth, orthgaps = orthg, sleepgaps = sleep, bodyweight = bw)
files <- list(orthodont = "orthodont.csv", orthgaps = "orthodont_gaps.csv",
              sleepgaps = "sleepstudy_gaps.csv", bodyweight = "bodyweight.csv")

ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, msMaxEval = 2000, niterEM = 50,
                   tolerance = 1e-10, msTol = 1e-12, opt = "nlminb")
gctrl <- glsControl(maxIter = 500, msMaxIter = 500,
                    tolerance = 1e-10, msTol = 1e-12, opt = "nlminb")

cases <- list(
  orthodont_ar1_ident = list(
    data = "orthodont", engine = "lme", groups = "Subject",
    fixed = distance ~ age + Sex, random = ~ 1 | Subject,
    correlation = quote(corAR1(form = ~ occ | Subject)),
    weights = quote(varIdent(form = ~ 1 | Sex)),
    re_formula = "1", var_formula = "~ Sex", structure = "ar1", time = "occ",
    cluster = c("Subject", "pair"), methods = c("REML", "ML")),
  sleepgaps_ar1_exp = list(
    data = "sleepgaps", engine = "lme", groups = "Subject",
    fixed = Reaction ~ Days, random = ~ 1 | Subject,
    correlation = quote(corAR1(form = ~ Days | Subject)),
    weights = quote(varExp(form = ~ Days)),
    re_formula = "1", var_formula = "~ Days", structure = "ar1", time = "Days",
    cluster = c("Subject"), methods = c("REML")),
  bodyweight_car1_ident = list(
    data = "bodyweight", engine = "lme", groups = "Rat",
    fixed = weight ~ Time * Diet, random = ~ Time | Rat,
    correlation = quote(corCAR1(form = ~ Time | Rat)),
    weights = quote(varIdent(form = ~ 1 | Diet)),
    re_formula = "1 + Time", var_formula = "~ Diet", structure = "car1", time = "Time",
    cluster = c("Rat"), methods = c("REML")),
  orthgaps_symm_ident = list(
    data = "orthgaps", engine = "gls", groups = "Subject",
    fixed = distance ~ age + Sex, random = NULL,
    correlation = quote(corSymm(form = ~ occ | Subject)),
    weights = quote(varIdent(form = ~ 1 | Sex)),
    re_formula = "0", var_formula = "~ Sex", structure = "unstructured", time = "occ",
    cluster = c("Subject"), methods = c("REML"))
)

# log sigma2_ij of the fitted variance function
log_sigma2 <- function(fit, dat) {
  vs <- fit$modelStruct$varStruct
  ls2 <- rep(2 * log(fit$sigma), nrow(dat))
  if (inherits(vs, "varIdent")) {
    r <- coef(vs, unconstrained = FALSE, allCoef = TRUE)
    v <- as.character(dat[[all.vars(getGroupsFormula(vs))[1]]])
    ls2 <- ls2 + 2 * log(r[v])
  } else if (inherits(vs, "varExp")) {
    th <- coef(vs, unconstrained = FALSE)
    ls2 <- ls2 + 2 * th * dat[[all.vars(formula(vs))[1]]]
  } else stop("unknown varStruct")
  unname(ls2)
}

coef_df <- function(fit, V) {
  ct <- coef_test(fit, vcov = V, test = "Satterthwaite")
  setNames(as.list(ct$df_Satt), ct$Coef)
}

out <- list()
for (cn in names(cases)) {
  spec <- cases[[cn]]
  dat <- datasets[[spec$data]]
  for (method in spec$methods) {
    if (spec$engine == "lme") {
      fit <- do.call(lme, list(fixed = spec$fixed, random = spec$random, data = dat,
                               correlation = eval(spec$correlation),
                               weights = eval(spec$weights), method = method,
                               control = ctrl))
      Gv <- getVarCov(fit)
      G <- matrix(as.numeric(Gv), nrow(Gv))
    } else {
      # data as a name in the call: clubSandwich's get_data reads the call
      fit <- do.call(gls, list(model = spec$fixed, data = quote(dat),
                               correlation = eval(spec$correlation),
                               weights = eval(spec$weights), method = method,
                               control = gctrl))
      G <- matrix(0, 1, 1)
    }
    ls2 <- log_sigma2(fit, dat)
    sd_nlme <- fit$sigma / varWeights(fit$modelStruct$varStruct)
    stopifnot(max(abs(exp(ls2 / 2) - sd_nlme) / exp(ls2 / 2)) < 1e-10)
    Wv <- model.matrix(as.formula(spec$var_formula), dat)
    a <- qr.solve(Wv, ls2)
    stopifnot(max(abs(Wv %*% a - ls2)) < 1e-10)
    cor_nat <- coef(fit$modelStruct$corStruct, unconstrained = FALSE)
    fe <- coef(summary(fit))[, 1]
    res <- list(method = method, data = spec$data, file = files[[spec$data]],
                engine = spec$engine, groups = spec$groups,
                mean_formula = deparse(spec$fixed), re_formula = spec$re_formula,
                var_formula = spec$var_formula, structure = spec$structure,
                time = spec$time, correlation = deparse(spec$correlation),
                weights = deparse(spec$weights),
                logLik = as.numeric(logLik(fit)),
                fe_params = as.list(fe), names = names(fe),
                var_coef = setNames(as.list(a), colnames(Wv)),
                G = G, cor_natural = unname(cor_nat), cor_names = names(cor_nat),
                vcov_model = unname(as.matrix(vcov(fit))))
    by_cluster <- list()
    for (cl in spec$cluster) {
      clus <- dat[[cl]]
      r <- list()
      for (type in c("CR0", "CR1", "CR1S", "CR2")) {
        r[[type]] <- unname(as.matrix(vcovCR(fit, cluster = clus, type = type)))
      }
      V2 <- vcovCR(fit, cluster = clus, type = "CR2")
      r$df_CR2 <- coef_df(fit, V2)
      r$df_CR0 <- coef_df(fit, vcovCR(fit, cluster = clus, type = "CR0"))
      p <- length(fe)
      C <- matrix(0, 1, p); C[1, 2] <- 1; C[1, p] <- -1
      lc <- linear_contrast(fit, vcov = V2, contrasts = C, test = "Satterthwaite")
      r$contrast <- as.numeric(C)
      r$contrast_se <- lc$SE
      r$contrast_df <- lc$df
      r$n_clusters <- length(unique(clus))
      by_cluster[[cl]] <- r
    }
    res$cluster <- by_cluster
    out[[paste(cn, method, sep = "_")]] <- res
    cat(cn, method, "llf", res$logLik, "cor", cor_nat, "df CR2",
        unlist(by_cluster[[1]]$df_CR2), "\n")
  }
}

meta <- list(
  R_version = R.version.string,
  packages = lapply(c(nlme = "nlme", clubSandwich = "clubSandwich", jsonlite = "jsonlite"),
                    function(p) as.character(packageVersion(p))),
  date = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"),
  pair = "(as.integer(factor(Subject)) + 1) %/% 2: 14 clusters of sorted subject ids")
json <- toJSON(list(meta = meta, cases = out), digits = NA, auto_unbox = TRUE,
               null = "null", na = "null", pretty = TRUE, matrix = "rowmajor")
writeLines(json, file.path(here, "r_robust_correlation.json"))
cat("wrote", file.path(here, "r_robust_correlation.json"), "\n")
