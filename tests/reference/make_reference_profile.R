## Profile-likelihood confidence intervals for the covariance parameters (issue 9), from lme4.
##
## Run from the repository root:
##     Rscript tests/reference/make_reference_profile.R
##
## (PROFILE_CASES=a,b limits the run to those cases and replaces only their entries in the JSON.)
## Output: tests/reference/profile_reference.json; the three simulated data sets
## tests/reference/data/{profile_poisson_small_sd,profile_singular_lmm,profile_three_coef_lmm}.csv
## are written on the first
## run (set.seed below) and only read afterwards.
##
## Per case:
##   * "lme4": confint(m, method = "profile", oldNames = FALSE) as users get it (lme4's default
##     profile: a grid of about delta = cutoff / 8 steps in zeta, then spline interpolation of the
##     signed root zeta(v) = sign(v - v_hat) sqrt(d(v)); accurate to ~1e-3 relative).
##   * "exact": the same intervals by root finding, written here: for each canonical parameter v
##     (SD, correlation, residual sigma), the profile deviance
##         d(v) = min_{other parameters} dev(v, others) - dev_hat
##     with dev lme4's own deviance function (lme4:::devfun2 for lmer, whose sigma is a free
##     parameter; glmer's devFunOnly deviance in (theta, beta) for glmer), the minimum found by
##     minqa::bobyqa (rhoend 1e-10) polished by nlminb (rel.tol 1e-15), bounds SD >= 0,
##     -1 <= corr <= 1, from the previous point and from the estimates (the lower kept),
##     and the end points by uniroot(d(v) - qchisq(0.95, 1), tol = 1e-11). An SD whose d(0) is
##     below the cutoff gets the lower limit 0 (as lme4 reports). Accurate to ~1e-6 relative
##     (the deviance minimisations converge to ~1e-9 in deviance units).
##   * "wald_beta": confint(m, method = "Wald") for the fixed effects (normal quantile; vcov(m):
##     sigma^2 (R_X'R_X)^-1 for lmer, the Hessian-based one for glmer).
## glmer fits use tolPwrss = 1e-13 (the default 1e-7 leaves PIRLS short of the conditional mode,
## moving cbpp's SD by 3e-4; see make_reference.R); its deviance function inherits that control.
##   * "estimates": the fitted SDs / correlations / sigma, "loglik".
##   * "seconds_lme4_profile": the time of lme4's confint(method = "profile") on this machine
##     (reported, not tested).
##
## REML: lme4's profile of a REML fit refits it by ML first (lme4:::devfun2 calls refitML), so
## confint(method = "profile") on a REML fit is the ML profile (identical to the ML fit's, recorded
## under "lme4" for the record). ppl_glmm profiles the fit's own criterion, the REML criterion
##     -2 l_R(theta, sigma) = log|L|^2 + log|R_X|^2 + pwrss / sigma^2 + (n - p) log(2 pi sigma^2)
## whose intervals are in "exact" for sleepstudy_reml (computed here from lme4's decomposition).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

data_dir <- "tests/reference/data"
out_file <- "tests/reference/profile_reference.json"
crit <- qchisq(0.95, 1)

## ---- simulated data sets (written once) ------------------------------------------------------
f_small <- file.path(data_dir, "profile_poisson_small_sd.csv")
if (!file.exists(f_small)) {
  ## a Poisson random intercept whose estimated SD (0.27) is positive but whose profile deviance at
  ## SD = 0 (1.59) is below the 95% cutoff (3.84): lme4's lower limit is 0
  set.seed(11)
  ng <- 10; m <- 6
  g <- rep(1:ng, each = m); x <- round(rnorm(ng * m), 3)
  b <- rnorm(ng, 0, 0.2)
  y <- rpois(ng * m, exp(0.5 + 0.3 * x + b[g]))
  write.csv(data.frame(y = y, x = x, g = g), f_small, row.names = FALSE)
}
f_sing <- file.path(data_dir, "profile_singular_lmm.csv")
if (!file.exists(f_sing)) {
  ## a linear mixed model whose random-intercept SD is estimated at 0 (a singular fit)
  set.seed(101)
  g <- rep(1:8, each = 5); x <- round(runif(40), 3)
  y <- round(10 + 2 * x + rnorm(40, 0, 1) + rnorm(8, 0, 0.1)[g], 3)
  write.csv(data.frame(y = y, x = x, g = g), f_sing, row.names = FALSE)
}

