## Reference numbers for issue 7 (gamma, inverse Gaussian and negative-binomial
## GLMMs, REML, MATLAB-style pseudo-likelihood, adaptive Gauss-Hermite
## quadrature) for the ppl_glmm test-suite. R is the ground truth; the Python
## tests only read the JSON.
##
## Run from the repository root:
##     Rscript tests/reference/make_reference_families.R
## (FAM_CASES="key1,key2" fits only those cases and writes FAM_OUT, default
## /tmp/families_reference_subset.json, instead of the committed file.)
##
## Input   tests/reference/data/*.csv, made by tests/reference/simulate_families.py
##         (plus cbpp.csv, grouseticks.csv and sleepstudy.csv exported by
##         make_reference.R). Output  tests/reference/families_reference.json.
##
## Model conventions (MATLAB fitglme's, which ppl_glmm follows)
##   y_i | b ~ family(mu_i), g(mu_i) = x_i' beta + z_i' b, b ~ N(0, Psi),
##   Var(y_i | b) = sigma^2 v(mu_i) / w_i with v = mu^2 (gamma), mu^3 (inverse
##   Gaussian); gamma shape = w / sigma^2, IG lambda = w / sigma^2;
##   MATLAB's Dispersion = sigma^2. NB2: Var(y | b) = mu + mu^2 / theta, and with
##   prior weight w the row is the mean of w iid NB2(mu, theta) counts, so the
##   count k = w y is NB2(w mu, w theta) and the row's log-density is
##   dnbinom(k, mu = w mu, size = w theta, log = TRUE).
##   varcorr std values are always the SD of b itself (the scale of the linear
##   predictor), whatever the tool prints (see the lme4_note of the gamma cases).
##
## Cases (JSON keys) and what is authoritative ("reference" field of each case)
##   gamma_log          y ~ x + (1|g), Gamma(log). glmmTMB, glmer, exact_laplace.
##                      reference: exact_laplace (agrees with glmmTMB).
##   gamma_inverse      Gamma(inverse) (MATLAB link "reciprocal" / power -1);
##                      glmmTMB, glmer, exact_laplace. reference: exact_laplace.
##   gamma_slope        y ~ x + (1 + x|g), Gamma(log); glmmTMB only (reference).
##   gamma_reciprocal_offset  y ~ x + offset(off) + (1|g), Gamma(inverse); glmmTMB
##                      only (reference). An offset outside the span of X.
##   invgauss_log       inverse Gaussian, log link: glmmTMB 1.1.5 has no inverse
##                      Gaussian family (checked: not in glmmTMB:::.valid_family);
##                      reference: exact_laplace; glmer recorded with a note.
##   invgauss_canonical inverse Gaussian, link 1/mu^2 (MATLAB power -2):
##                      exact_laplace (reference) and glmer.
##   gamma_weights      gamma_weights.csv, weights w in {1,2,3}, MATLAB's rule
##                      shape = w / sigma^2: exact_laplace only (glmmTMB's
##                      weights multiply the log-density, another model).
##   nb_single          y ~ x + (1|g), NB2: glmmTMB nbinom2, glmer.nb,
##                      exact_laplace (reference).
##   nb_two_terms       y ~ x + (1|g) + (1|h) crossed, NB2: glmmTMB (reference).
##   nb_weights         nb_weights.csv, w in {1,2}, k = w y ~ NB2(w mu, w theta):
##                      exact_laplace only.
##   sleepstudy_reml    lmer(Reaction ~ Days + (Days|Subject), REML = TRUE).
##   normal_weighted_crossed_reml / _ml   lmer(y ~ x + (1|g) + (1|h), weights = w),
##                      Var(e) = sigma^2 / w; REML = TRUE / FALSE. Both also get
##                      an independent dense Gaussian log-likelihood check.
##   cbpp_mpl, cbpp_mpl_dispersion, cbpp_rempl, grouse_mpl,
##   grouse_mpl_dispersion   MATLAB pseudo-likelihood (pl_fit below; nlme::lme
##                      for the pseudo-data LME); the _dispersion cases are also
##                      compared with MASS::glmmPQL. reference: pl_fit.
##   cbpp_agq, agq_poisson, agq_bernoulli   glmer nAGQ = 1, 9, 25 (entries
##                      "nAGQ_1", "nAGQ_9", "nAGQ_25"), an independent AGQ
##                      evaluation at each glmer optimum ("agq_check") and the
##                      exact marginal log-likelihood by integrate() per group at
##                      the nAGQ = 25 estimates ("exact_integral").
##
## Settings
##   glmer:   glmerControl(optimizer = "bobyqa", tolPwrss = 1e-14,
##            optCtrl = list(rhoend = 1e-12, maxfun = 1e5)); looser settings are
##            tried in turn when this one errors or gives convergence messages
##            (the settings used are recorded in "settings").
##   lmer:    lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5)).
##   glmmTMB: glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4,
##            rel.tol = r)) for r = 1e-14, 1e-12, 1e-10, 1e-8: nlminb often ends
##            a very tight run with "singular convergence (7)" although the
##            gradient is ~1e-9; all four runs are made and the one with the
##            largest logLik among those with a positive-definite Hessian is kept
##            (its rel.tol, message, max |gradient| and the other runs' logLik
##            are recorded in "settings" / "attempts").
##   exact_laplace: one scalar random intercept, so the Laplace approximation
##            factorises over the groups. Per group j,
##              h_j(b) = sum_{i in j} log f(y_i | eta_i + b) + dnorm(b, 0, sd, log = TRUE),
##            maximised by Newton (exact observed second derivative, step halving),
##              Laplace_j = h_j(b_j) + 0.5 log(2 pi) - 0.5 log(-h_j''(b_j)).
##            The sum over j is maximised over (beta, log sd, log dispersion) by
##            optim BFGS (numDeriv gradient), then Nelder-Mead (reltol 1e-15),
##            then Newton steps with numDeriv Hessians; se = sqrt(diag) of the
##            inverse negative Hessian in (beta, log sd, log dispersion)
##            (MATLAB's JointHessian / glmmTMB's sdreport definition).
##            dispersion parameter: sigma (gamma, IG: MATLAB's sqrt(Dispersion))
##            or theta (NB2).
##   pl_fit:  MATLAB's PL loop (matlab-glme.md section 3.1). Reference entry "pl_fit": the
##            pseudo-data LME solved exactly by lme_own (gradient ~1e-10); entry
##            "pl_fit_nlme": the same loop with nlme::lme(weights = varFixed(~ 1 / W),
##            method = "ML"/"REML", lmeControl(sigma = 1) for fixed dispersion), whose
##            optimum is ~1e-5 off, and whose REML with fixed sigma maximises another
##            criterion (logLik 5.31 above the restricted logLik, sd 0.2% off);
##            converged when max|eta_new - eta_old| <= max(1e-10 max|eta_old|, 1e-10).
##
## JSON layout (as in make_reference.R)
##   * numeric vectors are JSON arrays (even length 1); fixef in names_python order.
##   * varcorr rows per random-effects term (formula order), column-major lower
##     triangle: (1,1) std, (2,1) corr, ..., (2,2) std, ...; std = SD of b.
##   * ranef[[group]] = {levels, names, values}: values has one array per
##     coefficient name, one value per level (conditional modes of b).
##   * each fitted entry has fixef, fixef_names_r, se, varcorr, sigma,
##     dispersion, dispersion_note, logLik, AIC, BIC, nobs, df, convergence
##     fields and ranef; each case has "reference" (the name of the authoritative
##     entry) and "notes".
##   * _meta: R and package versions, date, script.

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(nlme, exclude = c("lmList", "fixef", "ranef", "VarCorr", "getData"))
  library(MASS)
  library(jsonlite)
})
fixef <- lme4::fixef; ranef <- lme4::ranef; VarCorr <- lme4::VarCorr

if (!file.exists("tests/reference/data/gamma_log.csv"))
  stop("run this script from the repository root (after simulate_families.py)")
data_dir <- "tests/reference/data"
out_json <- "tests/reference/families_reference.json"
only <- Sys.getenv("FAM_CASES")
if (nzchar(only)) out_json <- Sys.getenv("FAM_OUT", "/tmp/families_reference_subset.json")
want <- function(nm) !nzchar(only) || nm %in% strsplit(only, ",", fixed = TRUE)[[1]]

## ---------------------------------------------------------------------------
## Data
## ---------------------------------------------------------------------------
rd <- function(f) {
  d <- read.csv(file.path(data_dir, f), stringsAsFactors = FALSE)
  for (v in intersect(c("g", "h"), names(d))) d[[v]] <- factor(d[[v]], levels = sort(unique(d[[v]])))
  d
}
D <- list(
  gamma_log = rd("gamma_log.csv"), gamma_weights = rd("gamma_weights.csv"),
  gamma_inverse = rd("gamma_inverse.csv"), gamma_slope = rd("gamma_slope.csv"),
  gamma_reciprocal_offset = rd("gamma_reciprocal_offset.csv"),
  invgauss_log = rd("invgauss_log.csv"), invgauss_canonical = rd("invgauss_canonical.csv"),
  nb_single = rd("nb_single.csv"), nb_weights = rd("nb_weights.csv"),
  nb_two_terms = rd("nb_two_terms.csv"),
  normal_weighted_crossed = rd("normal_weighted_crossed.csv"),
  agq_poisson = rd("agq_poisson.csv"), agq_bernoulli = rd("agq_bernoulli.csv"))
cbpp_d <- rd("cbpp.csv")
cbpp_d$herd <- factor(cbpp_d$herd, levels = sort(unique(cbpp_d$herd)))
cbpp_d$period <- factor(cbpp_d$period, levels = c(1, 2, 3, 4))
gt_d <- rd("grouseticks.csv")
gt_d$YEAR <- factor(gt_d$YEAR, levels = c(95, 96, 97))
gt_d$BROOD <- factor(gt_d$BROOD, levels = sort(unique(gt_d$BROOD)))
plb_d <- rd("pl_binary.csv")
plb_d$g <- factor(plb_d$g, levels = sort(unique(plb_d$g)))
sleep_d <- rd("sleepstudy.csv")
sleep_d$Subject <- factor(sleep_d$Subject, levels = sort(unique(sleep_d$Subject)))
stopifnot(all(D$nb_weights$k == D$nb_weights$w * D$nb_weights$y))

## ---------------------------------------------------------------------------
## Generic helpers
## ---------------------------------------------------------------------------
capture <- function(expr) {
  warns <- character(0); msgs <- character(0)
  val <- withCallingHandlers(expr,
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, trimws(conditionMessage(m))); invokeRestart("muffleMessage") })
  list(value = val, warnings = warns, messages = msgs)
}
A <- function(x) I(unname(as.numeric(x)))          # JSON array
S <- function(x) I(as.character(x))

