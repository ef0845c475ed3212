## Generate reference numbers from lme4 (tight + default settings) and glmmTMB
## for the ppl_glmm test-suite.
##
## Run from the repository root:
##     Rscript tests/reference/make_reference.R
##
## Outputs
##   tests/reference/data/{cbpp,grouseticks,sleepstudy}.csv   (exported lme4 data)
##   tests/reference/lme4_reference.json                       (all reference numbers)
##
## The simulated data sets tests/reference/data/{mfr,poisson_offset,binary_slope}.csv
## must already exist; they are only read, never regenerated. So must the data of
## the numerically hard cases (issue 6), made by tests/reference/simulate_hard.py:
## poisson_large.csv, binomial_extreme_{probit,cloglog,loglog}.csv and
## poisson_two_offsets.csv.
##
## Hard cases (issue 6, "trustworthy fits"; new JSON keys, the cases above unchanged)
##   * poisson_large_1e4 / _1e9: Poisson counts with means ~1e4 and ~5e8.
##   * sleepstudy_times_1em6 / _1e6: the sleepstudy_lmm model with Reaction
##     multiplied by 1e-6 / 1e6 (scaled here from sleepstudy.csv; no new CSV).
##   * binomial_extreme_<link>_{bernoulli,trials}: probit, cloglog and loglog links
##     with fitted probabilities down to ~1e-12 and up to ~1 - 1e-12 (overlap in
##     the middle, no complete separation). glmmTMB is the exact Laplace
##     reference; lme4's glmer uses expected (Fisher) information weights for
##     non-canonical links, so its logLik is a different approximation (recorded
##     and marked with "lme4_note").
##     R has no loglog link: loglog(p) = -cloglog(1 - p), so the loglog cases are
##     fitted as cloglog models of the failures (1 - y, or cbind(n - k, k)); the
##     fixed effects and conditional modes are then negated before they are
##     written (random-effect SDs, SEs and logLik are unchanged; a correlation
##     would be too, as every coefficient changes sign). Fitted probabilities are
##     turned back into success probabilities, 1 - fitted.
##   * poisson_offset_formula: the poisson_offset_interaction model (whose R
##     formula already has offset(log(exposure))), for Python's formula offset.
##   * poisson_two_offsets: offset(log(exposure)) in the formula plus the
##     offset = log(area) argument; glmer and glmmTMB add the two.
##   Every hard GLMM case has one scalar random intercept and also gets an
##   "exact_laplace" entry: the Laplace log-likelihood computed here without
##   cancellation (see laplace_ll below), at glmmTMB's and lme4's estimates and
##   maximised. It is the reference where glmer cannot be (fails outright for the
##   ~5e8 counts; Fisher weights for non-canonical links) and glmmTMB is not
##   precise enough (its Poisson log-density loses ~1e-4 of logLik at ~5e8
##   counts; its optimizer stops 5e-5 short in the probit-trials intercept).
##   glmmTMB fails on sleepstudy_times_1e6 (non-positive-definite Hessian, fixed
##   effects left near their start); that is recorded as it is.
##   Optional case fields: offset_arg (an R expression evaluated in the data and
##   passed as offset =), complement (the loglog trick), lme4_note, data_transform.
##
## JSON layout notes
##   * All numeric vectors are written as JSON arrays (even length 1).
##   * ranef[[group]]$values is a list with one array per coefficient name
##     (same order as ranef[[group]]$names); each array has one value per level
##     (same order as ranef[[group]]$levels).
##   * varcorr rows: per random-effects term (python/formula order), column-major
##     lower triangle: (1,1) std, (2,1) corr, ..., (k,1) corr, (2,2) std, ...
##     Std values are in response units (as printed by VarCorr).

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

if (!file.exists("tests/reference/data/mfr.csv"))
  stop("run this script from the repository root")

data_dir <- "tests/reference/data"
out_json <- "tests/reference/lme4_reference.json"

## ---------------------------------------------------------------------------
## 1. Export lme4 data sets
## ---------------------------------------------------------------------------
data("cbpp", package = "lme4")
data("grouseticks", package = "lme4")
data("sleepstudy", package = "lme4")

write.csv(cbpp[, c("herd", "incidence", "size", "period")],
          file.path(data_dir, "cbpp.csv"), row.names = FALSE)

gt <- grouseticks[, c("INDEX", "TICKS", "BROOD", "HEIGHT", "YEAR", "LOCATION")]
gt$cHEIGHT <- gt$HEIGHT - mean(gt$HEIGHT)
write.csv(gt, file.path(data_dir, "grouseticks.csv"), row.names = FALSE)

write.csv(sleepstudy[, c("Reaction", "Days", "Subject")],
          file.path(data_dir, "sleepstudy.csv"), row.names = FALSE)

## ---------------------------------------------------------------------------
## 2. Read all data back from CSV (so R and Python fit exactly the same numbers)
## ---------------------------------------------------------------------------
rd <- function(f) read.csv(file.path(data_dir, f), stringsAsFactors = FALSE)

mfr <- rd("mfr.csv")
mfr$factory  <- factor(mfr$factory)
mfr$supplier <- factor(mfr$supplier, levels = c("C", "B", "A"))
contrasts(mfr$supplier) <- contr.sum(3)

cbpp_d <- rd("cbpp.csv")
cbpp_d$herd   <- factor(cbpp_d$herd, levels = sort(unique(cbpp_d$herd)))
cbpp_d$period <- factor(cbpp_d$period, levels = c(1, 2, 3, 4))

poff <- rd("poisson_offset.csv")
poff$trt  <- factor(poff$trt, levels = c("ctl", "trt"))
poff$site <- factor(poff$site)

