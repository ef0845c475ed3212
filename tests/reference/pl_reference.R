## Pseudo-likelihood of a gamma GLMM: MATLAB's PL loop (matlab-glme.md 3.1; sigma^2 is always
## estimated for gamma) against MASS::glmmPQL, which runs the same iteration (W = w / (v g'^2),
## pseudo-data g'(mu)(y - mu) + eta, an ML lme with Var(e) = sigma^2 / W) from a glm start and
## stops when sum((eta - eta_old)^2) < 1e-6 sum(eta^2). Used by tests/test_pseudo_likelihood.py,
## loosely (that stopping rule). The binomial/Poisson cases are in families_reference.json.
##
## Run from the repository root:   Rscript tests/reference/pl_reference.R
## Output: tests/reference/pl_reference.json
suppressPackageStartupMessages({library(MASS); library(nlme); library(jsonlite)})
d <- read.csv("tests/reference/data/gamma_log.csv", stringsAsFactors = TRUE)
ctrl <- lmeControl(maxIter = 500, msMaxIter = 1000, niterEM = 0, tolerance = 1e-12, msTol = 1e-12)
pq <- glmmPQL(y ~ x, random = ~ 1 | g, family = Gamma(link = "log"), data = d, niter = 500,
              control = ctrl, verbose = FALSE)
vc <- as.numeric(VarCorr(pq)[1, "StdDev"])
out <- list(gamma_log_mpl_glmmPQL = list(
  data = "gamma_log.csv", r_call = "glmmPQL(y ~ x, random = ~ 1 | g, family = Gamma(link = 'log'), niter = 500)",
  python = 'fitglme(d, "y ~ x + (1|g)", distribution="gamma", link="log", fit_method="mpl")',
  fixef = as.numeric(nlme::fixef(pq)), se = as.numeric(sqrt(diag(vcov(pq)))),
  sd_b = vc, sigma = pq$sigma,
  note = paste("sd_b is the SD of b (lme's StdDev); sigma the residual SD of the pseudo-data LME",
               "(MATLAB's sqrt(Dispersion)); glmmPQL's logLik is not MATLAB's (not recorded)"),
  versions = list(R = R.version.string, MASS = as.character(packageVersion("MASS")),
                  nlme = as.character(packageVersion("nlme")))))
writeLines(toJSON(out, auto_unbox = TRUE, pretty = TRUE, digits = NA), "tests/reference/pl_reference.json")
