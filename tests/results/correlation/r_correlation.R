# r_correlation.R -- reference fits for residual correlation structures combined
# with variance functions (nlme::lme / nlme::gls, and glmmTMB where the same
# model can be written there).  Writes, next to this script:
#     orthodont.csv, bodyweight.csv, sleepstudy_gaps.csv, ovary.csv   the data
#     r_correlation.json                                            the references
#
# Usage (from anywhere; R packages from Debian bookworm):
#     Rscript tests/results/correlation/r_correlation.R
# then check every stored fit against a dense multivariate-normal likelihood:
#     python tests/results/correlation/check_dense.py
#
# Every fit is made from the CSV this script writes (read back with read.csv, so
# R sees exactly what Python sees; character columns become factors with sorted
# levels, as patsy does).  The JSON is keyed "<data>/<engine>/<structure>/<weights>/<method>"
# and stores the exact call, a machine-readable spec (fixed formula, random
# columns, group, time column, correlation class and order, variance function and
# its covariate / strata), and the estimates.  See README.md for the definitions.
#
# Data sets and codings (all columns written to the CSVs are the ones used):
#   orthodont   nlme::Orthodont, 27 subjects x 4 ages.  occ = (age - 8)/2 + 1 in
#               1..4 (integer occasion), age in years (continuous time).
#   orthgaps    orthodont less its rows 1, 6, 11, ... (87 rows): groups miss
#               different occasions.
#   bodyweight  nlme::BodyWeight, 16 rats x 11 days.  Time in days (1, 8, ...,
#               43, 44, ..., 64: unequal spacing at day 44); occ = position of the
#               day among the 11 days (1..11, integer ordering index).
#   sleepgaps   lme4::sleepstudy less rows 3, 10, 17, ... (every 7th row from
#               the 3rd), 154 rows: Days 0..9 integer with gaps within subjects;
#               day1 = Days + 1 (positive covariate for varPower/varConstPower);
#               half = "early" (Days < 5) / "late" (Days >= 5).
#   Diet is written "D1".."D3" and the sleepstudy Subject "S308".., so both are
#   read back as text (factors), never as numbers.
#   (Rat and Mare are written as "R01".."R16" / "M01".."M11" so that they are
#   read back as text and sort in their numeric order.)
#   ovary       nlme::Ovary, 11 mares, 308 rows.  Time continuous (fraction of the
#               cycle); s1 = sin(2*pi*Time), c1 = cos(2*pi*Time); pos = position
#               of the row within its mare (1..n_i, rows in data order).

suppressPackageStartupMessages({
  library(nlme)
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))

# ------------------------------------------------------------------- data
orth <- as.data.frame(nlme::Orthodont)
orth <- data.frame(Subject = as.character(orth$Subject), Sex = as.character(orth$Sex),
                   age = orth$age, occ = as.integer((orth$age - 8) / 2 + 1),
                   distance = orth$distance)
bw <- as.data.frame(nlme::BodyWeight)
days <- sort(unique(bw$Time))
bw <- data.frame(Rat = sprintf("R%02d", as.integer(as.character(bw$Rat))), Diet = paste0("D", as.character(bw$Diet)),
                 Time = bw$Time, occ = match(bw$Time, days), weight = bw$weight)
ss <- as.data.frame(lme4::sleepstudy)
ss <- ss[seq_len(nrow(ss)) %% 7 != 3, ]
sg <- data.frame(Subject = paste0("S", as.character(ss$Subject)), Days = as.integer(ss$Days),
                 day1 = as.integer(ss$Days + 1L),
                 half = ifelse(ss$Days < 5, "early", "late"), Reaction = ss$Reaction)
ov <- as.data.frame(nlme::Ovary)
ov <- data.frame(Mare = sprintf("M%02d", as.integer(as.character(ov$Mare))), Time = ov$Time,
                 s1 = sin(2 * pi * ov$Time), c1 = cos(2 * pi * ov$Time),
                 pos = ave(seq_len(nrow(ov)), as.character(ov$Mare), FUN = seq_along),
                 follicles = ov$follicles)