gt_d <- rd("grouseticks.csv")
gt_d$YEAR     <- factor(gt_d$YEAR, levels = c(95, 96, 97))
gt_d$INDEX    <- factor(gt_d$INDEX, levels = sort(unique(gt_d$INDEX)))
gt_d$BROOD    <- factor(gt_d$BROOD, levels = sort(unique(gt_d$BROOD)))
gt_d$LOCATION <- factor(gt_d$LOCATION, levels = sort(unique(gt_d$LOCATION)))

sleep_d <- rd("sleepstudy.csv")
sleep_d$Subject <- factor(sleep_d$Subject, levels = sort(unique(sleep_d$Subject)))

bs <- rd("binary_slope.csv")
bs$subject <- factor(bs$subject)
bs_olre <- bs
bs_olre$obs <- factor(seq_len(nrow(bs)) - 1)  # an observation-level effect on 0/1 data (row 0..599)

## hard cases (issue 6)
plarge <- rd("poisson_large.csv")
plarge$g <- factor(plarge$g)

sleep_small <- sleep_d; sleep_small$Reaction <- sleep_small$Reaction * 1e-6
sleep_large <- sleep_d; sleep_large$Reaction <- sleep_large$Reaction * 1e6

bext <- list()
for (lk in c("probit", "cloglog", "loglog")) {
  d <- rd(sprintf("binomial_extreme_%s.csv", lk))
  d$g <- factor(d$g)
  d$y_fail <- 1 - d$y   # for the loglog-as-cloglog-of-failures fits
  bext[[lk]] <- d
}

ptwo <- rd("poisson_two_offsets.csv")
ptwo$g <- factor(ptwo$g)

## ---------------------------------------------------------------------------
## 3. Case definitions
## ---------------------------------------------------------------------------
## re: one entry per random-effects term in python (formula) order.
##   py    = python group name (varcorr "group")
##   key   = ranef key in JSON
##   grp   = lme4 grouping-factor name
##   cn    = coefficient names of the term
##   swap  = swap "a:b" level strings to "b:a"
cbpp_re <- list(list(py = "herd", key = "herd", grp = "herd", cn = "(Intercept)"))
cbpp_f  <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
cbpp_names <- c("(Intercept)", "period_2", "period_3", "period_4")

cases <- list(
  mfr_poisson_effects = list(
    data = "mfr.csv", df = mfr,
    r_formula = "defects ~ 1 + newprocess + time_dev + temp_dev + supplier + (1 | factory)",
    family = "poisson", link = "log", method = "Laplace",
    names_python = c("(Intercept)", "newprocess", "time_dev", "temp_dev",
                     "supplier_C", "supplier_B"),
    re = list(list(py = "factory", key = "factory", grp = "factory", cn = "(Intercept)"))),
  cbpp_binomial = list(
    data = "cbpp.csv", df = cbpp_d, r_formula = cbpp_f,
    family = "binomial", link = "logit", method = "Laplace",
    names_python = cbpp_names, re = cbpp_re),
  cbpp_binomial_approx = list(
    data = "cbpp.csv", df = cbpp_d, r_formula = cbpp_f,
    family = "binomial", link = "logit", method = "ApproximateLaplace",
    names_python = cbpp_names, re = cbpp_re),
  cbpp_probit = list(
    data = "cbpp.csv", df = cbpp_d, r_formula = cbpp_f,
    family = "binomial", link = "probit", method = "Laplace",
    names_python = cbpp_names, re = cbpp_re),
  cbpp_cloglog = list(
    data = "cbpp.csv", df = cbpp_d, r_formula = cbpp_f,
    family = "binomial", link = "cloglog", method = "Laplace",
    names_python = cbpp_names, re = cbpp_re),
  poisson_offset_interaction = list(
    data = "poisson_offset.csv", df = poff,
    r_formula = "y ~ x * trt + offset(log(exposure)) + (1 | site)",
    family = "poisson", link = "log", method = "Laplace",
    names_python = c("(Intercept)", "x", "trt_trt", "x:trt_trt"),
    re = list(list(py = "site", key = "site", grp = "site", cn = "(Intercept)"))),
  grouseticks_nested_crossed = list(
    data = "grouseticks.csv", df = gt_d,
    r_formula = "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION/BROOD) + (1 | INDEX)",
    family = "poisson", link = "log", method = "Laplace",
    names_python = c("(Intercept)", "YEAR_96", "YEAR_97", "cHEIGHT"),
    re = list(
      list(py = "LOCATION", key = "LOCATION", grp = "LOCATION", cn = "(Intercept)"),
      list(py = "LOCATION:BROOD", key = "LOCATION:BROOD", grp = "BROOD:LOCATION",
           cn = "(Intercept)", swap = TRUE),
      list(py = "INDEX", key = "INDEX", grp = "INDEX", cn = "(Intercept)"))),
  sleepstudy_lmm = list(
    data = "sleepstudy.csv", df = sleep_d,
    r_formula = "Reaction ~ Days + (Days | Subject)",
    family = "gaussian", link = "identity", method = "LMM-ML",
    names_python = c("(Intercept)", "Days"),
    re = list(list(py = "Subject", key = "Subject", grp = "Subject",
                   cn = c("(Intercept)", "Days")))),
  sleepstudy_uncorrelated = list(
    data = "sleepstudy.csv", df = sleep_d,
    r_formula = "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
    family = "gaussian", link = "identity", method = "LMM-ML",
    names_python = c("(Intercept)", "Days"),
    re = list(
      list(py = "Subject", key = "Subject", grp = "Subject", cn = "(Intercept)"),
      list(py = "Subject", key = "Subject.1", grp = "Subject", cn = "Days"))),
  binary_slope = list(
    data = "binary_slope.csv", df = bs,
    r_formula = "y ~ x + (1 + x | subject)",
    family = "binomial", link = "logit", method = "Laplace",
    names_python = c("(Intercept)", "x"),
    re = list(list(py = "subject", key = "subject", grp = "subject",
                   cn = c("(Intercept)", "x")))),
  binary_olre = list(
    data = "binary_slope.csv", df = bs_olre,
    r_formula = "y ~ x + (1 | obs)",
    family = "binomial", link = "logit", method = "Laplace",
    names_python = c("(Intercept)", "x"),
    re = list(list(py = "obs", key = "obs", grp = "obs", cn = "(Intercept)")))
)

