## lme4's side of benchmarks/inference.py: confint(method = "profile") (the covariance parameters
## only, parm = "theta_"), ranef(condVar = TRUE) and anova(m0, m1) on the same models, median of
## `reps` after one warm-up. Usage: Rscript benchmarks/inference_bench.R REPS OUT.json
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
reps <- as.integer(args[1])
out <- args[2]
rd <- function(f) read.csv(file.path("tests", "reference", "data", f))
sleep_d <- rd("sleepstudy.csv")
sleep_d$Subject <- factor(sleep_d$Subject)
cbpp_d <- rd("cbpp.csv")
cbpp_d$herd <- factor(cbpp_d$herd)
cbpp_d$period <- factor(cbpp_d$period)
mfr <- rd("mfr.csv")
mfr$factory <- factor(mfr$factory)
mfr$supplier <- factor(mfr$supplier, levels = c("C", "B", "A"))
contrasts(mfr$supplier) <- contr.sum(3)

models <- list(
  sleepstudy_ml = lmer(Reaction ~ Days + (Days | Subject), sleep_d, REML = FALSE),
  cbpp_binomial = glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp_d, family = binomial),
  mfr_poisson = glmer(defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1 | factory), mfr,
                      family = poisson)
)
small <- list(
  sleepstudy_ml = lmer(Reaction ~ Days + (1 | Subject), sleep_d, REML = FALSE),
  cbpp_binomial = glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), cbpp_d, family = binomial),
  mfr_poisson = glmer(defects ~ 1 + newprocess + time_dev + temp_dev + (1 | factory), mfr, family = poisson)
)
timed <- function(f) {
  f()
  ts <- numeric(reps)
  for (i in seq_len(reps)) ts[i] <- system.time(f())[["elapsed"]]
  list(median = median(ts), min = min(ts), reps = reps)
}
res <- list()
for (nm in names(models)) {
  m <- models[[nm]]
  m0 <- small[[nm]]
  res[[nm]] <- list(
    profile = timed(function() suppressWarnings(confint(m, parm = "theta_", method = "profile",
                                                         oldNames = FALSE))),
    ranef_condvar = timed(function() ranef(m, condVar = TRUE)),
    anova = timed(function() suppressMessages(anova(m0, m)))
  )
  cat(nm, "profile", res[[nm]]$profile$median, "s\n")
}
writeLines(toJSON(list(results = res, lme4 = as.character(packageVersion("lme4")),
                       R = R.version.string), auto_unbox = TRUE, digits = NA), out)