# rows sorted by group (stable: the order within a group is kept), so nlme's
# internal order (it sorts by the grouping factor) is the CSV's row order
orth <- orth[order(orth$Subject), ]
bw <- bw[order(bw$Rat), ]
sg <- sg[order(sg$Subject), ]
ov <- ov[order(ov$Mare), ]
# Orthodont with gaps: rows 1, 6, 11, ... (of the sorted data) dropped, so groups
# miss different occasions (unstructured with incomplete groups, AR(1) with gaps)
orthg <- orth[seq_len(nrow(orth)) %% 5 != 1, ]
files <- list(orthgaps = "orthodont_gaps.csv", orthodont = "orthodont.csv", bodyweight = "bodyweight.csv",
              sleepgaps = "sleepstudy_gaps.csv", ovary = "ovary.csv")
write.csv(orth, file.path(here, files$orthodont), row.names = FALSE)
write.csv(orthg, file.path(here, files$orthgaps), row.names = FALSE)
write.csv(bw, file.path(here, files$bodyweight), row.names = FALSE)
write.csv(sg, file.path(here, files$sleepgaps), row.names = FALSE)
write.csv(ov, file.path(here, files$ovary), row.names = FALSE)
readd <- function(name) {
  d <- read.csv(file.path(here, files[[name]]), stringsAsFactors = TRUE)
  g <- d[[DSG[[name]]]]
  stopifnot(!is.unsorted(as.integer(factor(g))))
  d
}
DSG <- list(orthgaps = "Subject", orthodont = "Subject", bodyweight = "Rat", sleepgaps = "Subject", ovary = "Mare")
DATA <- lapply(setNames(names(files), names(files)), readd)
# factor versions of the occasion for varIdent / glmmTMB
DATA$orthodont$occf <- factor(DATA$orthodont$occ)
DATA$orthgaps$occf <- factor(DATA$orthgaps$occ)

# ------------------------------------------------------------------- helpers
vec <- function(x) {
  if (is.null(x) || length(x) == 0) return(NULL)
  nm <- names(x)
  if (is.null(nm)) return(as.numeric(x))
  out <- as.list(as.numeric(x)); names(out) <- make.unique(nm); out
}
mat <- function(m) {
  m <- as.matrix(m)
  list(rownames = if (is.null(rownames(m))) NULL else I(rownames(m)),
       colnames = if (is.null(colnames(m))) NULL else I(colnames(m)),
       values = unname(lapply(seq_len(nrow(m)), function(i) as.numeric(m[i, ]))))
}

cor_call <- function(cs) {
  if (is.null(cs)) return(NULL)
  f <- cs$form
  switch(cs$type,
    compsymm = sprintf("corCompSymm(form = %s)", f),
    ar1 = sprintf("corAR1(form = %s)", f),
    car1 = sprintf("corCAR1(form = %s)", f),
    arma = sprintf("corARMA(form = %s, p = %d, q = %d)", f, cs$p, cs$q),
    symm = sprintf("corSymm(form = %s)", f))
}
var_call <- function(vs) {
  if (is.null(vs)) return(NULL)
  switch(vs$type,
    ident = sprintf("varIdent(form = ~ 1 | %s)", vs$strata),
    exp = sprintf("varExp(form = ~ %s)", vs$covariate),
    power = if (vs$covariate == "fitted") "varPower(form = ~ fitted(.))" else
      sprintf("varPower(form = ~ %s)", vs$covariate),
    constpower = if (vs$covariate == "fitted") "varConstPower(form = ~ fitted(.))" else
      sprintf("varConstPower(form = ~ %s)", vs$covariate))
}

# Tight convergence so the references are accurate to well below the 1e-4 asked
# of estimates; for variance functions of fitted values the outer fixed-point loop
# (tolerance) must converge tightly for logLik to belong to the stored covariate.
LME_CTRL <- "lmeControl(maxIter = 500, msMaxIter = 500, msMaxEval = 2000, niterEM = 50, tolerance = 1e-10, msTol = 1e-12, returnObject = TRUE)"
GLS_CTRL <- "glsControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10, msTol = 1e-12, returnObject = TRUE)"
LME_CTRL0 <- "lmeControl(maxIter = 500, msMaxIter = 500, returnObject = TRUE)"
GLS_CTRL0 <- "glsControl(maxIter = 500, msMaxIter = 500, returnObject = TRUE)"