## ---- hard cases (issue 6) -------------------------------------------------
g_re <- list(list(py = "g", key = "g", grp = "g", cn = "(Intercept)"))
sleep_case <- cases$sleepstudy_lmm
hard <- list(
  poisson_large_1e4 = list(
    data = "poisson_large.csv", df = plarge,
    r_formula = "y_1e4 ~ 1 + x + (1 | g)",
    family = "poisson", link = "log", method = "Laplace",
    names_python = c("(Intercept)", "x"), re = g_re),
  poisson_large_1e9 = list(
    data = "poisson_large.csv", df = plarge,
    r_formula = "y_1e9 ~ 1 + x + (1 | g)",
    family = "poisson", link = "log", method = "Laplace",
    names_python = c("(Intercept)", "x"), re = g_re),
  sleepstudy_times_1em6 = c(sleep_case[names(sleep_case) != "df"], list(
    df = sleep_small, data_transform = "Reaction * 1e-6")),
  sleepstudy_times_1e6 = c(sleep_case[names(sleep_case) != "df"], list(
    df = sleep_large, data_transform = "Reaction * 1e6")),
  poisson_offset_formula = modifyList(cases$poisson_offset_interaction, list(
    python_note = "offset(log(exposure)) inside the Python formula")),
  poisson_two_offsets = list(
    data = "poisson_two_offsets.csv", df = ptwo,
    r_formula = "y ~ x + offset(log(exposure)) + (1 | g)",
    offset_arg = "log(area)",
    family = "poisson", link = "log", method = "Laplace",
    names_python = c("(Intercept)", "x"), re = g_re)
)
fisher_note <- paste(
  "glmer uses expected (Fisher) information weights for a non-canonical link:",
  "not the exact Laplace approximation; glmmTMB is the reference")
for (lk in c("probit", "cloglog", "loglog")) {
  comp <- lk == "loglog"
  fits <- list(
    bernoulli = if (comp) "y_fail ~ x + (1 | g)" else "y ~ x + (1 | g)",
    trials = if (comp) "cbind(n - k, k) ~ x + (1 | g)" else "cbind(k, n - k) ~ x + (1 | g)")
  for (kind in names(fits)) {
    cs <- list(
      data = sprintf("binomial_extreme_%s.csv", lk), df = bext[[lk]],
      r_formula = fits[[kind]],
      family = "binomial", link = if (comp) "cloglog" else lk, method = "Laplace",
      names_python = c("(Intercept)", "x"), re = g_re, lme4_note = fisher_note)
    if (comp) {
      cs$complement <- TRUE
      cs$model_link <- "loglog"
      cs$complement_note <- paste(
        "loglog(p) = -cloglog(1 - p): fitted as the cloglog model of the failures;",
        "fixef and ranef negated, fitted = 1 - fitted of the failures")
    }
    hard[[sprintf("binomial_extreme_%s_%s", lk, kind)]] <- cs
  }
}
## every hard GLMM case has one scalar random intercept: check it against the
## exact Laplace computation below (exact_laplace entry in the JSON)
for (nm in names(hard)) if (hard[[nm]]$family != "gaussian") hard[[nm]]$check_laplace <- TRUE
hard$poisson_large_1e9$lme4_may_fail <- TRUE
cases <- c(cases, hard)

## REF_CASES="name1,name2" fits only those cases and writes the JSON to REF_OUT
## (default /tmp/lme4_reference_subset.json) instead; merge such a file into the
## committed one with tests/reference/merge_reference.py (keeps the other cases'
## entries verbatim). The hard cases were regenerated that way: the committed
## entries of the first ten cases date from the first run, because a rerun of
## grouseticks_nested_crossed can stop bobyqa elsewhere (see tight_grid notes).
only <- Sys.getenv("REF_CASES")
if (nzchar(only)) {
  cases <- cases[strsplit(only, ",", fixed = TRUE)[[1]]]
  out_json <- Sys.getenv("REF_OUT", "/tmp/lme4_reference_subset.json")
}

## ---------------------------------------------------------------------------
## Helpers
## ---------------------------------------------------------------------------
fam_obj <- function(cs) {
  switch(cs$family,
         binomial = binomial(link = cs$link),
         poisson  = poisson(link = cs$link),
         gaussian = gaussian(link = cs$link))
}

## run expr, collecting warnings and messages (returned alongside the value)
capture <- function(expr) {
  warns <- character(0); msgs <- character(0)
  val <- withCallingHandlers(expr,
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, trimws(conditionMessage(m))); invokeRestart("muffleMessage") })
  list(value = val, warnings = warns, messages = msgs)
}

## Fit with lme4. settings: list(tolPwrss=, rhoend=) or NULL for defaults.
## do.call() puts the evaluated arguments into the stored call, so that
## update(fit, devFunOnly = TRUE) works from any environment.
## offset = argument of a case (NULL when it has none), evaluated in its data
offset_arg <- function(cs) {
  if (is.null(cs$offset_arg)) NULL else eval(parse(text = cs$offset_arg), cs$df)
}

