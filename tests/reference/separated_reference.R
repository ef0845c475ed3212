## Reference for tests/test_inputs.py::test_separated_crossed_data_with_a_local_maximum_...:
## 150 Bernoulli rows on crossed factors (60 and 40 levels) that fixed and random effects together
## separate completely (data/crossed_separated.csv, simulated in Python, seed 1893000). glmer and
## glmmTMB report a local maximum of the Laplace likelihood; this writes both fits.
##   Rscript tests/reference/separated_reference.R   (from the repository root)
suppressPackageStartupMessages({library(lme4); library(glmmTMB); library(jsonlite)})
d <- read.csv("tests/reference/data/crossed_separated.csv")
d$g <- factor(d$g); d$h <- factor(d$h)
f <- y ~ x + (1 | g) + (1 | h)
m1 <- glmer(f, data = d, family = binomial,
            control = glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun = 1e5)))
m2 <- glmmTMB(f, data = d, family = binomial)
sds <- function(vc) unname(sapply(vc, function(v) attr(v, "stddev")))
out <- list(
  glmer = list(logLik = as.numeric(logLik(m1)), fixef = unname(fixef(m1)), sd = sds(VarCorr(m1)),
               version = as.character(packageVersion("lme4"))),
  glmmTMB = list(logLik = as.numeric(logLik(m2)), fixef = unname(fixef(m2)$cond),
                 sd = sds(VarCorr(m2)$cond), pdHess = m2$sdr$pdHess,
                 version = as.character(packageVersion("glmmTMB")))
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/separated_reference.json")