make_call <- function(s, method, tight = TRUE) {
  parts <- c()
  if (s$engine == "lme") {
    parts <- c(sprintf("lme(fixed = %s", s$fixed),
               sprintf("random = %s", s$random_call))
  } else {
    parts <- sprintf("gls(model = %s", s$fixed)
  }
  parts <- c(parts, "data = d", sprintf("method = \"%s\"", method))
  if (!is.null(s$cor)) parts <- c(parts, sprintf("correlation = %s", cor_call(s$cor)))
  if (!is.null(s$var)) parts <- c(parts, sprintf("weights = %s", var_call(s$var)))
  ctrl <- if (s$engine == "lme") (if (tight) LME_CTRL else LME_CTRL0) else
    (if (tight) GLS_CTRL else GLS_CTRL0)
  parts <- c(parts, sprintf("control = %s)", ctrl))
  paste(parts, collapse = ", ")
}

fit_nlme <- function(s, method) {
  d <- DATA[[s$data]]
  warn <- character(0)
  wh <- function(w) { warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning") }
  cl <- make_call(s, method, TRUE)
  m <- tryCatch(withCallingHandlers(eval(parse(text = cl)), warning = wh),
                error = function(e) e)
  tight <- TRUE
  if (inherits(m, "error")) {
    err1 <- conditionMessage(m)
    tight <- FALSE
    cl <- make_call(s, method, FALSE)
    m <- tryCatch(withCallingHandlers(eval(parse(text = cl)), warning = wh),
                  error = function(e) e)
    if (inherits(m, "error"))
      return(list(spec = s, call = cl, method = method, fitted = FALSE,
                  error = c(err1, conditionMessage(m))))
    warn <- c(paste("tight control failed:", err1), warn)
  }
  ms <- m$modelStruct
  out <- list(spec = s, call = cl, method = method, fitted = TRUE,
              tight_control = tight, warnings = I(unique(warn)),
              converged = !any(grepl("convergence|[Ss]ingular", warn)),
              logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"),
              nobs = nrow(d), fixef = vec(fixef_any(m)),
              fixef_se = vec(sqrt(diag(vcov(m)))), vcov_fixef = mat(vcov(m)),
              sigma = m$sigma)
  if (!is.null(m$numIter)) out$numIter <- m$numIter
  # correlation parameters
  if (!is.null(ms$corStruct)) {
    cs <- ms$corStruct
    out$cor <- list(class = class(cs)[1],
                    natural = vec(coef(cs, unconstrained = FALSE)),
                    unconstrained = vec(coef(cs, unconstrained = TRUE)))
    if (inherits(cs, "corARMA")) out$cor$p_q <- c(attr(cs, "p"), attr(cs, "q"))
    if (inherits(cs, "corSymm")) out$cor$maxCov <- attr(cs, "maxCov")
    g1 <- levels(getGroups(m))[1]
    cm <- corMatrix(cs)
    g1 <- names(cm)[1]
    out$cor$first_group <- g1
    out$cor$first_group_matrix <- mat(cm[[1]])
  }
  # variance function
  if (!is.null(ms$varStruct)) {
    vs <- ms$varStruct
    out$var <- list(class = class(vs)[1],
                    natural = vec(coef(vs, unconstrained = FALSE)),
                    natural_all = vec(unlist(coef(vs, unconstrained = FALSE, allCoef = TRUE))),
                    unconstrained = vec(coef(vs, unconstrained = TRUE)))
    # weights 1/g; nlme keeps them in its group-sorted order, which is the CSV's
    if (!is.null(s$var$covariate) && s$var$covariate == "fitted") {
      out$var$covariate_used <- as.numeric(getCovariate(vs))
      out$var$fitted_final <- as.numeric(fitted(m))
    }
    out$var$weights <- as.numeric(varWeights(vs))
  }
  if (s$engine == "lme") {
    G <- getVarCov(m)
    out$re_cov <- mat(unclass(G)[, , drop = FALSE])
  }
  # approximate covariance of the variance parameters (nlme's apVar: on nlme's
  # internal scale -- pdMat log-sd / transformed correlation for random effects,
  # corStruct and varFunc unconstrained coefficients, log(sigma))
  if (is.matrix(m$apVar)) {
    out$apVar <- mat(m$apVar)
    out$apVar_pars <- vec(attr(m$apVar, "Pars"))
  } else out$apVar <- as.character(m$apVar)
  iv <- tryCatch(intervals(m, which = "var-cov"), error = function(e) e)
  if (inherits(iv, "error")) out$intervals <- conditionMessage(iv) else {
    ivl <- list()
    if (!is.null(iv$reStruct)) ivl$reStruct <- lapply(iv$reStruct, mat)
    if (!is.null(iv$corStruct)) ivl$corStruct <- mat(iv$corStruct)
    if (!is.null(iv$varStruct)) ivl$varStruct <- mat(iv$varStruct)
    ivl$sigma <- vec(iv$sigma)
    out$intervals <- ivl
  }
  out
}
fixef_any <- function(m) if (inherits(m, "lme")) fixef(m) else coef(m)

fit_tmb <- function(s, method) {
  d <- DATA[[s$data]]
  cl <- sprintf("glmmTMB(%s + %s, dispformula = ~0, data = d, REML = %s)",
                s$fixed, s$tmb_term, if (method == "REML") "TRUE" else "FALSE")
  warn <- character(0)
  m <- tryCatch(withCallingHandlers(eval(parse(text = cl)), warning = function(w) {
    warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning") }),
    error = function(e) e)
  if (inherits(m, "error"))
    return(list(spec = s, call = cl, method = method, fitted = FALSE, error = conditionMessage(m)))
  vc <- VarCorr(m)$cond[[1]]
  V <- vcov(m)$cond
  list(spec = s, call = cl, method = method, fitted = TRUE, warnings = I(warn),
       logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), nobs = nrow(d),
       fixef = vec(fixef(m)$cond), fixef_se = vec(sqrt(diag(V))), vcov_fixef = mat(V),
       sigma = sigma(m), re_cov = mat(unclass(vc)[, , drop = FALSE]),
       theta = vec(m$fit$par[names(m$fit$par) == "theta"]),
       pdHess = m$sdr$pdHess, convergence = m$fit$convergence,
       message = m$fit$message)
}

# ------------------------------------------------------------------- the fits
W <- list(
  none = NULL,
  ident_sex = list(type = "ident", strata = "Sex"),
  ident_occ = list(type = "ident", strata = "occf"),
  ident_diet = list(type = "ident", strata = "Diet"),
  ident_half = list(type = "ident", strata = "half"),
  exp_age = list(type = "exp", covariate = "age"),
  exp_time = list(type = "exp", covariate = "Time"),
  exp_days = list(type = "exp", covariate = "Days"),
  power_age = list(type = "power", covariate = "age"),
  power_day1 = list(type = "power", covariate = "day1"),
  power_fitted = list(type = "power", covariate = "fitted"),
  constpower_age = list(type = "constpower", covariate = "age"),
  constpower_day1 = list(type = "constpower", covariate = "day1"),
  constpower_fitted = list(type = "constpower", covariate = "fitted"))

DS <- list(
  orthodont = list(fixed = "distance ~ age + Sex", group = "Subject"),
  orthgaps = list(fixed = "distance ~ age + Sex", group = "Subject"),
  bodyweight = list(fixed = "weight ~ Time * Diet", group = "Rat"),
  sleepgaps = list(fixed = "Reaction ~ Days", group = "Subject"),
  ovary = list(fixed = "follicles ~ s1 + c1", group = "Mare"))

specs <- list()
add <- function(data, engine, cor, weights, re = NULL, label = NULL) {
  ds <- DS[[data]]
  s <- list(data = data, file = files[[data]], engine = engine, fixed = ds$fixed,
            group = ds$group, cor = cor, var = W[[weights]], weights = weights)
  if (engine == "lme") {
    s$re_terms <- if (is.null(re)) "1" else re
    s$random_call <- sprintf("~ %s | %s", paste(s$re_terms, collapse = " + "), ds$group)
  }
  corlab <- if (is.null(cor)) "indep" else if (!is.null(cor$label)) cor$label else cor$type
  relab <- if (engine == "lme") paste0("lme_", if (is.null(re)) "ri" else "rs") else "gls"
  s$structure <- corlab
  specs[[paste(data, relab, corlab, weights, sep = "/")]] <<- s
}
C <- function(type, time = NULL, group, p = 0, q = 0, label = NULL) {
  form <- if (is.null(time)) sprintf("~ 1 | %s", group) else sprintf("~ %s | %s", time, group)
  out <- list(type = type, time = if (is.null(time)) "(row order)" else time, form = form,
              p = p, q = q)
  if (!is.null(label)) out$label <- label
  out
}

# Orthodont: exchangeable by gls (with a random intercept it is not identified
# separately), AR(1) / CAR(1) / ARMA with a random intercept, unstructured and
# full Toeplitz (corARMA(p = 3) on 4 occasions: any 4x4 Toeplitz correlation is
# an AR(3) autocorrelation) by gls.
for (w in c("none", "ident_sex", "ident_occ", "exp_age", "power_age")) {
  add("orthodont", "gls", C("compsymm", NULL, "Subject"), w)
  add("orthodont", "lme", C("ar1", "occ", "Subject"), w)
}
for (w in c("none", "ident_sex")) add("orthodont", "lme", C("car1", "age", "Subject"), w)
for (w in c("none", "ident_occ")) {
  add("orthodont", "gls", C("symm", "occ", "Subject"), w)
  add("orthodont", "gls", C("arma", "occ", "Subject", p = 3, label = "toeplitz"), w)
}
add("orthodont", "gls", C("ar1", "occ", "Subject"), "none")
for (w in c("none", "exp_age", "ident_sex")) add("orthodont", "lme", C("arma", "occ", "Subject", p = 1, q = 1, label = "arma11"), w)
add("orthodont", "gls", C("symm", "occ", "Subject"), "exp_age")
add("orthodont", "gls", C("arma", "occ", "Subject", p = 3, label = "toeplitz"), "power_age")
for (w in c("none", "ident_sex")) add("orthodont", "gls", C("arma", "occ", "Subject", q = 1, label = "ma1"), w)
for (w in c("power_fitted", "constpower_age")) add("orthodont", "lme", NULL, w)
add("orthodont", "lme", C("ar1", "occ", "Subject"), "power_fitted")
add("orthodont", "lme", C("ar1", "occ", "Subject"), "none", re = c("age"))

# Orthodont with gaps: unstructured over incomplete groups, AR(1) with gaps
for (w in c("none", "ident_occ")) add("orthgaps", "gls", C("symm", "occ", "Subject"), w)
add("orthgaps", "lme", C("ar1", "occ", "Subject"), "none")
add("orthgaps", "gls", C("ar1", "occ", "Subject"), "ident_occ")
add("orthgaps", "gls", C("compsymm", NULL, "Subject"), "exp_age")

# BodyWeight: random intercept and slope in Time, CAR(1) in days (unequal spacing)
for (w in c("none", "power_fitted", "ident_diet", "exp_time", "constpower_fitted"))
  add("bodyweight", "lme", C("car1", "Time", "Rat"), w, re = "Time")
for (w in c("none", "power_fitted"))
  add("bodyweight", "lme", C("ar1", "occ", "Rat"), w, re = "Time")
for (w in c("none", "power_fitted", "ident_diet", "exp_time"))
  add("bodyweight", "lme", C("arma", "occ", "Rat", q = 2, label = "ma2"), w)
for (w in c("power_fitted", "constpower_fitted")) add("bodyweight", "lme", NULL, w, re = "Time")

# sleepstudy with gaps: AR(1) on integer days with gaps (nlme turns it into ARMA(1,0))
for (w in c("none", "exp_days", "power_day1", "constpower_day1", "power_fitted", "ident_half"))
  add("sleepgaps", "lme", C("ar1", "Days", "Subject"), w)
for (w in c("none", "exp_days")) add("sleepgaps", "lme", C("arma", "Days", "Subject", q = 1, label = "ma1"), w)
for (w in c("none", "power_day1")) add("sleepgaps", "lme", C("arma", "Days", "Subject", p = 1, q = 1, label = "arma11"), w)
add("sleepgaps", "lme", C("car1", "Days", "Subject"), "none")
add("sleepgaps", "lme", C("ar1", "Days", "Subject"), "none", re = "Days")
add("sleepgaps", "gls", C("symm", "day1", "Subject"), "none")
add("sleepgaps", "gls", C("compsymm", NULL, "Subject"), "ident_half")
for (w in c("power_fitted", "constpower_day1")) add("sleepgaps", "lme", NULL, w, re = "Days")

# Ovary: row-order AR(1) (nlme's default form ~ 1 | Mare), CAR(1) in Time, ARMA
for (w in c("none", "power_fitted")) add("ovary", "lme", C("ar1", NULL, "Mare"), w)
add("ovary", "lme", C("car1", "Time", "Mare"), "none")
add("ovary", "lme", C("arma", NULL, "Mare", p = 1, q = 1, label = "arma11"), "none")
add("ovary", "lme", C("arma", NULL, "Mare", q = 2, label = "ma2"), "none")

results <- list()
for (key in names(specs)) {
  for (method in c("ML", "REML")) {
    k <- paste(key, method, sep = "/")
    t0 <- proc.time()[["elapsed"]]
    r <- fit_nlme(specs[[key]], method)
    r$seconds <- proc.time()[["elapsed"]] - t0
    results[[k]] <- r
    cat(sprintf("%-60s %s %s\n", k, if (r$fitted) format(r$logLik, digits = 12) else "FAILED",
                if (r$fitted && !r$tight_control) "(default control)" else ""))
  }
}

# glmmTMB: the structure on a random effect of the occasion factor with the
# residual variance fixed near zero (dispformula = ~0 fixes sigma at a tiny value,
# stored as `sigma`); toep / cs / us carry one variance per occasion, ar1 one
# variance.  Same model in nlme: gls with corARMA(p=3) / corCompSymm / corSymm
# plus varIdent(~1|occf), and gls corAR1 without weights.
TMB <- list(
  toeplitz = list(term = "toep(0 + occf | Subject)", same_as = "orthodont/gls/toeplitz/ident_occ"),
  compsymm = list(term = "cs(0 + occf | Subject)", same_as = "orthodont/gls/compsymm/ident_occ"),
  symm = list(term = "us(0 + occf | Subject)", same_as = "orthodont/gls/symm/ident_occ"),
  ar1 = list(term = "ar1(0 + occf | Subject)", same_as = "orthodont/gls/ar1/none"),
  symm_gaps = list(term = "us(0 + occf | Subject)", same_as = "orthgaps/gls/symm/ident_occ",
                   data = "orthgaps"))
for (nm in names(TMB)) {
  dn <- if (is.null(TMB[[nm]]$data)) "orthodont" else TMB[[nm]]$data
  s <- list(data = dn, file = files[[dn]], engine = "glmmTMB",
            fixed = DS$orthodont$fixed, group = "Subject", tmb_term = TMB[[nm]]$term,
            tmb_struct = nm, re_factor = "occf", structure = nm,
            same_as = TMB[[nm]]$same_as)
  for (method in c("ML", "REML")) {
    k <- paste(dn, "glmmTMB", sub("_gaps$", "", nm), "occf", method, sep = "/")
    r <- fit_tmb(s, method)
    r$same_as_logLik <- results[[paste(s$same_as, method, sep = "/")]]$logLik
    results[[k]] <- r
    cat(sprintf("%-60s %s  nlme same model: %s\n", k, format(r$logLik, digits = 12),
                format(r$same_as_logLik, digits = 12)))
  }
}

out <- list(
  meta = list(
    R_version = R.version.string,
    packages = lapply(c(nlme = "nlme", lme4 = "lme4", glmmTMB = "glmmTMB", TMB = "TMB",
                        jsonlite = "jsonlite"), function(p) as.character(packageVersion(p))),
    date = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"), platform = R.version$platform,
    files = files,
    conventions = c(
      "logLik: nlme's logLik(m) (ML or REML as fitted); REML = -1/2[(N-p)log(2pi) + log|V| + r'V^-1 r + log|X'V^-1 X|]",
      "fixef_se: sqrt(diag(vcov(m))); lme: sigma^2 (X' Lambda^-1 X)^-1 with the fitted sigma; gls ML: the same times N/(N-p) (nlme rescales gls ML vcov); glmmTMB: sdreport",
      "re_cov: getVarCov(m) (absolute scale, sigma^2 included) / glmmTMB VarCorr",
      "sigma: residual sd for a row whose variance-function multiplier is 1",
      "var natural_all: nlme coef(varStruct, unconstrained = FALSE, allCoef = TRUE)",
      "var weights: varWeights = 1/g per row in the CSV row order (sd_ij = sigma * g_ij)",
      "cor natural: coef(corStruct, unconstrained = FALSE); unconstrained: coef(corStruct, unconstrained = TRUE)",
      "apVar: nlme's finite-difference covariance of (reStruct pars, corStruct unconstrained, varStruct unconstrained, log sigma)",
      "intervals: intervals(m, which = 'var-cov') (lower, est., upper) on the natural scale")),
  fits = results)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null", pretty = TRUE),
           file.path(here, "r_correlation.json"))
cat("wrote", length(results), "fits\n")