fit_lme4 <- function(cs, settings = NULL) {
  f <- as.formula(cs$r_formula)
  if (cs$family == "gaussian") {
    ctrl <- if (is.null(settings)) lmerControl() else
      lmerControl(optimizer = "bobyqa",
                  optCtrl = list(rhoend = settings$rhoend, maxfun = 1e5))
    do.call(lmer, list(formula = f, data = cs$df, REML = FALSE, control = ctrl))
  } else {
    ctrl <- if (is.null(settings)) glmerControl() else
      glmerControl(optimizer = "bobyqa", tolPwrss = settings$tolPwrss,
                   optCtrl = list(rhoend = settings$rhoend, maxfun = 1e5))
    nAGQ <- if (cs$method == "ApproximateLaplace") 0L else 1L
    args <- list(formula = f, data = cs$df, family = fam_obj(cs),
                 nAGQ = nAGQ, control = ctrl)
    args$offset <- offset_arg(cs)
    do.call(glmer, args)
  }
}

## Re-evaluate the Laplace objective at the optimum with a much tighter PIRLS
## tolerance (glmer, nAGQ = 1 only). lme4 computes log|L| with the weights of
## the second-to-last PIRLS iterate, so the reported logLik carries an error
## that shrinks with tolPwrss; this value shows how large that error still is.
recheck_loglik <- function(fit, cs, tols = c(1e-15, 1e-14)) {
  if (cs$family == "gaussian" || cs$method == "ApproximateLaplace") return(NULL)
  for (tol in tols) {
    v <- tryCatch({
      dd <- update(fit, devFunOnly = TRUE, control = glmerControl(tolPwrss = tol))
      -dd(c(getME(fit, "theta"), fixef(fit))) / 2
    }, error = function(e) NULL)
    if (!is.null(v)) return(list(logLik = v, tolPwrss = tol))
  }
  NULL
}

settings_string <- function(cs, s) {
  if (cs$family == "gaussian")
    sprintf("lmerControl(optimizer='bobyqa', optCtrl=list(rhoend=%g, maxfun=1e5)), REML=FALSE", s$rhoend)
  else
    sprintf("glmerControl(optimizer='bobyqa', tolPwrss=%g, optCtrl=list(rhoend=%g, maxfun=1e5)), nAGQ=%d",
            s$tolPwrss, s$rhoend,
            if (cs$method == "ApproximateLaplace") 0L else 1L)
}

## "Tight" settings, tried in order; the first one that fits without error and
## without lme4 convergence messages is used.
## Notes (lme4 1.1-31, this machine):
##  * tolPwrss = 1e-12 with rhoend = 1e-12 is NOT reproducible for
##    grouseticks: in some R sessions bobyqa stops at a non-optimum
##    (logLik -890.2727, "degenerate Hessian") -- results depend on the
##    session (memory alignment -> last-bit differences).
##  * tolPwrss <= 1e-13 forces one extra PIRLS iteration so that log|L| is
##    evaluated at (numerically) the conditional mode; with tolPwrss = 1e-10 the
##    grouseticks logLik is 2.3e-5 below the exact Laplace value (which
##    glmmTMB reports).
tight_grid <- list(
  list(tolPwrss = 1e-14, rhoend = 1e-12),
  list(tolPwrss = 1e-13, rhoend = 1e-12),
  list(tolPwrss = 1e-12, rhoend = 1e-10),
  list(tolPwrss = 1e-10, rhoend = 1e-10),
  list(tolPwrss = 1e-9,  rhoend = 1e-9),
  list(tolPwrss = 1e-8,  rhoend = 1e-8)
)

## Rows of a VarCorr-like list (lme4 VarCorr.merMod or glmmTMB VarCorr()$cond)
varcorr_rows <- function(vc, re) {
  vnames <- names(vc)
  rows <- list()
  used <- integer(0)
  for (term in re) {
    idx <- which(sub("\\.[0-9]+$", "", vnames) == term$grp &
                 vapply(vc, function(m) identical(colnames(m), term$cn), logical(1)))
    idx <- setdiff(idx, used)
    if (length(idx) < 1) stop("term not found in VarCorr: ", term$grp)
    i <- idx[1]; used <- c(used, i)
    m  <- vc[[i]]
    sd <- attr(m, "stddev")
    cr <- attr(m, "correlation")
    k  <- length(term$cn)
    for (j in seq_len(k)) {
      rows[[length(rows) + 1]] <- list(group = term$py, name1 = term$cn[j],
                                       name2 = term$cn[j], type = "std",
                                       estimate = unname(sd[j]))
      if (j < k) for (r in (j + 1):k) {
        rows[[length(rows) + 1]] <- list(group = term$py, name1 = term$cn[r],
                                         name2 = term$cn[j], type = "corr",
                                         estimate = unname(cr[r, j]))
      }
    }
  }
  rows
}

ranef_list <- function(fit, re, cs, rr = ranef(fit, condVar = FALSE)) {
  out <- list()
  for (term in re) {
    d <- rr[[term$grp]]
    lev <- rownames(d)
    if (isTRUE(term$swap))
      lev <- vapply(strsplit(lev, ":", fixed = TRUE),
                    function(p) paste(rev(p), collapse = ":"), character(1))
    out[[term$key]] <- list(
      levels = I(lev),
      names  = I(term$cn),
      values = lapply(term$cn, function(cn) I(flip(cs) * unname(d[[cn]]))))
  }
  out
}

