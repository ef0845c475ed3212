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
## must already exist; they are only read, never regenerated.
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
                   cn = c("(Intercept)", "x"))))
)

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
    do.call(glmer, list(formula = f, data = cs$df, family = fam_obj(cs),
                        nAGQ = nAGQ, control = ctrl))
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

ranef_list <- function(fit, re) {
  rr <- ranef(fit, condVar = FALSE)
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
      values = lapply(term$cn, function(cn) I(unname(d[[cn]]))))
  }
  out
}

lme4_summary <- function(fit, cs, settings_str, warns) {
  is_glmm <- cs$family != "gaussian"
  fe <- fixef(fit)
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
    ranef = ranef_list(fit, cs$re),
    converged_messages = I(as.character(msgs)),
    optimizer_warnings = I(as.character(unlist(fit@optinfo$warnings))),
    fit_warnings = I(warns),
    singular = isSingular(fit)
  )
}

fit_glmmTMB <- function(cs) {
  glmmTMB(as.formula(cs$r_formula), data = cs$df, family = fam_obj(cs),
          REML = FALSE)
}

glmmTMB_summary <- function(fit, cs, warns) {
  fe <- fixef(fit)$cond
  list(
    fixef = I(unname(fe)),
    fixef_names_r = I(names(fe)),
    se = I(unname(sqrt(diag(vcov(fit)$cond)))),
    varcorr = varcorr_rows(VarCorr(fit)$cond, cs$re),
    sigma = sigma(fit),
    logLik = as.numeric(logLik(fit)),
    convergence = fit$fit$convergence,
    pdHess = isTRUE(fit$sdr$pdHess),
    fit_warnings = I(warns)
  )
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
    msgs <- r$value@optinfo$conv$lme4$messages
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
  if (is.null(tight)) {
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
    cat("  lme4 tight conv messages:", fit_t@optinfo$conv$lme4$messages, "\n")
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
      fixef = I(unname(fixef(fit_d))),
      logLik = as.numeric(logLik(fit_d)),
      theta = I(unname(getME(fit_d, "theta")))),
    glmmTMB = if (is.null(tmb)) NULL else glmmTMB_summary(tmb$value, cs, tmb$warnings)
  )
  ## keep an explicit null for glmmTMB
  if (is.null(tmb)) case_out["glmmTMB"] <- list(NULL)
  result[[nm]] <- case_out

  ## -- comparison ---------------------------------------------------------
  fe_t <- fixef(fit_t)
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
                 lme4_default = fixef(fit_d))
    print(signif(cmp, 10))
    cat(sprintf("  max rel fixef diff tight vs glmmTMB: %.3g (abs %.3g); max rel varcorr diff: %.3g\n",
                rel_fe, abs_fe, rel_vc))
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
    rel_fixef_tight_vs_default = max(abs(fe_t - fixef(fit_d)) / pmax(abs(fe_t), 1e-8)),
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
