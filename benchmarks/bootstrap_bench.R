## Time lme4's parametric bootstrap (bootMer) on the mfr Poisson GLMM.
##
## Usage: Rscript benchmarks/bootstrap_bench.R tests/reference/data/mfr.csv [nsim] [ncpus]
##
## bootMer(fit, FUN, nsim, type = "parametric", use.u = FALSE) with FUN the fixed effects, theta and
## logLik (what ppl_glmm's default statistic keeps), serially; with ncpus > 1 also
## parallel = "multicore" on ncpus forked processes. Prints one JSON object on stdout:
##   {"bootMer": {"seconds": s, "nsim": n, "per_replicate": s, "cpu_seconds": s,
##                "cpu_per_replicate": s, "n_failed": k},
##    "bootMer_multicore": {... , "ncpus": c} or null, "lme4_version": "...", "r_version": "..."}
## Everything else goes to stderr.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 1) {
  message("usage: Rscript benchmarks/bootstrap_bench.R <mfr.csv> [nsim] [ncpus]")
  quit(status = 2)
}
csv   <- args[1]
nsim  <- if (length(args) >= 2) as.integer(args[2]) else 1000L
ncpus <- if (length(args) >= 3) as.integer(args[3]) else 1L

sink(stderr(), type = "output")

d <- read.csv(csv, stringsAsFactors = FALSE)
d$factory  <- factor(d$factory)
d$supplier <- factor(d$supplier, levels = c("C", "B", "A"))
contrasts(d$supplier) <- contr.sum(3)
form <- defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1 | factory)
fit <- glmer(form, data = d, family = poisson)

stat <- function(m) c(fixef(m), getME(m, "theta"), logLik = as.numeric(logLik(m)))
invisible(bootMer(fit, stat, nsim = 5, seed = 1))  # warm-up

cpu <- function(p) p[["user.self"]] + p[["sys.self"]] + p[["user.child"]] + p[["sys.child"]]
run <- function(parallel, ncpus) {
  p0 <- proc.time()
  b <- suppressWarnings(bootMer(fit, stat, nsim = nsim, seed = 20240601, type = "parametric",
                                use.u = FALSE, parallel = parallel, ncpus = ncpus))
  p1 <- proc.time()
  s <- p1[["elapsed"]] - p0[["elapsed"]]
  c <- cpu(p1) - cpu(p0)  # this process and its forked children
  failed <- sum(!stats::complete.cases(b$t))
  list(seconds = s, nsim = nsim, per_replicate = s / nsim, cpu_seconds = c,
       cpu_per_replicate = c / nsim, n_failed = failed, ncpus = ncpus)
}
serial <- run("no", 1L)
multi <- if (ncpus > 1) run("multicore", ncpus) else NULL

sink(type = "output")
cat(toJSON(list(bootMer = serial, bootMer_multicore = multi,
                lme4_version = as.character(packageVersion("lme4")),
                r_version = paste(R.version$major, R.version$minor, sep = ".")),
           auto_unbox = TRUE, digits = NA, null = "null"))
cat("\n")