lme4_summary <- function(fit, cs, settings_str, warns) {
  is_glmm <- cs$family != "gaussian"
  fe <- flip(cs) * fixef(fit)
  ## vcov(use.hessian=FALSE) warns when the RX- and Hessian-based matrices
  ## differ by > 1e-4; that difference is expected, so the warning is muffled.
  se_cond <- if (is_glmm) suppressWarnings(sqrt(diag(as.matrix(vcov(fit, use.hessian = FALSE)))))
             else sqrt(diag(as.matrix(vcov(fit))))
  ## se_hessian = lme4's default vcov(fit) for glmer. For nAGQ = 0 lme4 has no
  ## Hessian (optinfo$derivs is NULL) and vcov() silently falls back to the
  ## RX-based matrix, so se_hessian == se_conditional there (see se_hessian_source).
  se_hess <- NULL; se_hess_src <- NULL
  if (is_glmm) {
    se_hess <- I(unname(sqrt(diag(as.matrix(vcov(fit))))))
    se_hess_src <- if (is.null(fit@optinfo$derivs))
      "RX (no finite-difference Hessian available; identical to se_conditional)"
    else "finite-difference Hessian (optinfo$derivs)"
  }
  th <- getME(fit, "theta")
  ll <- logLik(fit)
  msgs <- fit@optinfo$conv$lme4$messages
  if (is.null(msgs)) msgs <- character(0)
  list(
    settings = settings_str,
    fixef = I(unname(fe)),
    fixef_names_r = I(names(fe)),
    se_conditional = I(unname(se_cond)),
    se_hessian = se_hess,
    se_hessian_source = se_hess_src,
    theta = I(unname(th)),
    theta_names = I(names(th)),
    varcorr = varcorr_rows(VarCorr(fit), cs$re),
    sigma = sigma(fit),
    logLik = as.numeric(ll),
    ## devfun re-evaluated at the optimum with a tighter PIRLS tolerance
    logLik_recheck = recheck_loglik(fit, cs),
    df = as.integer(attr(ll, "df")),
    AIC = AIC(fit),
    BIC = BIC(fit),
    ranef = ranef_list(fit, cs$re, cs),
    converged_messages = I(as.character(msgs)),
    optimizer_warnings = I(as.character(unlist(fit@optinfo$warnings))),
    fit_warnings = I(warns),
    singular = isSingular(fit),
    fitted_range = fitted_range(fit, cs)
  )
}

fit_glmmTMB <- function(cs) {
  args <- list(formula = as.formula(cs$r_formula), data = cs$df,
               family = fam_obj(cs), REML = FALSE)
  args$offset <- offset_arg(cs)
  do.call(glmmTMB, args)
}

glmmTMB_ranef <- function(fit, cs)
  ranef_list(fit, cs$re, cs, rr = ranef(fit, condVar = FALSE)$cond)

## complement (loglog) cases: sign of the fixed effects and conditional modes
flip <- function(cs) if (isTRUE(cs$complement)) -1 else 1

## range of the fitted means (success probabilities for the loglog cases)
fitted_range <- function(fit, cs) {
  f <- as.numeric(fitted(fit))
  if (isTRUE(cs$complement)) f <- 1 - f
  I(range(f))
}

glmmTMB_summary <- function(fit, cs, warns) {
  fe <- flip(cs) * fixef(fit)$cond
  list(
    fixef = I(unname(fe)),
    fixef_names_r = I(names(fe)),
    se = I(unname(sqrt(diag(vcov(fit)$cond)))),
    varcorr = varcorr_rows(VarCorr(fit)$cond, cs$re),
    sigma = sigma(fit),
    logLik = as.numeric(logLik(fit)),
    convergence = fit$fit$convergence,
    pdHess = isTRUE(fit$sdr$pdHess),
    fit_warnings = I(warns),
    ranef = glmmTMB_ranef(fit, cs),
    fitted_range = fitted_range(fit, cs)
  )
}

## ---------------------------------------------------------------------------
## Independent exact Laplace log-likelihood for one scalar random intercept
## (hard GLMM cases). With a single (1 | g) term the Laplace approximation
## factorises over the groups:
##   logLik = sum_j [ h_j(u_j) - u_j^2 / (2 s^2) - log s - log(H_j) / 2 ],
##   h_j(u) = sum_{i in j} log p(y_i | eta_i + u),  H_j = -h_j''(u_j) + 1/s^2,
## at the conditional mode u_j (Newton to full precision). The log-densities are
## evaluated on the log scale without cancellation: dpois() (Loader's algorithm)
## for Poisson, pnorm(log.p = TRUE) for probit, log(-expm1(-exp(eta))) and
## -exp(eta) for cloglog. Used to check the logLik that glmer (PIRLS tolerance;
## fails outright for very large counts) and glmmTMB (log-densities written as
## y log(mu) - mu - lgamma(y + 1), which loses digits for counts ~1e9) report,
## and maximised (Newton with numDeriv derivatives, from glmmTMB's estimates)
## to give the exact Laplace optimum.
## ---------------------------------------------------------------------------
laplace_parts <- function(cs) {
  args <- list(formula = as.formula(cs$r_formula), data = cs$df, family = fam_obj(cs))
  args$offset <- offset_arg(cs)
  gf <- do.call(glFormula, args)
  fr <- gf$fr
  y <- model.response(fr)
  if (is.matrix(y)) { k <- y[, 1]; n <- y[, 1] + y[, 2] } else { k <- y; n <- rep(1, length(y)) }
  off <- model.offset(fr); if (is.null(off)) off <- rep(0, nrow(fr))
  stopifnot(length(gf$reTrms$flist) == 1, nrow(gf$reTrms$Zt) == nlevels(gf$reTrms$flist[[1]]))
  list(X = gf$X, k = as.numeric(k), n = as.numeric(n), off = as.numeric(off),
       g = as.integer(gf$reTrms$flist[[1]]), J = nlevels(gf$reTrms$flist[[1]]),
       family = cs$family, link = cs$link)
}