f_three <- file.path(data_dir, "profile_three_coef_lmm.csv")
if (!file.exists(f_three)) {
  ## a linear mixed model with a three-coefficient term (1 + x + z | g): three SDs, three
  ## correlations and sigma, all interior
  set.seed(23)
  ng <- 25; m <- 8
  g <- rep(1:ng, each = m); x <- round(rnorm(ng * m), 3); z <- round(rnorm(ng * m), 3)
  S <- diag(c(1, 0.5, 0.3)) %*% matrix(c(1, 0.4, -0.3, 0.4, 1, 0.2, -0.3, 0.2, 1), 3) %*% diag(c(1, 0.5, 0.3))
  b <- matrix(rnorm(ng * 3), ng) %*% chol(S)
  y <- round(2 + x - 0.5 * z + b[g, 1] + b[g, 2] * x + b[g, 3] * z + rnorm(ng * m, 0, 0.7), 3)
  write.csv(data.frame(y = y, x = x, z = z, g = g), f_three, row.names = FALSE)
}

rd <- function(f) read.csv(file.path(data_dir, f), stringsAsFactors = FALSE)
sleep_d <- rd("sleepstudy.csv")
sleep_d$Subject <- factor(sleep_d$Subject, levels = sort(unique(sleep_d$Subject)))
cbpp_d <- rd("cbpp.csv")
cbpp_d$herd <- factor(cbpp_d$herd, levels = sort(unique(cbpp_d$herd)))
cbpp_d$period <- factor(cbpp_d$period, levels = c(1, 2, 3, 4))
mfr <- rd("mfr.csv")
mfr$factory <- factor(mfr$factory)
mfr$supplier <- factor(mfr$supplier, levels = c("C", "B", "A"))
contrasts(mfr$supplier) <- contr.sum(3)
small_d <- rd("profile_poisson_small_sd.csv"); small_d$g <- factor(small_d$g)
sing_d <- rd("profile_singular_lmm.csv"); sing_d$g <- factor(sing_d$g)
three_d <- rd("profile_three_coef_lmm.csv"); three_d$g <- factor(three_d$g)

## ---- deviance functions on the sd/cor(/sigma) scale -------------------------------------------
## Each returns list(dev = function(par), par = estimates, lower, upper, k = number of covariance
## parameters at the front of par (the rest, beta for glmer, are nuisance only), names).
## TRUE when every term's correlations (lme4's Sv order: per term the lower triangle column by
## column, SDs on the diagonal) form a positive semi-definite correlation matrix. From three
## coefficients on, a box of correlations in [-1, 1] is not all valid, and lme4's devfun2 does not
## refuse such a point: it returns a deviance (below the true profile at cor = +-1 in
## three_coef_lmm), so the exact profiles below treat those points as infinitely bad.
valid_cor <- function(par, vlist) {
  k <- 0
  for (q in vlist) {
    C <- diag(q)
    for (j in seq_len(q)) for (i in j:q) {
      k <- k + 1
      if (i > j) C[i, j] <- C[j, i] <- par[k]
    }
    if (q > 2 && min(eigen(C, symmetric = TRUE, only.values = TRUE)$values) < -1e-12) return(FALSE)
  }
  TRUE
}

