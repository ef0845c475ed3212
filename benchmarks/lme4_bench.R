## Time lme4 (default settings) on the mfr Poisson GLMM.
##
## Usage: Rscript benchmarks/lme4_bench.R tests/reference/data/mfr.csv [reps]
##
## Prints exactly one JSON object on stdout:
##   {"glmer_fit": {"median": s, "min": s, "reps": n},
##    "refit":     {"median": s, "min": s, "reps": n},
##    "simulate":  {"median": s, "min": s, "reps": n},
##    "lme4_version": "...", "r_version": "..."}   (statistic: "median" in each timing)
## Everything else (messages, warnings) goes to stderr.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1) {
  message("usage: Rscript benchmarks/lme4_bench.R <mfr.csv> [reps]")
  quit(status = 2)
}
csv  <- args[1]
reps <- if (length(args) >= 2) as.integer(args[2]) else 20L
if (is.na(reps) || reps < 1) stop("reps must be a positive integer")

## keep stdout clean: route any printed output / messages / warnings to stderr
sink(stderr(), type = "output")

d <- read.csv(csv, stringsAsFactors = FALSE)
d$factory  <- factor(d$factory)
d$supplier <- factor(d$supplier, levels = c("C", "B", "A"))
contrasts(d$supplier) <- contr.sum(3)

form <- defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1 | factory)

elapsed <- function(expr) {
  t0 <- proc.time()[["elapsed"]]
  force(expr)
  proc.time()[["elapsed"]] - t0
}
stats <- function(x) list(median = median(x), min = min(x), reps = length(x), statistic = "median")

## warm-up (loads/compiles everything once); also the model used below
fit <- glmer(form, data = d, family = poisson)

## 1. full glmer fit
t_fit <- vapply(seq_len(reps), function(i)
  elapsed(glmer(form, data = d, family = poisson)), numeric(1))

## 2. refit with new responses (simulated before timing)
set.seed(20240601)
newresp <- lapply(seq_len(reps), function(i) simulate(fit)[[1]])
invisible(refit(fit, newresp[[1]]))  # warm-up
t_refit <- vapply(seq_len(reps), function(i)
  elapsed(lme4::refit(fit, newresp[[i]])), numeric(1))

## 3. simulate
t_sim <- vapply(seq_len(reps), function(i) elapsed(simulate(fit)), numeric(1))

sink(type = "output")
cat(toJSON(list(
  glmer_fit = stats(t_fit),
  refit = stats(t_refit),
  simulate = stats(t_sim),
  lme4_version = as.character(packageVersion("lme4")),
  r_version = paste(R.version$major, R.version$minor, sep = ".")
), auto_unbox = TRUE, digits = NA), "\n", sep = "")