## log-density l(eta) and its first two derivatives, per observation
obs_terms <- function(eta, P) {
  k <- P$k; n <- P$n
  if (P$family == "poisson") {
    mu <- exp(eta)
    return(list(l = dpois(k, mu, log = TRUE), d1 = k - mu, d2 = -mu))
  }
  if (P$link == "probit") {
    lp <- pnorm(eta, log.p = TRUE); lq <- pnorm(eta, lower.tail = FALSE, log.p = TRUE)
    r1 <- exp(dnorm(eta, log = TRUE) - lp)      # d lp / d eta
    r2 <- exp(dnorm(eta, log = TRUE) - lq)      # -d lq / d eta
    dlp <- r1; d2lp <- -r1 * (eta + r1)
    dlq <- -r2; d2lq <- -r2 * (r2 - eta)
  } else if (P$link == "cloglog") {
    t <- exp(eta)
    lp <- log(-expm1(-t)); lq <- -t
    em <- expm1(t)
    dlp <- ifelse(t < 1e-300, 1, t / em)
    d2lp <- ifelse(t < 1e-300, 0, t * (em - t * exp(t)) / em^2)
    d2lp[!is.finite(d2lp)] <- 0                 # t large: t^2 e^t / e^2t -> 0
    dlp[!is.finite(dlp)] <- 0
    dlq <- -t; d2lq <- -t
  } else stop("link not supported: ", P$link)
  mix <- function(a, b) ifelse(k > 0, k * a, 0) + ifelse(n - k > 0, (n - k) * b, 0)
  list(l = lchoose(n, k) + mix(lp, lq), d1 = mix(dlp, dlq), d2 = mix(d2lp, d2lq))
}

## exact Laplace logLik at (beta, sd); also returns the conditional modes
laplace_ll <- function(beta, sd, P, u = rep(0, P$J)) {
  eta0 <- as.numeric(P$X %*% beta) + P$off
  s2 <- sd^2
  hval <- function(u) rowsum(obs_terms(eta0 + u[P$g], P)$l, P$g, reorder = TRUE)[, 1] - u^2 / (2 * s2)
  for (it in 1:200) {
    o <- obs_terms(eta0 + u[P$g], P)
    g <- rowsum(o$d1, P$g, reorder = TRUE)[, 1] - u / s2
    H <- -rowsum(o$d2, P$g, reorder = TRUE)[, 1] + 1 / s2
    step <- g / H
    un <- u + step
    if (max(abs(step)) > 1e-3) {                 # step-halving, per group, far from the mode
      h0 <- hval(u)
      for (half in 1:60) {
        bad <- !(hval(un) >= h0 - 1e-12 * abs(h0))
        if (!any(bad)) break
        step[bad] <- step[bad] / 2; un <- u + step
      }
    }
    u <- un
    if (max(abs(step)) < 1e-13) break
  }
  o <- obs_terms(eta0 + u[P$g], P)
  H <- -rowsum(o$d2, P$g, reorder = TRUE)[, 1] + 1 / s2
  h <- rowsum(o$l, P$g, reorder = TRUE)[, 1] - u^2 / (2 * s2)
  list(logLik = sum(h - log(sd) - log(H) / 2), u = u, iterations = it)
}

## maximise the exact Laplace logLik over (beta, log sd) by Newton steps.
## numDeriv's default Richardson start step for hessian() is d = 0.1 of each
## parameter: too coarse for these strongly non-quadratic surfaces (it gave SEs
## 4% off for binomial_extreme_cloglog_bernoulli, where intercept and slope
## correlate at 0.99); d = 0.01 reproduces glmmTMB's sdreport SEs to 1e-6.
hess_args <- list(eps = 1e-4, d = 0.01, zero.tol = sqrt(.Machine$double.eps / 7e-7),
                  r = 4, v = 2, show.details = FALSE)
laplace_optimum <- function(beta, sd, P) {
  u0 <- rep(0, P$J)
  f <- function(p) {
    r <- laplace_ll(p[-length(p)], exp(p[length(p)]), P, u0)
    if (all(is.finite(r$u))) u0 <<- r$u      # warm start of the next evaluation
    r$logLik
  }
  ## Newton steps until they are below 1e-7: smaller ones are the noise of the
  ## numerical derivatives (the logLik then changes by < 1e-10)
  p <- c(beta, log(sd)); ll <- f(p); steps <- numeric(0)
  for (it in 1:20) {
    gr <- numDeriv::grad(f, p)
    He <- numDeriv::hessian(f, p, method.args = hess_args)
    step <- -solve(He, gr)
    pn <- p + step; lln <- f(pn)
    while (lln < ll && max(abs(step)) > 1e-14) { step <- step / 2; pn <- p + step; lln <- f(pn) }
    steps <- c(steps, max(abs(step)))
    if (lln >= ll) { p <- pn; ll <- lln }
    if (max(abs(step)) < 1e-7) break
  }
  fin <- laplace_ll(p[-length(p)], exp(p[length(p)]), P)
  ## SEs of the fixed effects from the inverse of the negative Hessian of the
  ## exact Laplace logLik in (beta, log sd): glmmTMB's sdreport / MATLAB's
  ## JointHessian definition, not lme4's conditional (RX) SEs
  He <- numDeriv::hessian(f, p, method.args = hess_args)
  se <- sqrt(diag(solve(-He)))[-length(p)]
  list(logLik = fin$logLik, fixef = p[-length(p)], sd = exp(p[length(p)]),
       ranef = fin$u, newton_steps = steps, gradient = numDeriv::grad(f, p), se = se)
}