## varcorr rows from a list of per-term (sd vector, corr matrix)
vc_rows <- function(terms) {
  rows <- list()
  for (t in terms) {
    k <- length(t$cn)
    for (j in seq_len(k)) {
      rows[[length(rows) + 1]] <- list(group = t$py, name1 = t$cn[j], name2 = t$cn[j],
                                       type = "std", estimate = unname(t$sd[j]))
      if (j < k) for (r in (j + 1):k)
        rows[[length(rows) + 1]] <- list(group = t$py, name1 = t$cn[r], name2 = t$cn[j],
                                         type = "corr", estimate = unname(t$corr[r, j]))
    }
  }
  rows
}
## terms of a VarCorr-like list (lme4 or glmmTMB$cond), optionally rescaled
vc_terms <- function(vc, re, scale = 1) {
  used <- integer(0)
  lapply(re, function(term) {
    idx <- which(sub("\\.[0-9]+$", "", names(vc)) == term$grp &
                 vapply(vc, function(m) identical(colnames(m), term$cn), logical(1)))
    i <- setdiff(idx, used)[1]; used <<- c(used, i)
    m <- vc[[i]]
    cr <- attr(m, "correlation"); if (is.null(cr)) cr <- diag(length(term$cn))
    list(py = term$py, cn = term$cn, sd = scale * attr(m, "stddev"), corr = cr)
  })
}
ranef_json <- function(rr, re, scale = 1) {
  out <- list()
  for (term in re) {
    d <- rr[[term$grp]]
    out[[term$key]] <- list(levels = S(rownames(d)), names = S(term$cn),
                            values = lapply(term$cn, function(cn) A(scale * d[[cn]])))
  }
  out
}
re1 <- function(grp) list(list(py = grp, key = grp, grp = grp, cn = "(Intercept)"))

## ---------------------------------------------------------------------------
## glmmTMB
## ---------------------------------------------------------------------------
tmb_rel_tols <- c(1e-14, 1e-12, 1e-10, 1e-8)
fit_tmb <- function(formula, data, family, weights = NULL, dispformula = ~ 1, start = NULL) {
  runs <- lapply(tmb_rel_tols, function(rt) {
    args <- list(formula = formula, data = data, family = family, REML = FALSE, dispformula = dispformula,
                 control = glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = rt)))
    if (!is.null(weights)) args$weights <- weights
    if (!is.null(start)) args$start <- start
    r <- tryCatch(capture(do.call(glmmTMB, args)), error = function(e) NULL)
    if (is.null(r)) return(NULL)
    r$rel.tol <- rt
    r$ll <- as.numeric(logLik(r$value))
    r$pd <- isTRUE(r$value$sdr$pdHess)
    r$grad <- max(abs(r$value$sdr$gradient.fixed))
    r
  })
  runs <- Filter(Negate(is.null), runs)
  ok <- Filter(function(r) r$pd && is.finite(r$ll), runs)
  if (!length(ok)) stop("no glmmTMB run with a positive-definite Hessian")
  best <- ok[[which.max(vapply(ok, `[[`, numeric(1), "ll"))]]
  best$attempts <- lapply(runs, function(r) list(
    rel.tol = r$rel.tol, logLik = r$ll, convergence = r$value$fit$convergence,
    message = r$value$fit$message, pdHess = r$pd, max_abs_gradient = r$grad))
  best
}
tmb_summary <- function(r, re, disp_kind) {
  fit <- r$value
  fe <- fixef(fit)$cond
  ll <- logLik(fit)
  sg <- sigma(fit)
  disp <- switch(disp_kind,
    gamma = list(value = sg^2, note = paste(
      "glmmTMB (1.1.5) Gamma: the dispersion parameter is log(shape) and sigma() = exp(-0.5 log shape) =",
    "1/sqrt(shape), the coefficient of variation of",
      "y | b = MATLAB's sqrt(Dispersion) for unit weights; dispersion = sigma()^2 = MATLAB Dispersion")),
    nb2 = list(value = sg, note = paste(
      "glmmTMB nbinom2: Var(y | b) = mu + mu^2/theta, sigma() = theta (the NB2 size);",
      "dispersion = theta")))
  list(
    settings = sprintf("glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4, rel.tol = %g))", r$rel.tol),
    fixef = A(fe), fixef_names_r = S(names(fe)),
    se = A(sqrt(diag(vcov(fit)$cond))),
    varcorr = vc_rows(vc_terms(VarCorr(fit)$cond, re)),
    sigma = sg, dispersion = disp$value, dispersion_note = disp$note,
    logLik = as.numeric(ll), df = as.integer(attr(ll, "df")),
    AIC = AIC(fit), BIC = BIC(fit), nobs = nobs(fit),
    convergence = fit$fit$convergence, convergence_message = fit$fit$message,
    pdHess = isTRUE(fit$sdr$pdHess), max_abs_gradient = max(abs(fit$sdr$gradient.fixed)),
    fit_warnings = S(r$warnings), attempts = r$attempts,
    ranef = ranef_json(ranef(fit)$cond, re))
}

## ---------------------------------------------------------------------------
## lme4
## ---------------------------------------------------------------------------
tight_grid <- list(list(tolPwrss = 1e-14, rhoend = 1e-12), list(tolPwrss = 1e-13, rhoend = 1e-12),
                   list(tolPwrss = 1e-12, rhoend = 1e-10), list(tolPwrss = 1e-10, rhoend = 1e-10),
                   list(tolPwrss = 1e-8, rhoend = 1e-8))
glmer_ctrl <- function(s) glmerControl(optimizer = "bobyqa", tolPwrss = s$tolPwrss,
                                       optCtrl = list(rhoend = s$rhoend, maxfun = 1e5))
## first setting of tight_grid without error and convergence messages
## (else the candidate with the largest logLik); fitter(ctrl) does the fit
fit_tight <- function(fitter) {
  failed <- character(0); cands <- list()
  for (s in tight_grid) {
    ss <- sprintf("glmerControl(optimizer='bobyqa', tolPwrss=%g, optCtrl=list(rhoend=%g, maxfun=1e5))",
                  s$tolPwrss, s$rhoend)
    r <- tryCatch(capture(fitter(glmer_ctrl(s))), error = function(e) e)
    if (inherits(r, "error")) { failed <- c(failed, sprintf("[%s] error: %s", ss, conditionMessage(r))); next }
    r$settings <- ss
    msgs <- as.character(unlist(r$value@optinfo$conv$lme4$messages))
    if (length(msgs)) {
      failed <- c(failed, sprintf("[%s] %s", ss, paste(msgs, collapse = " | ")))
      cands[[length(cands) + 1]] <- r; next
    }
    r$rejected <- failed
    return(r)
  }
  if (!length(cands)) stop("no glmer setting worked: ", paste(failed, collapse = "; "))
  r <- cands[[which.max(vapply(cands, function(r) as.numeric(logLik(r$value)), numeric(1)))]]
  r$rejected <- failed
  r
}
lme4_conv <- function(fit, r) list(
  settings = r$settings, rejected_settings = S(r$rejected),
  converged_messages = S(unlist(fit@optinfo$conv$lme4$messages)),
  optimizer_warnings = S(unlist(fit@optinfo$warnings)),
  fit_warnings = S(r$warnings), singular = isSingular(fit))

## glmer summary. varcorr = lme4's VarCorr(): for families with a scale
## (Gamma, inverse.gaussian) that is sigma() * theta (lme4 reads the model as
## b = Lambda(theta) u with u ~ N(0, sigma^2 I), as for lmer); theta is kept too.
glmer_summary <- function(r, re, disp_kind = "none") {
  fit <- r$value
  fe <- fixef(fit); ll <- logLik(fit); sg <- sigma(fit)
  scaled <- disp_kind %in% c("gamma", "ig")
  out <- list(fixef = A(fe), fixef_names_r = S(names(fe)),
              se = A(sqrt(diag(as.matrix(vcov(fit))))),
              se_conditional = A(suppressWarnings(sqrt(diag(as.matrix(vcov(fit, use.hessian = FALSE)))))),
              theta = A(getME(fit, "theta")), theta_names = S(names(getME(fit, "theta"))),
              varcorr = vc_rows(vc_terms(VarCorr(fit), re)))
  if (scaled) out$varcorr_note <- "varcorr = VarCorr() = sigma() * theta; theta alone is in 'theta'"
  out$sigma <- sg
  if (disp_kind == "gamma" || disp_kind == "ig") {
    y <- getME(fit, "y"); mu <- fitted(fit); wt <- weights(fit)
    fam <- family(fit)
    dev <- sum(fam$dev.resids(y, mu, wt))
    n <- length(y)
    pearson <- sum(wt * (y - mu)^2 / fam$variance(mu))
    out$dispersion <- sg^2
    out$dispersion_note <- paste(
      "lme4 sigma() = sqrt(pwrss / n) = sqrt((Pearson chi^2 + |u|^2) / n) (mkMerMod's sigmaML),",
      "dispersion = sigma()^2. It is not a maximum-likelihood estimate: the Laplace deviance that",
      "glmer minimises is family$aic(y, n, mu, wt, dev) + log|L|^2 + |u|^2, in which the",
      "family's aic() plugs in the dispersion dev/sum(wt) (conditional deviance over n) and adds",
      "+2, and log|L|^2 uses the GLM weights w/(v g'^2) without 1/dispersion; so glmer's logLik is",
      "not the Laplace approximation of the model with an estimated dispersion (see",
      "logLik_decomposition)")
    uu <- sum(getME(fit, "u")^2)
    ldL2 <- fit@devcomp$cmp[["ldL2"]]
    aic_term <- fam$aic(y, rep(1, n), mu, wt, dev)
    out$logLik_decomposition <- list(
      conditional_deviance = dev, dispersion_dev_over_n = dev / sum(wt),
      pearson_chisq = pearson, sum_u_squared = uu, ldL2 = ldL2, family_aic = aic_term,
      minus_half_sum = -0.5 * (aic_term + ldL2 + uu),
      note = "logLik = -(family_aic + ldL2 + sum_u_squared)/2 (checked: minus_half_sum)")
  } else if (disp_kind == "nb2") {
    out$dispersion <- getME(fit, "glmer.nb.theta")
    out$dispersion_note <- "glmer.nb: theta = getME(fit, 'glmer.nb.theta'), Var = mu + mu^2/theta"
  } else {
    out$dispersion <- 1
    out$dispersion_note <- "fixed at 1"
  }
  c(out, list(logLik = as.numeric(ll), minus_half_deviance = -deviance(fit) / 2,
              df = as.integer(attr(ll, "df")), AIC = AIC(fit), BIC = BIC(fit), nobs = nobs(fit)),
    lme4_conv(fit, r), list(ranef = ranef_json(ranef(fit, condVar = FALSE), re)))
}

## ---------------------------------------------------------------------------
## Exact Laplace (one scalar random intercept) and exact / AGQ integrals
## ---------------------------------------------------------------------------
link_fun <- function(eta, link) switch(link,
  log = { m <- exp(eta); list(mu = m, m1 = m, m2 = m) },
  inverse = list(mu = 1 / eta, m1 = -1 / eta^2, m2 = 2 / eta^3),
  "1/mu^2" = list(mu = eta^-0.5, m1 = -0.5 * eta^-1.5, m2 = 0.75 * eta^-2.5),
  logit = { p <- plogis(eta); list(mu = p, m1 = p * (1 - p), m2 = p * (1 - p) * (1 - 2 * p)) },
  stop("link ", link))
