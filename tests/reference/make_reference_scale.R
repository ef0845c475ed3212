## Reference numbers for the sparse random-effects Cholesky (issue 8): nested and crossed random
## effects at sizes where the dense coupling block would be large. Used by
## tests/test_scale_reference.py.
##
## Run from the repository root:
##     Rscript tests/reference/make_reference_scale.R
##
## Outputs
##   tests/reference/data/scale_nested_poisson.csv     (a) 300 schools x 4 classes x 3 pupils = 3,600 rows
##   tests/reference/data/scale_nested_crossed.csv     (b) 100 schools x 4 classes x 10 pupils = 4,000
##                                                         rows, each pupil scored by one of 50 raters
##   tests/reference/data/scale_insteval.csv           (c) the first 6,000 rows of lme4::InstEval
##   tests/reference/data/scale_crossed_poisson.csv    (d) 20,000 rows, a: 1,000 levels, b: 300 levels
##   tests/reference/scale_reference.json
##
## The data are simulated here with fixed seeds (set.seed per case, R's default RNG kinds), written
## with write.csv(row.names = FALSE) and read back, so that R and Python fit exactly the same numbers
## (covariates are rounded to 4 decimals before writing). Grouping labels carry a letter prefix
## (s001, c1, r01, ...; InstEval's s, d and dept as s1, d1002, dept15) so that every reader sees
## strings, not integers. The CSVs are plain text (the largest, 20,000 rows, is ~0.4 MB).
##
## For each case: lme4 at tight settings (bobyqa, rhoend 1e-12, maxfun 1e5; glmer also tolPwrss as
## small as PIRLS reaches, first of 1e-14, 1e-13, 1e-12, 1e-10 that fits without error), fixed
## effects, their SEs (lmer: vcov(); glmer: vcov(use.hessian = FALSE), the RX-based conditional SEs
## that ppl_glmm reports, and vcov() from the finite-difference Hessian as se_hessian), theta, the
## random-effect SDs (in response units; lmer: also sigma), logLik, deviance, and "devfun_at_opt":
## lme4's own objective evaluated at lme4's optimum:
##   * glmer (nAGQ = 1): glmer(..., devFunOnly = TRUE) with tolPwrss = 1e-14 (1e-13 if that
##     fails); the function takes c(theta, beta) and returns -2 * Laplace logLik. lme4's reported
##     logLik computes log|L| with the weights of the second-to-last PIRLS iterate, so it can differ
##     from this re-evaluation in the last digits; devfun_at_opt is the value of lme4's objective.
##   * lmer: lmer(..., devFunOnly = TRUE) (REML = FALSE for the ML case, TRUE for the REML case)
##     takes theta and returns the profiled deviance (-2 logLik, beta and sigma profiled out), or
##     the REML criterion.
## glmmTMB 1.1.5 fits the same models (REML = TRUE for the REML case): logLik, fixed effects, SEs,
## SDs, as a second opinion.
##
## tests/reference/check_scale_devfun.R evaluates the same lme4 deviance functions at ppl_glmm's
## estimates (exported by tests/reference/export_scale_estimates.py) and adds the result to this
## JSON ("ppl_glmm_devfun_check" entries); rerunning this script drops those entries.
##
## JSON layout (one entry per case name, plus "_meta"):
##   python: {formula, kwargs}   how tests/test_scale_reference.py fits it
##   data, r_formula, family, nobs, names_python, groups (python group names, SD order),
##   lme4: {settings, fixef, fixef_names_r, se, se_hessian (glmer), theta, theta_names, sd, sigma,
##          logLik, df, deviance, deviance_note, minus2logLik, devfun_at_opt, logLik_at_opt
##          (= -devfun_at_opt / 2), devfun_tolPwrss, conv_messages, warnings, optimizer, feval,
##          seconds}
##   glmmTMB: {fixef, se, sd, sigma, logLik, convergence, pdHess, warnings, seconds}
##   ppl_glmm_devfun_check: added by check_scale_devfun.R (see there)
## All vectors are JSON arrays (even of length 1).

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})
if (!file.exists("tests/reference/data/cbpp.csv")) stop("run this script from the repository root")
data_dir <- "tests/reference/data"
out_json <- "tests/reference/scale_reference.json"

