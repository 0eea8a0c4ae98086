# derive_hsb.R -- build hsb.csv (High School and Beyond, 1982 sub-sample) from R's
# nlme::MathAchieve (student level) and nlme::MathAchSchool (school level).
#
# Produced with: R version 4.2.2 Patched (2022-11-10 r83330), nlme 3.1.162
# (Debian bookworm packages r-base-core / r-cran-nlme).
#
# Usage (from anywhere):  Rscript statsmodels_hetmixed/datasets/hsb/derive_hsb.R
#
# Output: hsb.csv next to this script; 7,185 rows (students) in MathAchieve's row
# order, 160 schools.  Columns, in order:
#   school   integer school id (e.g. 1224)
#   mathach  MathAch
#   female   1 if Sex == "Female" else 0
#   minority 1 if Minority == "Yes" else 0
#   ses      SES
#   meanses  school mean of SES computed from these 7,185 rows (NOT the MEANSES
#            column shipped with the data, which differs slightly)
#   cses     ses - meanses (group-mean centred SES)
#   sector   0 Public, 1 Catholic
#   size, pracad, disclim, himinty   school-level columns of MathAchSchool
#            (Size, PRACAD, DISCLIM, HIMINTY), merged by school
# Numbers are written by write.csv, i.e. with 15 significant digits (source values
# have at most 3 decimals and are reproduced exactly; meanses/cses carry 15
# significant digits).

suppressPackageStartupMessages(library(nlme))

args <- commandArgs(trailingOnly = FALSE)
f <- sub("^--file=", "", args[grep("^--file=", args)])
outdir <- if (length(f) == 1) dirname(normalizePath(f)) else getwd()
outfile <- file.path(outdir, "hsb.csv")

stu <- as.data.frame(MathAchieve)      # drop groupedData classes, keep row order
sch <- as.data.frame(MathAchSchool)

school <- as.integer(as.character(stu$School))
meanses <- ave(stu$SES, school, FUN = mean)

key <- match(school, as.integer(as.character(sch$School)))
stopifnot(!anyNA(key))

hsb <- data.frame(
  school   = school,
  mathach  = stu$MathAch,
  female   = as.integer(stu$Sex == "Female"),
  minority = as.integer(stu$Minority == "Yes"),
  ses      = stu$SES,
  meanses  = meanses,
  cses     = stu$SES - meanses,
  sector   = as.integer(sch$Sector[key] == "Catholic"),
  size     = as.integer(round(sch$Size[key])),
  pracad   = sch$PRACAD[key],
  disclim  = sch$DISCLIM[key],
  himinty  = as.integer(as.character(sch$HIMINTY[key]))
)

# checks
stopifnot(nrow(hsb) == 7185,
          length(unique(hsb$school)) == 160,
          !anyNA(hsb),
          all(hsb$size == sch$Size[key]),
          all(hsb$sector %in% 0:1), all(hsb$himinty %in% 0:1),
          max(abs(tapply(hsb$cses, hsb$school, mean))) < 1e-12)

write.csv(hsb, outfile, row.names = FALSE, quote = FALSE)

# re-read and confirm round trip
back <- read.csv(outfile)
stopifnot(identical(dim(back), dim(hsb)),
          identical(names(back), names(hsb)),
          max(abs(as.matrix(back) - as.matrix(hsb))) < 1e-12)

cat("wrote", outfile, "\n")
cat(R.version.string, "; nlme", as.character(packageVersion("nlme")), "\n")
cat("rows:", nrow(hsb), " schools:", length(unique(hsb$school)),
    " missing:", sum(is.na(hsb)), "\n")
cat("max |meanses - MEANSES| =", max(abs(hsb$meanses - stu$MEANSES)), "\n")
print(summary(hsb))