## per-observation log-density l(eta) and derivatives in eta; disp = sigma
## (gamma, IG) or theta (NB2); none for poisson / binomial
obs_terms <- function(eta, P, disp) {
  bad <- if (P$link %in% c("inverse", "1/mu^2")) eta <= 0 else rep(FALSE, length(eta))
  L <- link_fun(ifelse(bad, 1, eta), P$link)
  mu <- L$mu; y <- P$y; w <- P$w
  if (P$family == "gamma") {
    a <- w / disp^2
    l <- suppressWarnings(dgamma(y, shape = a, rate = a / mu, log = TRUE))
    g1 <- a * (y - mu) / mu^2; g2 <- a / mu^2 - 2 * a * y / mu^3
  } else if (P$family == "ig") {
    lam <- w / disp^2
    l <- 0.5 * log(lam / (2 * pi * y^3)) - lam * (y - mu)^2 / (2 * mu^2 * y)
    g1 <- lam * (y - mu) / mu^3; g2 <- lam * (2 / mu^3 - 3 * y / mu^4)
  } else if (P$family == "nb2") {
    k <- P$k; m <- w * mu; s <- w * disp
    l <- suppressWarnings(dnbinom(k, size = s, mu = m, log = TRUE))
    g1 <- w * (k / m - (k + s) / (s + m)); g2 <- w^2 * (-k / m^2 + (k + s) / (s + m)^2)
  } else if (P$family == "poisson") {
    l <- dpois(y, mu, log = TRUE); g1 <- y / mu - 1; g2 <- -y / mu^2
  } else if (P$family == "binomial") {
    n <- P$n; k <- P$k
    l <- dbinom(k, n, mu, log = TRUE); g1 <- k / mu - (n - k) / (1 - mu)
    g2 <- -k / mu^2 - (n - k) / (1 - mu)^2
  } else stop("family ", P$family)
  d1 <- g1 * L$m1; d2 <- g2 * L$m1^2 + g1 * L$m2
  l[bad | !is.finite(l)] <- -Inf
  list(l = l, d1 = d1, d2 = d2)
}
## self-check of the analytic eta-derivatives against numDeriv (every
## family / link used here, unequal weights)
local({
  for (cfg in list(c("gamma", "log"), c("gamma", "inverse"), c("ig", "log"), c("ig", "1/mu^2"),
                   c("nb2", "log"), c("poisson", "log"))) {
    P <- list(y = c(0.7, 1.3, 2.1), w = c(1, 2, 3), k = c(1, 4, 6), family = cfg[1], link = cfg[2])
    if (cfg[1] == "nb2") P$y <- P$k / P$w
    if (cfg[1] == "poisson") { P$y <- c(0, 2, 5); P$w <- rep(1, 3) }
    eta <- c(0.8, 1.1, 0.6)
    o <- obs_terms(eta, P, 0.7)
    li <- function(i, t) { e <- eta; e[i] <- t; obs_terms(e, P, 0.7)$l[i] }
    d1 <- sapply(1:3, function(i) numDeriv::grad(function(t) li(i, t), eta[i]))
    d2 <- sapply(1:3, function(i) numDeriv::hessian(function(t) li(i, t), eta[i]))
    stopifnot(max(abs(o$d1 - d1)) < 1e-8, max(abs(o$d2 - d2)) < 1e-7)
  }
})
## P: X, y, w, k, n, g (integer group), J, family, link
make_P <- function(formula, data, family, link, w = NULL, k = NULL, n = NULL) {
  mf <- lFormula(formula, data)
  y <- as.numeric(model.response(mf$fr))
  list(X = mf$X, y = y, w = if (is.null(w)) rep(1, length(y)) else w,
       k = if (is.null(k)) y else k, n = n,
       g = as.integer(mf$reTrms$flist[[1]]), J = nlevels(mf$reTrms$flist[[1]]),
       levels = levels(mf$reTrms$flist[[1]]), family = family, link = link)
}
grp_sum <- function(v, P) as.numeric(rowsum(v, P$g, reorder = TRUE)[, 1])
## h_j(u) without the -log sd - 0.5 log(2 pi) of the normal density
laplace_ll <- function(beta, sd, disp, P, u = rep(0, P$J)) {
  eta0 <- as.numeric(P$X %*% beta)
  s2 <- sd^2
  hval <- function(u) grp_sum(obs_terms(eta0 + u[P$g], P, disp)$l, P) - u^2 / (2 * s2)
  h0 <- hval(u)
  if (any(!is.finite(h0))) { u <- rep(0, P$J); h0 <- hval(u) }
  if (any(!is.finite(h0))) return(list(logLik = -Inf, u = u))
  for (it in 1:200) {
    o <- obs_terms(eta0 + u[P$g], P, disp)
    gr <- grp_sum(o$d1, P) - u / s2
    H <- -grp_sum(o$d2, P) + 1 / s2
    H <- ifelse(H > 0, H, abs(H) + 1 / s2)          # far from the mode only
    step <- gr / H
    un <- u + step; hn <- hval(un)
    for (half in 1:60) {
      bad <- !(is.finite(hn) & hn >= h0 - 1e-12 * abs(h0))
      if (!any(bad)) break
      step[bad] <- step[bad] / 2; un <- u + step; hn <- hval(un)
    }
    u <- un; h0 <- hn
    if (max(abs(step)) < 1e-13) break
  }
  o <- obs_terms(eta0 + u[P$g], P, disp)
  H <- -grp_sum(o$d2, P) + 1 / s2
  h <- grp_sum(o$l, P) - u^2 / (2 * s2)
  list(logLik = sum(h - log(sd) - 0.5 * log(H)), u = u, H = H, h = h - log(sd) - 0.5 * log(2 * pi),
       iterations = it)
}
hess_args <- list(eps = 1e-4, d = 0.01, zero.tol = sqrt(.Machine$double.eps / 7e-7),
                  r = 4, v = 2, show.details = FALSE)
## maximise over p = (beta, log sd, log disp)
laplace_optimum <- function(p0, P) {
  nb <- ncol(P$X)
  u0 <- rep(0, P$J)
  f <- function(p) {
    r <- laplace_ll(p[1:nb], exp(p[nb + 1]), exp(p[nb + 2]), P, u0)
    if (is.finite(r$logLik) && all(is.finite(r$u))) u0 <<- r$u
    r$logLik
  }
  nf <- function(p) { v <- f(p); if (is.finite(v)) -v else 1e300 }
  stages <- list(start = f(p0))
  o1 <- optim(p0, nf, function(p) -numDeriv::grad(f, p), method = "BFGS",
              control = list(reltol = 1e-15, maxit = 2000))
  stages$bfgs <- -o1$value
  o2 <- optim(o1$par, nf, method = "Nelder-Mead", control = list(reltol = 1e-15, maxit = 20000))
  stages$nelder_mead <- -o2$value
  p <- if (-o2$value >= -o1$value) o2$par else o1$par
  ll <- f(p); steps <- numeric(0)
  for (it in 1:20) {
    gr <- numDeriv::grad(f, p)
    He <- numDeriv::hessian(f, p, method.args = hess_args)
    step <- -solve(He, gr)
    pn <- p + step; lln <- f(pn)
    while (!(lln >= ll) && max(abs(step)) > 1e-14) { step <- step / 2; pn <- p + step; lln <- f(pn) }
    steps <- c(steps, max(abs(step)))
    if (lln >= ll) { p <- pn; ll <- lln }
    if (max(abs(step)) < 1e-8) break
  }
  stages$newton <- ll
  He <- numDeriv::hessian(f, p, method.args = hess_args)
  cov <- solve(-He)
  fin <- laplace_ll(p[1:nb], exp(p[nb + 1]), exp(p[nb + 2]), P)
  list(p = p, logLik = fin$logLik, u = fin$u, se = sqrt(diag(cov)), cov = cov,
       gradient = numDeriv::grad(f, p), newton_steps = steps, stages = stages,
       counts = list(bfgs = o1$counts, bfgs_convergence = o1$convergence,
                     nelder_mead = o2$counts, nelder_mead_convergence = o2$convergence))
}
disp_note <- list(
  gamma = paste("dispersion = sigma^2 (MATLAB Dispersion): y | b ~ Gamma(shape = w/sigma^2, mean mu),",
                "Var(y | b) = sigma^2 mu^2 / w; sigma = sqrt(dispersion)"),
  ig = paste("dispersion = sigma^2 (MATLAB Dispersion): y | b ~ IG(mu, lambda = w/sigma^2),",
             "Var(y | b) = sigma^2 mu^3 / w; sigma = sqrt(dispersion)"),
  nb2 = paste("dispersion = theta (NB2 size): Var(y | b) = mu + mu^2/theta for w = 1; with weight w the",
              "count k = w y ~ NB2(mean w mu, size w theta); sigma = 1 (no MATLAB dispersion)"))
exact_laplace_summary <- function(P, p0, at = list()) {
  o <- laplace_optimum(p0, P)
  nb <- ncol(P$X); N <- length(P$y)
  disp_val <- exp(o$p[nb + 2])
  k <- nb + 2
  out <- list(
    method = paste("exact Laplace approximation (per-group Newton to the conditional mode, exact",
                   "observed second derivative), maximised over (beta, log sd, log dispersion):",
                   "optim BFGS, Nelder-Mead (reltol 1e-15), Newton polish"),
    fixef = A(o$p[1:nb]), fixef_names_r = S(colnames(P$X)),
    se = A(o$se[1:nb]),
    se_note = "sqrt(diag(inverse negative Hessian)) in (beta, log sd, log dispersion): JointHessian",
    varcorr = list(list(group = names(at$group), name1 = "(Intercept)", name2 = "(Intercept)",
                        type = "std", estimate = exp(o$p[nb + 1]))),
    se_log_sd = o$se[nb + 1], se_log_dispersion_param = o$se[nb + 2],
    sigma = if (P$family == "nb2") 1 else disp_val,
    dispersion = if (P$family == "nb2") disp_val else disp_val^2,
    dispersion_note = disp_note[[P$family]],
    logLik = o$logLik, df = k, AIC = -2 * o$logLik + 2 * k, BIC = -2 * o$logLik + k * log(N), nobs = N,
    optimizer_stages = o$stages, optimizer_counts = o$counts,
    newton_steps = A(o$newton_steps), gradient = A(o$gradient))
  out$varcorr[[1]]$group <- at$group
  for (nm in setdiff(names(at), "group"))
    out[[paste0("logLik_at_", nm)]] <- laplace_ll(at[[nm]][1:nb], exp(at[[nm]][nb + 1]),
                                                  exp(at[[nm]][nb + 2]), P)$logLik
  out$ranef <- setNames(list(list(levels = S(P$levels), names = S("(Intercept)"), values = list(A(o$u)))),
                        at$group)
  out
}

