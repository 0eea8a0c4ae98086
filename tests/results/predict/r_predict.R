# Point predictions of nlme's predict(level = 0:1) on new data, for
# tests/test_predictions.py.  Run from anywhere:
#     Rscript tests/results/predict/r_predict.R
# Writes, next to this script: orthodont.csv (nlme::Orthodont, the fitting
# data of the second model), newdata_hsb.csv, newdata_orthodont.csv and
# r_predict.json.
#
# Models (each fitted with the better of nlminb and optim, r_common.R):
#   hsb:       HSB, mathach ~ female + ses, random intercept by school,
#              weights = varComb(varIdent(~ 1 | female), varExp(~ ses)), ML
#              (the package's var_formula = "~ female + ses", log link).
#   orthodont: nlme::Orthodont, distance ~ age + Sex, random = ~ age | Subject
#              (random slope), weights = varIdent(~ 1 | Sex), REML.
# New data: rows of known groups at covariate values not in the data, and rows
# of a group the fit has not seen (nlme gives NA at level 1 for those; the
# package predicts them marginally).
here <- local({
  f <- sub("^--file=", "", grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE))
  if (length(f) == 1) dirname(normalizePath(f)) else getwd()
})
out_dir <- here
here <- normalizePath(file.path(out_dir, ".."))  # r_common.R finds the data from it
source(file.path(here, "r_common.R"))
here <- out_dir

one_case <- function(nb, newdata, group) {
  fit <- nb$fit
  p <- predict(fit, newdata = newdata, level = 0:1)
  list(
    llf = as.numeric(logLik(fit)),
    optimizer = nb$best,
    fixef = vec(fixef(fit)),
    level0 = unname(p$predict.fixed),
    level1 = unname(p[[ncol(p)]]),  # NA for groups the fit has not seen
    group = as.character(newdata[[group]])
  )
}

# --- HSB
d <- read_hsb()
nb_hsb <- nlme_best_fit(function(ctl)
  lme(mathach ~ female + ses, random = ~ 1 | school, data = d, method = "ML",
      weights = varComb(varIdent(form = ~ 1 | female), varExp(form = ~ ses)),
      control = ctl))
new_hsb <- data.frame(
  school = c(1224, 1224, 1288, 9586, 8367, 99999, 99999, 4042),
  female = c(0, 1, 1, 0, 1, 0, 1, 0),
  ses = c(-1.5, 0.3, 2.0, 0.0, -0.7, 0.3, -1.5, 1.1))
new_hsb$school <- factor(new_hsb$school)
hsb <- one_case(nb_hsb, new_hsb, "school")
write.csv(new_hsb, file.path(here, "newdata_hsb.csv"), row.names = FALSE)

# --- Orthodont: random slope
orth <- as.data.frame(Orthodont)
orth$Subject <- factor(as.character(orth$Subject))
orth$Sex <- as.character(orth$Sex)
write.csv(orth, file.path(here, "orthodont.csv"), row.names = FALSE)
orth$Sex <- factor(orth$Sex, levels = c("Male", "Female"))
nb_orth <- nlme_best_fit(function(ctl)
  lme(distance ~ age + Sex, random = ~ age | Subject, data = orth,
      method = "REML", weights = varIdent(form = ~ 1 | Sex), control = ctl))
new_orth <- data.frame(
  Subject = c("M01", "M01", "F03", "F11", "M13", "X99", "X99"),
  age = c(9, 16, 7.5, 13, 20, 9, 12),
  Sex = c("Male", "Male", "Female", "Female", "Male", "Female", "Male"))
write.csv(new_orth, file.path(here, "newdata_orthodont.csv"), row.names = FALSE)
new_orth$Subject <- factor(new_orth$Subject)
new_orth$Sex <- factor(new_orth$Sex, levels = c("Male", "Female"))
orthodont <- one_case(nb_orth, new_orth, "Subject")
orthodont$ranef <- list(rownames = rownames(ranef(nb_orth$fit)),
                        intercept = ranef(nb_orth$fit)[, 1],
                        age = ranef(nb_orth$fit)[, 2])

out <- list(meta = meta_header(), hsb = hsb, orthodont = orthodont)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, na = "null"),
           file.path(here, "r_predict.json"))
cat("hsb llf", format(hsb$llf, digits = 15), nb_hsb$best,
    " orthodont REML", format(orthodont$llf, digits = 15), nb_orth$best, "\n")