## exact Laplace entry of a hard GLMM case (same keys as the glmmTMB entry)
exact_laplace_summary <- function(cs, tmb_fit, lme4_fit) {
  P <- laplace_parts(cs)
  b <- fixef(tmb_fit)$cond
  s <- unname(attr(VarCorr(tmb_fit)$cond[[1]], "stddev"))
  at_tmb <- laplace_ll(b, s, P)$logLik
  at_lme4 <- if (is.null(lme4_fit)) NULL else
    laplace_ll(fixef(lme4_fit), unname(attr(VarCorr(lme4_fit)[[1]], "stddev")), P)$logLik
  o <- laplace_optimum(b, s, P)
  term <- cs$re[[1]]
  list(
    method = paste(
      "exact Laplace approximation computed in make_reference.R (one scalar random",
      "intercept: per-group Newton to the conditional mode, log-densities without",
      "cancellation), maximised by Newton steps from glmmTMB's estimates"),
    fixef = I(flip(cs) * unname(o$fixef)),
    fixef_names_r = I(names(b)),
    se_hessian = I(unname(o$se)),
    varcorr = list(list(group = term$py, name1 = "(Intercept)", name2 = "(Intercept)",
                        type = "std", estimate = o$sd)),
    sigma = 1,
    logLik = o$logLik,
    logLik_at_glmmTMB = at_tmb,
    logLik_at_lme4 = at_lme4,
    newton_steps = I(o$newton_steps),
    gradient = I(o$gradient),
    ranef = setNames(list(list(
      levels = I(levels(cs$df[[term$grp]])), names = I(term$cn),
      values = list(I(flip(cs) * o$ranef)))), term$key))
}

## ---------------------------------------------------------------------------
## 4. Fit everything
## ---------------------------------------------------------------------------
result <- list(
  `_meta` = list(
    R = R.version.string,
    lme4 = as.character(packageVersion("lme4")),
    glmmTMB = as.character(packageVersion("glmmTMB")),
    generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S %Z"),
    script = "tests/reference/make_reference.R"))

summary_rows <- list()

