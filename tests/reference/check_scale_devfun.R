## lme4's own deviance function at ppl_glmm's estimates of the scale cases (issue 8: "better than
## lme4 where lme4 stops early: show it with lme4's own deviance function").
##
## Run from the repository root, after make_reference_scale.R and
## tests/reference/export_scale_estimates.py:
##     Rscript tests/reference/check_scale_devfun.R
##
## Reads tests/reference/scale_ppl_glmm_estimates.json (ppl_glmm's fixed effects, SDs, sigma and
## logLik) and the case definitions and data of make_reference_scale.R (sourced with
## SCALE_DEVFUN_ONLY=1: it neither rewrites the data nor refits), builds each case's lme4 deviance
## function (lme4_devfun() there) and evaluates it both at lme4's optimum (recorded in
## scale_reference.json) and at ppl_glmm's estimates:
##   * glmer (nAGQ = 1, tolPwrss = 1e-14 or the smallest PIRLS reaches): f(c(theta, beta)) with
##     theta = ppl_glmm's SDs (sigma = 1), beta = ppl_glmm's fixed effects; -f/2 is the Laplace
##     log-likelihood at ppl_glmm's estimates by lme4's computation;
##   * lmer (ML or REML): f(theta) with theta = SD / sigma; beta and sigma are profiled out, so -f/2
##     is the (restricted) log-likelihood maximised over beta and sigma at ppl_glmm's theta.
## Each case of scale_reference.json gets a "ppl_glmm_devfun_check" entry (the rest of the JSON is
## rewritten unchanged):
##   ppl_glmm: the estimates used (fixef, sd, sigma, logLik) and their commit
##   theta: in lme4's order (theta_names of the lme4 entry), beta
##   devfun_at_ppl_glmm, logLik_lme4_objective_at_ppl_glmm = -devfun_at_ppl_glmm / 2
##   devfun_at_lme4, logLik_lme4_objective_at_lme4: the same function at lme4's (theta, beta)
##   ppl_glmm_minus_lme4: logLik_lme4_objective_at_ppl_glmm - logLik_lme4_objective_at_lme4
##     (> 0: lme4's own objective is higher at ppl_glmm's estimates than at lme4's)
##   devfun_tolPwrss
##   exact_laplace (GLMM cases): the Laplace logLik computed independently here (exact_laplace()
##     below) at ppl_glmm's, lme4's and glmmTMB's estimates. It arbitrates between lme4's devfun
##     and ppl_glmm's logLik where the two evaluate the same point differently; lme4_ldL2_minus_exact
##     is lme4's log|L|^2 at its optimum minus the exact log|Lambda'Z'WZLambda + I| at the same
##     point (lme4 factors L with the weights of the previous PIRLS iterate).

Sys.setenv(SCALE_DEVFUN_ONLY = "1")
source("tests/reference/make_reference_scale.R")
Sys.unsetenv("SCALE_DEVFUN_ONLY")

## Exact Laplace log-likelihood of a GLMM case at (theta, beta), independent of lme4's PIRLS and
## of ppl_glmm: the model matrices from lme4::glFormula, A = Z Lambda (Lambda from theta), Newton
## steps on h(u) = sum log p(y | X beta + A u) - |u|^2 / 2 to |step| < 1e-14 (step halving if h
## decreases), then h(u) - log|A' W A + I| / 2 with W the (canonical-link) Newton weights and
## log-densities from dpois / dbinom(log = TRUE); log|.| from Matrix's sparse Cholesky.
exact_laplace <- function(cs, theta, beta) {
  gf <- glFormula(as.formula(cs$r_formula), data = cs$df, family = fam(cs))
  Lt <- gf$reTrms$Lambdat
  Lt@x <- theta[gf$reTrms$Lind]
  A <- t(Lt %*% gf$reTrms$Zt)
  y <- model.response(gf$fr)
  eta0 <- as.numeric(gf$X %*% beta)
  terms_at <- function(u) {
    eta <- eta0 + as.numeric(A %*% u)
    if (cs$family == "poisson") {
      mu <- exp(eta)
      list(l = dpois(y, mu, log = TRUE), d1 = y - mu, w = mu)
    } else {
      p <- plogis(eta)
      list(l = dbinom(y, 1, p, log = TRUE), d1 = y - p, w = p * (1 - p))
    }
  }
  h <- function(u) sum(terms_at(u)$l) - sum(u^2) / 2
  hess <- function(o) forceSymmetric(crossprod(A, Diagonal(x = o$w) %*% A) + Diagonal(ncol(A)))
  u <- rep(0, ncol(A))
  for (it in 1:100) {
    o <- terms_at(u)
    step <- as.numeric(solve(hess(o), as.numeric(crossprod(A, o$d1)) - u))
    h0 <- h(u); un <- u + step
    while (h(un) < h0 - 1e-12 && max(abs(step)) > 1e-15) { step <- step / 2; un <- u + step }
    u <- un
    if (max(abs(step)) < 1e-14) break
  }
  o <- terms_at(u)
  logdet <- as.numeric(determinant(hess(o), logarithm = TRUE)$modulus)
  list(logLik = sum(o$l) - sum(u^2) / 2 - logdet / 2, logdet = logdet, newton_iterations = it,
       max_gradient = max(abs(as.numeric(crossprod(A, o$d1)) - u)))
}