## ---------------------------------------------------------------------------
## 1. Data
## ---------------------------------------------------------------------------
## check_scale_devfun.R sources this file with SCALE_DEVFUN_ONLY=1: it reads the committed data and
## defines the cases and helpers, but neither rewrites the CSVs nor fits anything
devfun_only <- nzchar(Sys.getenv("SCALE_DEVFUN_ONLY"))
wr <- function(d, f) if (!devfun_only) write.csv(d, file.path(data_dir, f), row.names = FALSE, quote = FALSE)
rd <- function(f) read.csv(file.path(data_dir, f), stringsAsFactors = FALSE)
lab <- function(prefix, i, width) sprintf("%s%0*d", prefix, width, i)

## (a) nested Poisson: 300 schools x 4 classes x 3 pupils; class labels c1..c4 repeat across
##     schools (the nesting is in the formula: school/class = school + school:class)
set.seed(20240801)
n_s <- 300; n_c <- 4; n_p <- 3
school <- rep(seq_len(n_s), each = n_c * n_p)
class <- rep(rep(seq_len(n_c), each = n_p), times = n_s)
x <- round(rnorm(length(school)), 4)
u_s <- rnorm(n_s, sd = 0.5)
u_c <- rnorm(n_s * n_c, sd = 0.3)
eta <- 0.5 + 0.3 * x + u_s[school] + u_c[(school - 1) * n_c + class]
wr(data.frame(y = rpois(length(eta), exp(eta)), x = x,
              school = lab("s", school, 3), class = lab("c", class, 1)),
   "scale_nested_poisson.csv")

## (b) binomial (Bernoulli): 100 schools x 4 classes x 10 pupils; each pupil is scored once by one
##     of 50 raters (drawn at random: crossed with schools and classes)
set.seed(20240802)
n_s <- 100; n_c <- 4; n_p <- 10; n_r <- 50
school <- rep(seq_len(n_s), each = n_c * n_p)
class <- rep(rep(seq_len(n_c), each = n_p), times = n_s)
rater <- sample.int(n_r, length(school), replace = TRUE)
x <- round(rnorm(length(school)), 4)
u_s <- rnorm(n_s, sd = 0.6)
u_c <- rnorm(n_s * n_c, sd = 0.5)
u_r <- rnorm(n_r, sd = 0.4)
eta <- -0.3 + 0.8 * x + u_s[school] + u_c[(school - 1) * n_c + class] + u_r[rater]
wr(data.frame(y = rbinom(length(eta), 1, plogis(eta)), x = x,
              school = lab("s", school, 3), class = lab("c", class, 1), rater = lab("r", rater, 2)),
   "scale_nested_crossed.csv")

## (c) InstEval: the first 6,000 rows (217 students, 850 instructors, 14 departments);
##     service as 0/1 (the factor's "service1" coefficient), y4 = (y >= 4)
data("InstEval", package = "lme4")
ie <- InstEval[1:6000, ]
wr(data.frame(y = ie$y, y4 = as.integer(ie$y >= 4), service = as.integer(as.character(ie$service)),
              s = paste0("s", ie$s), d = paste0("d", ie$d), dept = paste0("dept", ie$dept)),
   "scale_insteval.csv")

## (d) crossed Poisson: 20,000 rows, a: 1,000 levels (20 rows each), b: 300 levels (at random)
set.seed(20240804)
n <- 20000; n_a <- 1000; n_b <- 300
a <- rep(seq_len(n_a), each = n / n_a)
b <- sample.int(n_b, n, replace = TRUE)
x <- round(rnorm(n), 4)
u_a <- rnorm(n_a, sd = 0.4)
u_b <- rnorm(n_b, sd = 0.3)
eta <- 0.2 + 0.25 * x + u_a[a] + u_b[b]
wr(data.frame(y = rpois(n, exp(eta)), x = x, a = lab("a", a, 4), b = lab("b", b, 3)),
   "scale_crossed_poisson.csv")

