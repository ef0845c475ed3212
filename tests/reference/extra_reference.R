## Reference for tests/test_extra_reference.py: combinations the earlier scripts did not cover
## (data simulated by tests/reference/simulate_extra.py). Writes extra_reference.json.
##   Rscript tests/reference/extra_reference.R   (from the repository root)
suppressPackageStartupMessages({library(lme4); library(glmmTMB); library(jsonlite)})
rd <- function(name, factors) {
  d <- read.csv(file.path("tests/reference/data", paste0(name, ".csv")))
  for (f in factors) d[[f]] <- factor(d[[f]])
  d
}
sds <- function(vc) unname(unlist(lapply(vc, function(v) attr(v, "stddev"))))
tmb <- function(m) list(logLik = as.numeric(logLik(m)), fixef = unname(fixef(m)$cond),
                        sd = sds(VarCorr(m)$cond), sigma = sigma(m), pdHess = m$sdr$pdHess,
                        corr = unname(attr(VarCorr(m)$cond[[1]], "correlation")[1, -1]))
out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                            glmmTMB = as.character(packageVersion("glmmTMB"))))

# 1. negative binomial (NB2), a correlated random slope crossed with an intercept term
d <- rd("nb_slope_crossed", c("g", "h"))
out$nb_slope_crossed <- tmb(glmmTMB(y ~ x + (1 + x | g) + (1 | h), data = d, family = nbinom2))

# 2. Poisson with 600 levels of 2 rows: glmmTMB, glmer, and lme4's own deviance function at
#    glmmTMB's estimates (glmer's log-likelihood is ~2e-5 low: its log-determinant is taken before
#    the last PIRLS update)
d <- rd("poisson_many_levels", "g")
mt <- glmmTMB(y ~ x + (1 | g), data = d, family = poisson)
mg <- glmer(y ~ x + (1 | g), data = d, family = poisson)
dev <- glmer(y ~ x + (1 | g), data = d, family = poisson, devFunOnly = TRUE,
             control = glmerControl(tolPwrss = 1e-13))
out$poisson_many_levels <- c(tmb(mt), list(
  glmer_logLik = as.numeric(logLik(mg)), glmer_fixef = unname(fixef(mg)),
  glmer_devfun_at_glmmTMB = -dev(c(sds(VarCorr(mt)$cond), unname(fixef(mt)$cond))) / 2))

# 3. normal response on the log link (glmer plugs in the dispersion here: glmmTMB is the ML fit)
d <- rd("normal_log", "g")
out$normal_log <- tmb(glmmTMB(y ~ x + (1 | g), data = d, family = gaussian(link = "log")))

# 4. Poisson with an offset, adaptive quadrature nAGQ = 9 (glmer's logLik omits the saturated
#    log-likelihood for nAGQ > 1; it is written alongside)
d <- rd("poisson_offset_agq", "g")
m9 <- glmer(y ~ x + offset(log(t)) + (1 | g), data = d, family = poisson, nAGQ = 9,
            control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
out$poisson_offset_agq9 <- list(logLik = as.numeric(logLik(m9)), fixef = unname(fixef(m9)),
                                sd = sds(VarCorr(m9)),
                                saturated = sum(dpois(d$y, d$y, log = TRUE)))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/extra_reference.json")
