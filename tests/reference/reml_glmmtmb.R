## REML of a normal model with a log link: glmmTMB's REML = TRUE integrates the fixed effects out
## by the Laplace approximation, the general REMLProblem of ppl_glmm (tests/test_reml.py).
##
## Run from the repository root:   Rscript tests/reference/reml_glmmtmb.R
## Output: tests/reference/reml_glmmtmb.json
suppressPackageStartupMessages({library(glmmTMB); library(jsonlite)})
d <- read.csv("tests/reference/data/sleepstudy.csv")
f <- glmmTMB(Reaction ~ Days + (Days | Subject), d, family = gaussian(link = "log"), REML = TRUE,
             control = glmmTMBControl(optCtrl = list(rel.tol = 1e-12, iter.max = 1e4, eval.max = 1e4)))
vc <- VarCorr(f)$cond$Subject
out <- list(
  sleepstudy_log_reml = list(
    data = "sleepstudy.csv", r_formula = "Reaction ~ Days + (Days | Subject), gaussian(link = 'log'), REML = TRUE",
    python = 'fitglme(d, "Reaction ~ 1 + Days + (1 + Days|Subject)", link="log", fit_method="reml")',
    logLik = as.numeric(logLik(f)), fixef = as.numeric(fixef(f)$cond), sigma = sigma(f),
    varcorr = c(attr(vc, "stddev")[1], attr(vc, "correlation")[2, 1], attr(vc, "stddev")[2]),
    convergence = f$fit$convergence, message = f$fit$message,
    max_abs_gradient = max(abs(f$sdr$gradient.fixed)),
    versions = list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                    TMB = as.character(packageVersion("TMB")))))
writeLines(toJSON(out, auto_unbox = TRUE, pretty = TRUE, digits = NA), "tests/reference/reml_glmmtmb.json")