for (nm in names(cases)) {
  cs <- cases[[nm]]
  cat(sprintf("\n=== %s ===\n", nm))

  ## -- tight lme4 ---------------------------------------------------------
  tight <- NULL; failed <- character(0); candidates <- list(); tried <- character(0)
  for (s in tight_grid) {
    ss <- settings_string(cs, s)
    if (ss %in% tried) next  # lmer: tolPwrss is irrelevant, avoid duplicates
    tried <- c(tried, ss)
    r <- tryCatch(capture(fit_lme4(cs, s)), error = function(e) e)
    if (inherits(r, "error")) {
      failed <- c(failed, sprintf("[%s] error: %s", settings_string(cs, s),
                                  conditionMessage(r)))
      cat("  tight setting failed:", settings_string(cs, s), "--",
          conditionMessage(r), "\n")
      next
    }
    r$s <- s
    msgs <- as.character(unlist(r$value@optinfo$conv$lme4$messages))
    if (length(msgs)) {
      failed <- c(failed, sprintf("[%s] conv messages: %s", settings_string(cs, s),
                                  paste(msgs, collapse = " | ")))
      cat("  tight setting gave convergence messages:", settings_string(cs, s),
          "--", msgs, "\n")
      candidates[[length(candidates) + 1]] <- r
      next
    }
    tight <- r
    break
  }
  if (is.null(tight) && !length(candidates) && isTRUE(cs$lme4_may_fail)) {
    ## glmer fails at every setting (poisson_large_1e9: PIRLS step-halvings
    ## cannot reduce a deviance whose rounding noise exceeds its decrease):
    ## record the failure, glmmTMB and the exact Laplace optimum only
    cat("  lme4 failed at every setting (recorded as failed)\n")
    dflt_err <- tryCatch({ fit_lme4(cs, NULL); "no error" },
                         error = function(e) conditionMessage(e))
    tmb <- capture(fit_glmmTMB(cs))
    ex <- exact_laplace_summary(cs, tmb$value, NULL)
    case_out <- list(
      data = cs$data, r_formula = cs$r_formula, family = cs$family, link = cs$link,
      method = cs$method, nobs = nrow(cs$df), names_python = I(cs$names_python),
      lme4 = list(failed = TRUE, errors = I(failed)),
      lme4_default = list(failed = TRUE, error = dflt_err),
      glmmTMB = glmmTMB_summary(tmb$value, cs, tmb$warnings),
      exact_laplace = ex)
    for (f in c("data_transform", "offset_arg", "model_link", "complement_note",
                "lme4_note", "python_note"))
      if (!is.null(cs[[f]])) case_out[[f]] <- cs[[f]]
    result[[nm]] <- case_out
    cat(sprintf("  glmmTMB=%.10f exact Laplace at glmmTMB=%.10f optimum=%.10f\n",
                case_out$glmmTMB$logLik, ex$logLik_at_glmmTMB, ex$logLik))
    summary_rows[[nm]] <- data.frame(
      case = nm, ll_tight = NA, ll_default = NA, ll_glmmTMB = case_out$glmmTMB$logLik,
      ll_recheck_minus_tight = NA, rel_fixef_tight_vs_tmb = NA,
      rel_varcorr_tight_vs_tmb = NA, rel_fixef_tight_vs_default = NA,
      ll_exact = ex$logLik, ll_exact_at_tmb = ex$logLik_at_glmmTMB,
      ll_exact_at_lme4 = NA, stringsAsFactors = FALSE)
    next
  } else if (is.null(tight)) {
    if (!length(candidates)) stop("no tight setting worked for ", nm)
    lls <- vapply(candidates, function(r) as.numeric(logLik(r$value)), numeric(1))
    tight <- candidates[[which.max(lls)]]
  }
  tight_s <- tight$s
  sstr <- settings_string(cs, tight_s)
  if (length(failed)) sstr <- paste0(sstr, " (tighter settings rejected: ",
                                     paste(failed, collapse = "; "), ")")
  fit_t <- tight$value
  if (length(fit_t@optinfo$conv$lme4$messages))
    cat("  lme4 tight conv messages:", unlist(fit_t@optinfo$conv$lme4$messages), "\n")
  if (length(tight$warnings)) cat("  lme4 tight warnings:", tight$warnings, "\n")

  ## -- default lme4 -------------------------------------------------------
  dflt <- capture(fit_lme4(cs, NULL))
  fit_d <- dflt$value

  ## -- glmmTMB ------------------------------------------------------------
  tmb <- NULL
  if (cs$method != "ApproximateLaplace") {
    tmb <- capture(fit_glmmTMB(cs))
    if (length(tmb$warnings)) cat("  glmmTMB warnings:", tmb$warnings, "\n")
  }

  lme4_out <- lme4_summary(fit_t, cs, sstr, tight$warnings)
  stopifnot(length(cs$names_python) == length(lme4_out$fixef))

  case_out <- list(
    data = cs$data,
    r_formula = cs$r_formula,
    family = cs$family,
    link = cs$link,
    method = cs$method,
    nobs = nobs(fit_t),
    names_python = I(cs$names_python),
    lme4 = lme4_out,
    lme4_default = list(
      fixef = I(unname(flip(cs) * fixef(fit_d))),
      logLik = as.numeric(logLik(fit_d)),
      theta = I(unname(getME(fit_d, "theta")))),
    glmmTMB = if (is.null(tmb)) NULL else glmmTMB_summary(tmb$value, cs, tmb$warnings)
  )
  ## keep an explicit null for glmmTMB
  if (is.null(tmb)) case_out["glmmTMB"] <- list(NULL)
  ex <- NULL
  if (isTRUE(cs$check_laplace)) {
    ex <- exact_laplace_summary(cs, tmb$value, fit_t)
    case_out$exact_laplace <- ex
  }
  ## optional descriptive fields of the hard cases
  for (f in c("data_transform", "offset_arg", "model_link", "complement_note",
              "lme4_note", "python_note"))
    if (!is.null(cs[[f]])) case_out[[f]] <- cs[[f]]
  result[[nm]] <- case_out

  ## -- comparison ---------------------------------------------------------
  fe_t <- flip(cs) * fixef(fit_t)
  cat("  lme4 tight settings:", sstr, "\n")
  cat(sprintf("  logLik  tight=%.10f  default=%.10f", as.numeric(logLik(fit_t)),
              as.numeric(logLik(fit_d))))
  rel_fe <- NA; abs_fe <- NA; rel_vc <- NA; ll_tmb <- NA
  if (!is.null(tmb)) {
    g <- case_out$glmmTMB
    stopifnot(identical(as.character(g$fixef_names_r), names(fe_t)))
    ll_tmb <- g$logLik
    cat(sprintf("  glmmTMB=%.10f", ll_tmb))
    fe_g <- as.numeric(g$fixef)
    abs_fe <- max(abs(fe_t - fe_g))
    rel_fe <- max(abs(fe_t - fe_g) / pmax(abs(fe_t), 1e-8))
    vc_t <- vapply(lme4_out$varcorr, `[[`, numeric(1), "estimate")
    vc_g <- vapply(g$varcorr, `[[`, numeric(1), "estimate")
    rel_vc <- max(abs(vc_t - vc_g) / pmax(abs(vc_t), 1e-8))
  }
  cat("\n")
  if (!is.null(tmb)) {
    cmp <- rbind(lme4_tight = fe_t, glmmTMB = as.numeric(case_out$glmmTMB$fixef),
                 lme4_default = flip(cs) * fixef(fit_d))
    print(signif(cmp, 10))
    cat(sprintf("  max rel fixef diff tight vs glmmTMB: %.3g (abs %.3g); max rel varcorr diff: %.3g\n",
                rel_fe, abs_fe, rel_vc))
  }
  if (!is.null(ex)) {
    cat(sprintf("  exact Laplace: optimum=%.10f at glmmTMB=%.10f at lme4=%.10f\n",
                ex$logLik, ex$logLik_at_glmmTMB, ex$logLik_at_lme4))
    cat(sprintf("  exact optimum vs glmmTMB: max rel fixef %.3g, rel sd %.3g\n",
                max(abs(ex$fixef - case_out$glmmTMB$fixef) / abs(ex$fixef)),
                abs(ex$varcorr[[1]]$estimate / case_out$glmmTMB$varcorr[[1]]$estimate - 1)))
  }
  summary_rows[[nm]] <- data.frame(
    case = nm,
    ll_tight = as.numeric(logLik(fit_t)),
    ll_default = as.numeric(logLik(fit_d)),
    ll_glmmTMB = ll_tmb,
    ll_recheck_minus_tight = if (is.null(lme4_out$logLik_recheck)) NA else
      lme4_out$logLik_recheck$logLik - as.numeric(logLik(fit_t)),
    rel_fixef_tight_vs_tmb = rel_fe,
    rel_varcorr_tight_vs_tmb = rel_vc,
    rel_fixef_tight_vs_default = max(abs(fe_t - flip(cs) * fixef(fit_d)) / pmax(abs(fe_t), 1e-8)),
    ll_exact = if (is.null(ex)) NA else ex$logLik,
    ll_exact_at_tmb = if (is.null(ex)) NA else ex$logLik_at_glmmTMB,
    ll_exact_at_lme4 = if (is.null(ex)) NA else ex$logLik_at_lme4,
    stringsAsFactors = FALSE)
}

## ---------------------------------------------------------------------------
## 5. Write JSON and validate
## ---------------------------------------------------------------------------
js <- toJSON(result, auto_unbox = TRUE, pretty = TRUE, digits = NA,
             null = "null", na = "null")
writeLines(js, out_json)
chk <- fromJSON(out_json, simplifyVector = FALSE)
stopifnot(setequal(names(chk), c("_meta", names(cases))))
cat("\nWrote", out_json, "\n\n")

tab <- do.call(rbind, summary_rows)
rownames(tab) <- NULL
old <- options(width = 200)
print(format(tab, digits = 10), right = FALSE)
options(old)
