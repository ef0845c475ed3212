## Reference fits for fitglme's covariance_pattern option (MATLAB 'CovariancePattern').
##
## Run from the repository root:
##     Rscript tests/reference/make_reference_patterns.R
## Output: tests/reference/patterns_reference.json (data: tests/reference/data/, only read).
##
## Each case is a covariance pattern of one random-effects term, fitted in R by a model of
## exactly the same likelihood:
##   * Diagonal:   lme4 (x || g) and glmmTMB diag(x | g).
##   * Isotropic:  glmmTMB diag(x | g) with the two log-SDs tied by map (Psi = s^2 I).
##   * CompSymm:   Psi = s^2 [(1 - rho) I + rho 11'] on (0 + f | g), f a factor. For rho >= 0 this
##                 is (1 | g) + (1 | g:f) (tau^2 = s^2 rho, omega^2 = s^2 (1 - rho)); also glmmTMB
##                 cs(0 + f | g) with the log-SDs tied by map (covers rho < 0 as well). glmmTMB 1.1.5
##                 has no homcs(); its cs() has one SD per coefficient.
##   * Boolean pattern [[1,1,0],[1,1,0],[0,0,1]] on (1 + Days + D2 | Subject): lme4
##     (1 + Days | Subject) + (0 + D2 | Subject).
## Derived columns (made identically in Python): period3 = Days %/% 4 as a factor ("0","1","2");
## D2 = (Days - 4.5)^2 / 10.
## Normal models: ML (REML = FALSE). GLMMs: Laplace (glmer nAGQ = 1, glmmTMB).
## sd/corr rows: column-major lower triangle of Psi (MATLAB's covarianceParameters order),
## response units; "sigma" is the residual SD (1 for binomial).

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

data_dir <- file.path("tests", "reference", "data")
rd <- function(f) read.csv(file.path(data_dir, f), stringsAsFactors = FALSE)

sleep <- rd("sleepstudy.csv")
sleep$Subject <- factor(sleep$Subject, levels = sort(unique(sleep$Subject)))
sleep$period3 <- factor(sleep$Days %/% 4, levels = c(0, 1, 2))
sleep$D2 <- (sleep$Days - 4.5)^2 / 10

bs <- rd("binary_slope.csv")
bs$subject <- factor(bs$subject)

cbpp <- rd("cbpp.csv")
cbpp$herd <- factor(cbpp$herd, levels = sort(unique(as.integer(cbpp$herd))))
cbpp$period <- factor(cbpp$period, levels = c(1, 2, 3, 4))

tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-3, rhoend = 1e-12, maxfun = 1e5),
                     check.conv.singular = "ignore")
gtight <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 2e-3, rhoend = 1e-12, maxfun = 1e5),
                       check.conv.singular = "ignore")
tmb_ctrl <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = 1e-14, x.tol = 1e-14))

psi_rows <- function(psi) {
  q <- nrow(psi)
  sd <- sqrt(diag(psi))
  out <- c()
  for (j in 1:q) for (i in j:q) out <- c(out, if (i == j) sd[i] else psi[i, j] / (sd[i] * sd[j]))
  out
}

lme4_out <- function(m, psi) {
  list(engine = "lme4", logLik = as.numeric(logLik(m)), fixef = unname(fixef(m)),
       fixef_names = names(fixef(m)), psi = psi, rows = psi_rows(psi), sigma = sigma(m))
}

tmb_out <- function(m, psi) {
  list(engine = "glmmTMB", logLik = as.numeric(logLik(m)), fixef = unname(fixef(m)$cond),
       fixef_names = names(fixef(m)$cond), psi = psi, rows = psi_rows(psi), sigma = sigma(m),
       converged = m$fit$convergence == 0, pdHess = m$sdr$pdHess)
}

vc1 <- function(m, g) { v <- VarCorr(m)[[g]]; matrix(as.numeric(v), nrow(v)) }
tmb_vc <- function(m, g) { v <- VarCorr(m)$cond[[g]]; matrix(as.numeric(v), nrow(v)) }

res <- list()