nested <- rd("scale_nested_poisson.csv")
nc <- rd("scale_nested_crossed.csv")
inst <- rd("scale_insteval.csv")
crossed <- rd("scale_crossed_poisson.csv")
for (v in c("school", "class")) { nested[[v]] <- factor(nested[[v]]); nc[[v]] <- factor(nc[[v]]) }
nc$rater <- factor(nc$rater)
for (v in c("s", "d", "dept")) inst[[v]] <- factor(inst[[v]])
crossed$a <- factor(crossed$a); crossed$b <- factor(crossed$b)

## ---------------------------------------------------------------------------
## 2. Cases. re: python group name -> lme4 VarCorr name, in python (formula) order
## ---------------------------------------------------------------------------
inst_re <- list(s = "s", d = "d", dept = "dept")
cases <- list(
  nested_poisson = list(
    data = "scale_nested_poisson.csv", df = nested, family = "poisson",
    r_formula = "y ~ x + (1 | school/class)",
    python = list(formula = "y ~ x + (1|school/class)", kwargs = list(distribution = "poisson")),
    names_python = c("(Intercept)", "x"),
    re = list(school = "school", `school:class` = "class:school")),
  nested_crossed_binomial = list(
    data = "scale_nested_crossed.csv", df = nc, family = "binomial",
    r_formula = "y ~ x + (1 | school/class) + (1 | rater)",
    python = list(formula = "y ~ x + (1|school/class) + (1|rater)",
                  kwargs = list(distribution = "binomial")),
    names_python = c("(Intercept)", "x"),
    re = list(school = "school", `school:class` = "class:school", rater = "rater")),
  insteval_ml = list(
    data = "scale_insteval.csv", df = inst, family = "gaussian", REML = FALSE,
    r_formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
    python = list(formula = "y ~ service + (1|s) + (1|d) + (1|dept)",
                  kwargs = list(distribution = "normal", fit_method = "laplace")),
    names_python = c("(Intercept)", "service"), re = inst_re),
  insteval_reml = list(
    data = "scale_insteval.csv", df = inst, family = "gaussian", REML = TRUE,
    r_formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept)",
    python = list(formula = "y ~ service + (1|s) + (1|d) + (1|dept)",
                  kwargs = list(distribution = "normal", fit_method = "reml")),
    names_python = c("(Intercept)", "service"), re = inst_re),
  insteval_binomial = list(
    data = "scale_insteval.csv", df = inst, family = "binomial",
    r_formula = "y4 ~ service + (1 | s) + (1 | d) + (1 | dept)",
    python = list(formula = "y4 ~ service + (1|s) + (1|d) + (1|dept)",
                  kwargs = list(distribution = "binomial")),
    names_python = c("(Intercept)", "service"), re = inst_re),
  crossed_poisson = list(
    data = "scale_crossed_poisson.csv", df = crossed, family = "poisson",
    r_formula = "y ~ x + (1 | a) + (1 | b)",
    python = list(formula = "y ~ x + (1|a) + (1|b)", kwargs = list(distribution = "poisson")),
    names_python = c("(Intercept)", "x"), re = list(a = "a", b = "b"))
)

## ---------------------------------------------------------------------------
## 3. Helpers
## ---------------------------------------------------------------------------
fam <- function(cs) switch(cs$family, poisson = poisson(), binomial = binomial(), gaussian = gaussian())

capture <- function(expr) {
  warns <- character(0)
  t0 <- proc.time()[["elapsed"]]
  val <- withCallingHandlers(expr,
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) invokeRestart("muffleMessage"))
  list(value = val, warnings = warns, seconds = proc.time()[["elapsed"]] - t0)
}

sds_of <- function(vc, cs) {
  unname(vapply(cs$re, function(g) unname(attr(vc[[g]], "stddev")), numeric(1)))
}

