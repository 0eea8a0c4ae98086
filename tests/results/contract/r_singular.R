# Reference for statsmodels' test_lme.py::test_singular (issue #7051 there):
# the data it simulates (numpy RandomState(3423), exported by
# make_singular.py as singular.csv), fitted by lme4 and nlme by REML.
# Both reach an interior optimum (a small positive class variance), so the
# random-effects covariance is not singular; MixedLM stops at zero with
# llf = inf and warns.
#   Rscript r_singular.R > r_singular.json
suppressMessages({library(lme4); library(nlme); library(jsonlite)})
d <- read.csv("singular.csv")
m <- lmer(Y ~ X + (1 | cls), data = d, REML = TRUE,
          control = lmerControl(optimizer = "bobyqa",
                                optCtrl = list(rhoend = 1e-12)))
vc <- as.data.frame(VarCorr(m))
m2 <- lme(Y ~ X, random = ~ 1 | cls, data = d, method = "REML")
out <- list(
  lme4 = list(llf = as.numeric(logLik(m)), var_cls = vc$vcov[1],
              scale = vc$vcov[2], fe = unname(fixef(m)),
              is_singular = isSingular(m)),
  nlme = list(llf = as.numeric(logLik(m2)),
              var_cls = as.numeric(VarCorr(m2)[1, "Variance"]),
              scale = m2$sigma^2, fe = unname(fixef(m2))),
  versions = list(R = R.version.string,
                  lme4 = as.character(packageVersion("lme4")),
                  nlme = as.character(packageVersion("nlme"))))
cat(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE))