## exact marginal logLik by integrate() per group, at (beta, sd)
exact_integral <- function(beta, sd, P) {
  L <- laplace_ll(beta, sd, NA, P)
  eta0 <- as.numeric(P$X %*% beta)
  tot <- 0; per <- numeric(P$J)
  for (j in seq_len(P$J)) {
    idx <- which(P$g == j); s <- 1 / sqrt(L$H[j])
    Pj <- P; Pj$y <- P$y[idx]; Pj$k <- P$k[idx]; Pj$w <- P$w[idx]
    if (!is.null(P$n)) Pj$n <- P$n[idx]
    hj <- function(u) sum(obs_terms(eta0[idx] + u, Pj, NA)$l) + dnorm(u, 0, sd, log = TRUE)
    h0 <- hj(L$u[j])
    fz <- function(z) vapply(z, function(zz) exp(hj(L$u[j] + s * zz) - h0), numeric(1))
    I <- integrate(fz, -Inf, Inf, rel.tol = 1e-12, abs.tol = 0, subdivisions = 2000L)
    per[j] <- h0 + log(s) + log(I$value)
  }
  list(logLik = sum(per), laplace = L$logLik)
}
## adaptive Gauss-Hermite with n nodes (Golub-Welsch), centred at the
## conditional mode with scale 1/sqrt(-h''): the lme4 rule
agq_ll <- function(beta, sd, P, nq) {
  L <- laplace_ll(beta, sd, NA, P)
  if (nq == 1) return(L$logLik)
  J <- matrix(0, nq, nq); off <- sqrt(seq_len(nq - 1) / 2)
  J[cbind(1:(nq - 1), 2:nq)] <- off; J[cbind(2:nq, 1:(nq - 1))] <- off
  e <- eigen(J, symmetric = TRUE); x <- e$values; wq <- sqrt(pi) * e$vectors[1, ]^2
  eta0 <- as.numeric(P$X %*% beta)
  per <- numeric(P$J)
  for (j in seq_len(P$J)) {
    idx <- which(P$g == j); s <- sqrt(2) / sqrt(L$H[j])
    Pj <- P; Pj$y <- P$y[idx]; Pj$k <- P$k[idx]; Pj$w <- P$w[idx]
    if (!is.null(P$n)) Pj$n <- P$n[idx]
    hj <- function(u) sum(obs_terms(eta0[idx] + u, Pj, NA)$l) + dnorm(u, 0, sd, log = TRUE)
    h0 <- hj(L$u[j])
    v <- vapply(seq_len(nq), function(q) exp(hj(L$u[j] + s * x[q]) - h0 + x[q]^2), numeric(1))
    per[j] <- h0 + log(s) + log(sum(wq * v))
  }
  sum(per)
}

## ---------------------------------------------------------------------------
## Dense Gaussian (restricted) log-likelihood, for LMM and PL checks
##   y ~ N(X beta, Z G Z' + diag(r)); REML: at the GLS beta,
##   -0.5 [(N - p) log(2 pi) + log|V| + log|X'V^-1 X| + r'V^-1 r]
##   (lme4's and nlme's convention: no log|X'X| term)
## ---------------------------------------------------------------------------
gauss_ll <- function(y, X, Z, G, rdiag, REML = FALSE, beta = NULL) {
  V <- as.matrix(Z %*% G %*% t(Z)) + diag(rdiag, length(y))
  R <- chol(V)
  Xs <- backsolve(R, X, transpose = TRUE); ys <- backsolve(R, y, transpose = TRUE)
  if (is.null(beta) || REML) beta <- qr.coef(qr(Xs), ys)
  res <- ys - Xs %*% beta
  N <- length(y); p <- ncol(X)
  ldV <- 2 * sum(log(diag(R)))
  if (REML) -0.5 * ((N - p) * log(2 * pi) + ldV +
                    as.numeric(determinant(crossprod(Xs))$modulus) + sum(res^2))
  else -0.5 * (N * log(2 * pi) + ldV + sum(res^2))
}

## ---------------------------------------------------------------------------
## MATLAB pseudo-likelihood (matlab-glme.md 3.1)
## ---------------------------------------------------------------------------
pl_family <- function(fam) switch(fam,
  binomial = list(link = function(mu) qlogis(mu), inv = function(eta) plogis(eta),
                  d = function(mu) 1 / (mu * (1 - mu)), v = function(mu) mu * (1 - mu),
                  clip = function(mu) pmin(pmax(mu, .Machine$double.eps), 1 - .Machine$double.eps)),
  binomial_cloglog = list(link = function(mu) log(-log1p(-mu)), inv = function(eta) -expm1(-exp(eta)),
                  d = function(mu) -1 / ((1 - mu) * log1p(-mu)), v = function(mu) mu * (1 - mu),
                  clip = function(mu) pmin(pmax(mu, .Machine$double.eps), 1 - .Machine$double.eps)),
  poisson = list(link = log, inv = exp, d = function(mu) 1 / mu, v = function(mu) mu,
                 clip = function(mu) pmax(mu, .Machine$double.eps)))
lme_ctrl <- function(fixed_sigma) {
  args <- list(maxIter = 500, msMaxIter = 1000, msMaxEval = 4000, niterEM = 0,
               tolerance = 1e-14, rel.tol = 1e-15, x.tol = 1e-14, returnObject = TRUE,
               apVar = FALSE)
  if (fixed_sigma) args$sigma <- 1
  do.call(lmeControl, args)
}
## Own pseudo-data LME for one scalar random intercept, exact to rounding:
## the sqrt(W)-scaled problem ys = Xs beta + Zs b + e, e ~ N(0, sigma^2 I),
## b ~ N(0, tau^2). Fixed sigma = 1: one parameter lt = log tau^2. Estimated
## sigma: lt = log(tau^2 / sigma^2), sigma^2 profiled out (rss / N for ML,
## rss / (N - p) for REML). Maximised by optimize(tol 1e-13) and Newton polish.
lme_own <- function(yp, X, Z, W, REML, fixed_sigma, lt0 = NULL) {
  sw <- sqrt(W); ys <- sw * yp; Xs <- sw * X; Zs <- sw * Z
  ZZ <- tcrossprod(Zs); N <- length(yp); p <- ncol(X); nn <- if (REML) N - p else N
  prof <- function(lt) {
    M <- exp(lt) * ZZ; diag(M) <- diag(M) + 1
    R <- chol(M)
    Xr <- backsolve(R, Xs, transpose = TRUE); yr <- backsolve(R, ys, transpose = TRUE)
    beta <- qr.coef(qr(Xr), yr); rss <- sum((yr - Xr %*% beta)^2)
    s2 <- if (fixed_sigma) 1 else rss / nn
    ll <- -0.5 * (nn * log(2 * pi * s2) + 2 * sum(log(diag(R))) + rss / s2 +
                  if (REML) as.numeric(determinant(crossprod(Xr))$modulus) else 0)
    list(ll = ll, beta = as.numeric(beta), s2 = s2, R = R, Xr = Xr)
  }
  f <- function(lt) prof(lt)$ll
  rng <- if (is.null(lt0)) c(-25, 10) else lt0 + c(-3, 3)
  lt <- optimize(f, rng, maximum = TRUE, tol = 1e-13)$maximum
  for (i in 1:10) {
    g <- numDeriv::grad(f, lt); h <- numDeriv::hessian(f, lt)[1, 1]
    st <- -g / h; if (f(lt + st) >= f(lt)) lt <- lt + st
    if (abs(st) < 1e-12) break
  }
  pr <- prof(lt)
  r <- ys - Xs %*% pr$beta
  Minv_r <- chol2inv(pr$R) %*% r
  b <- exp(lt) * as.numeric(crossprod(Zs, Minv_r))
  list(lt = lt, beta = pr$beta, b = b, sigma = sqrt(pr$s2),
       sd_b = sqrt(exp(lt) * pr$s2), ll_scaled = pr$ll,
       cov_beta = pr$s2 * solve(crossprod(pr$Xr)), grad_lt = numDeriv::grad(f, lt),
       eta = as.numeric(X %*% pr$beta + Z %*% b))
}
## y: response (proportion for binomial); ntrial: binomial size; w prior weights
pl_fit <- function(fixed, grp, data, y, fam, ntrial = NULL, w = rep(1, length(y)),
                   method = c("ML", "REML"), fixed_sigma = TRUE, tol = 1e-10, maxit = 500,
                   engine = c("own", "nlme")) {
  method <- match.arg(method); engine <- match.arg(engine)
  X <- model.matrix(fixed, data)
  Z <- model.matrix(~ 0 + gf, data.frame(gf = data[[grp]]))
  F <- pl_family(fam)
  weff <- if (fam == "binomial") w * ntrial else w
  mu <- if (fam == "poisson") y + 0.25 else (ntrial * y + 0.5) / (ntrial + 1)  # binomial: any link
  mu <- F$clip(mu)
  eta <- F$link(mu)
  rel <- NULL; hist <- numeric(0); lme_warn <- character(0)
  rform <- as.formula(paste("~ 1 |", grp))
  for (it in 1:maxit) {
    mu <- F$clip(F$inv(eta))
    gp <- F$d(mu)
    data$.yp <- gp * (y - mu) + eta
    data$.W <- weff / (F$v(mu) * gp^2)
    data$.invW <- 1 / data$.W
    if (engine == "own") {
      fit <- lme_own(data$.yp, X, Z, data$.W, method == "REML", fixed_sigma, rel)
      rel <- fit$lt
      eta_new <- fit$eta
      dmax <- max(abs(eta_new - eta)); hist <- c(hist, dmax)
      thr <- max(tol * max(abs(eta)), tol)
      eta <- eta_new
      if (dmax <= thr) break
      next
    }
    random <- if (is.null(rel)) rform else
      setNames(list(pdLogChol(rel, form = ~ 1)), grp)
    ff <- update(fixed, .yp ~ .)
    cap <- capture(do.call(lme, list(fixed = ff, random = random, data = data,
                                     weights = varFixed(~ .invW), method = method,
                                     control = lme_ctrl(fixed_sigma))))
    fit <- cap$value; lme_warn <- c(lme_warn, cap$warnings)
    rel <- as.matrix(fit$modelStruct$reStruct[[1]])
    eta_new <- as.numeric(fitted(fit, level = 1))
    dmax <- max(abs(eta_new - eta)); hist <- c(hist, dmax)
    thr <- max(tol * max(abs(eta)), tol)
    eta <- eta_new
    if (dmax <= thr) break
  }
  ## ---- final LME: own dense Gaussian log-likelihood of the pseudo-data ----
  W <- data$.W
  if (engine == "own") {
    sdb <- fit$sd_b; sig <- fit$sigma; beta <- fit$beta
    names_fe <- colnames(X); se <- sqrt(diag(fit$cov_beta)); ll_fit <- fit$ll_scaled + 0.5 * sum(log(W))
    re_lev <- levels(data[[grp]]); re_val <- fit$b
  } else {
    sdb <- as.numeric(VarCorr(fit)[1, "StdDev"]); sig <- fit$sigma; beta <- as.numeric(fixef(fit))
    names_fe <- names(fixef(fit)); se <- sqrt(diag(vcov(fit))); ll_fit <- as.numeric(logLik(fit))
    re <- ranef(fit); re_lev <- rownames(re); re_val <- re[["(Intercept)"]]
  }
  own_unscaled <- gauss_ll(data$.yp, X, Z, diag(sdb^2, ncol(Z)), sig^2 / W, REML = method == "REML", beta = beta)
  sw <- sqrt(W)
  own_scaled <- gauss_ll(sw * data$.yp, sw * X, sw * Z, diag(sdb^2, ncol(Z)), rep(sig^2, length(W)),
                         REML = method == "REML", beta = beta)
  ## check that nlme's estimates maximise the own log-likelihood
  pf <- function(q) {
    s <- if (fixed_sigma) 1 else exp(q[2])
    gauss_ll(data$.yp, X, Z, diag(exp(2 * q[1]), ncol(Z)), s^2 / W, REML = method == "REML")
  }
  q0 <- if (fixed_sigma) log(sdb) else c(log(sdb), log(sig))
  grad_own <- numDeriv::grad(pf, q0)
  p <- ncol(X); N <- length(y)
  ll_matlab <- own_scaled + 0.5 * sum(log(W))
  k <- p + 1 + (!fixed_sigma)
  neff <- if (method == "REML") N - p else N
  list(
    method = if (method == "ML") "MPL" else "REMPL", lme_engine = engine,
    dispersion_estimated = !fixed_sigma,
    fixef = A(beta), fixef_names_r = S(names_fe),
    se = A(se),
    varcorr = list(list(group = grp, name1 = "(Intercept)", name2 = "(Intercept)", type = "std", estimate = sdb)),
    sigma = sig, dispersion = sig^2,
    dispersion_note = paste("MATLAB Dispersion = sigma^2 of the pseudo-data LME (Cov(e) = sigma^2 W^-1,",
                            "b ~ N(0, sigma^2 D)); fixed at 1 unless DispersionFlag"),
    iterations = it, converged = dmax <= thr, last_max_abs_eta_change = dmax,
    eta_change_history = A(hist),
    logLik_lme_fit = ll_fit,
    logLik_own_pseudo_data = own_unscaled,
    logLik_own_scaled_no_jacobian = own_scaled,
    half_sum_log_W = 0.5 * sum(log(W)),
    logLik = ll_matlab,
    logLik_note = paste("logLik = MATLAB loglikHatPseudoData = (restricted) log-likelihood of the sqrt(W)-scaled",
                        "pseudo-data LME (logLik_own_scaled_no_jacobian) + 0.5 sum(log W)",
                        "= the Gaussian log-likelihood of the unscaled pseudo-data with Cov(e) = sigma^2 W^-1",
                        "(logLik_own_pseudo_data); logLik_lme_fit = the fitting engine's own value",
                        "(nlme's logLik for the nlme engine)"),
    own_loglik_gradient_at_estimates = A(grad_own),
    df = k, AIC = 2 * (k - ll_matlab), BIC = k * log(neff) - 2 * ll_matlab, n_eff_BIC = neff,
    lme_settings = if (engine == "nlme")
      "nlme::lme, lmeControl(maxIter=500, msMaxIter=1000, msMaxEval=4000, niterEM=0, tolerance=1e-14, rel.tol=1e-15, x.tol=1e-14)"
    else "lme_own: optimize(tol = 1e-13) over log relative variance, Newton polish, sigma profiled",
    ranef = setNames(list(list(levels = S(re_lev), names = S("(Intercept)"), values = list(A(re_val)))), grp),
    final_W_range = A(range(W)),
    lme_warnings = S(unique(lme_warn)), lme_warning_count = length(lme_warn))
}
pql_compare <- function(pq, pl, grp) {
  sdb <- as.numeric(VarCorr(pq$value)[1, "StdDev"])
  fe <- fixef(pq$value)
  list(fixef = A(fe), fixef_names_r = S(names(fe)),
       se = A(sqrt(diag(vcov(pq$value)))),
       varcorr = list(list(group = grp, name1 = "(Intercept)", name2 = "(Intercept)", type = "std", estimate = sdb)),
       sigma = pq$value$sigma, iterations = length(grep("^iteration", pq$messages)),
       messages = S(pq$messages), warnings = S(pq$warnings),
       max_abs_diff_fixef_vs_pl_fit = max(abs(fe - as.numeric(pl$fixef))),
       rel_diff_re_sd_vs_pl_fit = sdb / pl$varcorr[[1]]$estimate - 1,
       rel_diff_sigma_vs_pl_fit = pq$value$sigma / pl$sigma - 1,
       note = paste("MASS::glmmPQL: lme(method = 'ML') with estimated sigma; starts from a glm fit and stops",
                    "when sum((eta - eta_old)^2) < 1e-6 sum(eta^2) (not adjustable), so it stops earlier",
                    "than pl_fit's max|delta eta| <= 1e-10 rule; nlme default tolerances"))
}

