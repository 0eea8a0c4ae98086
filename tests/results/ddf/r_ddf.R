# r_ddf.R -- reference denominator degrees of freedom for the fixed effects:
# Satterthwaite (lmerTest) and Kenward-Roger (pbkrtest) on two homoskedastic
# data sets with random slopes.  Writes, next to this script:
#     sleepstudy.csv, orthodont.csv   the data (as lme4 / nlme ship them)
#     *_unbalanced.csv                the same less every 7th / 5th row
#     r_ddf.json                      the reference numbers
#
# Usage (from anywhere; R packages from Debian bookworm):
#     Rscript tests/results/ddf/r_ddf.R
#
# Models (REML unless the case name ends in _ml):
#     sleepstudy:  Reaction ~ Days + (Days | Subject)
#     orthodont:   distance ~ age + Sex + (age | Subject)
# For every case: fixef, vcov; per coefficient the Satterthwaite df / t / p
# (summary of the lmerTest fit), the Kenward-Roger df (pbkrtest::get_Lb_ddf on
# the unit contrast) and the KR adjusted covariance (pbkrtest::vcovAdj); for a
# one-row contrast L1 its Satterthwaite df (lmerTest::contest1D) and KR df; for
# a multi-row contrast L the Satterthwaite F test (lmerTest::contestMD) and the
# Kenward-Roger F test (pbkrtest::KRmodcomp with L).
# ML cases: Satterthwaite only (pbkrtest refits by REML).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(nlme)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))

data("sleepstudy", package = "lme4")
data("Orthodont", package = "nlme")
orth <- as.data.frame(Orthodont)
orth$Subject <- as.character(orth$Subject)
orth$Sex <- as.character(orth$Sex)
sleep <- as.data.frame(sleepstudy)
sleep$Subject <- as.character(sleep$Subject)
# Unbalanced versions (rows 3, 10, 17, ... / rows 1, 6, 11, ... dropped), where the df are not the
# integers of a balanced design and the KR adjustment is not zero.
sleep_u <- sleep[seq_len(nrow(sleep)) %% 7 != 3, ]
orth_u <- orth[seq_len(nrow(orth)) %% 5 != 1, ]
write.csv(sleep, file.path(here, "sleepstudy.csv"), row.names = FALSE)
write.csv(orth, file.path(here, "orthodont.csv"), row.names = FALSE)
write.csv(sleep_u, file.path(here, "sleepstudy_unbalanced.csv"), row.names = FALSE)
write.csv(orth_u, file.path(here, "orthodont_unbalanced.csv"), row.names = FALSE)

mat <- function(m) list(rownames = rownames(m), colnames = colnames(m),
                        values = unname(lapply(seq_len(nrow(m)), function(i) as.numeric(m[i, ]))))
named <- function(x, nm) { out <- as.list(as.numeric(x)); names(out) <- nm; out }

ctrl <- lmerControl(optimizer = "bobyqa",
                    optCtrl = list(maxfun = 1e5),
                    check.conv.grad = .makeCC("warning", tol = 1e-6))

one_case <- function(formula, data, L1, L, reml = TRUE) {
  fit <- lmerTest::lmer(formula, data = data, REML = reml, control = ctrl)
  beta <- fixef(fit)
  nm <- names(beta)
  p <- length(beta)
  coefs <- summary(fit, ddf = "Satterthwaite")$coefficients
  out <- list(
    fixef = named(beta, nm),
    vcov = mat(as.matrix(vcov(fit))),
    varcor = as.data.frame(VarCorr(fit))[, c("grp", "var1", "var2", "vcov")],
    deviance = as.numeric(if (reml) REMLcrit(fit) else deviance(fit)),
    satterthwaite = list(
      df = named(coefs[, "df"], nm),
      t = named(coefs[, "t value"], nm),
      p = named(coefs[, "Pr(>|t|)"], nm)),
    L1 = as.numeric(L1),
    L = mat(L))
  c1 <- lmerTest::contest1D(fit, L1, ddf = "Satterthwaite")
  out$satterthwaite$L1 <- list(estimate = c1$Estimate, se = c1[["Std. Error"]],
                               df = c1$df, t = c1[["t value"]], p = c1[["Pr(>|t|)"]])
  cm <- lmerTest::contestMD(fit, L, ddf = "Satterthwaite")
  out$satterthwaite$L <- list(F = cm[["F value"]], ndf = cm$NumDF, ddf = cm$DenDF,
                              p = cm[["Pr(>F)"]])
  if (reml) {
    lm4 <- as(fit, "lmerMod")
    adj <- as.matrix(vcovAdj(lm4))
    dimnames(adj) <- list(nm, nm)
    kr_df <- sapply(seq_len(p), function(j) {
      e <- matrix(0, 1, p); e[j] <- 1; get_Lb_ddf(lm4, e)
    })
    t_kr <- beta / sqrt(diag(adj))
    out$kenward_roger <- list(
      vcov_adj = mat(adj),
      df = named(kr_df, nm),
      t = named(t_kr, nm),
      p = named(2 * pt(-abs(t_kr), kr_df), nm))
    df1 <- get_Lb_ddf(lm4, matrix(L1, 1))
    est1 <- sum(L1 * beta)
    se1 <- sqrt(drop(t(L1) %*% adj %*% L1))
    out$kenward_roger$L1 <- list(estimate = est1, se = se1, df = df1,
                                 t = est1 / se1, p = 2 * pt(-abs(est1 / se1), df1))
    kr <- KRmodcomp(lm4, L)
    st <- kr$stats
    out$kenward_roger$L <- list(F = st$Fstat, ndf = st$ndf, ddf = st$ddf,
                                F_scaling = st$F.scaling, p = st$p.value,
                                F_unscaled = st$FstatU)
  }
  out
}

cases <- list(
  sleepstudy = one_case(Reaction ~ Days + (Days | Subject), sleep,
                        L1 = c(1, 5), L = diag(2)),
  sleepstudy_ml = one_case(Reaction ~ Days + (Days | Subject), sleep,
                           L1 = c(1, 5), L = diag(2), reml = FALSE),
  orthodont = one_case(distance ~ age + Sex + (age | Subject), orth,
                       L1 = c(0, 1, 1), L = rbind(c(0, 1, 0), c(0, 0, 1))),
  sleepstudy_unbalanced = one_case(Reaction ~ Days + (Days | Subject), sleep_u,
                                   L1 = c(1, 5), L = diag(2)),
  sleepstudy_unbalanced_ml = one_case(Reaction ~ Days + (Days | Subject), sleep_u,
                                      L1 = c(1, 5), L = diag(2), reml = FALSE),
  orthodont_unbalanced = one_case(distance ~ age + Sex + (age | Subject), orth_u,
                                  L1 = c(0, 1, 1), L = rbind(c(0, 1, 0), c(0, 0, 1)))
)

meta <- list(R = R.version.string,
             lme4 = as.character(packageVersion("lme4")),
             lmerTest = as.character(packageVersion("lmerTest")),
             pbkrtest = as.character(packageVersion("pbkrtest")),
             nlme = as.character(packageVersion("nlme")),
             date = as.character(Sys.Date()))
writeLines(toJSON(list(meta = meta, cases = cases), auto_unbox = TRUE, digits = NA,
                  pretty = TRUE),
           file.path(here, "r_ddf.json"))
cat("wrote", file.path(here, "r_ddf.json"), "\n")
