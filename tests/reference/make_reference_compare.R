## Reference numbers for compare (likelihood-ratio tests) and residuals, from lme4.
##
## Run from the repository root:
##     Rscript tests/reference/make_reference_compare.R
## Output: tests/reference/compare_reference.json (read by tests/test_compare.py and
## tests/test_residuals_properties.py; the tests never need R).
##
## Data: the committed CSVs of tests/reference/data (the same numbers Python reads).
## Fits use lme4 at tight settings (bobyqa, rhoend 1e-12, tolPwrss 1e-13 for glmer) so that the
## estimates agree with ppl_glmm's to ~1e-7 relative, well inside the tests' 1e-6.
##
## compare: lme4's anova(m0, m1) for nested ML fits (REML = FALSE for lmer):
##   cbpp_period      cbind(incidence, size - incidence) ~ 1 + (1|herd)  vs  ~ period + (1|herd)
##   sleep_slope      Reaction ~ Days + (1|Subject)  vs  Reaction ~ Days + (Days|Subject)
##   sleep_days       Reaction ~ 1 + (Days|Subject)  vs  Reaction ~ Days + (Days|Subject)
##   mfr_supplier     Poisson defects ~ 1 + newprocess + time_dev + temp_dev + (1|factory)
##                    vs the same + supplier
## Recorded per pair: npar (MATLAB's DF), AIC, BIC, logLik, Chisq, Df (deltaDF), Pr(>Chisq).
##
## residuals: lme4's residuals(m, type = "response" / "pearson" / "deviance") for
##   cbpp (binomial with sizes: proportions, prior weights = size), mfr (Poisson),
##   sleepstudy (Days|Subject) ML, and the weighted crossed normal model (weights = w).
##   For lmer, "pearson" is also given with scaled = TRUE (divided by sigma-hat: MATLAB's
##   definition); glmer's Pearson residuals for binomial/Poisson need no scaling (sigma = 1).
##   "marginal_response" is y - mu0 with mu0 = predict(m, re.form = NA, type = "response") (b = 0),
##   "marginal_pearson" is (y - mu0) sqrt(w) / sqrt(V(mu0)) / sigma (MATLAB's Pearson with b = 0,
##   formed here from lme4's mu0, family variance and prior weights).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

if (!file.exists("tests/reference/data/mfr.csv"))
  stop("run this script from the repository root")

data_dir <- "tests/reference/data"
out_json <- "tests/reference/compare_reference.json"
source("tests/reference/reference_data.R")
mfr <- read_mfr()
cbpp_d <- read_cbpp()
sleep_d <- read_sleepstudy()

nwc <- rd("normal_weighted_crossed.csv")
nwc$g <- factor(nwc$g)
nwc$h <- factor(nwc$h)

lctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
gctrl <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-13,
                      optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

fit_lmer <- function(f, d, weighted = FALSE) {
  args <- list(formula = as.formula(f), data = d, REML = FALSE, control = lctrl)
  if (weighted) args$weights <- d$w
  do.call(lmer, args)
}
fit_glmer <- function(f, d, fam) glmer(as.formula(f), data = d, family = fam, control = gctrl)

models <- list(
  cbpp0 = fit_glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp_d, binomial),
  cbpp1 = fit_glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp_d, binomial),
  sleep_int = fit_lmer("Reaction ~ Days + (1 | Subject)", sleep_d),
  sleep_full = fit_lmer("Reaction ~ Days + (Days | Subject)", sleep_d),
  sleep_nodays = fit_lmer("Reaction ~ 1 + (Days | Subject)", sleep_d),
  mfr0 = fit_glmer("defects ~ 1 + newprocess + time_dev + temp_dev + (1 | factory)", mfr, poisson),
  mfr1 = fit_glmer("defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1 | factory)",
                   mfr, poisson),
  nwc = fit_lmer("y ~ x + (1 | g) + (1 | h)", nwc, weighted = TRUE)
)

pairs <- list(
  cbpp_period = c("cbpp0", "cbpp1"),
  sleep_slope = c("sleep_int", "sleep_full"),
  sleep_days = c("sleep_nodays", "sleep_full"),
  mfr_supplier = c("mfr0", "mfr1")
)

compare_out <- list()
for (nm in names(pairs)) {
  m0 <- models[[pairs[[nm]][1]]]
  m1 <- models[[pairs[[nm]][2]]]
  a <- as.data.frame(anova(m0, m1, refit = FALSE))
  col <- function(k) unname(a[[k]])
  compare_out[[nm]] <- list(
    small = pairs[[nm]][1], big = pairs[[nm]][2],
    npar = col(if ("npar" %in% names(a)) "npar" else "Df"),
    AIC = col("AIC"), BIC = col("BIC"), logLik = col("logLik"),
    Chisq = col("Chisq")[2], Df = col(if ("npar" %in% names(a)) "Df" else "Chi Df")[2],
    p = col("Pr(>Chisq)")[2],
    loglik_each = c(as.numeric(logLik(m0)), as.numeric(logLik(m1)))
  )
}

resid_out <- list()
for (nm in c("cbpp1", "mfr1", "sleep_full", "nwc")) {
  m <- models[[nm]]
  fam <- family(m)
  y <- model.response(model.frame(m))
  if (is.matrix(y)) y <- y[, 1] / rowSums(y)   # binomial: proportions
  w <- weights(m)                              # prior weights (binomial: size)
  sig <- sigma(m)
  mu0 <- predict(m, re.form = NA, type = "response")
  r <- list(
    response = unname(residuals(m, type = "response")),
    pearson = unname(residuals(m, type = "pearson")),
    deviance = unname(residuals(m, type = "deviance")),
    fitted = unname(fitted(m)),
    marginal_response = unname(y - mu0),
    marginal_pearson = unname((y - mu0) * sqrt(w) / sqrt(fam$variance(mu0)) /
                                (if (isLMM(m)) sig else 1)),
    sigma = sig,
    loglik = as.numeric(logLik(m))
  )
  if (isLMM(m)) r$pearson_scaled <- unname(residuals(m, type = "pearson", scaled = TRUE))
  resid_out[[nm]] <- r
}

out <- list(
  generated_by = "tests/reference/make_reference_compare.R",
  lme4_version = as.character(packageVersion("lme4")),
  R_version = R.version.string,
  settings = list(lmer = "lmerControl(optimizer='bobyqa', optCtrl=list(rhoend=1e-12, maxfun=1e5)), REML=FALSE",
                  glmer = "glmerControl(optimizer='bobyqa', tolPwrss=1e-13, optCtrl=list(rhoend=1e-12, maxfun=1e5)), nAGQ=1"),
  compare = compare_out,
  residuals = resid_out
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), out_json)
cat("wrote", out_json, "\n")
