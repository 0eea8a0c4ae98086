# r_robust.R -- reference numbers for cluster-robust (sandwich) covariances of the
# fixed effects: clubSandwich::vcovCR (CR0, CR1, CR1S, CR2) and the CR2
# Satterthwaite degrees of freedom (coef_test, linear_contrast) on nlme::lme fits
# with varIdent and varExp weights, ML and REML.
#
# Run from any directory:  Rscript tests/results/robust/r_robust.R
# Writes r_robust.json (and orthodont.csv, the nlme data set it uses) next to itself.
#
# Conventions (clubSandwich 0.5.8, R/lme.R, R/clubSandwich.R, R/CR-adjustments.R):
#   * working model = the fitted V_i = Z_i G Z_i' + R_i (targetVariance.lme),
#     weights W_i = V_i^-1 (weightMatrix.lme), inverse_var = TRUE (the default
#     when no target is given);
#   * residuals = marginal residuals y - X b (residuals(level = 0));
#   * bread = vcov(fit) * m / sigma^2, so the sandwich is
#     (X'WX)^-1 [sum_j X_j'W_j A_j e_j e_j' A_j W_j X_j] (X'WX)^-1;
#   * A_j = I (CR0), sqrt(m/(m-1)) I (CR1), sqrt(m(N-1)/((m-1)(N-p))) I (CR1S),
#     U_j' [U_j (V_j - X_j M X_j') U_j']^-1/2 U_j with U_j'U_j = V_j (CR2).
# The residual variances are stored as coefficients a of log sigma2_ij = W a
# (W the model matrix of "var_formula"), solved exactly from nlme's
# sigma^2 * (variance function)^2 (residual of the solve checked < 1e-10), so that
# the Python tests rebuild V_i without nlme's internal row order.
# "G" is getVarCov(fit): the random-effects covariance on the data's scale.