lmm_ml_devfun <- function(fm) {
  f2 <- lme4:::devfun2(fm, useSc = TRUE, signames = FALSE)
  opt <- attr(f2, "optimum")
  np <- length(getME(fm, "theta")) + 1
  vlist <- lengths(fm@cnms)
  dev <- function(p) if (valid_cor(p, vlist)) f2(p) else Inf
  list(dev = dev, par = unname(opt[seq_len(np)]), k = np, names = names(opt)[seq_len(np)])
}

lmm_reml_devfun <- function(fr) {
  pp <- fr@pp$copy(); resp <- fr@resp$copy()
  n <- nrow(pp$V); p <- ncol(pp$V)
  vlist <- lengths(fr@cnms)
  np <- length(pp$theta) + 1
  ldW <- sum(log(resp$weights))
  dev <- function(pars) {
    sigma <- pars[np]
    th <- lme4:::Sv_to_Cv(pars, n = vlist, s = sigma)
    .Call(lme4:::lmer_Deviance, pp$ptr(), resp$ptr(), th)
    s2 <- sigma^2
    pp$ldL2() + pp$ldRX2() - ldW + (resp$wrss() + pp$sqrL(1)) / s2 + (n - p) * log(2 * pi * s2)
  }
  par <- c(lme4:::Cv_to_Sv(getME(fr, "theta"), n = vlist, s = sigma(fr)), sigma(fr))
  stopifnot(abs(dev(par) - REMLcrit(fr)) < 1e-8)
  nm <- names(attr(lme4:::devfun2(fr, useSc = TRUE, signames = FALSE), "optimum"))[seq_len(np)]
  list(dev = dev, par = par, k = np, names = nm)
}

glmm_devfun <- function(gm) {
  ## scalar random intercepts only: the SD is theta
  dd <- update(gm, devFunOnly = TRUE)
  th <- getME(gm, "theta")
  stopifnot(length(th) == 1)
  list(dev = function(par) dd(par), par = c(th, fixef(gm)), k = 1,
       names = paste0("sd_(Intercept)|", names(gm@flist)[1]))
}

is_sd <- function(nm) !grepl("^cor_", nm)

## min of fn over bounds (errors and non-finite values count as 1e100): bobyqa (rhoend 1e-10) from start, then nlminb (rel.tol 1e-15) from
## bobyqa's answer, polished twice; the best point
minimize <- function(fn0, start, lower, upper) {
  ## a point outside the parameter space (with three or more correlations, a combination whose
  ## matrix is not positive definite: lme4 stops with "Downdated VtV is not positive definite")
  ## counts as infinitely bad
  fn <- function(p) { v <- tryCatch(fn0(p), error = function(e) Inf); if (is.finite(v)) v else 1e100 }
  start <- pmin(pmax(start, lower), upper)
  rng <- pmin(upper - lower, 1e6)
  rb <- min(0.1, 0.2 * min(rng))
  best <- list(par = start, objective = fn(start))
  b <- tryCatch(minqa::bobyqa(start, fn, lower = lower, upper = upper,
                              control = list(rhobeg = rb, rhoend = 1e-10, maxfun = 1e5)),
                error = function(e) NULL)
  if (!is.null(b) && is.finite(b$fval) && b$fval < best$objective) best <- list(par = b$par, objective = b$fval)
  for (i in 1:2) {
    r <- nlminb(best$par, fn, lower = lower, upper = upper,
                control = list(rel.tol = 1e-15, eval.max = 5000, iter.max = 5000))
    if (r$objective < best$objective) best <- list(par = r$par, objective = r$objective)
  }
  best
}