## ---------------------------------------------------------------------------
## Cases
## ---------------------------------------------------------------------------
result <- list(`_meta` = list(
  R = R.version.string,
  lme4 = as.character(packageVersion("lme4")), glmmTMB = as.character(packageVersion("glmmTMB")),
  TMB = as.character(packageVersion("TMB")), nlme = as.character(packageVersion("nlme")),
  MASS = as.character(packageVersion("MASS")), numDeriv = as.character(packageVersion("numDeriv")),
  Matrix = as.character(packageVersion("Matrix")),
  generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"),
  script = "tests/reference/make_reference_families.R",
  data_script = "tests/reference/simulate_families.py"))
say <- function(...) cat(sprintf(...), "\n")
names_x <- c("(Intercept)", "x")

## ---- gamma / inverse Gaussian / NB with one scalar random intercept --------
glmm_case <- function(nm, file, fam, link, python, tmb_family = NULL, glmer_family = NULL,
                      use_weights = FALSE, nb_glmer = FALSE, notes = list(), truth = NULL,
                      start = NULL) {
  d <- D[[sub("\\.csv$", "", file)]]
  f <- y ~ x + (1 | g)
  w <- if (use_weights) d$w else NULL
  P <- make_P(f, d, fam, link, w = w, k = if (fam == "nb2") (if (use_weights) d$k else d$y) else NULL)
  out <- list(data = file, r_formula = "y ~ x + (1 | g)", python = python, family = fam, link = link,
              weights = if (use_weights) "w" else NULL, nobs = nrow(d), names_python = S(names_x),
              simulation_truth = truth)
  re <- re1("g")
  at <- list(group = "g")
  p0 <- NULL
  if (!is.null(tmb_family)) {
    tm <- fit_tmb(f, d, tmb_family)
    out$glmmTMB <- tmb_summary(tm, re, if (fam == "nb2") "nb2" else "gamma")
    p0 <- c(fixef(tm$value)$cond, log(attr(VarCorr(tm$value)$cond$g, "stddev")), log(sigma(tm$value)))
    at$glmmTMB <- p0
    say("  glmmTMB logLik %.10f (rel.tol %g, conv %d, grad %.2g)", out$glmmTMB$logLik, tm$rel.tol,
        tm$value$fit$convergence, out$glmmTMB$max_abs_gradient)
  }
  if (!is.null(glmer_family)) {
    gm <- fit_tight(function(ctrl) glmer(f, data = d, family = glmer_family, control = ctrl))
    out$lme4 <- glmer_summary(gm, re, if (fam == "ig") "ig" else "gamma")
    th <- getME(gm$value, "theta")
    ## glmer's (beta, sd(b) = sigma() theta, sigma()) evaluated by the exact
    ## Laplace; also with sd(b) = theta
    at$lme4 <- c(fixef(gm$value), log(sigma(gm$value) * th), log(sigma(gm$value)))
    at$lme4_sd_theta <- c(fixef(gm$value), log(th), log(sigma(gm$value)))
    if (is.null(p0)) p0 <- at$lme4
    say("  glmer logLik %.10f (%s)", out$lme4$logLik, gm$settings)
  }
  if (nb_glmer) {
    ## glmer.nb(tol = ) cannot be used in lme4 1.1-31 (tol is passed on to
    ## glmer: "unused argument"), so the default fit (tol 5e-5 on log theta) is
    ## refined by lme4:::optTheta(tol = 1e-10) on log(theta) +- 0.5
    gm <- fit_tight(function(ctrl) {
      g0 <- glmer.nb(f, data = d, control = ctrl)
      lme4:::optTheta(g0, interval = log(getME(g0, "glmer.nb.theta")) + c(-0.5, 0.5), tol = 1e-10,
                      control = ctrl)
    })
    out$lme4_glmer_nb <- glmer_summary(gm, re, "nb2")
    out$lme4_glmer_nb$theta_tol <- paste("glmer.nb(control = tight) then lme4:::optTheta(tol = 1e-10) on",
                                         "log(theta) in log(theta_0) +- 0.5 (glmer.nb's own tol argument errors in 1.1-31)")
    at$lme4_glmer_nb <- c(fixef(gm$value), log(getME(gm$value, "theta")), log(getME(gm$value, "glmer.nb.theta")))
    say("  glmer.nb logLik %.10f theta %.8f", out$lme4_glmer_nb$logLik, getME(gm$value, "glmer.nb.theta"))
  }
  if (is.null(p0)) p0 <- start   # weighted cases: the simulation truth
  ex <- exact_laplace_summary(P, p0, at)
  out$exact_laplace <- ex
  say("  exact Laplace %.10f  stages %s", ex$logLik, paste(sprintf("%.10f", unlist(ex$optimizer_stages)), collapse = " "))
  if (!is.null(out$glmmTMB)) {
    out$comparison <- list(
      logLik_exact_minus_glmmTMB = ex$logLik - out$glmmTMB$logLik,
      exact_at_glmmTMB_minus_glmmTMB_logLik = ex$logLik_at_glmmTMB - out$glmmTMB$logLik,
      max_abs_fixef_diff_exact_vs_glmmTMB = max(abs(as.numeric(ex$fixef) - as.numeric(out$glmmTMB$fixef))),
      rel_diff_re_sd_exact_vs_glmmTMB = ex$varcorr[[1]]$estimate / out$glmmTMB$varcorr[[1]]$estimate - 1,
      rel_diff_dispersion_exact_vs_glmmTMB = ex$dispersion / out$glmmTMB$dispersion - 1)
    say("  exact - glmmTMB: ll %.3g, ll at glmmTMB est %.3g, fixef %.3g, sd rel %.3g, disp rel %.3g",
        out$comparison$logLik_exact_minus_glmmTMB, out$comparison$exact_at_glmmTMB_minus_glmmTMB_logLik,
        out$comparison$max_abs_fixef_diff_exact_vs_glmmTMB, out$comparison$rel_diff_re_sd_exact_vs_glmmTMB,
        out$comparison$rel_diff_dispersion_exact_vs_glmmTMB)
  }
  if (!is.null(out$lme4)) {
    out$comparison_lme4 <- list(
      logLik_lme4_minus_exact = out$lme4$logLik - ex$logLik,
      exact_laplace_at_lme4_estimates = ex$logLik_at_lme4,
      max_abs_fixef_diff_lme4_vs_exact = max(abs(as.numeric(out$lme4$fixef) - as.numeric(ex$fixef))),
      exact_laplace_at_lme4_estimates_sd_theta = ex$logLik_at_lme4_sd_theta,
      rel_diff_re_sd_lme4_VarCorr_vs_exact = out$lme4$varcorr[[1]]$estimate / ex$varcorr[[1]]$estimate - 1,
      rel_diff_re_sd_lme4_theta_vs_exact = out$lme4$theta[1] / ex$varcorr[[1]]$estimate - 1,
      rel_diff_sigma_lme4_vs_exact = out$lme4$sigma / ex$sigma - 1)
    say("  lme4 vs exact: ll diff %.4g, exact at lme4 %.6f / %.6f, fixef %.3g, sd rel %.3g (theta %.3g), sigma rel %.3g",
        out$comparison_lme4$logLik_lme4_minus_exact, ex$logLik_at_lme4, ex$logLik_at_lme4_sd_theta,
        out$comparison_lme4$max_abs_fixef_diff_lme4_vs_exact,
        out$comparison_lme4$rel_diff_re_sd_lme4_VarCorr_vs_exact, out$comparison_lme4$rel_diff_re_sd_lme4_theta_vs_exact, out$comparison_lme4$rel_diff_sigma_lme4_vs_exact)
  }
  if (!is.null(out$lme4_glmer_nb)) {
    out$comparison_glmer_nb <- list(
      logLik_glmer_nb_minus_exact = out$lme4_glmer_nb$logLik - ex$logLik,
      exact_laplace_at_glmer_nb_estimates = ex$logLik_at_lme4_glmer_nb,
      max_abs_fixef_diff = max(abs(as.numeric(out$lme4_glmer_nb$fixef) - as.numeric(ex$fixef))),
      rel_diff_theta = out$lme4_glmer_nb$dispersion / ex$dispersion - 1,
      rel_diff_re_sd = out$lme4_glmer_nb$varcorr[[1]]$estimate / ex$varcorr[[1]]$estimate - 1)
    say("  glmer.nb vs exact: ll diff %.4g, fixef %.3g, theta rel %.3g, sd rel %.3g",
        out$comparison_glmer_nb$logLik_glmer_nb_minus_exact, out$comparison_glmer_nb$max_abs_fixef_diff,
        out$comparison_glmer_nb$rel_diff_theta, out$comparison_glmer_nb$rel_diff_re_sd)
  }
  if (fam == "ig") {
    ## the inverse Gaussian log-density used above against statmod's
    eta <- as.numeric(P$X %*% as.numeric(ex$fixef)) + as.numeric(ex$ranef$g$values[[1]])[P$g]
    mu <- link_fun(eta, link)$mu
    mine <- obs_terms(eta, P, ex$sigma)$l
    ref <- statmod::dinvgauss(P$y, mean = mu, dispersion = ex$dispersion / P$w, log = TRUE)
    out$exact_laplace$ig_density_check_max_abs_diff_vs_statmod <- max(abs(mine - ref))
  }
  if (use_weights) {
    ## independent check: the same model written for glmmTMB with a
    ## dispersion-formula offset (glmmTMB 1.1.5's dispersion parameter is
    ## log(shape) for Gamma and log(theta) for nbinom2; gamma: log shape_i =
    ## log(w_i) - 2 log(sigma); NB2: response k, cond offset log(w), size w theta)
    tm <- if (fam == "gamma")
      fit_tmb(y ~ x + (1 | g), d, Gamma(link = "log"), dispformula = ~ 1 + offset(log(w)))
    else fit_tmb(k ~ x + offset(log(w)) + (1 | g), d, nbinom2(link = "log"), dispformula = ~ 1 + offset(log(w)))
    e <- tmb_summary(tm, re, if (fam == "nb2") "nb2" else "gamma")
    e$model <- if (fam == "gamma")
      "glmmTMB(y ~ x + (1|g), dispformula = ~ 1 + offset(log(w)), family = Gamma(log)): glmmTMB 1.1.5 models log(shape_i) = disp intercept + log(w_i), so MATLAB sigma = exp(-0.5 disp intercept)"
    else "glmmTMB(k ~ x + offset(log(w)) + (1|g), dispformula = ~ 1 + offset(log(w)), family = nbinom2): sigma() = theta"
    e$sigma <- if (fam == "gamma") exp(-0.5 * fixef(tm$value)$disp[[1]]) else 1
    e$dispersion <- if (fam == "gamma") e$sigma^2 else exp(fixef(tm$value)$disp[[1]])
    e$dispersion_note <- disp_note[[fam]]
    out$glmmTMB_dispformula_check <- e
    out$comparison <- list(logLik_exact_minus_glmmTMB_check = ex$logLik - e$logLik,
                           max_abs_fixef_diff = max(abs(as.numeric(ex$fixef) - as.numeric(e$fixef))),
                           rel_diff_dispersion = ex$dispersion / e$dispersion - 1,
                           rel_diff_re_sd = ex$varcorr[[1]]$estimate / e$varcorr[[1]]$estimate - 1)
    say("  glmmTMB dispformula check: ll diff %.3g, fixef %.3g, disp rel %.3g, sd rel %.3g",
        out$comparison$logLik_exact_minus_glmmTMB_check, out$comparison$max_abs_fixef_diff,
        out$comparison$rel_diff_dispersion, out$comparison$rel_diff_re_sd)
  }
  out$reference <- "exact_laplace"
  out$notes <- notes
  out
}