suppressPackageStartupMessages({
  library(nlme)
  library(clubSandwich)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
root <- normalizePath(file.path(here, "..", "..", ".."))
hsb <- read.csv(file.path(root, "statsmodels_hetmixed", "datasets", "hsb", "hsb.csv"))
stopifnot(nrow(hsb) == 7185)
hsb$school <- factor(hsb$school)
# An artificial coarser clustering level for the tests of clusters that nest
# the model's groups: 41 "districts" (schools 1-3 of the sorted ids, then 4
# schools each, then the last school alone).
hsb$district <- as.integer(hsb$school) %/% 4L

orth <- as.data.frame(Orthodont)
orth$Subject <- as.character(orth$Subject)   # nlme's is an ordered factor
orth$Sex <- as.character(orth$Sex)
orth$female <- as.integer(orth$Sex == "Female")
write.csv(orth[, c("distance", "age", "Subject", "female")],
          file.path(here, "orthodont.csv"), row.names = FALSE)
orth <- read.csv(file.path(here, "orthodont.csv"))
orth$Subject <- factor(orth$Subject)
# a coarser level for Orthodont: pairs of subjects (sorted ids; 14 clusters)
orth$pair <- (as.integer(orth$Subject) + 1L) %/% 2L
# a fixed effect identified within one cluster (V_j - X_j M X_j' singular
# for subject M01: CR2's inverse square root is a pseudo-inverse there)
orth$m01 <- as.integer(orth$Subject == "M01")

cases <- list(
  hsb_ident = list(data = "hsb", groups = "school",
                   fixed = mathach ~ ses + female + sector, random = ~ 1 | school,
                   weights = quote(varIdent(form = ~ 1 | female)),
                   re_formula = NULL, var_formula = "~ female",
                   cluster = c("school", "district")),
  hsb_exp_slope = list(data = "hsb", groups = "school",
                       fixed = mathach ~ cses + meanses + sector,
                       random = ~ cses | school,
                       weights = quote(varExp(form = ~ ses)),
                       re_formula = "1 + cses", var_formula = "~ ses",
                       cluster = c("school")),
  orthodont_ident = list(data = "orthodont", groups = "Subject",
                         fixed = distance ~ age + female, random = ~ age | Subject,
                         weights = quote(varIdent(form = ~ 1 | female)),
                         re_formula = "1 + age", var_formula = "~ female",
                         cluster = c("Subject", "pair")),
  orthodont_m01 = list(data = "orthodont", groups = "Subject",
                       fixed = distance ~ age + female + m01, random = ~ age | Subject,
                       weights = quote(varIdent(form = ~ 1 | female)),
                       re_formula = "1 + age", var_formula = "~ female",
                       cluster = c("Subject"))
)
datasets <- list(hsb = hsb, orthodont = orth)

# log sigma2_ij for the fitted variance function, from its natural coefficients
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
  for (method in c("REML", "ML")) {
    fit <- do.call(lme, list(fixed = spec$fixed, random = spec$random, data = dat,
                             weights = eval(spec$weights), method = method,
                             control = lmeControl(msTol = 1e-13, tolerance = 1e-10,
                                                  opt = "nlminb", maxIter = 500,
                                                  msMaxIter = 500)))
    ls2 <- log_sigma2(fit, dat)
    # check against nlme's own residual SDs (varWeights are in nlme's group order)
    sd_nlme <- fit$sigma / varWeights(fit$modelStruct$varStruct)
    ord <- order(order(getGroups(fit)))
    stopifnot(max(abs(exp(ls2 / 2) - sd_nlme[ord]) / exp(ls2 / 2)) < 1e-10)
    Wv <- model.matrix(as.formula(spec$var_formula), dat)
    a <- qr.solve(Wv, ls2)
    stopifnot(max(abs(Wv %*% a - ls2)) < 1e-10)
    X <- model.matrix(spec$fixed, dat)
    # nlme's vcov is (X'V^-1 X)^-1 for ML too (the sqrt(N/(N-p)) of
    # summary.lme's adjustSigma is applied to the printed table only)
    Gv <- getVarCov(fit)
    G <- matrix(as.numeric(Gv), nrow(Gv), dimnames = list(rownames(Gv), colnames(Gv)))
    res <- list(method = method, data = spec$data, groups = spec$groups,
                mean_formula = deparse(spec$fixed), re_formula = spec$re_formula,
                var_formula = spec$var_formula, weights = deparse(spec$weights),
                logLik = as.numeric(logLik(fit)),
                fe_params = as.list(fixef(fit)), var_coef = setNames(as.list(a), colnames(Wv)),
                G = unname(G), G_names = colnames(G),
                vcov_model = unname(as.matrix(vcov(fit))), names = names(fixef(fit)))
    by_cluster <- list()
    for (cl in spec$cluster) {
      clus <- dat[[cl]]
      r <- list()
      for (type in c("CR0", "CR1", "CR1S", "CR2")) {
        V <- vcovCR(fit, cluster = clus, type = type)
        r[[type]] <- unname(as.matrix(V))
      }
      V2 <- vcovCR(fit, cluster = clus, type = "CR2")
      r$df_CR2 <- coef_df(fit, V2)
      r$df_CR0 <- coef_df(fit, vcovCR(fit, cluster = clus, type = "CR0"))
      # a contrast of two slopes (second minus third coefficient)
      p <- length(fixef(fit))
      C <- matrix(0, 1, p); C[1, 2] <- 1; C[1, 3] <- -1
      lc <- linear_contrast(fit, vcov = V2, contrasts = C, test = "Satterthwaite")
      r$contrast <- as.numeric(C)
      r$contrast_se <- lc$SE
      r$contrast_df <- lc$df
      r$n_clusters <- length(unique(clus))
      by_cluster[[cl]] <- r
    }
    res$cluster <- by_cluster
    out[[paste(cn, method, sep = "_")]] <- res
    cat(cn, method, "llf", res$logLik, "df CR2", unlist(by_cluster[[1]]$df_CR2), "\n")
  }
}

meta <- list(
  R_version = R.version.string,
  packages = lapply(c(nlme = "nlme", clubSandwich = "clubSandwich", jsonlite = "jsonlite"),
                    function(p) as.character(packageVersion(p))),
  date = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"),
  district = "as.integer(factor(school)) %/% 4: 41 clusters of sorted school ids (3, 4, ..., 4, 1 schools)",
  pair = "(as.integer(factor(Subject)) + 1) %/% 2: 14 clusters of sorted subject ids (2, ..., 2, 1 subjects)")
json <- toJSON(list(meta = meta, cases = out), digits = NA, auto_unbox = TRUE,
               null = "null", na = "null", pretty = TRUE, matrix = "rowmajor")
writeLines(json, file.path(here, "r_robust.json"))
cat("wrote", file.path(here, "r_robust.json"), "\n")