exact_profile <- function(df) {
  par0 <- df$par
  np <- length(par0)
  lower <- rep(-Inf, np); upper <- rep(Inf, np)
  for (j in seq_len(df$k)) {
    if (j <= length(df$names) && grepl("^cor_", df$names[j])) { lower[j] <- -1; upper[j] <- 1 }
    else { lower[j] <- if (j == df$k && grepl("sigma", df$names[j])) 1e-3 * par0[j] else 0 }
  }
  ## the full minimum (tightened from lme4's estimates)
  full <- minimize(df$dev, par0, lower, upper)
  dev_hat <- full$objective
  par_hat <- full$par
  out <- list()
  for (k in seq_len(df$k)) {
    warm <- par_hat[-k]
    prof <- function(v) {
      f <- function(o) { p <- numeric(np); p[k] <- v; p[-k] <- o; df$dev(p) }
      best <- Inf; bo <- warm
      for (start in list(warm, par_hat[-k])) {
        r <- minimize(f, start, lower[-k], upper[-k])
        if (r$objective < best) { best <- r$objective; bo <- r$par }
      }
      warm <<- bo
      best - dev_hat
    }
    est <- par_hat[k]
    sd_par <- is_sd(df$names[k])
    ## lower end
    if (df$names[k] == "sigma") {
      lo <- est / 2
      while (prof(lo) < crit) lo <- lo / 2
      lo <- uniroot(function(v) prof(v) - crit, c(lo, est), tol = 1e-11)$root
    } else if (sd_par) {
      d0 <- prof(0)
      if (d0 <= crit) lo <- 0
      else lo <- uniroot(function(v) prof(v) - crit, c(0, est), tol = 1e-11)$root
    } else {
      dm <- prof(-1 + 1e-12)
      lo <- if (dm <= crit) -1 else uniroot(function(v) prof(v) - crit, c(-1 + 1e-12, est), tol = 1e-11)$root
    }
    warm <- par_hat[-k]
    if (sd_par) {
      hi <- max(est, 1e-3 * par_hat[np]) * 1.5 + 1e-3
      while (prof(hi) < crit) hi <- hi * 2
      hi <- uniroot(function(v) prof(v) - crit, c(max(est, 1e-12), hi), tol = 1e-11)$root
    } else {
      dp <- prof(1 - 1e-12)
      hi <- if (dp <= crit) 1 else uniroot(function(v) prof(v) - crit, c(est, 1 - 1e-12), tol = 1e-11)$root
    }
    out[[df$names[k]]] <- list(estimate = est, lower = lo, upper = hi)
  }
  list(intervals = out, deviance = dev_hat)
}

lme4_profile <- function(m) {
  t0 <- proc.time()[["elapsed"]]
  ci <- tryCatch(confint(m, method = "profile", oldNames = FALSE, parm = "theta_"),
                 error = function(e) NULL)
  secs <- proc.time()[["elapsed"]] - t0
  if (is.null(ci)) return(list(seconds = secs, intervals = NULL))
  iv <- list()
  for (nm in rownames(ci)) iv[[nm]] <- list(lower = ci[nm, 1], upper = ci[nm, 2])
  list(seconds = secs, intervals = iv)
}

wald_beta <- function(m) {
  ci <- confint(m, method = "Wald", parm = "beta_")
  list(names = I(rownames(ci)), lower = I(unname(ci[, 1])), upper = I(unname(ci[, 2])))
}