lme4_gamma_note <- paste(
  "glmer Gamma / inverse.gaussian is not the model's Laplace ML fit: (1) its deviance uses family$aic,",
  "which plugs in dispersion = conditional deviance / n and adds 2 (a parameter-count term), so",
  "logLik(glmer) = -(aic + log|L|^2 + |u|^2)/2 (see logLik_decomposition); (2) log|L|^2 is computed",
  "with the GLM weights w/(v g'^2), not divided by the dispersion, and the penalty is |u|^2, not",
  "|u|^2/dispersion. PIRLS minimises (dev + |u|^2), consistent with b = Lambda u, u ~ N(0, sigma^2 I),",
  "i.e. sd(b) = sigma() * theta, which is what VarCorr() prints (varcorr) and what ranef() (= Lambda u)",
  "is on the scale of; but the -2 log prior term of that reading would be |u|^2/sigma^2 + q log(sigma^2),",
  "so the objective is the Laplace approximation of neither reading (sd(b) = theta nor sigma theta).",
  "(3) sigma() is sqrt((Pearson chi^2 + |u|^2)/n) (mkMerMod's sigmaML), not an ML estimate, and not the",
  "dev/n of the aic term. For non-canonical links glmer also uses Fisher (expected) weights.",
  "exact_laplace_at_lme4_estimates[_sd_theta] = the model's exact Laplace logLik at glmer's",
  "(fixef, sd(b) = sigma() theta [theta], sigma()).")

cases_glmm <- list(
  gamma_log = list(file = "gamma_log.csv", fam = "gamma", link = "log",
    python = 'fitglme(d, "y ~ x + (1|g)", distribution="gamma", link="log", fit_method="laplace")',
    tmb_family = Gamma(link = "log"), glmer_family = Gamma(link = "log"),
    truth = list(beta = A(c(1, 0.5)), sd_b = 0.4, shape = 3, sigma = 1 / sqrt(3)),
    notes = list(lme4 = lme4_gamma_note)),
  gamma_inverse = list(file = "gamma_inverse.csv", fam = "gamma", link = "inverse",
    python = 'fitglme(d, "y ~ x + (1|g)", distribution="gamma", link="reciprocal" (or -1), fit_method="laplace")',
    tmb_family = Gamma(link = "inverse"), glmer_family = Gamma(link = "inverse"),
    truth = list(beta = A(c(0.5, 0.1)), sd_b = 0.05, shape = 20, sigma = 1 / sqrt(20)),
    notes = list(lme4 = lme4_gamma_note, data = paste(
      "shape 20 (not 3-8): with shape 8 the ML estimate of sd(b) was 0 for this seed (singular fit);",
      "realised sd of the simulated b is 0.036"))),
  invgauss_log = list(file = "invgauss_log.csv", fam = "ig", link = "log",
    python = 'fitglme(d, "y ~ x + (1|g)", distribution="inverse_gaussian", link="log", fit_method="laplace")',
    glmer_family = inverse.gaussian(link = "log"),
    truth = list(beta = A(c(0.5, 0.3)), sd_b = 0.3, lambda = 5, sigma = sqrt(0.2)),
    notes = list(lme4 = lme4_gamma_note, glmmTMB = "glmmTMB 1.1.5 has no inverse Gaussian family")),
  invgauss_canonical = list(file = "invgauss_canonical.csv", fam = "ig", link = "1/mu^2",
    python = 'fitglme(d, "y ~ x + (1|g)", distribution="inverse_gaussian", link=-2, fit_method="laplace")',
    glmer_family = inverse.gaussian(link = "1/mu^2"),
    truth = list(beta = A(c(1, 0.2)), sd_b = 0.1, lambda = 5, sigma = sqrt(0.2)),
    notes = list(lme4 = lme4_gamma_note, glmmTMB = "glmmTMB 1.1.5 has no inverse Gaussian family")),
  gamma_weights = list(file = "gamma_weights.csv", fam = "gamma", link = "log", use_weights = TRUE,
    python = 'fitglme(d, "y ~ x + (1|g)", distribution="gamma", link="log", weights="w", fit_method="laplace")',
    truth = list(beta = A(c(1, 0.5)), sd_b = 0.4, shape = "3 w", sigma = 1 / sqrt(3)),
    start = c(1, 0.5, log(0.4), log(1 / sqrt(3))),
    notes = list(weights = paste(
      "MATLAB rule: shape = w / sigma^2, Var(y | b) = sigma^2 mu^2 / w. glmmTMB's weights multiply the",
      "log-density (w log f(y; shape 1/sigma^2)), a different model, so only exact_laplace is given.",
      "Same x, g and b as gamma_log.csv; y drawn with shape 3 w."))),
  nb_single = list(file = "nb_single.csv", fam = "nb2", link = "log", nb_glmer = TRUE,
    python = 'fitglme(d, "y ~ x + (1|g)", distribution="negative_binomial", fit_method="laplace")',
    tmb_family = nbinom2(link = "log"),
    truth = list(beta = A(c(1, 0.4)), sd_b = 0.5, theta = 2),
    notes = list(lme4 = paste(
      "glmer.nb alternates glmer fits at fixed theta with a 1-d optimize() over log(theta). The log link",
      "is not the canonical NB2 link, and glmer's PIRLS and log-determinant use expected (Fisher) weights,",
      "so its logLik is a different approximation from the exact Laplace one (higher here, by",
      "comparison_glmer_nb$logLik_glmer_nb_minus_exact) and its optimum differs; glmmTMB and",
      "exact_laplace agree"))),
  nb_weights = list(file = "nb_weights.csv", fam = "nb2", link = "log", use_weights = TRUE,
    python = 'fitglme(d, "y ~ x + (1|g)", distribution="negative_binomial", weights="w", fit_method="laplace")',
    truth = list(beta = A(c(1, 0.4)), sd_b = 0.5, theta = 2), start = c(1, 0.4, log(0.5), log(2)),
    notes = list(weights = paste(
      "Convention: with prior weight w a row is the mean of w iid NB2(mu, theta) counts, so",
      "k = w y ~ NB2(mean w mu, size w theta) (the analogue of MATLAB's Poisson rule, k = w y with",
      "mean w mu); the row's log-likelihood is dnbinom(k, mu = w mu, size = w theta, log = TRUE),",
      "Var(y | b) = (mu + mu^2/theta) / w. Same x, g and b as nb_single.csv.")))
)
for (nm in names(cases_glmm)) if (want(nm)) {
  say("\n=== %s ===", nm)
  result[[nm]] <- do.call(glmm_case, c(list(nm = nm), cases_glmm[[nm]]))
}

