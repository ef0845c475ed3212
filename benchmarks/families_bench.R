## Time the R fits of the issue 7 families (gamma, negative binomial, AGQ,
## REML, PQL) with each package's default settings.
##
## Usage (from the repository root):
##     Rscript benchmarks/families_bench.R [reps [case ...]]
## (benchmarks/families.py names each case's R fits, and the core mfr fit glmer_core_mfr, right
## after timing its own fit and the core fit, so that both sides of a ratio, and the core ratio it
## is held to, meet the same load on this shared machine)
##
## Each case is fitted once as a warm-up, then `reps` times (default 5; at least 25
## when the first timed fit took under 0.5 s), the cases named taking turns (round robin); the
## statistic is the median of system.time(...)[["elapsed"]] in seconds.
## Data: tests/reference/data/{gamma_log,nb_single,agq_poisson,cbpp,sleepstudy,
## gamma_large,nb_large,mfr}.csv (made by tests/reference/simulate_families.py and
## tests/reference/make_reference.R); the gamma/nb *_large sets have 20,000 rows in 500
## groups, y ~ x + (1|g), the gamma_log / nb_single models; agq_large.csv has 20,000
## Bernoulli rows in 5,000 groups (the agq_bernoulli model).
##
## Writes benchmarks/results/families_r.json: {"case": {"median": s, "min": s, "reps": n}, ...}.

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(MASS)
  library(nlme, exclude = c("lmList", "fixef", "ranef", "VarCorr", "getData"))
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args) >= 1) as.integer(args[1]) else 5L
only <- if (length(args) >= 2) args[-1] else NULL   # case names: time only these
## a fit under 0.5 s (its first timed fit) is timed at least 25 times: its median over 5 moves with
## the machine's load by tens of percent (benchmarks/families.py applies the same rule)
small_fit <- 0.5
small_reps <- 25L
data_dir <- "tests/reference/data"
out <- "benchmarks/results/families_r.json"
if (!file.exists(file.path(data_dir, "gamma_large.csv"))) stop("run from the repository root")

rd <- function(f) {
  d <- read.csv(file.path(data_dir, f), stringsAsFactors = FALSE)
  if (!is.null(d$g)) d$g <- factor(d$g)
  d
}
gamma_log <- rd("gamma_log.csv"); nb_single <- rd("nb_single.csv")
agq_poisson <- rd("agq_poisson.csv"); agq_large <- rd("agq_large.csv")
gamma_large <- rd("gamma_large.csv"); nb_large <- rd("nb_large.csv")
cbpp <- rd("cbpp.csv")
cbpp$herd <- factor(cbpp$herd); cbpp$period <- factor(cbpp$period, levels = 1:4)
sleep <- rd("sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
mfr <- rd("mfr.csv")   # the core case, as benchmarks/lme4_bench.R fits it
mfr$factory <- factor(mfr$factory)
mfr$supplier <- factor(mfr$supplier, levels = c("C", "B", "A"))
contrasts(mfr$supplier) <- contr.sum(3)

cases <- list(
  glmmTMB_gamma_log = function() glmmTMB(y ~ x + (1 | g), gamma_log, family = Gamma(link = "log")),
  glmer_gamma_log = function() glmer(y ~ x + (1 | g), gamma_log, family = Gamma(link = "log")),
  glmmTMB_nbinom2_nb_single = function() glmmTMB(y ~ x + (1 | g), nb_single, family = nbinom2),
  glmer_nb_nb_single = function() glmer.nb(y ~ x + (1 | g), data = nb_single),
  glmer_nAGQ25_agq_poisson = function() glmer(y ~ x + (1 | g), agq_poisson, family = poisson, nAGQ = 25),
  glmer_laplace_agq_poisson = function() glmer(y ~ x + (1 | g), agq_poisson, family = poisson),
  glmer_nAGQ9_agq_large = function() glmer(y ~ x + (1 | g), agq_large, family = binomial, nAGQ = 9),
  glmer_nAGQ25_agq_large = function() glmer(y ~ x + (1 | g), agq_large, family = binomial, nAGQ = 25),
  glmer_nAGQ9_cbpp = function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp,
                                      family = binomial, nAGQ = 9),
  lmer_reml_sleepstudy = function() lmer(Reaction ~ Days + (Days | Subject), sleep, REML = TRUE),
  glmmPQL_cbpp = function() glmmPQL(incidence / size ~ period, random = ~ 1 | herd, family = binomial,
                                    data = cbpp, weights = size, verbose = FALSE),
  glmmTMB_gamma_large = function() glmmTMB(y ~ x + (1 | g), gamma_large, family = Gamma(link = "log")),
  glmer_gamma_large = function() glmer(y ~ x + (1 | g), gamma_large, family = Gamma(link = "log")),
  glmmTMB_nbinom2_nb_large = function() glmmTMB(y ~ x + (1 | g), nb_large, family = nbinom2),
  glmer_nb_nb_large = function() glmer.nb(y ~ x + (1 | g), data = nb_large),
  glmer_core_mfr = function() glmer(defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1 | factory),
                                    mfr, family = poisson)
)

if (!is.null(only)) {
  unknown <- setdiff(only, names(cases))
  if (length(unknown)) stop("unknown case(s): ", paste(unknown, collapse = ", "))
  cases <- cases[only]
}
## Round robin: every rep times each named case once, so that cases named together (a case's R
## fits and the core mfr fit, glmer_core_mfr) meet the same load; a case stops at its own count.
for (f in cases) suppressWarnings(suppressMessages(f()))     # warm-ups
one <- function(f) system.time(suppressWarnings(suppressMessages(f())))[["elapsed"]]
times <- lapply(cases, function(f) numeric(0))
need <- setNames(rep(NA_integer_, length(cases)), names(cases))
repeat {
  active <- names(cases)[is.na(need) | lengths(times) < need]
  if (!length(active)) break
  for (nm in active) {
    t <- one(cases[[nm]])
    times[[nm]] <- c(times[[nm]], t)
    if (is.na(need[[nm]])) need[[nm]] <- if (t < small_fit) max(reps, small_reps) else reps
  }
}
res <- list()
for (nm in names(cases)) {
  t <- times[[nm]]
  res[[nm]] <- list(median = median(t), min = min(t), reps = length(t))
  message(sprintf("%-28s median %.4f s (min %.4f, max %.4f, %d reps)", nm, median(t), min(t), max(t),
                  length(t)))
}
writeLines(toJSON(res, auto_unbox = TRUE, pretty = TRUE, digits = NA), out)
message("wrote ", out, sprintf(" (R %s, lme4 %s, glmmTMB %s, %d reps)", getRversion(),
                               packageVersion("lme4"), packageVersion("glmmTMB"), reps))
