## Reference numbers for fit_method = "quadrature" (adaptive Gauss-Hermite quadrature, lme4's
## glmer(nAGQ = K)) for the ppl_glmm test-suite (tests/test_quadrature.py), complementing the
## cbpp_agq / agq_poisson / agq_bernoulli entries of families_reference.json
## (make_reference_families.R): lme4's objective at a fixed point (devfun_at_opt), an even rule
## (nAGQ = 2), a Poisson model with effects coding (mfr) and a random slope without intercept
## (0 + x | subject), the case where the term's column is a covariate.
##
## Run from the repository root:
##     Rscript tests/reference/agq_reference.R
## Output: tests/reference/agq_reference.json. Reads only existing data in tests/reference/data.
##
## For each case and K: glmer at tight settings (bobyqa, tolPwrss = 1e-14, rhoend = 1e-12),
## fixef, theta, the SD, logLik, SEs (vcov(), lme4's default: finite-difference Hessian for nAGQ > 0),
## and "devfun_at_opt": glmer(devFunOnly = TRUE, nAGQ = K) evaluated at (theta, fixef) of the fit,
## i.e. lme4's objective (deviance) at a known point, free of optimizer tolerance.
##
## Constants: for nAGQ > 1 lme4 writes the deviance with deviance residuals, so logLik() omits the
## saturated log-likelihood sum_i log p(y_i | mu_i = y_i) (non-zero for binomial counts and Poisson,
## 0 for Bernoulli data); nAGQ = 1 (glmerLaplace) uses aic() and keeps all constants.
## "saturated" records that sum, so logLik + saturated (nAGQ > 1) is the log-likelihood with all
## constants that ppl_glmm reports ("logLik_all_constants").

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})
if (!file.exists("tests/reference/data/cbpp.csv")) stop("run this script from the repository root")
data_dir <- "tests/reference/data"
rd <- function(f) read.csv(file.path(data_dir, f), stringsAsFactors = FALSE)

cbpp_d <- rd("cbpp.csv")
cbpp_d$herd <- factor(cbpp_d$herd, levels = sort(unique(cbpp_d$herd)))
cbpp_d$period <- factor(cbpp_d$period, levels = c(1, 2, 3, 4))

mfr <- rd("mfr.csv")
mfr$factory <- factor(mfr$factory)
mfr$supplier <- factor(mfr$supplier, levels = c("C", "B", "A"))
contrasts(mfr$supplier) <- contr.sum(3)

bs <- rd("binary_slope.csv")
bs$subject <- factor(bs$subject)

ctrl <- glmerControl(optimizer = "bobyqa", tolPwrss = 1e-14,
                     optCtrl = list(rhoend = 1e-12, maxfun = 1e5))

cases <- list(
  cbpp_agq = list(formula = cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp_d,
                  family = binomial, K = c(1L, 2L, 9L, 25L),
                  saturated = function(d) sum(dbinom(d$incidence, d$size, d$incidence / d$size, log = TRUE)),
                  python = 'incidence ~ period + (1|herd), distribution="binomial", binomial_size="size"'),
  mfr_agq = list(formula = defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1 | factory),
                 data = mfr, family = poisson, K = c(1L, 9L, 25L),
                 saturated = function(d) sum(dpois(d$defects, d$defects, log = TRUE)),
                 python = 'defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory), distribution="poisson", dummy_var_coding="effects"'),
  binary_slope_agq = list(formula = y ~ x + (0 + x | subject), data = bs, family = binomial,
                          K = c(1L, 9L, 25L), saturated = function(d) 0,
                          python = 'y ~ x + (0 + x|subject), distribution="binomial"')
)

result <- list(meta = list(lme4 = as.character(packageVersion("lme4")), R = R.version.string,
                           control = "glmerControl(optimizer='bobyqa', tolPwrss=1e-14, optCtrl=list(rhoend=1e-12, maxfun=1e5))"))
for (nm in names(cases)) {
  cs <- cases[[nm]]
  out <- list(python = cs$python, saturated = cs$saturated(cs$data))
  for (K in cs$K) {
    m <- glmer(cs$formula, data = cs$data, family = cs$family, nAGQ = K, control = ctrl)
    dev <- glmer(cs$formula, data = cs$data, family = cs$family, nAGQ = K, control = ctrl, devFunOnly = TRUE)
    par <- c(getME(m, "theta"), fixef(m))
    ll <- as.numeric(logLik(m))
    e <- list(fixef = unname(fixef(m)), names = names(fixef(m)), theta = unname(getME(m, "theta")),
              sd = unname(attr(VarCorr(m)[[1]], "stddev")), logLik = ll,
              logLik_all_constants = if (K > 1) ll + out$saturated else ll,
              devfun_at_opt = dev(par), se = unname(sqrt(diag(as.matrix(vcov(m))))),
              # (vcov warns that the two matrices differ by > 1e-4: expected, they are different estimates)
              se_rx = unname(sqrt(diag(as.matrix(suppressWarnings(vcov(m, use.hessian = FALSE)))))),
              ranef = unname(ranef(m)[[1]][, 1]),
              optimizer_message = m@optinfo$message, conv = m@optinfo$conv$opt)
    out[[sprintf("nAGQ_%d", K)]] <- e
    cat(sprintf("%-18s K=%2d logLik %.12f all-constants %.12f\n", nm, K, ll, e$logLik_all_constants))
  }
  result[[nm]] <- out
}
writeLines(toJSON(result, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/reference/agq_reference.json")