ref_json <- "tests/reference/scale_reference.json"
est_json <- "tests/reference/scale_ppl_glmm_estimates.json"
ref <- fromJSON(ref_json, simplifyVector = FALSE)
est <- fromJSON(est_json, simplifyVector = FALSE)
num <- function(x) as.numeric(unlist(x))

for (nm in names(cases)) {
  cs <- cases[[nm]]
  R <- ref[[nm]]$lme4
  E <- est[[nm]]
  stopifnot(identical(unlist(E$groups), names(cs$re)))
  glmm <- cs$family != "gaussian"
  ## theta in lme4's order: match "<lme4 group>.(Intercept)" to the python group
  sd <- setNames(num(E$sd), names(cs$re))
  lme4_names <- paste0(unlist(cs$re), ".(Intercept)")
  theta_names <- unlist(R$theta_names)
  py_of <- setNames(names(cs$re), lme4_names)[theta_names]
  stopifnot(!anyNA(py_of))
  theta <- unname(sd[py_of]) / if (glmm) 1 else E$sigma
  beta <- num(E$fixef)
  dv <- lme4_devfun(cs, list(theta = theta, beta = beta))
  d_ours <- dv$fun(theta, beta)
  d_lme4 <- dv$fun(num(R$theta), num(R$fixef))
  ## glmer: lme4's log|L|^2 (pp$ldL2()) after the evaluation at its own optimum
  ldL2 <- if (glmm) dv$env$pp$ldL2() else NULL
  ex <- NULL
  if (glmm) {
    T <- ref[[nm]]$glmmTMB
    tmb_sd <- setNames(num(T$sd), names(cs$re))
    e_ours <- exact_laplace(cs, theta, beta)
    e_lme4 <- exact_laplace(cs, num(R$theta), num(R$fixef))
    e_tmb <- exact_laplace(cs, unname(tmb_sd[py_of]), num(T$fixef))
    ex <- list(
      method = paste("exact Laplace logLik computed in check_scale_devfun.R (exact_laplace():",
                     "Newton to the conditional mode, sparse Cholesky log-determinant)"),
      at_ppl_glmm = e_ours$logLik, at_lme4 = e_lme4$logLik, at_glmmTMB = e_tmb$logLik,
      ppl_glmm_minus_lme4 = e_ours$logLik - e_lme4$logLik,
      ppl_glmm_minus_glmmTMB = e_ours$logLik - e_tmb$logLik,
      ## where lme4's objective differs from the exact value at the same point: its log-determinant
      lme4_ldL2_at_lme4 = ldL2, exact_logdet_at_lme4 = e_lme4$logdet,
      lme4_ldL2_minus_exact = ldL2 - e_lme4$logdet,
      newton_iterations = e_ours$newton_iterations, max_gradient = e_ours$max_gradient)
  }
  ref[[nm]]$ppl_glmm_devfun_check <- list(
    ppl_glmm = list(fixef = I(beta), sd = I(num(E$sd)), sigma = E$sigma, logLik = E$logLik,
                    commit = est$`_meta`$commit,
                    dirty_paths = I(as.character(unlist(est$`_meta`$dirty_paths)))),
    theta = I(theta), theta_names = I(theta_names), beta = I(beta),
    devfun_at_ppl_glmm = d_ours, logLik_lme4_objective_at_ppl_glmm = -d_ours / 2,
    devfun_at_lme4 = d_lme4, logLik_lme4_objective_at_lme4 = -d_lme4 / 2,
    ppl_glmm_minus_lme4 = (d_lme4 - d_ours) / 2,
    devfun_tolPwrss = dv$tolPwrss,
    exact_laplace = ex,
    note = if (glmm) "glmer devfun(c(theta, beta)), nAGQ = 1: -2 Laplace logLik" else
      "lmer devfun(theta): beta and sigma profiled out; theta = SD / sigma")
  cat(sprintf(paste0("%-24s lme4 objective (logLik) at ppl_glmm %.10f, at lme4 %.10f, diff %+.3e;",
                     " ppl_glmm reports %.10f (diff %+.3e)\n"),
              nm, -d_ours / 2, -d_lme4 / 2, (d_lme4 - d_ours) / 2, E$logLik, E$logLik + d_ours / 2))
  if (glmm)
    cat(sprintf("%-24s exact Laplace at ppl_glmm %.10f, at lme4 %.10f, at glmmTMB %.10f; lme4 ldL2 - exact %+.3e\n",
                "", ex$at_ppl_glmm, ex$at_lme4, ex$at_glmmTMB, ex$lme4_ldL2_minus_exact))
}
ref$`_meta`$devfun_check_generated <- format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z")
writeLines(toJSON(ref, digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null"), ref_json)
cat("updated", ref_json, "\n")