## ---- glmmTMB-only cases ------------------------------------------------------
if (want("gamma_slope")) {
  say("\n=== gamma_slope ===")
  re <- list(list(py = "g", key = "g", grp = "g", cn = c("(Intercept)", "x")))
  tm <- fit_tmb(y ~ x + (1 + x | g), D$gamma_slope, Gamma(link = "log"))
  result$gamma_slope <- list(
    data = "gamma_slope.csv", r_formula = "y ~ x + (1 + x | g)", family = "gamma", link = "log",
    python = 'fitglme(d, "y ~ x + (1 + x|g)", distribution="gamma", link="log", fit_method="laplace")',
    nobs = nrow(D$gamma_slope), names_python = S(names_x),
    simulation_truth = list(beta = A(c(1, 0.5)), sd_b = A(c(0.4, 0.2)), corr = 0.3, shape = 5),
    glmmTMB = tmb_summary(tm, re, "gamma"), reference = "glmmTMB")
  say("  glmmTMB logLik %.10f corr %.6f", result$gamma_slope$glmmTMB$logLik, result$gamma_slope$glmmTMB$varcorr[[2]]$estimate)
}
if (want("gamma_reciprocal_offset")) {
  say("\n=== gamma_reciprocal_offset ===")
  re <- list(list(py = "g", key = "g", grp = "g", cn = "(Intercept)"))
  ## glmmTMB's default start (beta = 0) has eta = offset < 0 on some rows, a NaN log-likelihood
  ## ("negative log-likelihood is NaN at starting parameter values"): start at the simulation truth
  tm <- fit_tmb(y ~ x + offset(off) + (1 | g), D$gamma_reciprocal_offset, Gamma(link = "inverse"),
                start = list(beta = c(1.2, 0.1), theta = log(0.2)))
  result$gamma_reciprocal_offset <- list(
    data = "gamma_reciprocal_offset.csv", r_formula = "y ~ x + offset(off) + (1 | g)", family = "gamma",
    link = "inverse",
    python = 'fitglme(d, "y ~ x + (1|g)", distribution="gamma", link="reciprocal", offset="off")',
    nobs = nrow(D$gamma_reciprocal_offset), names_python = S(names_x),
    simulation_truth = list(beta = A(c(1.2, 0.1)), sd_b = 0.2, shape = 5),
    glmmTMB = tmb_summary(tm, re, "gamma"), reference = "glmmTMB",
    notes = list(start = paste(
      "glmmTMB's default start fails (eta = offset < 0 on some rows: NaN log-likelihood); started at",
      "the simulation truth beta = (1.2, 0.1), sd = 0.2")))
  say("  glmmTMB logLik %.10f", result$gamma_reciprocal_offset$glmmTMB$logLik)
}
if (want("nb_two_terms")) {
  say("\n=== nb_two_terms ===")
  re <- c(re1("g"), re1("h"))
  tm <- fit_tmb(y ~ x + (1 | g) + (1 | h), D$nb_two_terms, nbinom2(link = "log"))
  result$nb_two_terms <- list(
    data = "nb_two_terms.csv", r_formula = "y ~ x + (1 | g) + (1 | h)", family = "nb2", link = "log",
    python = 'fitglme(d, "y ~ x + (1|g) + (1|h)", distribution="negative_binomial", fit_method="laplace")',
    nobs = nrow(D$nb_two_terms), names_python = S(names_x),
    simulation_truth = list(beta = A(c(1, 0.4)), sd_g = 0.5, sd_h = 0.3, theta = 3),
    glmmTMB = tmb_summary(tm, re, "nb2"), reference = "glmmTMB")
  say("  glmmTMB logLik %.10f theta %.6f", result$nb_two_terms$glmmTMB$logLik, result$nb_two_terms$glmmTMB$sigma)
}

## ---- linear mixed models ----------------------------------------------------
lmm_entry <- function(formula, data, REML, re, weights = NULL) {
  ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
  args <- list(formula = formula, data = data, REML = REML, control = ctrl)
  if (!is.null(weights)) args$weights <- weights
  r <- capture(do.call(lmer, args))
  fit <- r$value
  r$settings <- "lmerControl(optimizer='bobyqa', optCtrl=list(rhoend=1e-12, maxfun=1e5))"
  r$rejected <- character(0)
  ll <- logLik(fit); fe <- fixef(fit)
  N <- nobs(fit); p <- length(fe); k <- as.integer(attr(ll, "df"))
  ## independent dense check of the (restricted) log-likelihood at the estimates
  Z <- as.matrix(getME(fit, "Z"))
  Lam <- as.matrix(getME(fit, "Lambda")); sg <- sigma(fit)
  G <- sg^2 * Lam %*% t(Lam)
  wv <- if (is.null(weights)) rep(1, N) else weights
  own <- gauss_ll(getME(fit, "y"), getME(fit, "X"), Z, G, sg^2 / wv, REML = REML, beta = fe)
  c(list(REML = REML, fixef = A(fe), fixef_names_r = S(names(fe)),
         se = A(sqrt(diag(as.matrix(vcov(fit))))),
         theta = A(getME(fit, "theta")),
         varcorr = vc_rows(vc_terms(VarCorr(fit), re)), sigma = sg, dispersion = sg^2,
         dispersion_note = "sigma = residual SD (Var(e) = sigma^2 / w); dispersion = sigma^2 (MATLAB MSE)",
         REML_criterion = if (REML) REMLcrit(fit) else NULL,
         deviance_ML = if (!REML) deviance(fit) else NULL,
         logLik = as.numeric(ll), logLik_own_dense = own,
         df = k, AIC = AIC(fit), BIC = BIC(fit),
         BIC_matlab = -2 * as.numeric(ll) + k * log(if (REML) N - p else N),
         BIC_note = "BIC = lme4's (log N); BIC_matlab uses n_eff = N - p for REML (MATLAB LinearMixedModel)",
         nobs = N),
    lme4_conv(fit, r), list(ranef = ranef_json(ranef(fit, condVar = FALSE), re)))
}
if (want("sleepstudy_reml")) {
  say("\n=== sleepstudy_reml ===")
  re <- list(list(py = "Subject", key = "Subject", grp = "Subject", cn = c("(Intercept)", "Days")))
  e <- lmm_entry(Reaction ~ Days + (Days | Subject), sleep_d, TRUE, re)
  result$sleepstudy_reml <- list(
    data = "sleepstudy.csv", r_formula = "Reaction ~ Days + (Days | Subject)", family = "normal", link = "identity",
    python = c('fitglme(d, "Reaction ~ 1 + Days + (1 + Days|Subject)", fit_method="reml")',
               'fitglme(d, "Reaction ~ 1 + Days + (1 + Days|Subject)", fit_method="rempl")'),
    nobs = nrow(sleep_d), names_python = S(c("(Intercept)", "Days")),
    lme4 = e, reference = "lme4",
    notes = list(rempl = paste("for a normal identity-link model the REMPL pseudo-data are y and W = w, so",
                               "REMPL is the REML LME fit: the same reference")))
  say("  REML crit %.10f logLik %.10f own %.10f", e$REML_criterion, e$logLik, e$logLik_own_dense)
}
for (reml in c(TRUE, FALSE)) {
  nm <- if (reml) "normal_weighted_crossed_reml" else "normal_weighted_crossed_ml"
  if (!want(nm)) next
  say("\n=== %s ===", nm)
  d <- D$normal_weighted_crossed
  e <- lmm_entry(y ~ x + (1 | g) + (1 | h), d, reml, c(re1("g"), re1("h")), weights = d$w)
  result[[nm]] <- list(
    data = "normal_weighted_crossed.csv", r_formula = "y ~ x + (1 | g) + (1 | h), weights = w",
    family = "normal", link = "identity",
    python = sprintf('fitglme(d, "y ~ x + (1|g) + (1|h)", weights="w", fit_method="%s")', if (reml) "reml" else "ml"),
    nobs = nrow(d), names_python = S(names_x),
    simulation_truth = list(beta = A(c(2, 0.5)), sd_g = 0.8, sd_h = 0.5, sigma = 1),
    lme4 = e, reference = "lme4")
  say("  logLik %.10f own %.10f", e$logLik, e$logLik_own_dense)
}

## ---- pseudo-likelihood -------------------------------------------------------
pl_cases <- list(
  cbpp_mpl = list(method = "ML", fixed_sigma = TRUE, data = "cbpp"),
  cbpp_mpl_dispersion = list(method = "ML", fixed_sigma = FALSE, data = "cbpp"),
  cbpp_rempl = list(method = "REML", fixed_sigma = TRUE, data = "cbpp"),
  grouse_mpl = list(method = "ML", fixed_sigma = TRUE, data = "grouse"),
  grouse_mpl_dispersion = list(method = "ML", fixed_sigma = FALSE, data = "grouse"),
  pl_binary_cloglog_mpl = list(method = "ML", fixed_sigma = TRUE, data = "pl_binary"),
  pl_binary_cloglog_rempl = list(method = "REML", fixed_sigma = TRUE, data = "pl_binary"))