## (a, b) Diagonal on sleepstudy
m <- lmer(Reaction ~ Days + (Days || Subject), sleep, REML = FALSE, control = tight)
vc <- VarCorr(m)
psi <- diag(c(as.numeric(vc[[1]]), as.numeric(vc[[2]])))
res$sleep_diagonal_lme4 <- lme4_out(m, psi)
m <- glmmTMB(Reaction ~ Days + diag(Days | Subject), sleep, REML = FALSE, control = tmb_ctrl)
res$sleep_diagonal_glmmtmb <- tmb_out(m, tmb_vc(m, "Subject"))

## (e) Isotropic 2x2 on sleepstudy: diag() with tied SDs
m <- glmmTMB(Reaction ~ Days + diag(Days | Subject), sleep, REML = FALSE, control = tmb_ctrl,
             map = list(theta = factor(c(1, 1))))
res$sleep_isotropic_glmmtmb <- tmb_out(m, tmb_vc(m, "Subject"))

## (c) CompSymm on (0 + period3 | Subject)
m <- lmer(Reaction ~ period3 + (1 | Subject) + (1 | Subject:period3), sleep, REML = FALSE, control = tight)
vc <- VarCorr(m)
tau2 <- as.numeric(vc[["Subject"]]); om2 <- as.numeric(vc[["Subject:period3"]])
psi <- om2 * diag(3) + tau2 * matrix(1, 3, 3)
res$sleep_compsymm_lme4 <- lme4_out(m, psi)
res$sleep_compsymm_lme4$tau2 <- tau2
res$sleep_compsymm_lme4$omega2 <- om2
m <- glmmTMB(Reaction ~ period3 + cs(0 + period3 | Subject), sleep, REML = FALSE, control = tmb_ctrl,
             map = list(theta = factor(c(1, 1, 1, 2))))
res$sleep_compsymm_glmmtmb <- tmb_out(m, tmb_vc(m, "Subject"))

## Boolean pattern: {(Intercept), Days} full, D2 alone
m <- lmer(Reaction ~ Days + (1 + Days | Subject) + (0 + D2 | Subject), sleep, REML = FALSE, control = tight)
vc <- VarCorr(m)
psi <- matrix(0, 3, 3)
psi[1:2, 1:2] <- matrix(as.numeric(vc[[1]]), 2)
psi[3, 3] <- as.numeric(vc[[2]])
res$sleep_pattern_lme4 <- lme4_out(m, psi)

## (d) Diagonal in a binomial GLMM (binary_slope: y ~ x + (x || subject))
m <- glmer(y ~ x + (x || subject), bs, family = binomial, control = gtight)
vc <- VarCorr(m)
psi <- diag(c(as.numeric(vc[[1]]), as.numeric(vc[[2]])))
res$binary_diagonal_lme4 <- lme4_out(m, psi)
m <- glmmTMB(y ~ x + diag(x | subject), bs, family = binomial, control = tmb_ctrl)
res$binary_diagonal_glmmtmb <- tmb_out(m, tmb_vc(m, "subject"))

## CompSymm in a binomial GLMM: cbpp, (0 + period | herd) = (1 | herd) + (1 | herd:period)
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | herd:period), cbpp,
           family = binomial, control = gtight)
vc <- VarCorr(m)
tau2 <- as.numeric(vc[["herd"]]); om2 <- as.numeric(vc[["herd:period"]])
res$cbpp_compsymm_lme4 <- lme4_out(m, om2 * diag(4) + tau2 * matrix(1, 4, 4))
res$cbpp_compsymm_lme4$tau2 <- tau2
res$cbpp_compsymm_lme4$omega2 <- om2
m <- glmmTMB(cbind(incidence, size - incidence) ~ period + cs(0 + period | herd), cbpp,
             family = binomial, control = tmb_ctrl, map = list(theta = factor(c(1, 1, 1, 1, 2))))
res$cbpp_compsymm_glmmtmb <- tmb_out(m, tmb_vc(m, "herd"))

res$versions <- list(lme4 = as.character(packageVersion("lme4")),
                     glmmTMB = as.character(packageVersion("glmmTMB")), R = R.version.string)
writeLines(toJSON(res, auto_unbox = TRUE, pretty = TRUE, digits = NA, matrix = "rowmajor"),
           file.path("tests", "reference", "patterns_reference.json"))