## do.call() stores the evaluated arguments in the call, so update(fit, devFunOnly = TRUE) works
fit_lme4 <- function(cs, tolPwrss) {
  f <- as.formula(cs$r_formula)
  if (cs$family == "gaussian") {
    ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
    do.call(lmer, list(formula = f, data = cs$df, REML = cs$REML, control = ctrl))
  } else {
    ctrl <- glmerControl(optimizer = "bobyqa", tolPwrss = tolPwrss,
                         optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
    do.call(glmer, list(formula = f, data = cs$df, family = fam(cs), nAGQ = 1L, control = ctrl))
  }
}

## lme4's deviance function of the case, built from the data (no fitted object needed):
##   glmer: glmer(..., nAGQ = 1, devFunOnly = TRUE) with tolPwrss = 1e-14 (else 1e-13, 1e-12: the
##          first that evaluates at `check` = list(theta, beta)); f(theta, beta) = -2 Laplace logLik
##   lmer:  lmer(..., REML = ML or REML as the case, devFunOnly = TRUE); f(theta) = profiled
##          deviance (beta and sigma profiled out) or REML criterion; theta = SD / sigma
lme4_devfun <- function(cs, check) {
  f <- as.formula(cs$r_formula)
  if (cs$family == "gaussian") {
    dd <- do.call(lmer, list(formula = f, data = cs$df, REML = cs$REML, devFunOnly = TRUE))
    return(list(fun = function(theta, beta = NULL) dd(theta), tolPwrss = NA))
  }
  for (tol in c(1e-14, 1e-13, 1e-12)) {
    dd <- tryCatch(suppressMessages(do.call(glmer, list(
      formula = f, data = cs$df, family = fam(cs), nAGQ = 1L, devFunOnly = TRUE,
      control = glmerControl(tolPwrss = tol)))), error = function(e) NULL)
    if (is.null(dd)) next
    v <- tryCatch(dd(c(check$theta, check$beta)), error = function(e) NA)
    if (is.finite(v)) return(list(fun = function(theta, beta) dd(c(theta, beta)), tolPwrss = tol,
                                  env = environment(dd)))
  }
  stop("no devfun")
}

if (devfun_only) {
  ## sourced by check_scale_devfun.R: data, cases, fit_lme4 and lme4_devfun are defined
} else {

## ---------------------------------------------------------------------------
## 4. Fit
## ---------------------------------------------------------------------------
result <- list(`_meta` = list(
  R = R.version.string, lme4 = as.character(packageVersion("lme4")),
  glmmTMB = as.character(packageVersion("glmmTMB")),
  generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"),
  script = "tests/reference/make_reference_scale.R",
  devfun_check_script = "tests/reference/check_scale_devfun.R"))

only <- Sys.getenv("SCALE_CASES")
if (nzchar(only)) cases <- cases[strsplit(only, ",", fixed = TRUE)[[1]]]

for (nm in names(cases)) {
  cs <- cases[[nm]]
  cat(sprintf("\n=== %s (%d rows) ===\n", nm, nrow(cs$df)))
  glmm <- cs$family != "gaussian"
  r <- NULL; rejected <- character(0)
  for (tol in if (glmm) c(1e-14, 1e-13, 1e-12, 1e-10) else NA) {
    r <- tryCatch(capture(fit_lme4(cs, tol)), error = function(e) e)
    if (!inherits(r, "error")) break
    rejected <- c(rejected, sprintf("tolPwrss=%g: %s", tol, conditionMessage(r)))
    cat("  rejected:", tail(rejected, 1), "\n")
    r <- NULL
  }
  fit <- r$value
  settings <- if (glmm)
    sprintf("glmer(nAGQ=1, control=glmerControl(optimizer='bobyqa', tolPwrss=%g, optCtrl=list(rhoend=1e-12, maxfun=1e5)))", tol)
  else sprintf("lmer(REML=%s, control=lmerControl(optimizer='bobyqa', optCtrl=list(rhoend=1e-12, maxfun=1e5)))", cs$REML)
  if (length(rejected)) settings <- paste0(settings, " (rejected: ", paste(rejected, collapse = "; "), ")")

  th <- getME(fit, "theta")
  dv <- lme4_devfun(cs, list(theta = th, beta = fixef(fit)))
  dev_opt <- dv$fun(th, fixef(fit))
  msgs <- fit@optinfo$conv$lme4$messages
  ll <- logLik(fit)
  lme4_out <- list(
    settings = settings,
    fixef = I(unname(fixef(fit))), fixef_names_r = I(names(fixef(fit))),
    se = I(unname(if (glmm) sqrt(diag(as.matrix(suppressWarnings(vcov(fit, use.hessian = FALSE)))))
                  else sqrt(diag(as.matrix(vcov(fit)))))),
    se_hessian = if (glmm) I(unname(sqrt(diag(as.matrix(vcov(fit)))))) else NULL,
    theta = I(unname(th)), theta_names = I(names(th)),
    sd = I(sds_of(VarCorr(fit), cs)), sigma = sigma(fit),
    logLik = as.numeric(ll), df = as.integer(attr(ll, "df")),
    deviance = if (isTRUE(cs$REML)) REMLcrit(fit) else deviance(fit),
    deviance_note = if (isTRUE(cs$REML)) "REMLcrit(fit) = -2 * restricted logLik" else if (glmm)
      "deviance(fit): glmer's penalized deviance (sum of deviance residuals + |u|^2 + log|L|^2), which omits the saturated log-likelihood; -2 logLik is minus2logLik" else "deviance(fit) = -2 logLik",
    minus2logLik = -2 * as.numeric(ll),
    devfun_at_opt = dev_opt, logLik_at_opt = -dev_opt / 2, devfun_tolPwrss = dv$tolPwrss,
    conv_messages = I(as.character(unlist(msgs))),
    warnings = I(r$warnings),
    optimizer = fit@optinfo$optimizer, feval = fit@optinfo$feval,
    seconds = r$seconds)
  cat(sprintf("  lme4 %s\n  logLik %.10f  devfun_at_opt/-2 %.10f  (%.1f s)\n", settings,
              lme4_out$logLik, lme4_out$logLik_at_opt, r$seconds))
  print(signif(c(fixef(fit), sd = lme4_out$sd), 10))
  if (length(lme4_out$conv_messages)) cat("  conv messages:", lme4_out$conv_messages, "\n")
  if (length(r$warnings)) cat("  warnings:", r$warnings, "\n")

  tm <- capture(do.call(glmmTMB, list(formula = as.formula(cs$r_formula), data = cs$df,
                                      family = fam(cs), REML = isTRUE(cs$REML))))
  g <- tm$value
  tmb_out <- list(
    fixef = I(unname(fixef(g)$cond)), se = I(unname(sqrt(diag(vcov(g)$cond)))),
    sd = I(sds_of(VarCorr(g)$cond, cs)), sigma = sigma(g),
    logLik = as.numeric(logLik(g)), convergence = g$fit$convergence,
    pdHess = isTRUE(g$sdr$pdHess), warnings = I(tm$warnings), seconds = tm$seconds)
  cat(sprintf("  glmmTMB logLik %.10f (%.1f s)\n", tmb_out$logLik, tm$seconds))
  print(signif(c(tmb_out$fixef, sd = tmb_out$sd), 10))

  result[[nm]] <- list(
    python = cs$python, data = cs$data, r_formula = cs$r_formula, family = cs$family,
    REML = isTRUE(cs$REML), nobs = nrow(cs$df), names_python = I(cs$names_python),
    groups = I(names(cs$re)), lme4 = lme4_out, glmmTMB = tmb_out)
}

if (nzchar(only) && file.exists(out_json)) {  # partial rerun: replace those cases only
  old <- fromJSON(out_json, simplifyVector = FALSE)
  for (nm in setdiff(names(result), "_meta")) old[[nm]] <- result[[nm]]
  old$`_meta`$partial_rerun <- sprintf("%s: %s", result$`_meta`$generated, only)
  result <- old
}
writeLines(toJSON(result, digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null"), out_json)
cat("\nwrote", out_json, "\n")
}