for (nm in names(pl_cases)) if (want(nm)) {
  say("\n=== %s ===", nm)
  cs <- pl_cases[[nm]]
  if (cs$data == "cbpp") {
    run <- function(engine) pl_fit(~ period, "herd", cbpp_d, cbpp_d$incidence / cbpp_d$size, "binomial",
                                   ntrial = cbpp_d$size, method = cs$method, fixed_sigma = cs$fixed_sigma,
                                   engine = engine)
    e <- run("own"); en <- run("nlme")
    head <- list(data = "cbpp.csv", r_formula = "incidence/size ~ period + (1 | herd), binomial, size trials",
                 family = "binomial", link = "logit",
                 python = sprintf('fitglme(d, "incidence ~ period + (1|herd)", distribution="binomial", binomial_size="size", fit_method="%s"%s)',
                                  tolower(e$method), if (cs$fixed_sigma) "" else ", dispersion_flag=True"),
                 nobs = nrow(cbpp_d), names_python = S(c("(Intercept)", "period_2", "period_3", "period_4")))
  } else if (cs$data == "pl_binary") {
    run <- function(engine) pl_fit(~ x, "g", plb_d, plb_d$y, "binomial_cloglog", ntrial = rep(1, nrow(plb_d)),
                                   method = cs$method, fixed_sigma = cs$fixed_sigma, engine = engine)
    e <- run("own"); en <- run("nlme")
    head <- list(data = "pl_binary.csv", r_formula = "y ~ x + (1 | g), binomial(cloglog)",
                 family = "binomial", link = "comploglog",
                 python = sprintf('fitglme(d, "y ~ x + (1|g)", distribution="binomial", link="comploglog", fit_method="%s")',
                                  tolower(e$method)),
                 nobs = nrow(plb_d), names_python = S(c("(Intercept)", "x")),
                 note = paste("the pseudo-data LMEs of the first iterations have their variance optimum at 0;",
                              "the own engine maximises each LME over log relative variance globally"))
  } else {
    run <- function(engine) pl_fit(~ YEAR, "BROOD", gt_d, gt_d$TICKS, "poisson", method = cs$method,
                                   fixed_sigma = cs$fixed_sigma, engine = engine)
    e <- run("own"); en <- run("nlme")
    head <- list(data = "grouseticks.csv", r_formula = "TICKS ~ YEAR + (1 | BROOD), poisson",
                 family = "poisson", link = "log",
                 python = sprintf('fitglme(d, "TICKS ~ YEAR + (1|BROOD)", distribution="poisson", fit_method="%s"%s)',
                                  tolower(e$method), if (cs$fixed_sigma) "" else ", dispersion_flag=True"),
                 nobs = nrow(gt_d), names_python = S(c("(Intercept)", "YEAR_96", "YEAR_97")))
  }
  en$comparison_with_pl_fit <- list(
    max_abs_fixef_diff = max(abs(as.numeric(en$fixef) - as.numeric(e$fixef))),
    rel_diff_re_sd = en$varcorr[[1]]$estimate / e$varcorr[[1]]$estimate - 1,
    rel_diff_sigma = en$sigma / e$sigma - 1,
    logLik_diff = en$logLik - e$logLik,
    nlme_logLik_minus_own_at_nlme_estimates = en$logLik_lme_fit - en$logLik_own_pseudo_data)
  out <- c(head, list(pl_fit = e, pl_fit_nlme = en, reference = "pl_fit"))
  for (x in list(e, en))
    say("  %s/%s: %d iterations (last change %.3g), logLik %.10f fit %.10f own %.10f, sd %.8f sigma %.8f grad %s",
        x$method, x$lme_engine, x$iterations, x$last_max_abs_eta_change, x$logLik, x$logLik_lme_fit,
        x$logLik_own_pseudo_data, x$varcorr[[1]]$estimate, x$sigma,
        paste(signif(x$own_loglik_gradient_at_estimates, 3), collapse = " "))
  say("  nlme vs own: fixef %.3g, sd rel %.3g, sigma rel %.3g", en$comparison_with_pl_fit$max_abs_fixef_diff,
      en$comparison_with_pl_fit$rel_diff_re_sd, en$comparison_with_pl_fit$rel_diff_sigma)
  if (!cs$fixed_sigma) {
    pq <- if (cs$data == "cbpp")
      capture(glmmPQL(incidence / size ~ period, random = ~ 1 | herd, family = binomial,
                      data = cbpp_d, weights = size, niter = 500))
    else capture(glmmPQL(TICKS ~ YEAR, random = ~ 1 | BROOD, family = poisson, data = gt_d, niter = 500))
    out$glmmPQL <- pql_compare(pq, e, if (cs$data == "cbpp") "herd" else "BROOD")
    say("  glmmPQL: %d iterations, fixef diff %.3g, sd rel %.3g, sigma rel %.3g", out$glmmPQL$iterations,
        out$glmmPQL$max_abs_diff_fixef_vs_pl_fit, out$glmmPQL$rel_diff_re_sd_vs_pl_fit, out$glmmPQL$rel_diff_sigma_vs_pl_fit)
  }
  out$notes <- list(
    algorithm = paste("pl_fit: mu start Poisson y + 0.25, binomial (n y + 0.5)/(n + 1); each iteration",
                      "mu = g^-1(eta) clipped, yp = g'(mu)(y - mu) + eta, W = w/(v(mu) g'(mu)^2) (w = size for",
                      "binomial), nlme::lme(yp ~ X, random = ~1|group, weights = varFixed(~ 1/W)),",
                      "warm-started covariance; converged when max|eta_new - eta_old| <= max(1e-10 max|eta_old|, 1e-10)"),
    nlme_loglik = paste("nlme's logLik for varFixed(~ 1/W) is the Gaussian log-likelihood of the unscaled",
                        "pseudo-data yp with Var(e_i) = sigma^2 / W_i: nlme fits the sqrt(W)-scaled problem",
                        "and adds the varFunc term logLik.varFunc = sum(log(varWeights)) = 0.5 sum(log W)",
                        "(varWeights = 1/sqrt(1/W)); for REML the restricted version (no log|X'X| term, the",
                        "lme4 convention). MATLAB's loglikHatPseudoData (scaled LME logLik + 0.5 sum log W) is",
                        "the same number; checked against the dense computations logLik_own_*."),
    criteria = "AIC = 2(k - L), BIC = k log(n_eff) - 2L with n_eff = N (MPL) or N - p (REMPL), k = p + 1 (+1 with dispersion)")
  result[[nm]] <- out
}

## ---- adaptive Gauss-Hermite quadrature ----------------------------------------
agq_cases <- list(
  cbpp_agq = list(data = "cbpp.csv", df = cbpp_d, formula = cbind(incidence, size - incidence) ~ period + (1 | herd),
                  r_formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)", family = binomial, grp = "herd",
                  python = 'fitglme(d, "incidence ~ period + (1|herd)", distribution="binomial", binomial_size="size", fit_method="quadrature", n_agq=N)',
                  names_python = c("(Intercept)", "period_2", "period_3", "period_4")),
  agq_poisson = list(data = "agq_poisson.csv", df = D$agq_poisson, formula = y ~ x + (1 | g),
                     r_formula = "y ~ x + (1 | g)", family = poisson, grp = "g",
                     python = 'fitglme(d, "y ~ x + (1|g)", distribution="poisson", fit_method="quadrature", n_agq=N)',
                     names_python = names_x, truth = list(beta = A(c(0.5, 0.5)), sd_b = 1)),
  agq_bernoulli = list(data = "agq_bernoulli.csv", df = D$agq_bernoulli, formula = y ~ x + (1 | g),
                       r_formula = "y ~ x + (1 | g)", family = binomial, grp = "g",
                       python = 'fitglme(d, "y ~ x + (1|g)", distribution="binomial", fit_method="quadrature", n_agq=N)',
                       names_python = names_x, truth = list(beta = A(c(-0.5, 1)), sd_b = 1.5)))
for (nm in names(agq_cases)) if (want(nm)) {
  say("\n=== %s ===", nm)
  cs <- agq_cases[[nm]]
  fam <- cs$family()$family
  mf <- lFormula(cs$formula, cs$df)
  yr <- model.response(mf$fr)
  P <- list(X = mf$X, g = as.integer(mf$reTrms$flist[[1]]), J = nlevels(mf$reTrms$flist[[1]]),
            family = fam, link = cs$family()$link, w = rep(1, nrow(mf$X)))
  if (is.matrix(yr)) { P$k <- yr[, 1]; P$n <- yr[, 1] + yr[, 2] } else { P$k <- yr; P$n <- rep(1, length(yr)) }
  P$y <- if (fam == "binomial") P$k else yr
  re <- re1(cs$grp)
  ## saturated conditional log-likelihood sum log f(y | mu = y)
  ll_sat <- if (fam == "poisson") sum(dpois(P$y, P$y, log = TRUE)) else sum(dbinom(P$k, P$n, P$k / P$n, log = TRUE))
  out <- list(data = cs$data, r_formula = cs$r_formula, family = fam, link = P$link, python = cs$python,
              nobs = nrow(cs$df), names_python = S(cs$names_python), simulation_truth = cs$truth)
  fits <- list()
  for (q in c(1L, 9L, 25L)) {
    gm <- fit_tight(function(ctrl) glmer(cs$formula, data = cs$df, family = cs$family, nAGQ = q, control = ctrl))
    fits[[as.character(q)]] <- gm$value
    e <- glmer_summary(gm, re, "none")
    e$nAGQ <- q
    sdb <- getME(gm$value, "theta")
    e$agq_check <- agq_ll(fixef(gm$value), sdb, P, q)
    e$agq_check_minus_logLik <- e$agq_check - e$logLik
    if (q > 1) {
      e$saturated_loglik <- ll_sat
      e$logLik_plus_saturated_loglik <- e$logLik + ll_sat
      e$logLik_full <- e$logLik + ll_sat
    } else e$logLik_full <- e$logLik
    out[[sprintf("nAGQ_%d", q)]] <- e
    say("  nAGQ %2d: logLik %.10f -dev/2 %.10f own AGQ %.10f full %.10f (%s)", q, e$logLik,
        e$minus_half_deviance, e$agq_check, e$logLik_full, gm$settings)
  }
  f25 <- fits[["25"]]
  ei <- exact_integral(fixef(f25), getME(f25, "theta"), P)
  out$exact_integral <- list(
    at = "glmer nAGQ = 25 estimates (fixef, sd(b) = theta)",
    logLik = ei$logLik, laplace_at_same_estimates = ei$laplace,
    agq25_full_logLik_minus_exact = out$nAGQ_25$logLik_plus_saturated_loglik - ei$logLik,
    agq9_at_agq25_estimates = agq_ll(fixef(f25), getME(f25, "theta"), P, 9),
    method = "sum over groups of log integrate(exp(h_j), -Inf, Inf, rel.tol = 1e-12) after centring at the mode")
  say("  exact integral %.12f (AGQ25 + sat - exact %.3g), Laplace at same %.10f", ei$logLik,
      out$exact_integral$agq25_full_logLik_minus_exact, ei$laplace)
  out$reference <- "nAGQ_25"
  out$notes <- list(logLik = paste(
    "lme4 1.1-31: for nAGQ = 1 logLik() is the Laplace approximation with all constants. For nAGQ > 1",
    "logLik() is the adaptive Gauss-Hermite approximation MINUS the saturated conditional",
    "log-likelihood sum log f(y | mu = y) (saturated_loglik): lme4's AGQ deviance is built from the",
    "deviance residuals (-2 log f(y|mu) + 2 log f(y|y)) and the saturated term is never added back.",
    "So logLik_plus_saturated_loglik (= logLik_full) is the full AGQ marginal log-likelihood; it equals agq_check",
    "(the same rule computed here: Golub-Welsch nodes, centred at the conditional mode, scale",
    "1/sqrt(-h''(b)), h including the N(0, theta^2) log-density). For Bernoulli data the saturated",
    "term is 0 and logLik() is already complete. -deviance()/2 is neither (deviance() of a glmerMod",
    "is not -2 logLik). exact_integral: the marginal log-likelihood by integrate() at the nAGQ = 25",
    "estimates; nAGQ_25$logLik_plus_saturated_loglik - exact_integral$logLik is the quadrature error.",
    "The nAGQ estimates maximise lme4's objective, which differs from the full one by a constant, so",
    "they are the AGQ maximum-likelihood estimates."))
  result[[nm]] <- out
}

## ---------------------------------------------------------------------------
## Write
## ---------------------------------------------------------------------------
js <- toJSON(result, auto_unbox = TRUE, pretty = TRUE, digits = NA, null = "null", na = "null")
writeLines(js, out_json)
chk <- fromJSON(out_json, simplifyVector = FALSE)
cat("\nWrote", out_json, "with keys:", paste(setdiff(names(chk), "_meta"), collapse = ", "), "\n")