cases <- list(
  sleepstudy_ml = list(
    fit = function() lmer(Reaction ~ Days + (Days | Subject), sleep_d, REML = FALSE,
                          control = lmerControl(optimizer = "bobyqa",
                                                optCtrl = list(rhoend = 1e-12, maxfun = 1e5))),
    devfun = lmm_ml_devfun,
    python = list(data = "sleepstudy.csv", formula = "Reaction ~ Days + (Days|Subject)",
                  fit_method = "laplace")),
  sleepstudy_reml = list(
    fit = function() lmer(Reaction ~ Days + (Days | Subject), sleep_d, REML = TRUE,
                          control = lmerControl(optimizer = "bobyqa",
                                                optCtrl = list(rhoend = 1e-12, maxfun = 1e5))),
    devfun = lmm_reml_devfun,
    python = list(data = "sleepstudy.csv", formula = "Reaction ~ Days + (Days|Subject)",
                  fit_method = "reml")),
  cbpp_binomial = list(
    fit = function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp_d,
                           family = binomial,
                           control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-13,
                                                  optCtrl = list(rhoend = 1e-12, maxfun = 1e5))),
    devfun = glmm_devfun,
    python = list(data = "cbpp.csv", formula = "incidence ~ period + (1|herd)",
                  distribution = "binomial", binomial_size = "size")),
  mfr_poisson_effects = list(
    fit = function() glmer(defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1 | factory),
                           mfr, family = poisson,
                           control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-13,
                                                  optCtrl = list(rhoend = 1e-12, maxfun = 1e5))),
    devfun = glmm_devfun,
    python = list(data = "mfr.csv",
                  formula = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1|factory)",
                  distribution = "poisson", dummy_var_coding = "effects")),
  poisson_small_sd = list(
    fit = function() glmer(y ~ x + (1 | g), small_d, family = poisson,
                           control = glmerControl(optimizer = "bobyqa", tolPwrss = 1e-13,
                                                  optCtrl = list(rhoend = 1e-12, maxfun = 1e5))),
    devfun = glmm_devfun,
    python = list(data = "profile_poisson_small_sd.csv", formula = "y ~ x + (1|g)",
                  distribution = "poisson")),
  singular_lmm = list(
    fit = function() lmer(y ~ x + (1 | g), sing_d, REML = FALSE,
                          control = lmerControl(optimizer = "bobyqa",
                                                optCtrl = list(rhoend = 1e-12, maxfun = 1e5))),
    devfun = lmm_ml_devfun,
    python = list(data = "profile_singular_lmm.csv", formula = "y ~ x + (1|g)",
                  fit_method = "laplace")),
  three_coef_lmm = list(
    fit = function() lmer(y ~ x + z + (1 + x + z | g), three_d, REML = FALSE,
                          control = lmerControl(optimizer = "bobyqa",
                                                optCtrl = list(rhoend = 1e-12, maxfun = 1e5))),
    devfun = lmm_ml_devfun,
    python = list(data = "profile_three_coef_lmm.csv", formula = "y ~ x + z + (1 + x + z|g)",
                  fit_method = "laplace"))
)

only <- Sys.getenv("PROFILE_CASES")
## with PROFILE_CASES, the other cases' entries are kept from the existing file
res <- if (nzchar(only) && file.exists(out_file)) fromJSON(out_file, simplifyVector = FALSE) else list()
for (nm in if (nzchar(only)) strsplit(only, ",")[[1]] else names(cases)) {
  cs <- cases[[nm]]
  m <- suppressMessages(cs$fit())
  df <- cs$devfun(m)
  ex <- exact_profile(df)
  lp <- suppressWarnings(suppressMessages(lme4_profile(m)))
  res[[nm]] <- list(
    python = cs$python,
    names = I(df$names),
    estimates = I(df$par[seq_len(df$k)]),
    loglik = as.numeric(logLik(m)),
    singular = isSingular(m),
    exact = ex$intervals,
    exact_deviance = ex$deviance,
    lme4 = lp$intervals,
    seconds_lme4_profile = lp$seconds,
    wald_beta = wald_beta(m))
  cat(nm, "done\n")
}
res[["_meta"]] <- list(
  lme4 = as.character(packageVersion("lme4")), R = R.version.string, crit = crit,
  exact_method = paste(
    "uniroot(tol = 1e-11) on d(v) - qchisq(0.95, 1), d(v) = bobyqa + nlminb minimum of",
    "lme4's deviance function over the other parameters minus the full minimum"),
  lme4_method = "confint(m, method = 'profile', oldNames = FALSE): lme4's spline of the profile",
  reml_note = paste(
    "lme4's confint(method = 'profile') on a REML fit profiles the ML deviance (devfun2 refits",
    "by ML): its 'lme4' entry equals sleepstudy_ml's; 'exact' profiles the REML criterion"))
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), out_file)
cat("wrote", out_file, "\n")
